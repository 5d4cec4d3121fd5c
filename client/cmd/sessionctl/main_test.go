package main

// These tests run the built sessionctl binary, as an operator would, against a local
// site started in TestMain (DynamoDB Local, fauxqs, the real functions): every command,
// its exit status, and that no session id or attribute value is ever printed (but with
// get --values). A few run the command in process, to play a terminal on stdin.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/outputs"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/site"
)

var (
	theSite *site.Site
	ctlBin  string // the sessionctl binary
	envPath string // the site's site.env
	tmpDir  string
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	var err error
	if tmpDir, err = os.MkdirTemp("", "sessionctl-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmpDir)
	ctlBin = filepath.Join(tmpDir, "sessionctl")
	// -buildvcs=auto as make build: the commit is stamped in a git checkout (TestVersion).
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-buildvcs=auto", "-o", ctlBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build sessionctl: %v\n%s", err, out)
		return 1
	}
	// Short timeouts: a poison message reaches its DLQ in seconds, not minutes.
	theSite, err = localtest.Site(context.Background(), filepath.Join(tmpDir, "run"), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local site:", err)
		return 1
	}
	defer theSite.Stop()
	envPath = filepath.Join(tmpDir, "site.env")
	if err := theSite.WriteEnv(envPath); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// secrets are the session ids and attribute values the tests made: no output may hold one.
var secrets struct {
	sync.Mutex
	list []string
}

func secret(s string) string {
	secrets.Lock()
	defer secrets.Unlock()
	secrets.list = append(secrets.list, s)
	return s
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// ctlIn runs sessionctl with the given environment (besides PATH and HOME) and stdin, and
// checks that its output holds no secret, unless --values is one of the arguments.
func ctlIn(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmpDir, "AWS_EC2_METADATA_DISABLED=true"}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("sessionctl %v: %v", args, err)
	}
	values := false
	for _, a := range args {
		values = values || a == "--values"
	}
	secrets.Lock()
	defer secrets.Unlock()
	for _, s := range secrets.list {
		if strings.Contains(r.stdout+r.stderr, s) && !values {
			t.Errorf("sessionctl %v printed a session id or an attribute value:\n%s", args, r)
		}
	}
	return r
}

// ctl runs sessionctl configured by the site's site.env.
func ctl(t *testing.T, args ...string) result {
	t.Helper()
	return ctlIn(t, nil, "", append([]string{"--env-file", envPath}, args...)...)
}

func expect(t *testing.T, r result, code int, stdoutHas ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got:\n%s", code, r)
	}
	for _, s := range stdoutHas {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("stdout lacks %q:\n%s", s, r)
		}
	}
}

