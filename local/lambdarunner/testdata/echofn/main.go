// Command echofn is the lambdarunner tests' Lambda function: a real bootstrap, built
// like sessionha's functions (CGO_ENABLED=0 go build -tags lambda.norpc). What it does
// is in handler.go; main only starts the runtime, as a deployed function's main does.
package main

import "github.com/aws/aws-lambda-go/lambda"

func main() {
	lambda.Start(handle)
}
