package outputs

import (
	"slices"
	"strings"
	"testing"
)

func TestLogicalIDRoundTrip(t *testing.T) {
	for envVar, id := range map[string]string{
		"SESSIONHA_SITE":             "SessionhaSite",
		"SESSIONHA_OPS_TOPIC_ARN":    "SessionhaOpsTopicArn",
		"SESSIONHA_NOTICE_TOPIC_ARN": "SessionhaNoticeTopicArn",
		"AWS_REGION":                 "AwsRegion",
	} {
		if got := LogicalID(envVar); got != id {
			t.Errorf("LogicalID(%s) = %s, want %s", envVar, got, id)
		}
		if got := EnvVar(id); got != envVar {
			t.Errorf("EnvVar(%s) = %s, want %s", id, got, envVar)
		}
	}
	for _, v := range Required {
		if EnvVar(LogicalID(v)) != v {
			t.Errorf("%s does not survive the round trip", v)
		}
	}
}

const sample = `{
  "sessionha-eu": {
    "SessionhaSite": "eu", "SessionhaTable": "sessionha-sessions", "AwsRegion": "eu-west-1",
    "SessionhaOpsTopicArn": "arn:aws:sns:eu-west-1:1:sessionha-eu-ops",
    "SessionhaQueryTopicArn": "arn:aws:sns:eu-west-1:1:sessionha-eu-query",
    "SessionhaReplyTopicArn": "arn:aws:sns:eu-west-1:1:sessionha-eu-reply",
    "SessionhaNoticeTopicArn": "arn:aws:sns:eu-west-1:1:sessionha-eu-notice",
    "SessionhaAuthPolicyArn": "arn:aws:iam::1:policy/sessionha-eu-auth-server"
  },
  "sessionha-us": {"SessionhaSite": "us"},
  "someone-elses": {"Foo": "bar"}
}`

func TestEnvFile(t *testing.T) {
	lines, err := EnvFile([]byte(sample), "eu")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(lines) {
		t.Error("lines are not sorted")
	}
	env := map[string]string{}
	for _, l := range lines {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("line %q", l)
		}
		env[k] = v
	}
	for k, v := range map[string]string{
		"SESSIONHA_SITE": "eu", "SESSIONHA_TABLE": "sessionha-sessions", "AWS_REGION": "eu-west-1",
		"SESSIONHA_OPS_TOPIC_ARN": "arn:aws:sns:eu-west-1:1:sessionha-eu-ops", "SESSIONHA_CLUSTER": "default",
		"SESSIONHA_PERSISTENCE": "ha", "SESSIONHA_READ_PATH": "direct", "SESSIONHA_MAX_WAIT": "5s",
	} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if len(env) != len(Required)+len(ClientDefaults) {
		t.Errorf("env file has %d variables: %v", len(env), lines)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "SESSIONHA_INSTANCE_ID"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s must not be in an AWS site's env file", k)
		}
	}
}

func TestEnvFileErrors(t *testing.T) {
	for site, want := range map[string]string{
		"":   "name the site", // two sessionha stacks
		"ap": "no stack sessionha-ap",
		"us": "does not output",
	} {
		if _, err := EnvFile([]byte(sample), site); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("site %q: %v, want an error with %q", site, err, want)
		}
	}
	if _, err := EnvFile([]byte("{"), "eu"); err == nil {
		t.Error("bad JSON accepted")
	}
	one := `{"sessionha-eu":` + strings.SplitN(strings.SplitN(sample, `"sessionha-eu":`, 2)[1], `"sessionha-us"`, 2)[0]
	one = strings.TrimRight(strings.TrimSpace(one), ",") + "}"
	if lines, err := EnvFile([]byte(one), ""); err != nil || !slices.Contains(lines, "SESSIONHA_SITE=eu") {
		t.Errorf("the only stack: %v %v", lines, err)
	}
}
