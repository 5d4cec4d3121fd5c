package scsstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/scsstore"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
)

// rawItem reads the item of a session id (or scs token) with a GetItem of its own,
// strongly consistent, as DynamoDB holds it; nil if there is none.
func rawItem(t *testing.T, id string) map[string]types.AttributeValue {
	t.Helper()
	out, err := theSite.DynamoDBClient().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(theSite.Outputs.Table),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: record.Key("default", events.HashID(id))}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

// str is a string attribute of a raw item, and whether it is there as a string.
func str(m map[string]types.AttributeValue, name string) (string, bool) {
	v, ok := m[name].(*types.AttributeValueMemberS)
	if !ok {
		return "", false
	}
	return v.Value, true
}

// scs has no user: its sessions carry no principal and stay out of the per-user index
// (no index key at all), rather than all sharing one key, a hot partition of the index
// for the whole site. Sessions with a principal stay in it, and listing a user, or any
// name, never returns scs sessions.
func TestSessionsWithoutPrincipalStayOutOfTheIndex(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, "index-a")
	st := scsstore.New(store)
	var tokens []string
	for range 3 {
		tok := randomToken()
		if err := st.CommitCtx(ctx, tok, []byte("data"), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	user := "ursula-" + randomToken()[:8]
	sess, err := store.Create(ctx, client.NewSession{Principal: user})
	if err != nil {
		t.Fatal(err)
	}

	for _, tok := range tokens {
		var m map[string]types.AttributeValue
		eventually(t, "the scs session reaches the table", func() (bool, string) {
			m = rawItem(t, tok)
			st, _ := str(m, "st")
			return st == string(record.Active), fmt.Sprintf("state %q", st)
		})
		if upk, ok := m["upk"]; ok {
			t.Errorf("an scs session carries the per-user index key %v; want none", upk)
		}
		if it := item(t, tok); it.Principal != "" {
			t.Errorf("an scs session is stored with principal %q; want none", it.Principal)
		}
	}
	var m map[string]types.AttributeValue
	eventually(t, "the user's session reaches the table", func() (bool, string) {
		m = rawItem(t, sess.ID())
		return m != nil, "no item"
	})
	if upk, _ := str(m, "upk"); upk != "default#"+user {
		t.Errorf("a session with a principal has index key %q, want %q", upk, "default#"+user)
	}

	eventually(t, "the user's session is listed", func() (bool, string) {
		l, err := store.List(ctx, user)
		return err == nil && len(l) == 1 && l[0].Handle == client.Handle(sess.ID()), fmt.Sprintf("%+v %v", l, err)
	})
	// No name lists the scs sessions: not the one the adapter used to give them all.
	for _, name := range []string{"scs", user} {
		l, err := store.List(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range l {
			for _, tok := range tokens {
				if info.Handle == client.Handle(tok) {
					t.Errorf("List(%q) returns an scs session", name)
				}
			}
		}
	}
	if _, err := store.List(ctx, ""); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("List without a principal: %v, want ErrInvalid", err)
	}
	// Still sessions like any other: found, and destroyed by a logout.
	if b, found, err := st.FindCtx(ctx, tokens[0]); !found || err != nil || string(b) != "data" {
		t.Errorf("Find: %q %v %v", b, found, err)
	}
	if err := st.DeleteCtx(ctx, tokens[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted scs session is a tombstone", func() (bool, string) {
		st, _ := str(rawItem(t, tokens[0]), "st")
		return st == string(record.Destroyed), fmt.Sprintf("state %q", st)
	})
}

// A session without a principal crosses the bus like any other: an instance that reads
// over the bus (the sessionquery function's reply carries the session) finds an scs
// session another instance wrote.
func TestBusReadWithoutPrincipal(t *testing.T) {
	ctx := context.Background()
	writer := scsstore.New(openStore(t, "busread-a"))
	reader := scsstore.New(openStore(t, "busread-b", func(c *client.Config) {
		c.ReadPath = client.ReadBus
		c.QueryTopicARN = theSite.Outputs.TopicARNs[topology.TopicQuery]
		c.ReplyTopicARN = theSite.Outputs.TopicARNs[topology.TopicReply]
	}))
	tok := randomToken()
	if err := writer.CommitCtx(ctx, tok, []byte("over the bus"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bus reader finds the scs session", func() (bool, string) {
		b, found, err := reader.FindCtx(ctx, tok)
		return found && string(b) == "over the bus", fmt.Sprintf("%q %v %v", b, found, err)
	})
}
