package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ownerSections are the report's sections on owner reads, applied saves, the cost of
// each action and the peer.
func (r *report) ownerSections() string {
	var b strings.Builder
	o := r.Owner
	fmt.Fprintf(&b, `## Owner reads: how fast ownership moves

An instance serves the sessions it owns from memory. When another instance writes one (a
failover), the sessionop function, which merges the op into the stored item, publishes a
superseded notice to the old owner's queue just before its write; the old owner's next Load
reads. %d takeovers, %d at once: instance A creates a session (and owns it), instance B loads
it and saves a change (publish only); from the start of B's Save, one goroutine reads the
table until the change is there (applied), another calls A's Load until A returns B's change.

| from | p50 | p90 | p99 | max |
|---|---|---|---|---|
| B's Save → applied in the table | %s | %s | %s | %s |
| B's Save → A serves B's change | %s | %s | %s | %s |
| applied → A serves B's change: **the bound** (negative: A stopped before the write landed) | %s | %s | %s | %s |

So after another instance's write is applied, the old owner stops serving its copy within
%s at p99 (%s at p50) here: the notice's fan-out to the owner's queue and one receive, less
the write's own time, since the notice goes first.

`, len(o.Dropped), r.LatConcurrency,
		ms(o.Applied.pct(50)), ms(o.Applied.pct(90)), ms(o.Applied.pct(99)), ms(o.Applied.pct(100)),
		ms(o.Dropped.pct(50)), ms(o.Dropped.pct(90)), ms(o.Dropped.pct(99)), ms(o.Dropped.pct(100)),
		ms(o.AfterApp.pct(50)), ms(o.AfterApp.pct(90)), ms(o.AfterApp.pct(99)), ms(o.AfterApp.pct(100)),
		ms(o.AfterApp.pct(99)), ms(o.AfterApp.pct(50)))

	fmt.Fprintf(&b, `## Save that waits until applied

%d saves of each kind, %d at once, interleaved on sessions instance A owns: the publish-only
Save (web-method) returns once SNS took the change; SaveApplied (SaveWait applied, per store or
per call) then reads the item (strongly consistent BatchGetItem of it and its logout item, first after 5 ms, then backing off
to 50 ms) until its version is the change's or newer.

| | p50 | p90 | p99 |
|---|---|---|---|
| Save (publish only) | %s | %s | %s |
| SaveApplied | %s | %s | %s |
| the price of waiting (p50 difference) | %s | | |

`, r.SavePub.N, r.SavePub.Conc, ms(r.SavePub.Lat.pct(50)), ms(r.SavePub.Lat.pct(90)), ms(r.SavePub.Lat.pct(99)),
		ms(r.SaveApplied.Lat.pct(50)), ms(r.SaveApplied.Lat.pct(90)), ms(r.SaveApplied.Lat.pct(99)),
		ms(r.SaveApplied.Lat.pct(50)-r.SavePub.Lat.pct(50)))

	p := r.Prices.Prices
	fmt.Fprintf(&b, `## What each action costs on AWS

Each action run %d times (4 at once) on sessions of its own; the calls it set off counted at
the edge by service and operation until the edge was quiet for half a second (the functions'
calls, and other instances' receives of notices, included; empty receives left out: they are
long polls, about three a minute per poller whatever the traffic, the fixed cost of a queue),
and the functions' invocations and billed duration by the Lambda runner. Dollars per million
actions at AWS's on-demand prices for %s, checked %s (test/bench/prices.json: SNS $%.2f per
million publishes of 64 KB, deliveries to SQS free; SQS $%.2f per million requests of 64 KB;
Lambda $%.2f per million invocations and $%.10f per GB-second on Arm at %d MB; DynamoDB $%.3f
per million write and $%.3f per million read request units), for the reference item as
measured above (%d B: a strongly consistent read is %d RRU, a write %d WRU, and its per-user
index entry of %d B one more). Sources: %s. Free tiers are left out. Durations are this
machine's (amd64, local emulators), not Lambda's.

The comparison is a store that reads and writes DynamoDB directly on every request (a
bench-only sketch: GetItem per Load, PutItem per Create and Save, DeleteItem per Destroy, the
same item in the same table).

| action | sessionha: AWS calls per action | sessionha per million | direct store: calls per action | direct store per million | why |
|---|---|---|---|---|---|
`, r.Costs[0].Sessionha.Actions, r.Prices.Region, r.Prices.Checked, p.SNSPublish, p.SQSRequest, p.LambdaReq, p.LambdaGBs, lambdaMemoryMB,
		p.DynamoDBWRU, p.DynamoDBRRU, r.Bytes.Item, ceilDiv(r.Bytes.Item, 4096), ceilDiv(r.Bytes.Item, 1024), r.Bytes.Index, sources(r.Prices))
	for _, a := range r.Costs {
		ha, by := a.Sessionha.dollars(r.Prices, r.Bytes)
		dcalls, dcost := "-", "-"
		if a.HaveDirect {
			d, _ := a.Direct.dollars(r.Prices, r.Bytes)
			dcalls, dcost = a.Direct.describe(), usd(d)
		}
		fmt.Fprintf(&b, "| %s | %s | %s%s | %s | %s | %s |\n", a.Name, a.Sessionha.describe(), usd(ha), breakdown(by), dcalls, dcost, a.Why)
	}
	if ha, direct, ok := r.cost("save on the owner"); ok {
		rd, rdd, _ := r.cost("request on an owned")
		fmt.Fprintf(&b, `
Why a save costs sessionha more than the direct store (%s against %s per million): the same
conditional write of the item and its index entry, plus an SNS publish, the queue's receive and
delete (shared by a batch), a share of a Lambda invocation, and the function's strongly
consistent read of the item before it merges (read-merge-conditional-put keeps out-of-order and
duplicate deliveries from losing changes). Why a session costs it less all the same: every
request on an owned session is %s per million against the direct store's %s, so with more than
about %.1f requests per save, sessionha is the cheaper of the two; and the old owner's notice,
the takeover's only extra, is paid once per failover, not per request.

`, usd(ha), usd(direct), usd(rd), usd(rdd), (ha-direct)/max(rdd-rd, 1e-12))
	}

	pr := r.Peer
	fmt.Fprintf(&b, `## The peer: scs with Redis

alexedwards/scs v2 with its Redis store (goredisstore on go-redis v9) against redis-server %s
from Debian, started by the bench on 127.0.0.1 and stopped by its PID; the reference session
(20 attributes, 2 KB) in both, %d goroutines. scs's Find is SessionManager.Load (GET and
decoding), its Commit the encoding and SET with the expiry. Each sessionha figure is measured
interleaved with scs's in one run, so that both meet the same load.

| sessionha | p50 | p99 | scs + Redis | p50 | p99 | ratio of p99s |
|---|---|---|---|---|---|---|
| owned Load (from memory) | %s | %s | Find | %s | %s | %s |
| failover Load (direct) | %s | %s | Find | %s | %s | %s |
| Save (publish only) | %s | %s | Commit | %s | %s | %s |

What a Redis session store does not do, and these figures pay for: a session survives the loss
of any instance, and of Redis's role (no single server holds it); a logout is final everywhere,
and a save is kept through an outage of the bus (degraded mode journals it).

`, pr.Redis, pr.Owned.Conc,
		ms(pr.Owned.Lat.pct(50)), ms(pr.Owned.Lat.pct(99)), ms(pr.FindWithOwned.Lat.pct(50)), ms(pr.FindWithOwned.Lat.pct(99)), ratio(float64(pr.Owned.Lat.pct(99)), float64(pr.FindWithOwned.Lat.pct(99))),
		ms(pr.Failover.Lat.pct(50)), ms(pr.Failover.Lat.pct(99)), ms(pr.FindWithFail.Lat.pct(50)), ms(pr.FindWithFail.Lat.pct(99)), ratio(float64(pr.Failover.Lat.pct(99)), float64(pr.FindWithFail.Lat.pct(99))),
		ms(pr.Save.Lat.pct(50)), ms(pr.Save.Lat.pct(99)), ms(pr.Commit.Lat.pct(50)), ms(pr.Commit.Lat.pct(99)), ratio(float64(pr.Save.Lat.pct(99)), float64(pr.Commit.Lat.pct(99))))
	return b.String()
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func sources(p priceTable) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(p.Sources)) {
		s = append(s, k+" "+p.Sources[k])
	}
	return strings.Join(s, ", ")
}

func breakdown(by map[string]float64) string {
	if len(by) == 0 {
		return ""
	}
	var s []string
	for _, k := range slices.Sorted(maps.Keys(by)) {
		s = append(s, fmt.Sprintf("%s %.3f", k, by[k]))
	}
	return " (" + strings.Join(s, ", ") + ")"
}
