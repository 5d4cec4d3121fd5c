// Command sessionop is the Lambda function that applies session operations from the ops
// queue to the session table. Build it as a provided.al2023 bootstrap:
//
//	CGO_ENABLED=0 GOARCH=arm64 go build -tags lambda.norpc -trimpath -ldflags='-s -w' -o bootstrap ./functions/sessionop
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sessionha/sessionha/functions/sessionop/handler"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := handler.ConfigFromEnv()
	if err != nil {
		log.Error("bad configuration", "reason", err.Error())
		os.Exit(1)
	}
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Error("aws configuration", "reason", err.Error())
		os.Exit(1)
	}
	h, err := handler.New(dynamodb.NewFromConfig(awsCfg), cfg, log)
	if err != nil {
		log.Error("bad configuration", "reason", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
