// Command outputs2env turns the outputs file of `cdk deploy --outputs-file` into a site's
// env file, the same KEY=value lines as the local stack's local/.run/site.env:
//
//	go run ./infra/cmd/outputs2env -site eu cdk-outputs.json > site.env
//	set -a; . ./site.env; set +a; export SESSIONHA_INSTANCE_ID=auth-1
//
// The file names no credentials and no endpoint: on AWS the SDK's default chain finds
// them. It imports no CDK package, so it builds in a moment.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sessionha/sessionha/infra/outputs"
)

func main() {
	site := flag.String("site", "", "the site whose stack to read (may be omitted when the file holds one sessionha stack)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: outputs2env [-site NAME] cdk-outputs.json|- > site.env\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *site, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "outputs2env:", err)
		os.Exit(1)
	}
}

func run(path, site string, stdin io.Reader, stdout io.Writer) error {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	lines, err := outputs.EnvFile(b, site)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "# sessionha site from `cdk deploy` outputs: source this file, or pass it to sessionctl --env-file.\n%s\n",
		strings.Join(lines, "\n"))
	return err
}
