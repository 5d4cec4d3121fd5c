package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/sessionha/sessionha/infra/topology"
)

// The app is synthesized once, in TestMain, from cdk.json's own context (the example
// sites); every test reads these. A synth costs seconds, an assertion milliseconds.
var (
	testCfg   Config
	stacks    map[string]awscdk.Stack
	templates map[string]assertions.Template
	tpls      map[string]map[string]any // the same templates as plain JSON
	cdkJSON   map[string]any
)

// testAccount keeps the templates free of the deploying account, as in CI.
const testAccount = "000000000000"

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	for k, v := range map[string]string{
		"CDK_DISABLE_CLI_TELEMETRY": "true",
		"AWS_EC2_METADATA_DISABLED": "true",
		// Node 20 works for jsii but prints an end-of-life banner on every run.
		"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
	} {
		if _, ok := os.LookupEnv(k); !ok {
			os.Setenv(k, v)
		}
	}
	// jsii set up its kernel process (and captured the environment for it) while the
	// CDK packages registered their types at init, before TestMain; closing that unstarted
	// process makes the first call below start one that sees the variables just set.
	jsii.Close()
	before := jsiiTempDirs()
	tmp, err := os.MkdirTemp("", "sessionha-infra-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	code := func() int {
		// jsii's Node process and its unpacked runtime (/tmp/jsii-runtime.*) go away only on Close.
		defer jsii.Close()
		if err := synthOnce(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "synth:", err)
			return 1
		}
		return m.Run()
	}()
	if left := slices.DeleteFunc(jsiiTempDirs(), func(d string) bool { return slices.Contains(before, d) }); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "jsii left temporary directories behind:", left)
		return 1
	}
	return code
}

func jsiiTempDirs() []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "jsii-runtime.*"))
	return dirs
}

// synthOnce builds the app from cdk.json's context with stand-in bootstraps (the tests
// check the template, not the binaries; `make synth` packages the real ones).
func synthOnce(tmp string) error {
	b, err := os.ReadFile(filepath.Join("..", "cdk.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &cdkJSON); err != nil {
		return fmt.Errorf("cdk.json: %w", err)
	}
	context, _ := cdkJSON["context"].(map[string]any)
	if testCfg, err = ConfigFromContext(context["sites"], context["table"]); err != nil {
		return err
	}
	for i := range testCfg.Sites {
		if testCfg.Sites[i].Account == "" {
			testCfg.Sites[i].Account = testAccount
		}
	}
	if testCfg.AssetDir, err = fakeBootstraps(filepath.Join(tmp, "lambda")); err != nil {
		return err
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(filepath.Join(tmp, "cdk.out")), Context: &context})
	// What the CLI turns on when it runs the app: construct paths and asset locations in
	// the templates' metadata, so the tests read the templates `make synth` writes.
	for _, k := range []string{"aws:cdk:enable-path-metadata", "aws:cdk:enable-asset-metadata"} {
		app.Node().SetContext(jsii.String(k), true)
	}
	if stacks, err = Build(app, testCfg); err != nil {
		return err
	}
	app.Synth(nil)
	templates, tpls = map[string]assertions.Template{}, map[string]map[string]any{}
	for name, st := range stacks {
		templates[name] = assertions.Template_FromStack(st, nil)
		tpls[name] = *templates[name].ToJSON()
	}
	return nil
}

// fakeBootstraps writes a stand-in bootstrap for every function the topology has.
func fakeBootstraps(dir string) (string, error) {
	topo, err := topology.For(topology.Site{Name: "x", Region: "eu-west-1"}, "")
	if err != nil {
		return "", err
	}
	for _, f := range topo.Functions {
		if err := os.MkdirAll(filepath.Join(dir, f.ID), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f.ID, "bootstrap"), []byte("#!/bin/sh\n# stand-in\n"), 0o755); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// check runs a CDK assertion, which reports a mismatch by panicking through jsii.
func check(t *testing.T, what string, assertion func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	assertion()
}

// res is one resource of a template.
type res struct {
	ID    string
	Type  string
	Props map[string]any
	Raw   map[string]any
}

// resources lists a template's resources of one type, sorted by logical id.
func resources(tpl map[string]any, typ string) []res {
	var out []res
	all, _ := tpl["Resources"].(map[string]any)
	for id, v := range all {
		r, _ := v.(map[string]any)
		if r["Type"] == typ {
			props, _ := r["Properties"].(map[string]any)
			out = append(out, res{ID: id, Type: typ, Props: props, Raw: r})
		}
	}
	slices.SortFunc(out, func(a, b res) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// byID returns a template's resource by logical id.
func byID(tpl map[string]any, id string) res {
	all, _ := tpl["Resources"].(map[string]any)
	r, _ := all[id].(map[string]any)
	props, _ := r["Properties"].(map[string]any)
	typ, _ := r["Type"].(string)
	return res{ID: id, Type: typ, Props: props, Raw: r}
}

// refID is the logical id a {"Ref": id} or {"Fn::GetAtt": [id, attr]} points to.
func refID(v any) string {
	m, _ := v.(map[string]any)
	if id, ok := m["Ref"].(string); ok {
		return id
	}
	if ga, ok := m["Fn::GetAtt"].([]any); ok && len(ga) > 0 {
		id, _ := ga[0].(string)
		return id
	}
	return ""
}

// list returns v as a list: CloudFormation writes a single action or resource bare.
func list(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// str renders a template value for comparisons: strings as is, intrinsics as JSON.
func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func siteNamed(name string) SiteConfig {
	for _, s := range testCfg.Sites {
		if s.Name == name {
			return s
		}
	}
	panic("no site " + name)
}

// acct is a site's account as the templates spell it in ARNs.
func acct(sc SiteConfig) string {
	if sc.Account != "" {
		return sc.Account
	}
	return "<AWS::AccountId>"
}

// topoOf is the site's topology as the local stack renders it: one of the deployment's,
// knowing every site (topology.ForDeployment).
func topoOf(t *testing.T, sc SiteConfig) topology.Topology {
	t.Helper()
	var sites []topology.Site
	for _, s := range testCfg.Sites {
		sites = append(sites, s.Site())
	}
	topos, err := topology.ForDeployment(sites, testCfg.Table)
	if err != nil {
		t.Fatal(err)
	}
	for _, topo := range topos {
		if topo.Site.Name == sc.Name {
			return topo
		}
	}
	t.Fatalf("no site %s in the deployment", sc.Name)
	return topology.Topology{}
}

// noticeARNs are the ARNs the templates give every site's notice topic as seen from
// site sc's stack: its own by reference, the others spelt out, as flat renders them.
func noticeARNs(t *testing.T, tpl map[string]any, sc SiteConfig) []string {
	t.Helper()
	topo := topoOf(t, sc)
	arns := []string{"<" + idOf(t, tpl, "AWS::SNS::Topic", "TopicName", topo.Peers[0].NoticeTopic) + ">"}
	for _, p := range topo.Peers[1:] {
		arns = append(arns, p.NoticeTopicARN("<AWS::Partition>", acct(sc)))
	}
	return arns
}
