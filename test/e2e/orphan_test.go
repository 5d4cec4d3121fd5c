package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
)

// TestOrphanDelta: a delta whose create has not arrived never makes a readable session,
// what it leaves in the table expires with the session, and once the create arrives the
// result is as if delivery had been in order.
func TestOrphanDelta(t *testing.T) {
	ctx := context.Background()
	bus := sns.NewFromConfig(theSite.AWS)
	topic := theSite.Outputs.TopicARNs[topology.TopicOps]
	publish := func(op *events.SessionOp) {
		t.Helper()
		b, err := events.EncodeSessionOp(op)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String(string(b))}); err != nil {
			t.Fatal(err)
		}
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	now := time.Now().UnixMilli()
	meta := events.Session{Principal: "dave", Created: now, LastAccess: now, MaxIdle: 600, MaxLife: 3600}
	base := events.SessionOp{V: events.SchemaVersion, Cluster: "default", ID: events.HashID(id), Site: "local", At: now}
	hlc := func(n uint64) string { return fmt.Sprintf("%016x", uint64(now)<<16+n) }

	create := base
	create.Op, create.Version, create.Writer = events.OpCreate, hlc(1), "auth-x"
	s := meta
	s.Attrs = map[string][]byte{"cart": []byte("[]"), "lang": []byte("en")}
	create.Session = &s

	delta := base
	delta.Op, delta.Version, delta.Writer = events.OpDelta, hlc(2), "auth-y"
	dm := meta
	dm.LastAccess = now + 1000
	delta.Session = &dm
	delta.Set = map[string][]byte{"cart": []byte(`["pen"]`)}
	delta.Remove = []string{"lang"}

	publish(&delta) // the create is late
	eventually(t, "the orphan delta is stored", func() (bool, string) {
		it := rawItem(t, id)
		return it != nil, "no item"
	})
	it := rawItem(t, id)
	if st := it["st"].(*ddbtypes.AttributeValueMemberS).Value; st != "pending" {
		t.Fatalf("orphan delta stored with state %q, want pending", st)
	}
	exp := it["expiresAt"].(*ddbtypes.AttributeValueMemberN).Value
	// Kept a grace past its deadline, so that a late op finds it over rather than gone.
	if want := fmt.Sprint((now + 1000 + 600*1000 + record.DefaultGrace.Milliseconds() + 999) / 1000); exp != want {
		t.Errorf("orphan's expiresAt %s, want %s (last access + max idle + the grace): it must expire by itself", exp, want)
	}
	a := startInstance(t, "auth-orphan")
	if r := a.do(Command{Cmd: "load", ID: id}); !r.NotFound {
		t.Fatalf("an orphan delta made a readable session: %s", describe(r))
	}

	publish(&create)
	want := map[string]string{"cart": `["pen"]`} // create, then the delta: lang removed
	eventually(t, "after the late create the session is as if delivered in order", func() (bool, string) {
		r := a.do(Command{Cmd: "load", ID: id})
		return r.OK && r.Principal == "dave" && maps.Equal(r.Attrs, want), describe(r)
	})
}
