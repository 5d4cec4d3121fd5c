package scsstore_test

import (
	"context"
	"os"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/site"
)

// theSite is one local site for every test of the package.
var theSite *site.Site

func TestMain(m *testing.M) {
	os.Exit(localtest.RunWithSite(m, nil, func(s *site.Site) { theSite = s }))
}

// openStore opens a client store on the site as instance id; opts change its
// configuration.
func openStore(t *testing.T, id string, opts ...func(*client.Config)) *client.Store {
	t.Helper()
	cfg := client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		InstanceID: id, AWS: &theSite.AWS, JournalDir: t.TempDir(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	store, err := client.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// item reads the session stored under token straight from the table (nil if none).
func item(t *testing.T, token string) *record.Item {
	t.Helper()
	tbl := record.Table{DB: theSite.DynamoDBClient(), Name: theSite.Outputs.Table}
	it, err := tbl.Get(context.Background(), record.Key("default", events.HashID(token)))
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	localtest.Eventually(t, what, cond)
}
