// Package outputs names the CloudFormation outputs of a sessionha site's stack and turns
// a `cdk deploy --outputs-file` file into the KEY=value env file that the local stack
// writes to local/.run/site.env, so that a client is configured the same way against AWS
// and on a laptop.
//
// It is plain Go with no CDK imports: the env-file tool (infra/cmd/outputs2env) builds in
// a second and pulls in neither the CDK nor jsii.
package outputs

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
)

// Variables of a site's env file that come from its stack's outputs. The topic ARNs'
// variables are topology.Topic.EnvVar; they are repeated here so that the tool needs no
// topology and can say what a stack failed to output.
const (
	Site           = "SESSIONHA_SITE"
	Table          = "SESSIONHA_TABLE"
	OpsTopicARN    = "SESSIONHA_OPS_TOPIC_ARN"
	QueryTopicARN  = "SESSIONHA_QUERY_TOPIC_ARN"
	ReplyTopicARN  = "SESSIONHA_REPLY_TOPIC_ARN"
	NoticeTopicARN = "SESSIONHA_NOTICE_TOPIC_ARN"
	// NoticeTopicARNs lists every site's notice topic, this site's first, comma-separated
	// (topology.NoticeTopicsEnvVar): an instance subscribes its queue to all of them. Not
	// in Required: a client without it hears its own site's notice topic only.
	NoticeTopicARNs = "SESSIONHA_NOTICE_TOPIC_ARNS"
	// LifecycleTopicARN is the site's lifecycle topic (client.Config.LifecycleTopicARN,
	// and where operators subscribe for every session's events). Not in Required: stacks
	// deployed before it was added still give a whole env file.
	LifecycleTopicARN = "SESSIONHA_LIFECYCLE_TOPIC_ARN"
	// AuthPolicyARN is the managed policy to attach to the auth servers' role. Clients
	// ignore it; it is in the env file so that scripts can attach it.
	AuthPolicyARN = "SESSIONHA_AUTH_POLICY_ARN"
	// AuthBusPolicyARN is the managed policy for bus-only auth servers (ReadPath bus):
	// the same without table access. Not in Required: stacks deployed before it was
	// added still give a whole env file.
	AuthBusPolicyARN = "SESSIONHA_AUTH_BUS_POLICY_ARN"
	// Region is the site's region: the SDK's own variable, as in the local site.env.
	Region = "AWS_REGION"
	// SealKMSKeyARN is the site's seal key (topology.SealKey.EnvVar), which unwraps the
	// data keys of SESSIONHA_SEAL_KMS_KEYS. Not in Required: stacks deployed before it was
	// added still give a whole env file. Alone it turns nothing on: the env file gets
	// SESSIONHA_SEAL_KMS_KEYS from sessionctl seal-key new (see the README).
	SealKMSKeyARN = "SESSIONHA_SEAL_KMS_KEY_ARN"
)

// Required lists the variables every site stack outputs.
var Required = []string{Site, Table, OpsTopicARN, QueryTopicARN, ReplyTopicARN, NoticeTopicARN, AuthPolicyARN, Region}

// ClientDefaults are the client settings the local site.env carries beside the
// resources' names; the env file for an AWS site carries the same, so that one file
// configures a client in both places. Each instance still sets SESSIONHA_INSTANCE_ID.
var ClientDefaults = map[string]string{
	"SESSIONHA_CLUSTER":     "default",
	"SESSIONHA_PERSISTENCE": "ha",
	"SESSIONHA_FREQUENCY":   "web-method",
	"SESSIONHA_SCOPE":       "session",
	"SESSIONHA_READ_PATH":   "direct",
	"SESSIONHA_MAX_WAIT":    "5s",
}

// StackName is the CloudFormation stack (and CDK stack id) of a site: what `cdk deploy`
// takes and what the outputs file is keyed by.
func StackName(site string) string { return "sessionha-" + site }

// LogicalID is the output id for an env variable: CloudFormation ids are alphanumeric,
// so SESSIONHA_OPS_TOPIC_ARN becomes SessionhaOpsTopicArn.
func LogicalID(envVar string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(strings.ToLower(envVar), "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// EnvVar is LogicalID's inverse: SessionhaOpsTopicArn becomes SESSIONHA_OPS_TOPIC_ARN.
func EnvVar(logicalID string) string {
	var b strings.Builder
	for i, r := range logicalID {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// EnvFile reads a `cdk deploy --outputs-file` document (stack name -> output id ->
// value) and returns the env file of the given site as sorted KEY=value lines. With site
// "" the document must hold exactly one sessionha stack.
func EnvFile(outputsJSON []byte, site string) ([]string, error) {
	var doc map[string]map[string]string
	if err := json.Unmarshal(outputsJSON, &doc); err != nil {
		return nil, fmt.Errorf("outputs file: %w", err)
	}
	var stacks []string
	for name := range doc {
		if strings.HasPrefix(name, StackName("")) {
			stacks = append(stacks, name)
		}
	}
	slices.Sort(stacks)
	stack := StackName(site)
	if site == "" {
		if len(stacks) != 1 {
			return nil, fmt.Errorf("outputs file holds the stacks %v: name the site with -site", stacks)
		}
		stack = stacks[0]
	}
	outs, ok := doc[stack]
	if !ok {
		return nil, fmt.Errorf("outputs file has no stack %s (it has %v)", stack, stacks)
	}
	env := maps.Clone(ClientDefaults)
	for id, v := range outs {
		if name := EnvVar(id); name == Region || strings.HasPrefix(name, "SESSIONHA_") {
			env[name] = v
		}
	}
	var missing []string
	for _, name := range Required {
		if env[name] == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("stack %s does not output %v (deployed from an older app?)", stack, missing)
	}
	lines := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		lines = append(lines, k+"="+env[k])
	}
	return lines, nil
}
