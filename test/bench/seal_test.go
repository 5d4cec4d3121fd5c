package bench

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/kmskeys"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
)

// What sealing attribute values costs (issue 15): the CPU of sealing the reference
// session's values as a Save does and of opening them as a failover Load does, measured
// with testing.Benchmark on the client's own code; the Save and the failover Load through
// the local stack, sealed and in clear, interleaved so that both meet the same load; and
// the stored item's size.

type sealResult struct {
	KeyID                     string
	Seal, Open                testing.BenchmarkResult // per reference session
	SaveClear, SaveSealed     run                     // Save (web-method: published), interleaved
	LoadClear, LoadSealed     run                     // failover Load (direct), interleaved
	ItemClear, ItemSealed     int                     // item bytes of the reference session
	ValuesClear, ValuesSealed int                     // of which the "a" map
}

func (b *bencher) sealing(conc, n int) sealResult {
	// A key as on AWS: made with the site's seal key (GenerateDataKey), unwrapped at Open.
	w, err := kmskeys.NewKey(b.ctx, "k1", []string{theSite.SealKeyARN}, func(string) kmskeys.API { return kms.NewFromConfig(theSite.AWS) })
	if err != nil {
		b.t.Fatal(err)
	}
	src, err := kmskeys.Source([]kmskeys.WrappedKey{w}, theSite.SealKeyARN)
	if err != nil {
		b.t.Fatal(err)
	}
	ring, err := src.Keyring(b.ctx, &theSite.AWS)
	if err != nil {
		b.t.Fatal(err)
	}
	res := sealResult{KeyID: w.ID}

	// The crypto alone, on the code paths the store takes: a whole session sealed (one key
	// derivation, 20 values), and opened.
	const id = "bench-seal-session-id-0000000000000000000000"
	attrs := refAttributes()
	sealed, err := ring.SealAll("default", id, attrs)
	if err != nil {
		b.t.Fatal(err)
	}
	res.Seal = testing.Benchmark(func(tb *testing.B) {
		tb.ReportAllocs()
		for tb.Loop() {
			if _, err := ring.SealAll("default", id, attrs); err != nil {
				tb.Fatal(err)
			}
		}
	})
	res.Open = testing.Benchmark(func(tb *testing.B) {
		tb.ReportAllocs()
		for tb.Loop() {
			if _, err := ring.OpenAll("default", id, sealed); err != nil {
				tb.Fatal(err)
			}
		}
	})

	// Through the stack: the same stores but for the keyring.
	open := func(name string, k *client.Keyring) *client.Store {
		s, err := client.Open(b.ctx, client.Config{
			Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
			NoticeTopicARN: theSite.Outputs.TopicARNs[topology.TopicNotice], InstanceID: name, Keyring: k,
			AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler), MaxSessions: 100000, JournalDir: b.t.TempDir(),
		})
		if err != nil {
			b.t.Fatal(err)
		}
		b.t.Cleanup(func() { s.Close() })
		return s
	}
	writers := []*client.Store{open("bench-seal-clear-a", nil), open("bench-seal-sealed-a", ring)}
	readers := []*client.Store{open("bench-seal-clear-b", nil), open("bench-seal-sealed-b", ring)}
	sess := [2][]*client.Session{make([]*client.Session, n), make([]*client.Session, n)}
	for k := range 2 {
		for i := range n {
			s, err := writers[k].Create(b.ctx, client.NewSession{Principal: "sealer", Attrs: refAttributes()})
			if err != nil {
				b.t.Fatal(err)
			}
			sess[k][i] = s
		}
	}
	b.settle(300 * time.Millisecond)
	save := func(k int) func(i int) error {
		return func(i int) error {
			sess[k][i].Set("attr01", []byte(fmt.Sprint("s", i)))
			return writers[k].Save(b.ctx, sess[k][i])
		}
	}
	saves := b.interleaved(conc, n, []int{1, 1}, save(0), save(1))
	res.SaveClear, res.SaveSealed = saves[0], saves[1]
	b.settle(300 * time.Millisecond)
	load := func(k int) func(i int) error {
		return func(i int) error {
			_, err := readers[k].Load(b.ctx, sess[k][i].ID())
			return err
		}
	}
	loads := b.interleaved(conc, n, []int{1, 1}, load(0), load(1))
	res.LoadClear, res.LoadSealed = loads[0], loads[1]

	res.ItemClear, res.ValuesClear = b.itemSize(sess[0][0].ID())
	res.ItemSealed, res.ValuesSealed = b.itemSize(sess[1][0].ID())
	b.t.Logf("sealing: seal %s/session (%d allocs), open %s/session (%d allocs); Save p50 %s clear, %s sealed; failover Load p50 %s clear, %s sealed; item %d B clear, %d B sealed",
		time.Duration(res.Seal.NsPerOp()), res.Seal.AllocsPerOp(), time.Duration(res.Open.NsPerOp()), res.Open.AllocsPerOp(),
		res.SaveClear.Lat.pct(50), res.SaveSealed.Lat.pct(50), res.LoadClear.Lat.pct(50), res.LoadSealed.Lat.pct(50), res.ItemClear, res.ItemSealed)
	return res
}

