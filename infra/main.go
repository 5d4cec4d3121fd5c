// Command infra is the sessionha CDK app: one stack per site listed in cdk.json's context,
// each rendering infra/topology (the description the local stack provisions too) as
// topics, queues with dead-letter queues, the functions on provided.al2023 arm64 with
// their SQS event source mappings, alarms, a dashboard and the auth servers' managed
// policy; the primary site's stack also holds the session table as a global table with
// a replica in every other site's region.
//
// The CDK CLI runs it (cdk.json: "app": "go run ./infra"); use the pinned CLI through
// make: `make synth`, `make deploy`. The functions' bootstraps must be built first
// (bin/lambda/<id>/bootstrap, by `make build`).
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "infra:", err)
		os.Exit(1)
	}
}

func run() error {
	// jsii's Node process and its unpacked runtime in the temp dir go away only on Close,
	// which must run before os.Exit, and also when the CDK panics (its errors do).
	defer jsii.Close()
	// The CLI says where it wants the cloud assembly; run by hand, write cdk.out.
	outdir := os.Getenv("CDK_OUTDIR")
	if outdir == "" {
		outdir = "cdk.out"
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir)})
	cfg, err := ConfigFromContext(app.Node().TryGetContext(jsii.String("sites")), app.Node().TryGetContext(jsii.String("table")))
	if err != nil {
		return err
	}
	// A site without an account deploys to the CLI's current credentials' account;
	// without credentials (synth on a laptop or in CI) it stays unresolved.
	for i := range cfg.Sites {
		if cfg.Sites[i].Account == "" {
			cfg.Sites[i].Account = os.Getenv("CDK_DEFAULT_ACCOUNT")
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cfg.AssetDir = filepath.Join(root, "bin", "lambda")
	if _, err := Build(app, cfg); err != nil {
		return err
	}
	app.Synth(nil)
	return nil
}

// moduleRoot is the directory holding go.mod, found upwards from the working directory:
// the CLI runs the app from cdk.json's directory, the tests from infra/.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory: run the app from the repository")
		}
		dir = parent
	}
}
