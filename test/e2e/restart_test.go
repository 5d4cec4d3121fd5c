package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/local/edge"
)

// TestRestartUnderAWSRules: an auth server process that reads over the bus and takes
// destroy notices is stopped (SIGKILL, and a clean Close) and started again at once with
// its instance id, under the AWS rules the edge enforces as AWS does: a queue name can be
// used again only 60 s after its deletion, one purge per 60 s, and a purge eats what
// reaches the queue in the 60 s after it. The new incarnation opens at once; every bus
// read it makes is answered, the first one included; the notice of a logout made while
// it was down reaches it, and so does one made after it is back.
func TestRestartUnderAWSRules(t *testing.T) {
	theSite.Edge.EnforceAWSRules(true) // the local stack's default; said here, since the test is about them
	for _, how := range []string{"sigkill", "close"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			w := openHA(t, "restart-writer-"+randomSuffix(), nil)
			ids := make([]string, 4)
			for i := range ids {
				s, err := w.Create(ctx, client.NewSession{Principal: "hana", Attrs: map[string][]byte{"n": []byte(fmt.Sprint(i))}})
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = s.ID()
			}
			for _, id := range ids {
				eventually(t, "the session is in the table", func() (bool, string) { return tableItem(t, id) != nil, "not yet" })
			}
			name := "restart-" + how + "-" + randomSuffix()
			env := []string{"SESSIONHA_READ_PATH=bus"} // and notices: scope site, the default with a notice topic
			a := startInstanceWith(t, name, env...)
			if r := a.do(Command{Cmd: "load", ID: ids[0]}); !r.OK {
				t.Fatalf("bus read before the restart: %s", describe(r))
			}

			if how == "sigkill" {
				a.kill()
			} else {
				a.stop()
			}
			if err := w.Destroy(ctx, ids[1]); err != nil { // while the instance is down
				t.Fatal(err)
			}
			a = startInstanceWith(t, name, env...) // fails here if Open cannot make its queue

			// At once: a purge at Open would eat these replies (sent within seconds of it).
			for _, id := range []string{ids[0], ids[2], ids[3]} {
				if r := a.do(Command{Cmd: "load", ID: id}); !r.OK {
					t.Fatalf("bus read after the restart: %s (a reply lost, or no queue)", describe(r))
				}
			}
			if r := a.do(Command{Cmd: "load", ID: ids[1]}); !r.NotFound {
				t.Fatalf("the session logged out while the instance was down: %s, want not found", describe(r))
			}
			eventually(t, "the notice of the logout made while the instance was down reaches it", func() (bool, string) {
				r := a.do(Command{Cmd: "stats"})
				return r.Notices >= 1, describe(r)
			})
			if err := w.Destroy(ctx, ids[2]); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the notice of a logout made after the restart reaches it", func() (bool, string) {
				r := a.do(Command{Cmd: "stats"})
				return r.Notices >= 2, describe(r)
			})
			// Three reads at least (the fourth may be refused by the notice, without a query).
			if r := a.do(Command{Cmd: "stats"}); r.BusTimeouts != 0 || r.BusQueries < 3 {
				t.Errorf("after the restart: %d bus queries, %d timed out; want every one of at least 3 answered", r.BusQueries, r.BusTimeouts)
			}
			a.stop()
		})
	}
}

// TestOpenWithSQSDown: an instance that takes notices opens while SQS is out of reach (SNS
// answers): it opens at once in failover mode and publishes; its queue is made in the
// background once SQS is back, and notices reach it from then on.
func TestOpenWithSQSDown(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(func() { theSite.Edge.SetFault("sqs", edge.FaultNone) })
	w := openHA(t, "sqsdown-writer-"+randomSuffix(), nil)
	theSite.Edge.SetFault("sqs", edge.FaultRefuse)
	a := openHA(t, "sqsdown-"+randomSuffix(), nil)
	if m := a.Mode(); m != client.ModeFailover {
		t.Fatalf("mode %s after Open with SQS down, want failover: publishing needs SNS only", m)
	}
	s, err := a.Create(ctx, client.NewSession{Principal: "lena"})
	if err != nil {
		t.Fatal(err)
	}
	if m := a.Mode(); m != client.ModeFailover {
		t.Fatalf("mode %s after a create with SQS down, want failover", m)
	}
	theSite.Edge.SetFault("sqs", edge.FaultNone)
	eventually(t, "the session reaches the table", func() (bool, string) { return tableItem(t, s.ID()) != nil, "not yet" })
	// Notices reach the instance once its queue is made: each round logs out a new session.
	eventually(t, "a notice reaches the instance once SQS is back", func() (bool, string) {
		if a.Stats().Notices > 0 {
			return true, ""
		}
		other, err := w.Create(ctx, client.NewSession{Principal: "lena"})
		if err == nil {
			err = w.Destroy(ctx, other.ID())
		}
		return false, fmt.Sprintf("no notice yet (%v)", err)
	})
}
