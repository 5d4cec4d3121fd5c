// Command lifecycle is the Lambda function that publishes sessions' lifecycle events
// (created, destroyed, expired, moved) on the site's lifecycle topic, from the session
// table's stream. Build it as a provided.al2023 bootstrap:
//
//	CGO_ENABLED=0 GOARCH=arm64 go build -buildvcs=auto -tags lambda.norpc -trimpath -ldflags='-s -w' -o bootstrap ./functions/lifecycle
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/sessionha/sessionha/functions/lifecycle/handler"
	"github.com/sessionha/sessionha/internal/buildinfo"
	"github.com/sessionha/sessionha/internal/lambdaenv"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	buildinfo.Log(log.With("function", "lifecycle")) // once per environment: which code publishes
	cfg, err := handler.ConfigFromEnv()
	if err != nil {
		log.Error("bad configuration", "reason", err.Error())
		os.Exit(1)
	}
	awsCfg, err := lambdaenv.Config()
	if err != nil {
		log.Error("aws configuration", "reason", err.Error())
		os.Exit(1)
	}
	h, err := handler.New(sns.NewFromConfig(awsCfg), cfg, log)
	if err != nil {
		log.Error("bad configuration", "reason", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