// openStore opens a client store on the site for a cluster ("" for default).
func openStore(t *testing.T, name, cluster string) *client.Store {
	t.Helper()
	s, err := client.Open(context.Background(), client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		InstanceID: name, Cluster: cluster, AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler),
		JournalDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// create makes a session and waits until another instance can read it.
func create(t *testing.T, s, reader *client.Store, principal string, attrs map[string][]byte) string {
	t.Helper()
	sess, err := s.Create(context.Background(), client.NewSession{Principal: principal, Attrs: attrs})
	if err != nil {
		t.Fatal(err)
	}
	id := secret(sess.ID())
	eventually(t, "the session is readable by another instance", func() (bool, string) {
		_, err := reader.Load(context.Background(), id)
		return err == nil, fmt.Sprint(err)
	})
	return id
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	localtest.Eventually(t, what, cond)
}

// envFile writes a copy of site.env with some variables changed.
func envFile(t *testing.T, changes map[string]string) string {
	t.Helper()
	var lines []string
	for _, l := range theSite.Env() {
		k, _, _ := strings.Cut(l, "=")
		if v, ok := changes[k]; ok {
			l = k + "=" + v
			delete(changes, k)
		}
		lines = append(lines, l)
	}
	for k, v := range changes {
		lines = append(lines, k+"="+v)
	}
	p := filepath.Join(t.TempDir(), "site.env")
	if err := os.WriteFile(p, []byte("# test\n\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageAndExitCodes(t *testing.T) {
	validID := secret("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB")
	cases := []struct {
		args     []string
		code     int
		stdout   string // in stdout
		stderr   string // in stderr
		noConfig bool   // run without --env-file
	}{
		{args: nil, code: 2, stderr: "no command given", noConfig: true},
		{args: []string{"--help"}, code: 0, stdout: "Commands:", noConfig: true},
		{args: []string{"help"}, code: 0, stdout: "clear-store", noConfig: true},
		{args: []string{"help", "get"}, code: 0, stdout: "--values", noConfig: true},
		{args: []string{"help", "dlq", "redrive"}, code: 0, stdout: "--valid-only", noConfig: true},
		{args: []string{"help", "dlq", "redrive"}, code: 0, stdout: "--poison", noConfig: true},
		{args: []string{"get", "-h"}, code: 0, stdout: "Usage: sessionctl get", noConfig: true},
		{args: []string{"bogus"}, code: 2, stderr: `unknown command "bogus"`},
		{args: []string{"get"}, code: 2, stderr: "want one session ID"},
		{args: []string{"get", "not-a-session-id"}, code: 2, stderr: "not a session id"},
		{args: []string{"get", validID, "extra"}, code: 2, stderr: "want one session ID"},
		{args: []string{"get", "--nope", validID}, code: 2, stderr: "flag provided but not defined"},
		// An id may begin with "-": it is still the id, not a flag.
		{args: []string{"get", "-" + validID[1:]}, code: 1, stderr: "SESSIONHA_TABLE is not set", noConfig: true},
		{args: []string{"clear-store"}, code: 2, stderr: "--cluster NAME is required"},
		{args: []string{"clear-store", "--cluster", "a#b"}, code: 2, stderr: "want 1-64 characters"},
		{args: []string{"stats", "-i", "0"}, code: 2, stderr: "at least 1 second"},
		{args: []string{"list"}, code: 2, stderr: "--principal P is required"},
		{args: []string{"revoke"}, code: 2, stderr: "--principal P is required"},
		{args: []string{"dlq"}, code: 2, stderr: "dlq list or dlq redrive"},
		{args: []string{"dlq", "purge"}, code: 2, stderr: `unknown command "dlq purge"`},
		{args: []string{"dlq", "list", "--queue", "replies"}, code: 2, stderr: "want ops, query or all"},
		{args: []string{"--outputs", "x.json", "stats"}, code: 2, stderr: "not both"},
		// Failures: exit 1, saying what to do.
		{args: []string{"get", validID}, code: 1, stderr: "SESSIONHA_TABLE is not set: pass --env-file", noConfig: true},
		{args: []string{"--env-file", "/nonexistent/site.env", "get", validID}, code: 1, stderr: "make local writes", noConfig: true},
		{args: []string{"get", validID}, code: 1, stderr: "has no session with this id"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var r result
			if c.noConfig {
				r = ctlIn(t, nil, "", c.args...)
			} else {
				r = ctl(t, c.args...)
			}
			if r.code != c.code || !strings.Contains(r.stdout, c.stdout) || !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("want exit %d, %q in stdout, %q in stderr; got:\n%s", c.code, c.stdout, c.stderr, r)
			}
		})
	}
	// A bad line in the env file is named by its number, never quoted (it may hold a key).
	bad := filepath.Join(t.TempDir(), "bad.env")
	if err := os.WriteFile(bad, []byte("# ok\nAWS_SECRET_ACCESS_KEY secret-in-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := ctlIn(t, nil, "", "--env-file", bad, "stats")
	if r.code != 1 || !strings.Contains(r.stderr, "bad.env:2: want KEY=value") || strings.Contains(r.stderr, "secret-in-file") {
		t.Fatalf("bad env file:\n%s", r)
	}
	// Nothing answers at the endpoint: exit 1, and the hint to start the site.
	down := envFile(t, map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
	r = ctlIn(t, nil, "", "--env-file", down, "get", validID)
	if r.code != 1 || !strings.Contains(r.stderr, "is the local site running") {
		t.Fatalf("endpoint down:\n%s", r)
	}
}

// TestOutputsFile: configured from a `cdk deploy` outputs file (stack outputs), with the
// endpoint and credentials from the environment, as on AWS they come from the SDK's chain.
func TestOutputsFile(t *testing.T) {
	env := map[string]string{}
	for _, l := range theSite.Env() {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	stack := map[string]string{outputs.LogicalID(outputs.AuthPolicyARN): "arn:aws:iam::000000000000:policy/x"}
	for _, k := range outputs.Required {
		if v, ok := env[k]; ok {
			stack[outputs.LogicalID(k)] = v
		}
	}
	b, _ := json.Marshal(map[string]map[string]string{outputs.StackName("local"): stack, "OtherStack": {"X": "y"}})
	path := filepath.Join(t.TempDir(), "cdk-outputs.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	awsEnv := []string{"AWS_ENDPOINT_URL=" + env["AWS_ENDPOINT_URL"], "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	r := ctlIn(t, awsEnv, "", "--outputs", path, "--site", "local", "create-store")
	expect(t, r, 0, "table "+theSite.Outputs.Table+": in order")
	r = ctlIn(t, awsEnv, "", "--outputs", path, "--site", "eu", "create-store")
	if r.code != 1 || !strings.Contains(r.stderr, "no stack sessionha-eu") {
		t.Fatalf("unknown site:\n%s", r)
	}
}

func TestCreateStore(t *testing.T) {
	r := ctl(t, "create-store")
	expect(t, r, 0, "table "+theSite.Outputs.Table+": in order", "TTL on expiresAt: on", "index byPrincipal (upk, cr): present", "cluster default: ready")

	fresh := envFile(t, map[string]string{"SESSIONHA_TABLE": "ctl-fresh", "SESSIONHA_CLUSTER": "blue"})
	r = ctlIn(t, nil, "", "--env-file", fresh, "create-store")
	expect(t, r, 0, "table ctl-fresh: created", "TTL on expiresAt: turned on", "index byPrincipal (upk, cr): created", "cluster blue: ready")
	db := theSite.DynamoDBClient()
	d, err := db.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String("ctl-fresh")})
	if err != nil || len(d.Table.GlobalSecondaryIndexes) != 1 || aws.ToString(d.Table.GlobalSecondaryIndexes[0].IndexName) != topology.IndexByPrincipal {
		t.Fatalf("the created table: %v %v", d, err)
	}
	ttl, err := db.DescribeTimeToLive(context.Background(), &dynamodb.DescribeTimeToLiveInput{TableName: aws.String("ctl-fresh")})
	if err != nil || ttl.TimeToLiveDescription.TimeToLiveStatus != ddbtypes.TimeToLiveStatusEnabled || aws.ToString(ttl.TimeToLiveDescription.AttributeName) != "expiresAt" {
		t.Fatalf("the created table's TTL: %+v %v", ttl.TimeToLiveDescription, err)
	}
	r = ctlIn(t, nil, "", "--env-file", fresh, "create-store", "--cluster", "green")
	expect(t, r, 0, "table ctl-fresh: in order", "present", "cluster green: ready")
}

func TestGetAndDestroy(t *testing.T) {
	a, b := openStore(t, "ctl-get-a", ""), openStore(t, "ctl-get-b", "")
	value := secret("book-" + strconv.FormatInt(time.Now().UnixNano(), 36))
	id := create(t, a, b, "gina", map[string][]byte{"cart": []byte(value), "theme": []byte("dark")})

	r := ctl(t, "get", id)
	expect(t, r, 0, "state", "active", "principal", "gina", "cart", fmt.Sprintf("%d bytes", len(value)), "theme", "4 bytes",
		"attributes", "2 (", "site", "local", "writer", "ctl-get-a")
	r = ctlIn(t, nil, id+"\n", "--env-file", envPath, "get", "-") // the id from stdin
	expect(t, r, 0, "gina")
	r = ctl(t, "get", "--values", id)
	expect(t, r, 0, strconv.Quote(value), `"dark"`)
	r = ctl(t, "get", id, "--cluster", "other") // another cluster has no such session
	if r.code != 1 || !strings.Contains(r.stderr, "cluster other") {
		t.Fatalf("get in another cluster:\n%s", r)
	}

	r = ctl(t, "destroy", id)
	expect(t, r, 0, "session destroyed")
	if _, err := b.Load(context.Background(), id); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("another instance loads the destroyed session: %v", err)
	}
	// The destroy's logout item is written first, then its tombstone.
	eventually(t, "get shows the logout item and the tombstone", func() (bool, string) {
		r = ctl(t, "get", id)
		return r.code == 0 && strings.Contains(r.stdout, "tombstone kept until"), r.String()
	})
	expect(t, r, 0, "logged out (its logout item: final", "logout item kept until", "session item", "destroyed (a tombstone: final)")
	if strings.Contains(r.stdout, "gina") {
		t.Errorf("a tombstone shows the principal:\n%s", r)
	}
}

// TestListAndRevoke: list shows a principal's sessions and only theirs, by handle; revoke
// --handle logs one out, revoke every other one, and nobody else's.
func TestListAndRevoke(t *testing.T) {
	a, b := openStore(t, "ctl-list-a", ""), openStore(t, "ctl-list-b", "")
	pat := "pat-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var ids []string
	for range 4 {
		ids = append(ids, create(t, a, b, pat, nil))
	}
	other := create(t, a, b, pat+"-other", nil)

	var r result
	eventually(t, "list shows the 4 sessions", func() (bool, string) {
		r = ctl(t, "list", "--principal", pat)
		return r.code == 0 && strings.Contains(r.stdout, "4 live sessions of "+pat), r.String()
	})
	if rows := strings.Count(r.stdout, "\n"); rows != 6 { // header, 4 sessions, summary
		t.Errorf("list: %d lines, want 6:\n%s", rows, r)
	}
	handle := client.Handle(ids[0])
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(handle) + `\s+\d{4}-\d\d-\d\d `).MatchString(r.stdout) {
		t.Errorf("list rows do not start with the session's handle and its creation time:\n%s", r)
	}

	r = ctl(t, "revoke", "--principal", pat, "--handle", handle)
	expect(t, r, 0, "revoked 1 sessions of "+pat)
	if _, err := b.Load(context.Background(), ids[0]); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the revoked session still loads: %v", err)
	}
	if _, err := b.Load(context.Background(), ids[1]); err != nil {
		t.Fatalf("revoke --handle logged out another session: %v", err)
	}
	r = ctl(t, "revoke", "--principal", pat+"-other", "--handle", handle) // not theirs
	if r.code != 1 || !strings.Contains(r.stderr, "no live session with that handle") {
		t.Fatalf("revoke of another principal's handle:\n%s", r)
	}

	eventually(t, "revoke logs out the other 3", func() (bool, string) {
		// The index lags: until it drops the revoked one, revoke counts it again.
		r = ctl(t, "revoke", "--principal", pat)
		return r.code == 0 && (strings.Contains(r.stdout, "revoked 3 sessions of "+pat) || strings.Contains(r.stdout, "has no live session")), r.String()
	})
	for _, id := range ids {
		if _, err := b.Load(context.Background(), id); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("a revoked session still loads: %v", err)
		}
	}
	if _, err := b.Load(context.Background(), other); err != nil {
		t.Fatalf("revoke logged out another principal's session: %v", err)
	}
	eventually(t, "list shows none", func() (bool, string) {
		r = ctl(t, "list", "--principal", pat)
		return r.code == 0 && strings.Contains(r.stdout, "0 live sessions"), r.String()
	})
	expect(t, ctl(t, "revoke", "--principal", pat), 0, "has no live session")
}

