package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/infra/outputs"
	"github.com/sessionha/sessionha/infra/topology"
)

// loadConfigFiles applies --env-file or --outputs to the process environment, where the
// client (client.ConfigFromEnv) and the SDK (config.LoadDefaultConfig) read it.
func (a *app) loadConfigFiles() error {
	if a.envFile != "" && a.outputsFile != "" {
		return usagef("give --env-file or --outputs, not both")
	}
	var (
		lines []string
		err   error
	)
	switch {
	case a.envFile != "":
		lines, err = readEnvFile(a.envFile)
	case a.outputsFile != "":
		var b []byte
		if b, err = os.ReadFile(a.outputsFile); err == nil {
			if lines, err = outputs.EnvFile(b, a.site); err != nil {
				err = fmt.Errorf("--outputs %s: %w", a.outputsFile, err)
			}
		} else {
			err = fmt.Errorf("--outputs: %w", err)
		}
	}
	if err != nil {
		return err
	}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	if a.site != "" {
		if err := os.Setenv("SESSIONHA_SITE", a.site); err != nil {
			return err
		}
	}
	return nil
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readEnvFile reads KEY=value lines: blank lines and lines starting with # are skipped,
// an "export " prefix is allowed, and a value may be in single or double quotes. Errors
// name the line number, never its value (the file may hold credentials).
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w (make local writes local/.run/site.env while the local site runs)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || !envKey.MatchString(k) {
			return nil, fmt.Errorf("--env-file %s:%d: want KEY=value", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		lines = append(lines, k+"="+v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	return lines, nil
}

// env reads a variable, "" if unset.
func env(name string) string { return strings.TrimSpace(os.Getenv(name)) }

var clusterName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// checkCluster validates a cluster name as the client does.
func checkCluster(c string) error {
	if !clusterName.MatchString(c) {
		return usagef("cluster %q: want 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'", c)
	}
	return nil
}

// clusterOr is the flag's cluster, else SESSIONHA_CLUSTER, else "default".
func clusterOr(flagValue string) (string, error) {
	c := flagValue
	if c == "" {
		c = env("SESSIONHA_CLUSTER")
	}
	if c == "" {
		c = "default"
	}
	return c, checkCluster(c)
}

const configHint = "pass --env-file local/.run/site.env (written by make local), or --outputs cdk-outputs.json --site NAME, or export it"

// tableName is SESSIONHA_TABLE, which every command but stats needs.
func tableName() (string, error) {
	t := env("SESSIONHA_TABLE")
	if t == "" {
		return "", fmt.Errorf("SESSIONHA_TABLE is not set: %s", configHint)
	}
	return t, nil
}

// siteTopology is the topology of SESSIONHA_SITE (default "local"): the names of its
// queues and topics.
// clusterTable is the cluster (flag, else SESSIONHA_CLUSTER, else default) and the table
// a command works on.
func clusterTable(flagValue string) (cluster, table string, err error) {
	if cluster, err = clusterOr(flagValue); err != nil {
		return "", "", err
	}
	table, err = tableName()
	return cluster, table, err
}

// siteClients makes the AWS clients and the site's topology (its queue names).
func siteClients(ctx context.Context) (*clients, topology.Topology, error) {
	c, err := newClients(ctx)
	if err != nil {
		return nil, topology.Topology{}, err
	}
	topo, err := siteTopology(c.cfg.Region)
	return c, topo, err
}

func siteTopology(region string) (topology.Topology, error) {
	site := env("SESSIONHA_SITE")
	if site == "" {
		site = "local"
	}
	if region == "" {
		region = "us-east-1"
	}
	t, err := topology.For(topology.Site{Name: site, Region: region}, env("SESSIONHA_TABLE"))
	if err != nil {
		return t, fmt.Errorf("SESSIONHA_SITE: %w", err)
	}
	return t, nil
}

// clients are the SDK clients of one run, made on first use.
type clients struct {
	cfg aws.Config
}

func newClients(ctx context.Context) (*clients, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("no AWS region: set AWS_REGION (site.env and the cdk outputs carry it): %s", configHint)
	}
	return &clients{cfg: cfg}, nil
}

func (c *clients) dynamodb() *dynamodb.Client { return dynamodb.NewFromConfig(c.cfg) }

func (c *clients) sns() *sns.Client               { return sns.NewFromConfig(c.cfg) }
func (c *clients) sqs() *sqs.Client               { return sqs.NewFromConfig(c.cfg) }
func (c *clients) cloudwatch() *cloudwatch.Client { return cloudwatch.NewFromConfig(c.cfg) }

// explain adds to an SDK error what the operator can do about it.
func explain(err error, what string) error {
	if err == nil {
		return nil
	}
	var (
		opErr    *net.OpError
		notFound *ddbtypes.ResourceNotFoundException
		noQueue  *sqstypes.QueueDoesNotExist
	)
	hint := ""
	switch {
	case errors.As(err, &opErr):
		endpoint := env("AWS_ENDPOINT_URL")
		if endpoint != "" {
			hint = fmt.Sprintf("nothing answers at %s: is the local site running (make local)? Or fix AWS_ENDPOINT_URL", endpoint)
		} else {
			hint = "AWS is out of reach: check the network and AWS_REGION"
		}
	case errors.As(err, &notFound):
		hint = "the table does not exist: check SESSIONHA_TABLE, or make it with sessionctl create-store"
	case errors.As(err, &noQueue):
		hint = "no such queue: check SESSIONHA_SITE (the queues are named sessionha-SITE-...)"
	case strings.Contains(err.Error(), "credentials"), strings.Contains(err.Error(), "AccessDenied"), strings.Contains(err.Error(), "UnrecognizedClient"):
		hint = "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that they may do this"
	}
	if hint == "" {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w\n  %s", what, err, hint)
}