// itemSize is a stored session's item size by DynamoDB's rules, and its values' part.
func (b *bencher) itemSize(id string) (item, values int) {
	var got map[string]ddbtypes.AttributeValue
	deadline := time.Now().Add(30 * time.Second)
	for len(got) == 0 {
		out, err := b.db.GetItem(b.ctx, &dynamodb.GetItemInput{TableName: aws.String(b.table), ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: record.Key("default", events.HashID(id))}}})
		if err != nil || time.Now().After(deadline) {
			b.t.Fatalf("session not stored: %v", err)
		}
		got = out.Item
	}
	for name, v := range got {
		n := len(name) + record.ValueSize(v)
		item += n
		if name == "a" {
			values = n
		}
	}
	return item, values
}

func us(ns int64) string { return fmt.Sprintf("%.1f µs", float64(ns)/1e3) }

// sealRows are the table's rows on sealing.
func (r *report) sealRows() []row {
	s := r.Seal
	if s.Seal.N == 0 {
		return nil
	}
	sc, ss := s.SaveClear.Lat.pct(50), s.SaveSealed.Lat.pct(50)
	lc, ls := s.LoadClear.Lat.pct(50), s.LoadSealed.Lat.pct(50)
	return []row{
		{"sealing per Save: the reference session's 20 values sealed (CPU, one core)",
			us(s.Seal.NsPerOp()), "Save p50 in clear " + ms(sc), ratio(float64(s.Seal.NsPerOp()), float64(sc.Nanoseconds())),
			"≤ 0.05 × a Save", verdict(float64(s.Seal.NsPerOp()) <= 0.05*float64(sc.Nanoseconds()))},
		{"opening per failover Load: the 20 values opened (CPU, one core)",
			us(s.Open.NsPerOp()), "failover Load p50 in clear " + ms(lc), ratio(float64(s.Open.NsPerOp()), float64(lc.Nanoseconds())),
			"≤ 0.05 × a Load", verdict(float64(s.Open.NsPerOp()) <= 0.05*float64(lc.Nanoseconds()))},
		{fmt.Sprintf("Save p50, sealed (interleaved with the same in clear, by %d)", s.SaveSealed.Conc),
			ms(ss), "in clear " + ms(sc), ratio(float64(ss), float64(sc)), "-", "-"},
		{fmt.Sprintf("failover Load p50, sealed (interleaved with the same in clear, by %d)", s.LoadSealed.Conc),
			ms(ls), "in clear " + ms(lc), ratio(float64(ls), float64(lc)), "-", "-"},
		{fmt.Sprintf("bytes per stored reference session, sealed (key id %q: %d B more per value)", s.KeyID, client.SealOverhead(s.KeyID)),
			fmt.Sprintf("%d B", s.ItemSealed), fmt.Sprintf("in clear %d B", s.ItemClear), ratio(float64(s.ItemSealed), float64(s.ItemClear)),
			"≤ 1.5 × in clear (old rule: 10 KB)", verdict(float64(s.ItemSealed) <= 1.5*float64(s.ItemClear))},
	}
}

// sealSection is the report's section on sealing.
func (r *report) sealSection() string {
	s := r.Seal
	if s.Seal.N == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, `## Sealed attributes: what sealing costs

With a keyring, the client seals every attribute value before it leaves the process
(AES-256-GCM under a key derived per session with HKDF-SHA256, a fresh random nonce per
value, the session and the attribute name as associated data) and opens them when it reads
a session; the functions merge the bytes. The key here is made as on AWS (GenerateDataKey
under the site's seal key, in the local KMS stand-in) and unwrapped once at Open; no KMS
call after that.

| | per reference session (20 values, 2 KB) | allocations | bytes allocated |
|---|---|---|---|
| seal, as a Save of the whole session does | %s | %d | %d |
| open, as a failover Load does | %s | %d | %d |

(testing.Benchmark on the client's own code, Keyring.SealAll and OpenAll, one core.) Through
the local stack, %d Saves (publish) and %d failover Loads of each kind, by %d, interleaved:

| run | p50 | p90 | p99 |
|---|---|---|---|
| Save, in clear | %s | %s | %s |
| Save, sealed | %s | %s | %s |
| failover Load, in clear | %s | %s | %s |
| failover Load, sealed | %s | %s | %s |

The stored item: %d bytes in clear, %d sealed (its values %d and %d bytes: each value grows by
%d bytes, the envelope's header, nonce and tag for key id %q).

`, us(s.Seal.NsPerOp()), s.Seal.AllocsPerOp(), s.Seal.AllocedBytesPerOp(),
		us(s.Open.NsPerOp()), s.Open.AllocsPerOp(), s.Open.AllocedBytesPerOp(),
		s.SaveSealed.N, s.LoadSealed.N, s.SaveSealed.Conc,
		ms(s.SaveClear.Lat.pct(50)), ms(s.SaveClear.Lat.pct(90)), ms(s.SaveClear.Lat.pct(99)),
		ms(s.SaveSealed.Lat.pct(50)), ms(s.SaveSealed.Lat.pct(90)), ms(s.SaveSealed.Lat.pct(99)),
		ms(s.LoadClear.Lat.pct(50)), ms(s.LoadClear.Lat.pct(90)), ms(s.LoadClear.Lat.pct(99)),
		ms(s.LoadSealed.Lat.pct(50)), ms(s.LoadSealed.Lat.pct(90)), ms(s.LoadSealed.Lat.pct(99)),
		s.ItemClear, s.ItemSealed, s.ValuesClear, s.ValuesSealed, client.SealOverhead(s.KeyID), s.KeyID)
	return b.String()
}
