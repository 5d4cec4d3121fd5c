package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/infra/outputs"
	"github.com/sessionha/sessionha/infra/topology"
)

// keyIDOf is the logical id of the stack's KMS key made with construct id prefix
// ("TopicKey", "SealKey").
func keyIDOf(t *testing.T, tpl map[string]any, prefix string) string {
	t.Helper()
	for _, r := range resources(tpl, "AWS::KMS::Key") {
		if strings.HasPrefix(r.ID, prefix) {
			return r.ID
		}
	}
	t.Fatalf("no KMS key %s*", prefix)
	return ""
}

// mentions reports whether a statement's resources refer to the logical id.
func mentions(st map[string]any, id string) bool {
	return slices.ContainsFunc(list(st["Resource"]), func(r any) bool { return strings.Contains(flat(r), "<"+id) })
}

// TestSealKey: each site has a seal key of its own (rotated, kept when the stack goes,
// under the topology's alias, its ARN an output); the auth servers' policies, both, may
// only decrypt with it, and only data keys made for sealing; no function may use it:
// the functions never see a value in clear.
func TestSealKey(t *testing.T) {
	for name, tpl := range tpls {
		topo := topoOf(t, siteNamed(name))
		id := keyIDOf(t, tpl, "SealKey")
		key := byID(tpl, id)
		if key.Props["EnableKeyRotation"] != true || key.Raw["DeletionPolicy"] != "Retain" || key.Raw["UpdateReplacePolicy"] != "Retain" {
			t.Errorf("%s: seal key rotation %v, deletion %v, replace %v: want rotated and retained", name,
				key.Props["EnableKeyRotation"], key.Raw["DeletionPolicy"], key.Raw["UpdateReplacePolicy"])
		}
		aliased := false
		for _, a := range resources(tpl, "AWS::KMS::Alias") {
			if str(a.Props["AliasName"]) == topo.SealKey.Alias && refID(a.Props["TargetKeyId"]) == id {
				aliased = true
			}
		}
		if !aliased {
			t.Errorf("%s: no alias %s for the seal key", name, topo.SealKey.Alias)
		}
		if topo.SealKey.EnvVar != outputs.SealKMSKeyARN {
			t.Errorf("topology names the seal key's variable %s, outputs %s", topo.SealKey.EnvVar, outputs.SealKMSKeyARN)
		}

		// The key policy names the account only (IAM policies grant from there), never a
		// function's role.
		for _, st := range statements(key.Props["KeyPolicy"]) {
			p, _ := st["Principal"].(map[string]any)
			for _, a := range list(p["AWS"]) {
				if !strings.Contains(flat(a), ":root") {
					t.Errorf("%s: the seal key's policy grants %v to %s", name, st["Action"], flat(a))
				}
			}
		}
		// No function role may use it.
		for _, p := range resources(tpl, "AWS::IAM::Policy") {
			for _, st := range statements(p.Props["PolicyDocument"]) {
				if mentions(st, id) {
					t.Errorf("%s: %s (roles %v) grants %v on the seal key", name, p.ID, p.Props["Roles"], st["Action"])
				}
			}
		}
		// Both auth server policies: kms:Decrypt alone, on the purpose condition.
		for _, p := range resources(tpl, "AWS::IAM::ManagedPolicy") {
			var found []map[string]any
			for _, st := range statements(p.Props["PolicyDocument"]) {
				if mentions(st, id) {
					found = append(found, st)
				}
			}
			if len(found) != 1 {
				t.Errorf("%s: %s: %d statements on the seal key, want 1", name, p.ID, len(found))
				continue
			}
			st := found[0]
			cond, _ := st["Condition"].(map[string]any)
			eq, _ := cond["StringEquals"].(map[string]any)
			if !slices.Equal(list(st["Action"]), []any{"kms:Decrypt"}) || len(cond) != 1 || len(eq) != 1 ||
				str(eq["kms:EncryptionContext:"+topology.SealContextPurposeKey]) != topology.SealContextPurpose {
				t.Errorf("%s: %s grants %v on the seal key on condition %v; want kms:Decrypt alone, on %s = %s", name, p.ID,
					st["Action"], cond, "kms:EncryptionContext:"+topology.SealContextPurposeKey, topology.SealContextPurpose)
			}
		}
	}
}