// inProcess runs sessionctl's run function with stdin playing a terminal, configured by
// the site's variables in the environment.
func inProcess(t *testing.T, args ...string) result {
	t.Helper()
	for _, l := range theSite.Env() {
		k, v, _ := strings.Cut(l, "=")
		t.Setenv(k, v)
	}
	old := terminal
	terminal = func(any) bool { return true }
	defer func() { terminal = old }()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// TestClearStore: every item of one cluster goes, and nothing of another.
func TestClearStore(t *testing.T) {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	clr, keep := "clr-"+suffix, "keep-"+suffix
	ca, cb := openStore(t, "ctl-clr-a", clr), openStore(t, "ctl-clr-b", clr)
	ka, kb := openStore(t, "ctl-keep-a", keep), openStore(t, "ctl-keep-b", keep)
	for range 30 {
		create(t, ca, cb, "carl", nil)
	}
	var kept []string
	for range 3 {
		kept = append(kept, create(t, ka, kb, "kim", nil))
	}
	count := func(cluster string) int {
		out, err := theSite.DynamoDBClient().Scan(context.Background(), &dynamodb.ScanInput{
			TableName: aws.String(theSite.Outputs.Table), FilterExpression: aws.String("begins_with(pk, :p)"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":p": &ddbtypes.AttributeValueMemberS{Value: cluster + "#"}},
			Select:                    ddbtypes.SelectCount,
		})
		if err != nil {
			t.Fatal(err)
		}
		return int(out.Count)
	}
	if n := count(clr); n != 30 {
		t.Fatalf("%d items of cluster %s before clearing, want 30", n, clr)
	}

	// At a terminal: refused without --yes, nothing deleted.
	r := inProcess(t, "clear-store", "--cluster", clr)
	if r.code != 2 || !strings.Contains(r.stderr, "run it again with --yes") {
		t.Fatalf("clear-store at a terminal without --yes:\n%s", r)
	}
	if n := count(clr); n != 30 {
		t.Fatalf("a refused clear-store deleted items: %d left of 30", n)
	}
	r = inProcess(t, "clear-store", "--cluster", clr, "--yes")
	expect(t, r, 0, "deleted 30 items of cluster "+clr)
	if !strings.Contains(r.stderr, "deleted 30") {
		t.Errorf("no progress shown on a terminal:\n%s", r)
	}
	if n := count(clr); n != 0 {
		t.Fatalf("%d items of cluster %s left after clear-store", n, clr)
	}
	if n := count(keep); n != 3 {
		t.Fatalf("clear-store of %s left %d of the 3 items of %s", clr, n, keep)
	}
	for _, id := range kept {
		if _, err := kb.Load(context.Background(), id); err != nil {
			t.Fatalf("a session of another cluster is gone: %v", err)
		}
	}
	// Not at a terminal (a script): no --yes needed, no progress bar; nothing left to do.
	r = ctl(t, "clear-store", "--cluster", clr)
	expect(t, r, 0, "deleted 0 items of cluster "+clr)
	if r.stderr != "" {
		t.Errorf("progress written to a pipe:\n%s", r)
	}
	// revoke wants --yes at a terminal, too.
	r = inProcess(t, "revoke", "--principal", "kim", "--cluster", keep)
	if r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("revoke at a terminal without --yes:\n%s", r)
	}
}

