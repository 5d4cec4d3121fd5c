package site

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/kmskeys"
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

// makeSealKeys makes the run's data key, wrapped by every site's seal key.
func (st *Stack) makeSealKeys(ctx context.Context) error {
	var arns []string
	for _, s := range st.Sites {
		arns = append(arns, s.SealKeyARN)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	w, err := kmskeys.NewKey(ctx, "local-"+hex.EncodeToString(b[:]), arns, func(region string) kmskeys.API {
		return kms.NewFromConfig(st.awsConfig(region))
	})
	if err != nil {
		return fmt.Errorf("seal key: %w", err)
	}
	st.SealKeys = kmskeys.Format([]kmskeys.WrappedKey{w})
	return nil
}

// SealEnv is what turns sealing on for a client of the site: its seal key and the run's
// wrapped data key (client/kmskeys reads them), as KEY=value lines. Env includes them
// when the stack seals (StackOptions.SealValues).
func (s *Site) SealEnv() []string {
	return []string{client.EnvSealKMSKeyARN + "=" + s.SealKeyARN, client.EnvSealKMSKeys + "=" + s.Stack.SealKeys}
}
