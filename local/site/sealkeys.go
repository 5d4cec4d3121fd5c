package site

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/edge"
	localkms "github.com/sessionha/sessionha/local/kms"
)

// Sealing on the local stack: a KMS stand-in per region behind the edge, each site's
// seal key in it (provision.SealKey, as the CDK app makes it on AWS), and one data key
// per run, wrapped by every site's seal key as `sessionctl seal-key new` does it. A key
// per run rather than a fixed one: nothing a run stores outlives it (the tables and
// queues are in memory), so a fixed key would buy nothing but a key in the repository
// that someone might copy; and its id, "local-<random>", makes a journal left by an
// earlier run say which key it needs instead of failing as changed.
//
// The key is made here with the SDK's KMS client, as client/kmskeys.NewKey makes one, in
// the form its Parse reads (this package does not import the client: the tests of the
// packages the client imports start sites); the tests that configure clients from
// SealEnv, and localsite's, check that the client unwraps it.

// Variables of SealEnv (client.EnvSealKMSKeys, EnvSealKMSKeyARN).
const (
	envSealKMSKeys = "SESSIONHA_SEAL_KMS_KEYS"
)

// startKMS starts each region's KMS stand-in and returns the edge's routes to them.
func (st *Stack) startKMS(regions []string) ([]edge.Route, error) {
	var routes []edge.Route
	for _, region := range regions {
		srv := localkms.New(region)
		h, err := srv.Listen("127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kms stand-in: %w", err)
		}
		st.KMS[region], st.kmsServers[region] = srv, h
		routes = append(routes, edge.Route{Service: "kms", Region: region, URL: h.URL()})
	}
	return routes, nil
}

// makeSealKeys makes the run's data key, wrapped by every site's seal key: the entry
// "id:region=blob/region=blob" of SESSIONHA_SEAL_KMS_KEYS.
func (st *Stack) makeSealKeys(ctx context.Context) error {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := "local-" + hex.EncodeToString(b[:])
	ec := map[string]string{topology.SealContextPurposeKey: topology.SealContextPurpose, topology.SealContextKeyID: id}
	var (
		plain []byte
		parts []string
		seen  = map[string]bool{}
	)
	defer func() { clear(plain) }()
	for _, s := range st.Sites {
		region := s.AWS.Region
		if seen[region] {
			// An entry has one blob per region: sites that share a region unwrap with the
			// seal key of its first site (SealEnv names it).
			continue
		}
		seen[region] = true
		st.sealARNs[region] = s.SealKeyARN
		k := kms.NewFromConfig(st.awsConfig(region))
		var blob []byte
		if plain == nil {
			out, err := k.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(s.SealKeyARN), KeySpec: kmstypes.DataKeySpecAes256, EncryptionContext: ec})
			if err != nil {
				return fmt.Errorf("seal key: GenerateDataKey: %w", err)
			}
			plain, blob = out.Plaintext, out.CiphertextBlob
		} else {
			out, err := k.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(s.SealKeyARN), Plaintext: plain, EncryptionContext: ec})
			if err != nil {
				return fmt.Errorf("seal key: Encrypt: %w", err)
			}
			blob = out.CiphertextBlob
		}
		parts = append(parts, region+"="+base64.RawURLEncoding.EncodeToString(blob))
	}
	st.SealKeys = id + ":" + strings.Join(parts, "/")
	return nil
}

// SealEnv is what turns sealing on for a client of the site: its seal key and the run's
// wrapped data key (client/kmskeys reads them), as KEY=value lines. Env includes them
// when the stack seals (StackOptions.SealValues).
func (s *Site) SealEnv() []string {
	return []string{s.Topology.SealKey.EnvVar + "=" + s.Stack.sealARNs[s.AWS.Region], envSealKMSKeys + "=" + s.Stack.SealKeys}
}