// TestClearStoreRefusesWhileOpsQueued: clear-store deletes tombstones, so it refuses
// (exit 1, nothing deleted) while an op that could bring a session back is still on its
// way: any message in the ops queue, or an op of the cluster in the ops DLQ (issue 12,
// defect 2). Ops of other clusters in the DLQ, and messages that can never apply, do not
// stop it.
func TestClearStoreRefusesWhileOpsQueued(t *testing.T) {
	ctx := context.Background()
	q := sqs.NewFromConfig(theSite.AWS)
	opsQueue, opsDLQ := theSite.Outputs.QueueURLs[topology.QueueOps], theSite.Outputs.QueueURLs[topology.QueueOpsDLQ]
	clr := "guard-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ca, cb := openStore(t, "ctl-guard-a", clr), openStore(t, "ctl-guard-b", clr)
	for range 2 {
		create(t, ca, cb, "gus", nil)
	}
	now := time.Now().UnixMilli()
	destroyOp := func(cluster string) string {
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		b, err := events.EncodeSessionOp(&events.SessionOp{V: events.SchemaVersion, Op: events.OpDestroy, Cluster: cluster,
			ID: events.HashID(string(raw[:])), Version: fmt.Sprintf("%016x", uint64(now)<<16), Writer: "guard-test", Site: "local", At: now, Until: now + 60_000})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// take removes from the DLQ the message with this body (the test's own).
	take := func(body string) {
		t.Helper()
		eventually(t, "the test's message is taken off the DLQ", func() (bool, string) {
			out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(opsDLQ), MaxNumberOfMessages: 10, VisibilityTimeout: 1})
			if err != nil {
				return false, err.Error()
			}
			for _, m := range out.Messages {
				if aws.ToString(m.Body) == body {
					_, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(opsDLQ), ReceiptHandle: m.ReceiptHandle})
					return err == nil, fmt.Sprint(err)
				}
			}
			return false, fmt.Sprintf("%d other messages", len(out.Messages))
		})
	}
	send := func(url, body string, delay int32) {
		t.Helper()
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body), DelaySeconds: delay}); err != nil {
			t.Fatal(err)
		}
	}
	items := func() int {
		out, err := theSite.DynamoDBClient().Scan(ctx, &dynamodb.ScanInput{
			TableName: aws.String(theSite.Outputs.Table), FilterExpression: aws.String("begins_with(pk, :p)"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":p": &ddbtypes.AttributeValueMemberS{Value: clr + "#"}},
			Select:                    ddbtypes.SelectCount,
		})
		if err != nil {
			t.Fatal(err)
		}
		return int(out.Count)
	}

	// An op of the cluster waiting in the DLQ for a redrive.
	mine := destroyOp(clr)
	send(opsDLQ, mine, 0)
	r := ctl(t, "clear-store", "--cluster", clr)
	if r.code != 1 || !strings.Contains(r.stderr, "refused, nothing deleted") || !strings.Contains(r.stderr, "holds 1 ops of cluster "+clr) {
		t.Fatalf("clear-store with an op of the cluster in the DLQ:\n%s", r)
	}
	if n := items(); n != 2 {
		t.Fatalf("a refused clear-store left %d of 2 items", n)
	}
	take(mine)

	// Another cluster's op and a message that can never apply, in the DLQ: no reason to wait.
	other := destroyOp("other-" + clr)
	send(opsDLQ, other, 0)
	send(opsDLQ, `{"v":1,"op":"destroy","cluster":`, 0)
	t.Cleanup(func() { take(other); take(`{"v":1,"op":"destroy","cluster":`) })

	// A message on its way in the ops queue (delayed, as if the functions were behind):
	// refused after --wait, then, once it is applied, clear-store goes through.
	send(opsQueue, destroyOp(clr), 5)
	r = ctl(t, "clear-store", "--cluster", clr, "--wait", "1s")
	if r.code != 1 || !strings.Contains(r.stderr, "still in the ops queue sessionha-local-ops") {
		t.Fatalf("clear-store with a message in the ops queue:\n%s", r)
	}
	if n := items(); n != 2 {
		t.Fatalf("a refused clear-store left %d of 2 items", n)
	}
	r = ctl(t, "clear-store", "--cluster", clr, "--wait", "1m")
	expect(t, r, 0, "deleted 4 items of cluster "+clr) // the two sessions, the delayed destroy's logout item and tombstone
}

