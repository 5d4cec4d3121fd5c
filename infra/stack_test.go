package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/aws-cdk-go/awscdk/v2/customresources"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/sessionha/sessionha/infra/outputs"
	"github.com/sessionha/sessionha/infra/topology"
)

// flat renders a template value with its intrinsics spelt out: Fn::Join is joined,
// {"Ref": "AWS::AccountId"} is <AWS::AccountId>, a GetAtt is <Id.Attr>, another Ref <Id>.
func flat(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		if j, ok := x["Fn::Join"].([]any); ok && len(j) == 2 {
			var parts []string
			for _, p := range list(j[1]) {
				parts = append(parts, flat(p))
			}
			return strings.Join(parts, str(j[0]))
		}
		if r, ok := x["Ref"].(string); ok {
			return "<" + r + ">"
		}
		if ga, ok := x["Fn::GetAtt"].([]any); ok && len(ga) == 2 {
			return "<" + str(ga[0]) + "." + str(ga[1]) + ">"
		}
	}
	return str(v)
}

// idOf returns the logical id of the one resource of typ whose property prop is value.
func idOf(t *testing.T, tpl map[string]any, typ, prop, value string) string {
	t.Helper()
	for _, r := range resources(tpl, typ) {
		if flat(r.Props[prop]) == value {
			return r.ID
		}
	}
	t.Fatalf("no %s with %s %s", typ, prop, value)
	return ""
}

// statements lists a policy document's statements.
func statements(doc any) []map[string]any {
	d, _ := doc.(map[string]any)
	var out []map[string]any
	for _, s := range list(d["Statement"]) {
		out = append(out, s.(map[string]any))
	}
	return out
}

// grants flattens allow statements into "action on resource" lines, sorted.
func grants(stmts []map[string]any) []string {
	var out []string
	for _, s := range stmts {
		if s["Effect"] != "Allow" {
			continue
		}
		for _, a := range list(s["Action"]) {
			for _, r := range list(s["Resource"]) {
				out = append(out, str(a)+" on "+flat(r))
			}
		}
	}
	slices.Sort(out)
	return out
}

func on(resource string, actions ...string) []string {
	var out []string
	for _, a := range actions {
		out = append(out, a+" on "+resource)
	}
	return out
}

func TestDefaultContext(t *testing.T) {
	if cdkJSON["app"] != "go run ./infra" {
		t.Errorf(`cdk.json "app" = %v, want "go run ./infra"`, cdkJSON["app"])
	}
	regions := map[string]bool{}
	for _, s := range testCfg.Sites {
		regions[s.Region] = true
		if stacks[s.Name] == nil {
			t.Errorf("no stack for site %s", s.Name)
		}
	}
	if len(testCfg.Sites) < 2 || len(regions) < 2 {
		t.Errorf("the example context should show two sites in two regions; it has %d sites in %d regions", len(testCfg.Sites), len(regions))
	}
	if got := *stacks[testCfg.primary().Name].StackName(); got != outputs.StackName(testCfg.primary().Name) {
		t.Errorf("stack name %s", got)
	}
}

// TestNagAwsSolutions: cdk-nag's AwsSolutions pack finds nothing unsuppressed.
func TestNagAwsSolutions(t *testing.T) {
	for name, st := range stacks {
		a := assertions.Annotations_FromStack(st)
		nag := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
		for _, m := range *a.FindError(jsii.String("*"), nag) {
			t.Errorf("%s: nag error at %s: %v", name, *m.Id, m.Entry.Data)
		}
		for _, m := range *a.FindWarning(jsii.String("*"), nag) {
			t.Errorf("%s: nag warning at %s: %v", name, *m.Id, m.Entry.Data)
		}
	}
}

// TestNagCatchesFindings: the pack is live: an unencrypted queue without TLS enforcement
// or a dead-letter queue is reported. Without this, zero findings could mean no checks.
func TestNagCatchesFindings(t *testing.T) {
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
	st := awscdk.NewStack(app, jsii.String("bad"), &awscdk.StackProps{Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("eu-west-1")}})
	awssqs.NewQueue(st, jsii.String("Plain"), &awssqs.QueueProps{Encryption: awssqs.QueueEncryption_UNENCRYPTED})
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(nil), nil)
	found := map[string]bool{}
	for _, m := range *assertions.Annotations_FromStack(st).FindError(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))) {
		rule, _, _ := strings.Cut(fmt.Sprint(m.Entry.Data), ":")
		found[rule] = true
	}
	for _, rule := range []string{"AwsSolutions-SQS2", "AwsSolutions-SQS3", "AwsSolutions-SQS4"} {
		if !found[rule] {
			t.Errorf("nag did not report %s on a bad queue (found %v)", rule, slices.Sorted(maps.Keys(found)))
		}
	}
}

