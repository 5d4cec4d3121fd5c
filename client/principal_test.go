package client_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/sessionha/sessionha/client"
)

// A session without a principal is for SaveAs only (adapters such as scsstore, whose
// framework knows no user), and never with an SSO group; it is stored and read back as
// any other, across a restart with persistence file.
func TestSessionWithoutPrincipal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := openFile(t, client.Config{Dir: dir})
	var b [32]byte
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])

	if _, err := store.Create(ctx, client.NewSession{}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Create without a principal: %v, want ErrInvalid", err)
	}
	if _, err := store.SaveAs(ctx, id, client.NewSession{Group: "sso-1"}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("SaveAs of a group without a principal: %v, want ErrInvalid", err)
	}
	if _, err := store.SaveAs(ctx, id, client.NewSession{Attrs: map[string][]byte{"scs": []byte("data")}}); err != nil {
		t.Fatalf("SaveAs without a principal: %v", err)
	}
	store.Close()
	again := openFile(t, client.Config{Dir: dir})
	got, err := again.Load(ctx, id)
	if err != nil {
		t.Fatalf("Load after a restart: %v", err)
	}
	if v, _ := got.Get("scs"); got.Principal() != "" || string(v) != "data" {
		t.Errorf("loaded principal %q, scs %q; want none and data", got.Principal(), v)
	}
	if err := again.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Load(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("after Destroy: %v", err)
	}
}