// statsRow parses the last report of stats: column name -> value.
func statsRow(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 {
		t.Fatalf("stats printed no report:\n%s", out)
	}
	header := strings.Fields(lines[1])
	// "/S" repeats: name each after the counter before it.
	for i, h := range header {
		if h == "/S" || (h == "OLDEST" && i > 0) {
			header[i] = header[i-1] + h
		}
	}
	vals := strings.Fields(lines[len(lines)-1])
	if len(vals) != len(header) {
		t.Fatalf("stats: %d columns in the header, %d in the report:\n%s", len(header), len(vals), out)
	}
	m := map[string]string{}
	for i, h := range header {
		m[h] = vals[i]
	}
	return m
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return v
}

// TestStats: the counts follow what the functions did, and -n stops it.
func TestStats(t *testing.T) {
	before := theSite.Metrics.Snapshot().Functions["sessionop"]
	a, b := openStore(t, "ctl-stats-a", ""), openStore(t, "ctl-stats-b", "")
	id := create(t, a, b, "stan", nil)
	create(t, a, b, "stan", nil)
	if err := a.Destroy(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	r := ctl(t, "stats", "-i", "1", "-n", "2")
	expect(t, r, 0, "REQUESTS", "READS", "WRITES", "DELETES", "OPS-DLQ", "QUERY-DLQ")
	if n := strings.Count(strings.TrimSpace(r.stdout), "\n") + 1; n != 4 {
		t.Fatalf("stats -n 2 printed %d lines, want a title, a header and 2 reports:\n%s", n, r)
	}
	eventually(t, "stats counts the 2 creates and the destroy", func() (bool, string) {
		r = ctl(t, "stats", "-i", "1", "-n", "1")
		if r.code != 0 {
			return false, r.String()
		}
		row := statsRow(t, r.stdout)
		return num(t, row["WRITES"]) >= before["Applied"]+3 && num(t, row["DELETES"]) >= before["Destroyed"]+1 &&
			num(t, row["REQUESTS"]) >= num(t, row["WRITES"]), r.String()
	})
}

// TestDLQ: a poison message is dead-lettered at its first receive and listed with the
// function's reason, a valid one that failed to apply is listed as such; redrive
// --valid-only and redrive move the valid one back, which then applies, and leave the
// poison; redrive --poison moves it back, where it is dead-lettered again at its first
// receive, once, and listed as redriven.
func TestDLQ(t *testing.T) {
	ctx := context.Background()
	bus, q := sns.NewFromConfig(theSite.AWS), sqs.NewFromConfig(theSite.AWS)
	opsDLQ, queryDLQ := theSite.Outputs.QueueURLs[topology.QueueOpsDLQ], theSite.Outputs.QueueURLs[topology.QueueQueryDLQ]
	depthOf := func(url string) int {
		out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
		b, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessagesNotVisible"])
		return a + b
	}
	// Poison on both topics: the functions dead-letter them at their first receive.
	for topic, body := range map[string]string{topology.TopicOps: `{"v":1,"op":"create","cluster":`, topology.TopicQuery: `{"v":1,"cluster":"default"}`} {
		if _, err := bus.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(theSite.Outputs.TopicARNs[topic]), Message: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	// A valid op that "failed to apply" (say, throttled): straight into the ops DLQ.
	id := secret(strings.Repeat("D", 42) + "A")
	value := secret("dlq-value-" + strconv.FormatInt(time.Now().UnixNano(), 36))
	now := time.Now().UnixMilli()
	valid, err := events.EncodeSessionOp(&events.SessionOp{
		V: events.SchemaVersion, Op: events.OpCreate, Cluster: "default", ID: events.HashID(id),
		Version: fmt.Sprintf("%016x", uint64(now)<<16), Writer: "dlq-test", Site: "local", At: now,
		Session: &events.Session{Principal: "dora", Created: now, LastAccess: now, MaxIdle: 600, MaxLife: 3600, Attrs: map[string][]byte{"k": []byte(value)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(opsDLQ), MessageBody: aws.String(string(valid))}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poison messages reach the DLQs", func() (bool, string) {
		o, qu := depthOf(opsDLQ), depthOf(queryDLQ)
		return o == 2 && qu == 1, fmt.Sprintf("ops DLQ %d (want 2), query DLQ %d (want 1)", o, qu)
	})

	r := ctl(t, "dlq", "list")
	expect(t, r, 0, "sessionha-local-ops-dlq", "sessionha-local-query-dlq", "malformed: malformed session op", `invalid: `,
		"valid (failed to apply)", "3 dead messages (sessionha-local-ops-dlq 2, sessionha-local-query-dlq 1)")
	if strings.Contains(r.stdout, "dora") || strings.Contains(r.stdout, events.HashID(id)) {
		t.Errorf("dlq list shows what a message holds:\n%s", r)
	}
	if !regexp.MustCompile(`sessionha-local-ops-dlq\s+\S+\s+\d+s\s+\d+\s+31\s+malformed`).MatchString(r.stdout) {
		t.Errorf("the poison op's row lacks its age, receives and 31 bytes:\n%s", r)
	}
	r = ctl(t, "dlq", "list", "--queue", "query")
	expect(t, r, 0, "1 dead messages (sessionha-local-query-dlq 1)")
	if depthOf(opsDLQ) != 2 {
		t.Fatal("listing took messages off the DLQ")
	}
	row := statsRow(t, ctl(t, "stats", "-i", "1", "-n", "1").stdout)
	if row["OPS-DLQ"] != "2" || row["QUERY-DLQ"] != "1" || !strings.HasSuffix(row["OPS-DLQOLDEST"], "s") {
		t.Errorf("stats shows the DLQs as %v", row)
	}

	before := theSite.Metrics.Snapshot().Functions["sessionop"]["Rejected"]
	r = ctl(t, "dlq", "redrive", "--queue", "ops", "--valid-only")
	expect(t, r, 0, "sessionha-local-ops-dlq -> sessionha-local-ops: moved 1, left 1 that can never apply")
	reader := openStore(t, "ctl-dlq-reader", "")
	eventually(t, "the redriven valid op is applied", func() (bool, string) {
		s, err := reader.Load(ctx, id)
		if err != nil {
			return false, err.Error()
		}
		v, _ := s.Get("k")
		return string(v) == value, "wrong value"
	})
	// What a function dead-lettered as never applying stays, unless asked for.
	r = ctl(t, "dlq", "redrive")
	expect(t, r, 0, "sessionha-local-ops-dlq -> sessionha-local-ops: moved 0, left 1 that can never apply",
		"sessionha-local-query-dlq -> sessionha-local-query: moved 0, left 1 that can never apply")
	if r := ctl(t, "dlq", "redrive", "--poison", "--valid-only"); r.code != 2 || !strings.Contains(r.stderr, "contradict") {
		t.Errorf("--poison with --valid-only: want a usage error, got:\n%s", r)
	}
	r = ctl(t, "dlq", "redrive", "--poison")
	expect(t, r, 0, "sessionha-local-ops-dlq -> sessionha-local-ops: moved 1", "sessionha-local-query-dlq -> sessionha-local-query: moved 1")
	// Delivery is at least once: a function slowed past its timeout (a loaded machine) may
	// dead-letter a message and see it again before its delete lands, so a dead letter may
	// come twice; what must not happen is a message left circling.
	eventually(t, "the redriven poison is dead-lettered again, at its first receive", func() (bool, string) {
		o, qu := depthOf(opsDLQ), depthOf(queryDLQ)
		rejected := theSite.Metrics.Snapshot().Functions["sessionop"]["Rejected"]
		return o >= 1 && qu >= 1 && rejected >= before+1, fmt.Sprintf("ops DLQ %d, query DLQ %d, %v more rejections", o, qu, rejected-before)
	})
	r = ctl(t, "dlq", "list")
	expect(t, r, 0, "malformed: malformed session op", "(redriven 1×)", "dead messages")
	if !regexp.MustCompile(`sessionha-local-ops-dlq\s+\S+\s+\d+s\s+1\s+31\s+malformed: .*\(redriven 1×\)`).MatchString(r.stdout) {
		t.Errorf("the redriven poison op is not listed as dead-lettered at its first receive, redriven once:\n%s", r)
	}
	// It stays put: nothing circles on its own.
	if after := theSite.Metrics.Snapshot().Functions["sessionop"]["Rejected"]; after < before+1 || after > before+2 {
		t.Errorf("the redriven poison op was rejected %v times, want once (twice at most, redelivered before its delete landed)", after-before)
	}
	expect(t, ctl(t, "dlq", "redrive", "--valid-only"), 0, "moved 0, left")
}
