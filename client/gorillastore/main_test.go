package gorillastore_test

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/site"
)

// theSite is one local site for every test of the package.
var theSite *site.Site

func TestMain(m *testing.M) {
	os.Exit(localtest.RunWithSite(m, nil, func(s *site.Site) { theSite = s }))
}

// openStore opens a client store on the site as instance id.
func openStore(t *testing.T, id string) *client.Store {
	t.Helper()
	store, err := client.Open(context.Background(), client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		NoticeTopicARN: theSite.Outputs.TopicARNs[topology.TopicNotice],
		InstanceID:     id, AWS: &theSite.AWS, JournalDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// memoryStore opens an in-process store, for what needs no second instance.
func memoryStore(t *testing.T, scope client.Scope) *client.Store {
	t.Helper()
	store, err := client.Open(context.Background(), client.Config{Persistence: client.PersistenceMemory, Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}
