// Command sessionquery is the Lambda function that answers failover queries from the
// query queue on the reply topic. Build it as a provided.al2023 bootstrap:
//
//	CGO_ENABLED=0 GOARCH=arm64 go build -buildvcs=auto -tags lambda.norpc -trimpath -ldflags='-s -w' -o bootstrap ./functions/sessionquery
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/sessionha/sessionha/functions/sessionquery/handler"
	"github.com/sessionha/sessionha/internal/buildinfo"
	"github.com/sessionha/sessionha/internal/lambdaenv"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	buildinfo.Log(log.With("function", "sessionquery")) // once per environment: which code answers
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
	db := dynamodb.NewFromConfig(awsCfg)
	h, err := handler.New(db, sns.NewFromConfig(awsCfg), cfg, log)
	if err != nil {
		log.Error("bad configuration", "reason", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