// TestNagSuppressions: every suppression is on a named resource, carries its reason,
// and is one this test knows of: adding one is a reviewed change.
func TestNagSuppressions(t *testing.T) {
	provider := "AWS" + strings.ReplaceAll(*customresources.AwsCustomResource_PROVIDER_FUNCTION_UUID(), "-", "") + "/ServiceRole"
	for name, tpl := range tpls {
		want := map[string][]string{"AuthServerPolicy": {"AwsSolutions-IAM5"}, "AuthServerBusPolicy": {"AwsSolutions-IAM5"},
			"QueueLifecycleDlq": {"AwsSolutions-SQS3"}}
		if name != testCfg.primary().Name {
			want[provider] = []string{"AwsSolutions-IAM4"} // the replica stream's lookup (stream.go)
		}
		got := map[string][]string{}
		for id, r := range tpl["Resources"].(map[string]any) {
			md, _ := r.(map[string]any)["Metadata"].(map[string]any)
			nag, _ := md["cdk_nag"].(map[string]any)
			for _, s := range list(nag["rules_to_suppress"]) {
				s := s.(map[string]any)
				if len(str(s["reason"])) < 40 {
					t.Errorf("%s/%s: suppression of %v without a real reason: %q", name, id, s["id"], s["reason"])
				}
				if granular := str(s["id"]) != "AwsSolutions-SQS3"; granular && len(list(s["applies_to"])) == 0 {
					t.Errorf("%s/%s: suppression of %v applies to every finding of the rule; name them", name, id, s["id"])
				}
				path := str(md["aws:cdk:path"])
				path = strings.TrimSuffix(strings.TrimPrefix(path, outputs.StackName(name)+"/"), "/Resource")
				got[path] = append(got[path], str(s["id"]))
			}
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s: suppressions %v, want %v", name, got, want)
		}
		md, _ := tpl["Metadata"].(map[string]any)
		if _, ok := md["cdk_nag"]; ok {
			t.Errorf("%s: stack-wide nag suppressions: suppress on the resource", name)
		}
	}
}

func TestTopicsEncryptedWithTLSOnly(t *testing.T) {
	for name, tpl := range tpls {
		topo := topoOf(t, siteNamed(name))
		tm := templates[name]
		keyID := keyIDOf(t, tpl, "TopicKey")
		check(t, name+": topics", func() {
			tm.ResourceCountIs(jsii.String("AWS::SNS::Topic"), jsii.Number(len(topo.Topics)))
			tm.AllResourcesProperties(jsii.String("AWS::SNS::Topic"), &map[string]any{
				"KmsMasterKeyId": map[string]any{"Fn::GetAtt": []any{keyID, "Arn"}},
			})
			tm.ResourceCountIs(jsii.String("AWS::KMS::Key"), jsii.Number(2)) // the topics' and the seal key (seal_test.go)
			tm.AllResourcesProperties(jsii.String("AWS::KMS::Key"), &map[string]any{"EnableKeyRotation": true})
		})
		for _, tp := range resources(tpl, "AWS::SNS::Topic") {
			if !denied(tpl, "AWS::SNS::TopicPolicy", "Topics", tp.ID, "sns:Publish") {
				t.Errorf("%s: topic %v has no policy denying publish without TLS", name, tp.Props["TopicName"])
			}
		}
	}
}

func TestQueuesEncryptedWithTLSOnly(t *testing.T) {
	for name, tpl := range tpls {
		check(t, name+": queues", func() {
			templates[name].AllResourcesProperties(jsii.String("AWS::SQS::Queue"), &map[string]any{"SqsManagedSseEnabled": true})
		})
		for _, q := range resources(tpl, "AWS::SQS::Queue") {
			if !denied(tpl, "AWS::SQS::QueuePolicy", "Queues", q.ID, "sqs:*") {
				t.Errorf("%s: queue %v has no policy denying access without TLS", name, q.Props["QueueName"])
			}
		}
	}
}

// denied reports whether a resource policy of typ attached (through attachProp) to id
// denies action to everyone when aws:SecureTransport is false.
func denied(tpl map[string]any, typ, attachProp, id, action string) bool {
	for _, p := range resources(tpl, typ) {
		if !slices.ContainsFunc(list(p.Props[attachProp]), func(v any) bool { return refID(v) == id }) {
			continue
		}
		for _, s := range statements(p.Props["PolicyDocument"]) {
			cond, _ := s["Condition"].(map[string]any)
			b, _ := cond["Bool"].(map[string]any)
			principal := flat(s["Principal"])
			if s["Effect"] == "Deny" && b["aws:SecureTransport"] == "false" && slices.Contains(list(s["Action"]), any(action)) &&
				(principal == "*" || principal == `{"AWS":"*"}`) {
				return true
			}
		}
	}
	return false
}

func TestRedrive(t *testing.T) {
	for name := range tpls {
		topo := topoOf(t, siteNamed(name))
		for _, q := range topo.Queues {
			if q.DLQ == "" {
				continue
			}
			check(t, name+": redrive of "+q.Name, func() {
				templates[name].HasResourceProperties(jsii.String("AWS::SQS::Queue"), &map[string]any{
					"QueueName": q.Name,
					"RedrivePolicy": map[string]any{
						"deadLetterTargetArn": assertions.Match_AnyValue(),
						"maxReceiveCount":     q.MaxReceiveCount,
					},
				})
			})
		}
	}
}

