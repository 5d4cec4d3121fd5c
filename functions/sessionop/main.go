// Command sessionop is the Lambda function that applies session operations from the ops
// queue to the session table. Build it as a provided.al2023 bootstrap:
//
//	CGO_ENABLED=0 GOARCH=arm64 go build -buildvcs=auto -tags lambda.norpc -trimpath -ldflags='-s -w' -o bootstrap ./functions/sessionop
package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/functions/sessionop/handler"
	"github.com/sessionha/sessionha/internal/buildinfo"
	"github.com/sessionha/sessionha/internal/lambdaenv"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	buildinfo.Log(log.With("function", "sessionop")) // once per environment: which code answers
	if dir := os.Getenv("SESSIONHA_CPUPROFILE"); dir != "" {
		profile(dir, log)
	}
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
	h, err := handler.New(db, sqs.NewFromConfig(awsCfg), cfg, log)
	if err != nil {
		log.Error("bad configuration", "reason", err.Error())
		os.Exit(1)
	}
	// Instances that serve sessions from memory learn here that another took one over.
	if topic := os.Getenv("SESSIONHA_NOTICE_TOPIC_ARN"); topic != "" {
		h.NotifyOwners(sns.NewFromConfig(awsCfg), topic)
	}
	lambda.Start(h.Handle)
}

// profile writes a CPU profile of this process to dir/sessionop-PID.prof until SIGTERM,
// which the local Lambda runner sends when it stops an environment. It is for the
// benchmark (make bench -sessionha.fnprofile); Lambda never sets SESSIONHA_CPUPROFILE.
func profile(dir string, log *slog.Logger) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("sessionop-%d.prof", os.Getpid())))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		log.Error("cpu profile", "reason", err.Error())
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	go func() {
		<-stop
		pprof.StopCPUProfile()
		f.Close()
		os.Exit(0)
	}()
}
