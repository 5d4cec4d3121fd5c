// Package lambdaenv makes the AWS SDK configuration of a Lambda function from the
// environment that Lambda gives it: the region and the execution role's credentials in
// AWS_* variables, and, outside AWS (the local stack), AWS_ENDPOINT_URL. It replaces the
// SDK's config.LoadDefaultConfig, whose shared-file, SSO and STS providers a function
// never uses and which weigh about 2 MB of every bootstrap.
package lambdaenv

import (
	"errors"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Config returns the function's SDK configuration, or an error naming the missing
// variable.
func Config() (aws.Config, error) {
	region := os.Getenv("AWS_REGION")
	if region == "" {
		return aws.Config{}, errors.New("AWS_REGION is not set: Lambda sets it for every function")
	}
	key, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if key == "" || secret == "" {
		return aws.Config{}, errors.New("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set: Lambda sets them to the execution role's credentials")
	}
	cfg := aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, os.Getenv("AWS_SESSION_TOKEN")),
	}
	if ep := os.Getenv("AWS_ENDPOINT_URL"); ep != "" {
		cfg.BaseEndpoint = aws.String(ep)
	}
	return cfg, nil
}