func TestFunctions(t *testing.T) {
	for name, tpl := range tpls {
		topo := topoOf(t, siteNamed(name))
		tm := templates[name]
		check(t, name+": functions", func() {
			// The topology's, and in a secondary site's stack the CDK's provider of the
			// replica stream's lookup (stream.go).
			n := len(topo.Functions)
			if name != testCfg.primary().Name {
				n++
			}
			tm.ResourceCountIs(jsii.String("AWS::Lambda::Function"), jsii.Number(n))
			tm.AllResourcesProperties(jsii.String("AWS::Lambda::EventSourceMapping"), &map[string]any{
				"FunctionResponseTypes": []any{"ReportBatchItemFailures"},
			})
		})
		for _, f := range topo.Functions {
			id := idOf(t, tpl, "AWS::Lambda::Function", "FunctionName", f.Name)
			fn := byID(tpl, id)
			if a, r, h := fn.Props["Architectures"], fn.Props["Runtime"], fn.Props["Handler"]; str(a) != `["arm64"]` || r != "provided.al2023" || h != "bootstrap" {
				t.Errorf("%s: %s runs %v %v %v, want provided.al2023 arm64 bootstrap", name, f.Name, r, a, h)
			}
			env, _ := fn.Props["Environment"].(map[string]any)
			vars, _ := env["Variables"].(map[string]any)
			if len(vars) != len(f.Env) {
				t.Errorf("%s: %s has env %v, topology %v", name, f.Name, vars, f.Env)
			}
			for k, v := range f.Env {
				kind, ref, _ := strings.Cut(v, ":")
				want := v
				switch kind {
				case "table":
					want = ref
				case "topic":
					tp, _ := topo.Topic(ref)
					want = "<" + idOf(t, tpl, "AWS::SNS::Topic", "TopicName", tp.Name) + ">"
				case "queue":
					q, _ := topo.Queue(ref)
					want = "<" + idOf(t, tpl, "AWS::SQS::Queue", "QueueName", q.Name) + ">"
				}
				if got := flat(vars[k]); got != want {
					t.Errorf("%s: %s env %s = %s, want %s (from %q)", name, f.Name, k, got, want, v)
				}
			}
			// The asset is the directory holding the bootstrap, staged into the assembly.
			md, _ := fn.Raw["Metadata"].(map[string]any)
			staged := filepath.Join(*awscdk.Stage_Of(stacks[name]).Outdir(), str(md["aws:asset:path"]), "bootstrap")
			if _, err := os.Stat(staged); err != nil {
				t.Errorf("%s: %s: asset: %v", name, f.Name, err)
			}
		}
	}
}

// TestBatchSettingsFromContext: the example context's per-site settings reach the event
// source mappings (and a function that takes no batching window keeps none).
func TestBatchSettingsFromContext(t *testing.T) {
	for _, sc := range testCfg.Sites {
		topo := topoOf(t, sc)
		for _, f := range topo.Functions {
			if f.Stream != nil {
				continue // TestLifecycleStream
			}
			q, _ := topo.Queue(f.Queue)
			tpl := tpls[sc.Name]
			check(t, sc.Name+": "+f.Name+" event source", func() {
				templates[sc.Name].HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), &map[string]any{
					"FunctionName":                   map[string]any{"Ref": idOf(t, tpl, "AWS::Lambda::Function", "FunctionName", f.Name)},
					"EventSourceArn":                 map[string]any{"Fn::GetAtt": []any{idOf(t, tpl, "AWS::SQS::Queue", "QueueName", q.Name), "Arn"}},
					"BatchSize":                      sc.Settings.Topology().WithDefaults().BatchSize,
					"MaximumBatchingWindowInSeconds": int(f.BatchingWindow.Seconds()),
					"ScalingConfig":                  map[string]any{"MaximumConcurrency": sc.Settings.Topology().WithDefaults().MaxConcurrency},
				})
			})
			if f.ID == topology.FunctionSessionOp && f.BatchingWindow != sc.Settings.Topology().BatchingWindow {
				t.Errorf("%s: sessionop window %s, context says %s", sc.Name, f.BatchingWindow, sc.Settings.Topology().BatchingWindow)
			}
		}
	}
}

// TestFunctionLeastPrivilege: each function's role may do exactly what functionAccess
// lists, on the named resources, plus consume its own queue and write its own log group.
func TestFunctionLeastPrivilege(t *testing.T) {
	for name, tpl := range tpls {
		sc := siteNamed(name)
		topo := topoOf(t, sc)
		tableARN := "arn:<AWS::Partition>:dynamodb:" + sc.Region + ":" + acct(sc) + ":table/" + topo.Table.Name
		for _, f := range topo.Functions {
			fn := byID(tpl, idOf(t, tpl, "AWS::Lambda::Function", "FunctionName", f.Name))
			roleID := refID(fn.Props["Role"])
			if arns := byID(tpl, roleID).Props["ManagedPolicyArns"]; arns != nil {
				t.Errorf("%s: %s's role has managed policies %v", name, f.Name, arns)
			}
			var got []string
			for _, p := range resources(tpl, "AWS::IAM::Policy") {
				if slices.ContainsFunc(list(p.Props["Roles"]), func(v any) bool { return refID(v) == roleID }) {
					got = append(got, grants(statements(p.Props["PolicyDocument"]))...)
				}
			}
			slices.Sort(got)
			q, _ := topo.Queue(f.Queue)
			acc := functionAccess[f.ID]
			lc, _ := fn.Props["LoggingConfig"].(map[string]any)
			logs := "<" + refID(lc["LogGroup"]) + ".Arn>"
			want := on(logs, "logs:CreateLogStream", "logs:PutLogEvents")
			if f.Stream != nil {
				// Its stream, by its exact ARN, and its on-failure queue: what the event
				// source mapping needs.
				want = append(want, on(streamARN(t, sc, tpl), "dynamodb:ListStreams", "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")...)
				dlq, _ := topo.Queue(f.Stream.OnFailure)
				want = append(want, on("<"+idOf(t, tpl, "AWS::SQS::Queue", "QueueName", dlq.Name)+".Arn>", "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl")...)
			} else {
				want = append(want, on("<"+idOf(t, tpl, "AWS::SQS::Queue", "QueueName", q.Name)+".Arn>",
					"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage", "sqs:GetQueueAttributes")...)
			}
			want = append(want, on(tableARN, acc.TableActions...)...)
			for _, tp := range acc.Publish {
				topic, _ := topo.Topic(tp)
				want = append(want, on("<"+idOf(t, tpl, "AWS::SNS::Topic", "TopicName", topic.Name)+">", "sns:Publish")...)
			}
			if len(acc.Publish) > 0 {
				want = append(want, on("<"+keyIDOf(t, tpl, "TopicKey")+".Arn>", "kms:GenerateDataKey", "kms:Decrypt")...)
			}
			// Each function sends what can never apply to its own queue's DLQ, and no other.
			if acc.DeadLetters {
				dlq, _ := topo.Queue(q.DLQ)
				want = append(want, on("<"+idOf(t, tpl, "AWS::SQS::Queue", "QueueName", dlq.Name)+".Arn>", "sqs:SendMessage")...)
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s may\n  %s\nwant\n  %s", name, f.Name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		}
	}
}

// TestAuthServerPolicies: the auth servers' policy and the bus-only one grant what the
// client calls and nothing more; the bus-only one no table access at all; Subscribe only
// of an instance queue of the site, as a queue, to the site's reply topic and to every
// site's notice topic (and publishing only to the site's own topics).
func TestAuthServerPolicies(t *testing.T) {
	for name, tpl := range tpls {
		sc := siteNamed(name)
		topo := topoOf(t, sc)
		ps := resources(tpl, "AWS::IAM::ManagedPolicy")
		byName := map[string]res{}
		for _, p := range ps {
			byName[str(p.Props["ManagedPolicyName"])] = p
		}
		direct, ok1 := byName["sessionha-"+sc.Name+"-auth-server"]
		busOnly, ok2 := byName["sessionha-"+sc.Name+"-auth-server-bus"]
		if len(ps) != 2 || !ok1 || !ok2 {
			t.Fatalf("%s: managed policies %v, want sessionha-%s-auth-server and sessionha-%s-auth-server-bus", name, slices.Sorted(maps.Keys(byName)), sc.Name, sc.Name)
		}
		topic := func(id string) string {
			tp, _ := topo.Topic(id)
			return "<" + idOf(t, tpl, "AWS::SNS::Topic", "TopicName", tp.Name) + ">"
		}
		reply, _ := topo.Topic(topology.TopicReply)
		prefix := "arn:<AWS::Partition>:"
		account := ":" + acct(sc) + ":"
		table := prefix + "dynamodb:" + sc.Region + account + "table/" + topo.Table.Name
		queues := prefix + "sqs:" + sc.Region + account + reply.Name + "-*"
		var common []string
		for _, id := range []string{topology.TopicOps, topology.TopicQuery, topology.TopicNotice} {
			common = append(common, on(topic(id), "sns:Publish")...)
		}
		common = append(common, on("<"+keyIDOf(t, tpl, "TopicKey")+".Arn>", "kms:GenerateDataKey", "kms:Decrypt")...)
		common = append(common, on("<"+keyIDOf(t, tpl, "SealKey")+".Arn>", "kms:Decrypt")...) // seal_test.go checks its condition
		common = append(common, on(queues, "sqs:GetQueueUrl", "sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes",
			"sqs:TagQueue", "sqs:ListQueueTags", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteQueue")...)
		common = append(common, on("*", "sqs:ListQueues")...)
		// Subscribing, and managing the subscriptions: the site's reply and lifecycle
		// topics and every site's notice topic (notices cross sites).
		notices := noticeARNs(t, tpl, sc)
		if len(notices) != len(testCfg.Sites) {
			t.Fatalf("%s: %d notice topics, want one per site", name, len(notices))
		}
		for _, arn := range append([]string{topic(topology.TopicReply), topic(topology.TopicLifecycle)}, notices...) {
			common = append(common, on(arn, "sns:Subscribe", "sns:Unsubscribe", "sns:ListSubscriptionsByTopic")...)
		}
		// Open's start-up checks.
		for _, arn := range append([]string{topic(topology.TopicOps), topic(topology.TopicQuery), topic(topology.TopicReply), topic(topology.TopicLifecycle)}, notices...) {
			common = append(common, on(arn, "sns:GetTopicAttributes")...)
		}
		wantDirect := append(slices.Clone(common), on(table, "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DescribeTable")...)
		wantDirect = append(wantDirect, on(table+"/index/"+topology.IndexByPrincipal, "dynamodb:Query")...)
		for _, c := range []struct {
			p    res
			want []string
		}{{direct, wantDirect}, {busOnly, common}} {
			slices.Sort(c.want)
			stmts := statements(c.p.Props["PolicyDocument"])
			if got := grants(stmts); !slices.Equal(got, c.want) {
				t.Errorf("%s: %s may\n  %s\nwant\n  %s", name, str(c.p.Props["ManagedPolicyName"]), strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
			for _, st := range stmts {
				if !slices.ContainsFunc(list(st["Action"]), func(a any) bool { return a == "sns:Subscribe" }) {
					continue
				}
				cond, _ := st["Condition"].(map[string]any)
				eq, _ := cond["StringEquals"].(map[string]any)
				like, _ := cond["StringLike"].(map[string]any)
				if len(list(st["Action"])) != 1 || str(eq["sns:Protocol"]) != "sqs" || flat(like["sns:Endpoint"]) != queues || len(cond) != 2 {
					t.Errorf("%s: %s: sns:Subscribe granted as %v, want it alone, on condition sns:Protocol sqs and sns:Endpoint %s",
						name, str(c.p.Props["ManagedPolicyName"]), st, queues)
				}
			}
		}
		for _, g := range grants(statements(busOnly.Props["PolicyDocument"])) {
			if strings.HasPrefix(g, "dynamodb:") {
				t.Errorf("%s: the bus-only policy grants %s", name, g)
			}
		}
		// PutItem only of logout items (their keys and attributes), and only by itself.
		puts := 0
		for _, st := range statements(direct.Props["PolicyDocument"]) {
			if !slices.ContainsFunc(list(st["Action"]), func(a any) bool { return a == "dynamodb:PutItem" }) {
				continue
			}
			puts++
			cond, _ := st["Condition"].(map[string]any)
			like, _ := cond["ForAllValues:StringLike"].(map[string]any)
			eq, _ := cond["ForAllValues:StringEquals"].(map[string]any)
			null, _ := cond["Null"].(map[string]any)
			attrs := slices.Sorted(slices.Values(strs(eq["dynamodb:Attributes"])))
			if len(list(st["Action"])) != 1 || len(cond) != 3 || !slices.Equal(strs(like["dynamodb:LeadingKeys"]), []string{"*#logout"}) ||
				!slices.Equal(attrs, []string{"dv", "expiresAt", "pk", "rev", "site", "st", "ver", "why", "wr"}) || str(null["dynamodb:LeadingKeys"]) != "false" {
				t.Errorf("%s: dynamodb:PutItem granted as %v, want it alone, on logout keys (*#logout) with a logout item's attributes only, the keys required", name, st)
			}
		}
		if puts != 1 {
			t.Errorf("%s: %d statements grant the auth servers dynamodb:PutItem, want one (logout items)", name, puts)
		}
	}
}

// TestNoWildcards: no identity policy grants an action pattern, or a resource pattern
// other than the instance queues' prefix, or Resource * other than for sqs:ListQueues
// (which has no resource-level permissions); both suppressed, with their reason, on the
// auth server policies.
func TestNoWildcards(t *testing.T) {
	for name, tpl := range tpls {
		reply, _ := topoOf(t, siteNamed(name)).Topic(topology.TopicReply)
		for _, typ := range []string{"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"} {
			for _, p := range resources(tpl, typ) {
				for _, g := range grants(statements(p.Props["PolicyDocument"])) {
					action, resource, _ := strings.Cut(g, " on ")
					if g == "sqs:ListQueues on *" && p.Type == "AWS::IAM::ManagedPolicy" {
						continue
					}
					if strings.Contains(action, "*") || strings.Contains(resource, "*") && !strings.HasSuffix(resource, ":"+reply.Name+"-*") {
						t.Errorf("%s: %s grants %s", name, p.ID, g)
					}
				}
			}
		}
	}
}

func TestOutputs(t *testing.T) {
	for name, tpl := range tpls {
		sc := siteNamed(name)
		topo := topoOf(t, sc)
		outs, _ := tpl["Outputs"].(map[string]any)
		want := map[string]string{
			outputs.Site: sc.Name, outputs.Table: topo.Table.Name, outputs.Region: sc.Region,
			outputs.AuthPolicyARN:    "<" + idOf(t, tpl, "AWS::IAM::ManagedPolicy", "ManagedPolicyName", "sessionha-"+sc.Name+"-auth-server") + ">",
			outputs.AuthBusPolicyARN: "<" + idOf(t, tpl, "AWS::IAM::ManagedPolicy", "ManagedPolicyName", "sessionha-"+sc.Name+"-auth-server-bus") + ">",
			outputs.SealKMSKeyARN:    "<" + keyIDOf(t, tpl, "SealKey") + ".Arn>",
		}
		for _, tp := range topo.Topics {
			want[tp.EnvVar] = "<" + idOf(t, tpl, "AWS::SNS::Topic", "TopicName", tp.Name) + ">"
		}
		want[outputs.NoticeTopicARNs] = strings.Join(noticeARNs(t, tpl, sc), ",")
		if len(outs) != len(want) {
			t.Errorf("%s: outputs %v, want one per %v", name, slices.Sorted(maps.Keys(outs)), slices.Sorted(maps.Keys(want)))
		}
		fake := map[string]string{}
		for envVar, value := range want {
			id := outputs.LogicalID(envVar)
			o, ok := outs[id].(map[string]any)
			if !ok {
				t.Errorf("%s: no output %s (%s)", name, id, envVar)
				continue
			}
			if got := flat(o["Value"]); got != value {
				t.Errorf("%s: output %s = %s, want %s", name, id, got, value)
			}
			if _, ok := o["Export"]; ok {
				t.Errorf("%s: output %s is exported: nothing imports it", name, id)
			}
			fake[id] = value
		}
		check(t, name+": table output", func() {
			templates[name].HasOutput(jsii.String("SessionhaTable"), &map[string]any{"Value": topo.Table.Name})
		})

		// The env-file tool reads these outputs back into the client's variables.
		b, _ := json.Marshal(map[string]any{outputs.StackName(name): fake, "OtherStack": map[string]string{"X": "y"}})
		lines, err := outputs.EnvFile(b, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		env := map[string]string{}
		for _, l := range lines {
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
		}
		for envVar, value := range want {
			if env[envVar] != value {
				t.Errorf("%s: env file %s=%q, want %q", name, envVar, env[envVar], value)
			}
		}
	}
}

func TestGlobalTable(t *testing.T) {
	primary := testCfg.primary()
	var regions []any
	for _, s := range testCfg.Sites {
		if !slices.Contains(regions, any(s.Region)) {
			regions = append(regions, s.Region)
		}
	}
	topo := topoOf(t, primary)
	for name, tm := range templates {
		if name != primary.Name {
			check(t, name+": no table", func() { tm.ResourceCountIs(jsii.String("AWS::DynamoDB::GlobalTable"), jsii.Number(0)) })
			continue
		}
		check(t, name+": table", func() {
			tm.ResourceCountIs(jsii.String("AWS::DynamoDB::GlobalTable"), jsii.Number(1))
			tm.HasResource(jsii.String("AWS::DynamoDB::GlobalTable"), &map[string]any{
				"DeletionPolicy":      "Retain",
				"UpdateReplacePolicy": "Retain",
				"Properties": map[string]any{
					"TableName":               topo.Table.Name,
					"BillingMode":             "PAY_PER_REQUEST",
					"KeySchema":               []any{map[string]any{"AttributeName": topology.PartitionKey, "KeyType": "HASH"}},
					"TimeToLiveSpecification": map[string]any{"AttributeName": topology.TTLAttribute, "Enabled": true},
					"SSESpecification":        map[string]any{"SSEEnabled": true, "SSEType": "KMS"},
					"StreamSpecification":     map[string]any{"StreamViewType": "NEW_AND_OLD_IMAGES"},
					"GlobalSecondaryIndexes": []any{map[string]any{
						"IndexName": topology.IndexByPrincipal,
						"KeySchema": []any{
							map[string]any{"AttributeName": "upk", "KeyType": "HASH"},
							map[string]any{"AttributeName": "cr", "KeyType": "RANGE"},
						},
						"Projection": map[string]any{"ProjectionType": "INCLUDE", "NonKeyAttributes": assertions.Match_AnyValue()},
					}},
				},
			})
		})
		table := resources(tpls[name], "AWS::DynamoDB::GlobalTable")[0]
		var got []any
		for _, r := range list(table.Props["Replicas"]) {
			r := r.(map[string]any)
			got = append(got, r["Region"])
			if r["DeletionProtectionEnabled"] != true {
				t.Errorf("replica %v: no deletion protection", r["Region"])
			}
			if pitr, _ := r["PointInTimeRecoverySpecification"].(map[string]any); pitr["PointInTimeRecoveryEnabled"] != true {
				t.Errorf("replica %v: no point-in-time recovery", r["Region"])
			}
			if gsis := list(r["GlobalSecondaryIndexes"]); len(gsis) != len(topo.Table.Indexes) {
				t.Errorf("replica %v: indexes %v", r["Region"], gsis)
			}
		}
		slices.SortFunc(got, func(a, b any) int { return strings.Compare(str(a), str(b)) })
		slices.SortFunc(regions, func(a, b any) int { return strings.Compare(str(a), str(b)) })
		if !slices.Equal(got, regions) {
			t.Errorf("replicas in %v, want one in every site's region %v", got, regions)
		}
		// The functions using the table wait for it; a stream's mapping reads its ARN
		// from it.
		for _, f := range topo.Functions {
			fn := byID(tpls[name], idOf(t, tpls[name], "AWS::Lambda::Function", "FunctionName", f.Name))
			if len(functionAccess[f.ID].TableActions) > 0 && !slices.Contains(list(fn.Raw["DependsOn"]), any(table.ID)) {
				t.Errorf("function %v does not depend on the table", f.Name)
			}
		}
		if got, want := streamARN(t, primary, tpls[name]), "<"+table.ID+".StreamArn>"; got != want {
			t.Errorf("the primary's stream mapping reads %s, want the table's own %s", got, want)
		}
	}
}

// TestStackOrder: the other regions' stacks deploy after the primary's, and nothing
// crosses regions by reference (no exports, no cross-region custom resources).
func TestStackOrder(t *testing.T) {
	primary := stacks[testCfg.primary().Name]
	for name, st := range stacks {
		var deps []string
		for _, d := range *st.Dependencies() {
			deps = append(deps, *d.StackName())
		}
		if want := []string{*primary.StackName()}; st != primary && !slices.Equal(deps, want) {
			t.Errorf("%s depends on %v, want %v", name, deps, want)
		} else if st == primary && len(deps) != 0 {
			t.Errorf("the primary %s depends on %v", name, deps)
		}
		for id, r := range tpls[name]["Resources"].(map[string]any) {
			r := r.(map[string]any)
			typ := str(r["Type"])
			if typ == "Custom::AWS" && st != primary && strings.HasPrefix(id, "ReplicaStream") {
				// The one lookup a secondary stack makes: its own region's replica's
				// stream, read from DynamoDB in that region (stream.go).
				props, _ := r["Properties"].(map[string]any)
				var call map[string]any
				_ = json.Unmarshal([]byte(str(props["Create"])), &call)
				params, _ := call["parameters"].(map[string]any)
				if call["service"] != "DynamoDB" || call["action"] != "describeTable" || params["TableName"] != testCfg.Table || call["region"] != nil {
					t.Errorf("%s: %s calls %v, want DynamoDB describeTable of %s in its own region", name, id, call, testCfg.Table)
				}
				continue
			}
			if strings.HasPrefix(typ, "Custom::") || typ == "AWS::CloudFormation::CustomResource" || typ == "AWS::SSM::Parameter" {
				t.Errorf("%s: %s is a %s", name, id, typ)
			}
		}
	}
}

func TestAlarms(t *testing.T) {
	for name, tpl := range tpls {
		sc := siteNamed(name)
		topo := topoOf(t, sc)
		type alarm struct {
			metric    string
			threshold float64
		}
		got := map[string]alarm{} // queue logical id -> alarm
		for _, a := range resources(tpl, "AWS::CloudWatch::Alarm") {
			for _, d := range list(a.Props["Dimensions"]) {
				d := d.(map[string]any)
				if d["Name"] == "QueueName" && a.Props["Namespace"] == "AWS/SQS" {
					got[refID(d["Value"])+" "+str(a.Props["MetricName"])] = alarm{str(a.Props["MetricName"]), num(a.Props["Threshold"])}
				}
			}
		}
		n := 0
		for _, f := range topo.Functions {
			if f.Stream == nil {
				continue
			}
			dlq, _ := topo.Queue(f.Stream.OnFailure)
			if a, ok := got[idOf(t, tpl, "AWS::SQS::Queue", "QueueName", dlq.Name)+" ApproximateNumberOfMessagesVisible"]; !ok || a.threshold != 1 {
				t.Errorf("%s: on-failure queue %s: depth alarm %+v", name, dlq.Name, a)
			}
			n++
		}
		for _, q := range topo.Queues {
			id := idOf(t, tpl, "AWS::SQS::Queue", "QueueName", q.Name)
			if q.DLQ != "" {
				dlq, _ := topo.Queue(q.DLQ)
				dlqID := idOf(t, tpl, "AWS::SQS::Queue", "QueueName", dlq.Name)
				if a, ok := got[dlqID+" ApproximateNumberOfMessagesVisible"]; !ok || a.threshold != 1 {
					t.Errorf("%s: DLQ %s: depth alarm %+v", name, dlq.Name, a)
				}
				want := sc.Settings.withDefaults().OldestMessageAlarm
				if a, ok := got[id+" ApproximateAgeOfOldestMessage"]; !ok || a.threshold != float64(want)/1e9 {
					t.Errorf("%s: queue %s: age alarm %+v, want threshold %vs", name, q.Name, a, float64(want)/1e9)
				}
				n += 2
			}
		}
		if len(got) != n {
			t.Errorf("%s: %d queue alarms, want %d", name, len(got), n)
		}
	}
}

func TestDashboard(t *testing.T) {
	for name, tpl := range tpls {
		topo := topoOf(t, siteNamed(name))
		ds := resources(tpl, "AWS::CloudWatch::Dashboard")
		if len(ds) != 1 {
			t.Fatalf("%s: %d dashboards", name, len(ds))
		}
		body := flat(ds[0].Props["DashboardBody"])
		for _, f := range topo.Functions {
			metrics := functionAccess[f.ID].Metrics
			if len(metrics) == 0 {
				t.Errorf("%s: function %s shows no counters", name, f.ID)
			}
			for _, m := range metrics {
				want := fmt.Sprintf(`[%q,%q,%q,%q`, metricsNamespace, m, metricsDimension, f.ID)
				if !strings.Contains(body, want) {
					t.Errorf("%s: dashboard lacks %s of %s (%s)", name, m, f.ID, want)
				}
			}
		}
		for _, q := range topo.Queues {
			if !strings.Contains(body, `"title":"`+q.Name+`"`) {
				t.Errorf("%s: dashboard lacks queue %s", name, q.Name)
			}
		}
	}
}

// TestEveryFunctionHasAccess: a function added to the topology without an entry in
// functionAccess stops the synth rather than deploying with guessed permissions.
func TestEveryFunctionHasAccess(t *testing.T) {
	topo := topoOf(t, testCfg.primary())
	for _, f := range topo.Functions {
		if _, ok := functionAccess[f.ID]; !ok {
			t.Errorf("function %s has no functionAccess entry", f.ID)
		}
	}
	topo.Functions = append(topo.Functions, topology.Function{ID: "newfn", Name: "x-newfn", Queue: topology.QueueOps, BatchSize: 1, MaxConcurrency: 2})
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
	if _, err := newSiteStack(app, testCfg, testCfg.primary(), topo, nil); err == nil || !strings.Contains(err.Error(), "functionAccess") {
		t.Errorf("a function without access rendered: %v", err)
	}
}

// strs is a template value as a list of strings (a single one written bare, too).
func strs(v any) []string {
	var out []string
	for _, e := range list(v) {
		out = append(out, str(e))
	}
	return out
}

// streamARN is the stream ARN a site's stream mapping reads, flattened: the table's own in
// the primary's stack, the replica lookup's answer in another's.
func streamARN(t *testing.T, sc SiteConfig, tpl map[string]any) string {
	t.Helper()
	for _, r := range resources(tpl, "AWS::Lambda::EventSourceMapping") {
		if _, ok := r.Props["StartingPosition"]; ok {
			return flat(r.Props["EventSourceArn"])
		}
	}
	t.Fatalf("%s: no stream event source mapping", sc.Name)
	return ""
}

// TestLifecycleStream: the lifecycle function reads its region's replica's stream with
// the topology's mapping (starting position, batch, bisection, retries, record age),
// partial batch failures, and an on-failure destination in the site's lifecycle DLQ; the
// secondary sites' lookup of their replica's stream may describe the session table and
// nothing else.
func TestLifecycleStream(t *testing.T) {
	for name, tpl := range tpls {
		sc := siteNamed(name)
		topo := topoOf(t, sc)
		for _, f := range topo.Functions {
			if f.Stream == nil {
				continue
			}
			dlq, _ := topo.Queue(f.Stream.OnFailure)
			check(t, name+": "+f.Name+" stream mapping", func() {
				templates[name].HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), &map[string]any{
					"FunctionName":               map[string]any{"Ref": idOf(t, tpl, "AWS::Lambda::Function", "FunctionName", f.Name)},
					"StartingPosition":           f.Stream.StartingPosition,
					"BatchSize":                  f.BatchSize,
					"BisectBatchOnFunctionError": f.Stream.BisectOnError,
					"MaximumRetryAttempts":       f.Stream.RetryAttempts,
					"MaximumRecordAgeInSeconds":  int(f.Stream.MaxRecordAge.Seconds()),
					"FunctionResponseTypes":      []any{"ReportBatchItemFailures"},
					"DestinationConfig": map[string]any{"OnFailure": map[string]any{
						"Destination": map[string]any{"Fn::GetAtt": []any{idOf(t, tpl, "AWS::SQS::Queue", "QueueName", dlq.Name), "Arn"}}}},
				})
			})
		}
		if name == testCfg.primary().Name {
			continue
		}
		for _, p := range resources(tpl, "AWS::IAM::Policy") {
			if !strings.HasPrefix(p.ID, "ReplicaStream") {
				continue
			}
			want := on("arn:<AWS::Partition>:dynamodb:"+sc.Region+":"+acct(sc)+":table/"+topo.Table.Name, "dynamodb:DescribeTable")
			if got := grants(statements(p.Props["PolicyDocument"])); !slices.Equal(got, want) {
				t.Errorf("%s: the replica stream's lookup may %v, want %v", name, got, want)
			}
		}
		if !strings.Contains(streamARN(t, sc, tpl), "ReplicaStream") {
			t.Errorf("%s: the stream mapping reads %s, not this region's replica's stream", name, streamARN(t, sc, tpl))
		}
	}
}
