package e2e

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/kmskeys"
	"github.com/sessionha/sessionha/client/scsstore"
	"github.com/sessionha/sessionha/client/storetest"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
)

// Sealed attribute values end to end, on the AWS path: keys made and unwrapped by KMS
// (the local stand-in, through the edge, with the SDK's client), values sealed by the
// client, merged as bytes by the functions, opened by other instances.

// kmsKey makes a sealing key wrapped by the site's seal key, as sessionctl seal-key new.
func kmsKey(t *testing.T, id string) kmskeys.WrappedKey {
	t.Helper()
	w, err := kmskeys.NewKey(context.Background(), id, []string{theSite.SealKeyARN}, func(string) kmskeys.API { return kms.NewFromConfig(theSite.AWS) })
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// sealWith configures a store to unwrap keys (the first sealing) through KMS at Open.
func sealWith(t *testing.T, keys ...kmskeys.WrappedKey) func(*client.Config) {
	t.Helper()
	src, err := kmskeys.Source(keys, theSite.SealKeyARN)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *client.Config) { c.KeyringSource = src }
}

func both(edits ...func(*client.Config)) func(*client.Config) {
	return func(c *client.Config) {
		for _, e := range edits {
			e(c)
		}
	}
}

// holdsMarker reports whether b holds the marker in clear, or as the base64 the JSON
// of a message would carry it in (at any of the three alignments).
func holdsMarker(b []byte, marker string) bool {
	if bytes.Contains(b, []byte(marker)) {
		return true
	}
	for skip := range 3 {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", skip) + marker))
		if bytes.Contains(b, []byte(enc[4:len(enc)-4])) {
			return true
		}
	}
	return false
}

// checkSealed fails for a value of a session op or item that is not sealed by keyID or
// holds the marker.
func checkSealed(t *testing.T, where string, attrs map[string][]byte, keyID, marker string) {
	t.Helper()
	for name, v := range attrs {
		if id, sealed := client.SealedBy(v); !sealed || id != keyID {
			t.Errorf("%s: attribute %s is not sealed by %s (sealed %v by %q)", where, name, keyID, sealed, id)
		}
		if holdsMarker(v, marker) {
			t.Errorf("%s: attribute %s holds the value in clear", where, name)
		}
	}
}

// TestSealedValuesNeverInClear: with sealing on, a value in clear is in no op on the ops
// topic (a tap), in no item of the table (a scan), and in no dead-lettered op (a delta
// that would take its item past DynamoDB's limit); and instances open it.
func TestSealedValuesNeverInClear(t *testing.T) {
	ctx := context.Background()
	marker := "MARKER-" + randomSuffix() + "-" + randomSuffix()
	key := kmsKey(t, "e2e-"+randomSuffix())
	tap := newOpsTap(t)
	deltas := func(c *client.Config) { c.Scope = client.ScopeModifiedAttribute }
	a := openHA(t, "seal-a-"+randomSuffix(), both(sealWith(t, key), deltas))
	overBus := func(c *client.Config) { // the answer to a failover query carries the values too
		c.ReadPath = client.ReadBus
		c.QueryTopicARN, c.ReplyTopicARN = theSite.Outputs.TopicARNs[topology.TopicQuery], theSite.Outputs.TopicARNs[topology.TopicReply]
	}
	b := openHA(t, "seal-b-"+randomSuffix(), both(sealWith(t, key), overBus))

	secret := []byte("role=admin;" + marker + ";token=" + randomSuffix())
	s, err := a.Create(ctx, client.NewSession{Principal: "sally", Attrs: map[string][]byte{"claims": secret, "theme": []byte(marker)}})
	if err != nil {
		t.Fatal(err)
	}
	s.Set("cart", []byte(`["`+marker+`"]`)) // a delta: modified-attribute
	if err := a.SaveApplied(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := b.Load(ctx, s.ID())
	if err != nil {
		t.Fatalf("another instance loads the sealed session over the bus: %v", err)
	}
	for name, want := range map[string]string{"claims": string(secret), "theme": marker, "cart": `["` + marker + `"]`} {
		if v, _ := got.Get(name); string(v) != want {
			t.Errorf("%s opened as %q, want %q", name, v, want)
		}
	}

	// The ops topic: a create and a delta, every value sealed.
	ops := tap.receive(2, s.ID())
	if kinds(ops) != "create,delta" {
		t.Errorf("ops %s, want create,delta", kinds(ops))
	}
	for _, op := range ops {
		body, _ := events.EncodeSessionOp(op)
		if holdsMarker(body, marker) {
			t.Errorf("the %s op holds the value in clear", op.Op)
		}
		if op.Session.Attrs != nil {
			checkSealed(t, "op "+string(op.Op), op.Session.Attrs, key.ID, marker)
		}
		checkSealed(t, "op "+string(op.Op)+" set", op.Set, key.ID, marker)
	}

	// The table: a scan of every item.
	db := dynamodb.NewFromConfig(theSite.AWS)
	scanned, ours := 0, 0
	in := &dynamodb.ScanInput{TableName: aws.String(theSite.Outputs.Table)}
	for {
		page, err := db.Scan(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range page.Items {
			scanned++
			if holdsMarker(rawBytes(raw), marker) {
				t.Errorf("item %v holds the value in clear", raw["pk"])
			}
			it, err := record.Unmarshal(raw)
			if err == nil && it.Key == record.Key("default", events.HashID(s.ID())) {
				ours++
				checkSealed(t, "the table", it.Attrs, key.ID, marker)
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	if ours != 1 {
		t.Fatalf("the scan of %d items found the session %d times", scanned, ours)
	}

	// A dead letter: five instances each add a 90 KB attribute to the session by a delta
	// (each had loaded it before the others' changes); the fifth would take the item past
	// 400 KB, so sessionop dead-letters it, sealed as it came.
	big := bytes.Repeat([]byte(marker+" "), 90<<10/(len(marker)+1))
	var writers []*client.Store
	var copies []*client.Session
	for i := range 5 {
		w := openHA(t, fmt.Sprintf("seal-big-%d-%s", i, randomSuffix()), both(sealWith(t, key), deltas, func(c *client.Config) { c.Reads = client.ReadsAlways }))
		c, err := w.Load(ctx, s.ID())
		if err != nil {
			t.Fatal(err)
		}
		writers, copies = append(writers, w), append(copies, c)
	}
	for i, w := range writers {
		copies[i].Set("big"+strconv.Itoa(i), big)
		if err := w.Save(ctx, copies[i]); err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	q := sqs.NewFromConfig(theSite.AWS)
	dlq := theSite.Outputs.QueueURLs[topology.QueueOpsDLQ]
	var dead *sqstypes.Message
	eventually(t, "the delta that would make the item too large reaches the ops DLQ", func() (bool, string) {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq), MaxNumberOfMessages: 10,
			WaitTimeSeconds: 1, VisibilityTimeout: 0, MessageAttributeNames: []string{"All"}})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range out.Messages {
			if op, err := events.DecodeSessionOp([]byte(aws.ToString(m.Body))); err == nil && op.ID == events.HashID(s.ID()) {
				dead = &m
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d other messages", len(out.Messages))
	})
	_, _ = q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(dlq), ReceiptHandle: dead.ReceiptHandle})
	if kind := aws.ToString(dead.MessageAttributes["sessionha.dlq.kind"].StringValue); kind != "too-large-item" {
		t.Errorf("dead-lettered as %q, want too-large-item", kind)
	}
	body := []byte(aws.ToString(dead.Body))
	if holdsMarker(body, marker) {
		t.Fatal("the dead-lettered op holds the value in clear")
	}
	op, _ := events.DecodeSessionOp(body)
	if op.Op != events.OpDelta || len(op.Set) != 1 {
		t.Fatalf("dead-lettered %s with %d values, want a delta of one", op.Op, len(op.Set))
	}
	checkSealed(t, "the dead letter", op.Set, key.ID, marker)
	for name, v := range op.Set {
		opened, _, err := mustRing(t, key).Open("default", s.ID(), name, v)
		if err != nil || !bytes.Equal(opened, big) {
			t.Errorf("the dead letter's %s does not open to what was set: %v", name, err)
		}
	}
}

// rawBytes gathers every binary and string of an item, nested ones too.
func rawBytes(m map[string]ddbtypes.AttributeValue) []byte {
	var out []byte
	var walk func(v ddbtypes.AttributeValue)
	walk = func(v ddbtypes.AttributeValue) {
		switch x := v.(type) {
		case *ddbtypes.AttributeValueMemberB:
			out = append(append(out, x.Value...), 0)
		case *ddbtypes.AttributeValueMemberS:
			out = append(append(out, x.Value...), 0)
		case *ddbtypes.AttributeValueMemberM:
			for _, e := range x.Value {
				walk(e)
			}
		case *ddbtypes.AttributeValueMemberL:
			for _, e := range x.Value {
				walk(e)
			}
		}
	}
	for _, v := range m {
		walk(v)
	}
	return out
}

// mustRing unwraps keys (the first sealing) through KMS.
func mustRing(t *testing.T, keys ...kmskeys.WrappedKey) *client.Keyring {
	t.Helper()
	k, err := kmskeys.Unwrap(context.Background(), kms.NewFromConfig(theSite.AWS), keys, theSite.SealKeyARN)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSealedValueThatDoesNotOpen: a value changed in the table, moved to another
// attribute or to another session, and one sealed with a key the reader lacks each fail
// Load with ErrSealed naming the attribute and the key, never the value, in the error or
// the log.
func TestSealedValueThatDoesNotOpen(t *testing.T) {
	ctx := context.Background()
	key := kmsKey(t, "e2e-"+randomSuffix())
	always := func(c *client.Config) { c.Reads = client.ReadsAlways }
	w := openHA(t, "seal-w-"+randomSuffix(), sealWith(t, key))
	var logs lines
	logged := func(c *client.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r := openHA(t, "seal-r-"+randomSuffix(), both(sealWith(t, key), always, logged))

	value := "admin-" + randomSuffix()
	mk := func() string {
		s, err := w.Create(ctx, client.NewSession{Principal: "tom", Attrs: map[string][]byte{"roles": []byte(value), "theme": []byte("dark")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.SaveApplied(ctx, s); err != nil {
			t.Fatal(err)
		}
		return s.ID()
	}
	db := dynamodb.NewFromConfig(theSite.AWS)
	edit := func(id string, change func(attrs map[string]ddbtypes.AttributeValue)) {
		t.Helper()
		raw := rawItem(t, id)
		change(raw["a"].(*ddbtypes.AttributeValueMemberM).Value)
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(theSite.Outputs.Table), Item: raw}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(id, name string) []byte {
		return bytes.Clone(rawItem(t, id)["a"].(*ddbtypes.AttributeValueMemberM).Value[name].(*ddbtypes.AttributeValueMemberB).Value)
	}
	expectSealed := func(what, id string, reader *client.Store, wants ...string) {
		t.Helper()
		_, err := reader.Load(ctx, id)
		if !errors.Is(err, client.ErrSealed) {
			t.Fatalf("%s: Load = %v, want ErrSealed", what, err)
		}
		for _, want := range wants {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", what, err, want)
			}
		}
		if strings.Contains(err.Error(), value) {
			t.Errorf("%s: the error holds the value", what)
		}
	}

	tampered := mk()
	edit(tampered, func(a map[string]ddbtypes.AttributeValue) {
		v := stored(tampered, "roles")
		v[len(v)-1] ^= 1
		a["roles"] = &ddbtypes.AttributeValueMemberB{Value: v}
	})
	expectSealed("a changed value", tampered, r, `attribute "roles"`, "does not open with key "+key.ID, "changed since it was sealed")

	renamed := mk()
	edit(renamed, func(a map[string]ddbtypes.AttributeValue) {
		a["groups"] = a["roles"] // the sealed roles, moved to another attribute
		delete(a, "roles")
	})
	expectSealed("a value moved to another attribute", renamed, r, `attribute "groups"`, "sealed for another session or attribute")

	from, to := mk(), mk()
	moved := stored(from, "roles")
	edit(to, func(a map[string]ddbtypes.AttributeValue) { a["roles"] = &ddbtypes.AttributeValueMemberB{Value: moved} })
	expectSealed("a value moved from another session", to, r, `attribute "roles"`, "sealed for another session or attribute")
	if _, err := r.Load(ctx, from); err != nil {
		t.Errorf("the session it was copied from still opens: %v", err)
	}

	other := openHA(t, "seal-o-"+randomSuffix(), both(sealWith(t, kmsKey(t, "e2e-other")), always))
	expectSealed("a key the keyring lacks", from, other, `attribute "roles"`, "sealed with key "+key.ID+", which this store's keyring lacks (it opens e2e-other)")
	plain := openHA(t, "seal-p-"+randomSuffix(), always)
	expectSealed("no keyring", from, plain, "and this store has no keyring")

	if strings.Contains(logs.String(), value) {
		t.Errorf("the log holds the value:\n%s", logs.String())
	}
}

// TestSealKeyRotationMidTraffic rotates the sealing key of three instances while they
// keep loading and saving sessions across each other, as the README's steps say: every
// instance first opens with the new key (k1 still sealing), then seals with it, and once
// no stored value uses k1 any more, k1 leaves every keyring. No load fails, no save is
// lost, no session ends.
func TestSealKeyRotationMidTraffic(t *testing.T) {
	ctx := context.Background()
	k1, k2 := kmsKey(t, "rot1-"+randomSuffix()), kmsKey(t, "rot2-"+randomSuffix())
	type slot struct {
		mu    sync.RWMutex
		name  string
		store *client.Store
		dir   string
	}
	open := func(sl *slot, keys ...kmskeys.WrappedKey) {
		sl.store = openHA(t, sl.name, both(sealWith(t, keys...), func(c *client.Config) {
			c.Reads, c.SaveWait, c.JournalDir = client.ReadsAlways, client.SaveApplied, sl.dir
		}))
	}
	slots := make([]*slot, 3)
	for i := range slots {
		slots[i] = &slot{name: fmt.Sprintf("rot-%d-%s", i, randomSuffix()), dir: t.TempDir()}
		open(slots[i], k1)
	}

	// Sessions, each with a counter that every step loads on one instance and saves,
	// one more, on another.
	const sessions = 12
	type sess struct {
		mu sync.Mutex
		id string
		n  int
	}
	all := make([]*sess, sessions)
	for i := range all {
		s, err := slots[i%3].store.Create(ctx, client.NewSession{Principal: "rita", Attrs: map[string][]byte{
			"n": []byte("0"), "claims": []byte("role=user;seq=" + strconv.Itoa(i)),
		}})
		if err != nil {
			t.Fatal(err)
		}
		all[i] = &sess{id: s.ID()}
	}
	var (
		steps    atomic.Int64
		failures = make(chan error, 100)
		stop     chan struct{}
		wg       sync.WaitGroup
	)
	step := func(rng *rand.Rand) error {
		s := all[rng.IntN(sessions)]
		s.mu.Lock()
		defer s.mu.Unlock()
		from, to := slots[rng.IntN(3)], slots[rng.IntN(3)]
		from.mu.RLock()
		got, err := from.store.Load(ctx, s.id)
		from.mu.RUnlock()
		if err != nil {
			return fmt.Errorf("load on %s: %w", from.name, err)
		}
		if v, _ := got.Get("n"); string(v) != strconv.Itoa(s.n) {
			return fmt.Errorf("load on %s: n = %s, want %d (a save lost)", from.name, v, s.n)
		}
		got.Set("n", []byte(strconv.Itoa(s.n+1)))
		to.mu.RLock()
		err = to.store.Save(ctx, got) // SaveWait applied: in the table when it returns
		to.mu.RUnlock()
		if err != nil {
			return fmt.Errorf("save on %s: %w", to.name, err)
		}
		s.n++
		steps.Add(1)
		return nil
	}
	startTraffic := func() {
		stop = make(chan struct{})
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := step(rng); err != nil {
						failures <- err
						return
					}
				}
			}()
		}
	}
	stopTraffic := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
		select {
		case err := <-failures:
			t.Fatal(err)
		default:
		}
	}
	startTraffic()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	progress := func(what string) {
		t.Helper()
		target := steps.Load() + 10
		eventually(t, what, func() (bool, string) {
			select {
			case err := <-failures:
				t.Fatalf("%s: %v", what, err)
			default:
			}
			return steps.Load() >= target, fmt.Sprintf("%d steps", steps.Load())
		})
	}
	restartAll := func(what string, keys ...kmskeys.WrappedKey) {
		t.Helper()
		for _, sl := range slots { // one instance at a time, as a rolling deploy
			sl.mu.Lock()
			if err := sl.store.Close(); err != nil {
				sl.mu.Unlock()
				t.Fatalf("%s: close %s: %v", what, sl.name, err)
			}
			open(sl, keys...)
			sl.mu.Unlock()
			progress(what + ": traffic after restarting " + sl.name)
		}
	}
	progress("traffic under k1")

	// Step 1: every instance opens with k2; k1 still seals.
	restartAll("step 1 (k1 seals, k1 and k2 open)", k1, k2)
	// An instance that missed step 1 could not open what k2 seals: why step 1 comes first.
	laggard := openHA(t, "rot-laggard-"+randomSuffix(), both(sealWith(t, k1), func(c *client.Config) { c.Reads = client.ReadsAlways }))
	// Step 2: k2 seals.
	restartAll("step 2 (k2 seals, k1 and k2 open)", k2, k1)
	progress("traffic under k2")
	sealedBy := func(id string) map[string]bool {
		keys := map[string]bool{}
		for _, v := range tableItem(t, id).Attrs {
			kid, _ := client.SealedBy(v)
			keys[kid] = true
		}
		return keys
	}
	var rewritten *sess
	for _, s := range all {
		if ks := sealedBy(s.id); ks[k2.ID] && !ks[k1.ID] {
			rewritten = s
			break
		}
	}
	if rewritten == nil {
		t.Fatal("no session is sealed by k2 after step 2")
	}
	if _, err := laggard.Load(ctx, rewritten.id); !errors.Is(err, client.ErrSealed) || !strings.Contains(err.Error(), k2.ID) {
		t.Errorf("an instance without k2 loads a session k2 sealed: %v, want ErrSealed naming %s", err, k2.ID)
	}

	// Until every stored value is sealed by k2 (sessionctl seal-key usage says when; on
	// AWS, at the latest after the longest session life): the traffic rewrites sessions
	// as it saves them; here the ones it has not reached yet get a save of their own.
	stopTraffic()
	for _, s := range all {
		if !sealedBy(s.id)[k1.ID] {
			continue
		}
		got, err := slots[0].store.Load(ctx, s.id)
		if err != nil {
			t.Fatal(err)
		}
		got.Set("n", []byte(strconv.Itoa(s.n+1)))
		if err := slots[1].store.Save(ctx, got); err != nil {
			t.Fatal(err)
		}
		s.n++
		if ks := sealedBy(s.id); ks[k1.ID] {
			t.Fatalf("a session saved under k2 still holds values sealed by k1: %v", ks)
		}
	}

	// Step 3: k1 leaves every keyring, instance by instance, under traffic; then every
	// session opens on every instance, with every save in it.
	startTraffic()
	restartAll("step 3 (k2 alone)", k2)
	stopTraffic()
	for _, s := range all {
		for _, sl := range slots {
			got, err := sl.store.Load(ctx, s.id)
			if err != nil {
				t.Fatalf("after k1 went, %s loads a session: %v", sl.name, err)
			}
			if v, _ := got.Get("n"); string(v) != strconv.Itoa(s.n) {
				t.Errorf("after k1 went: n = %s, want %d", v, s.n)
			}
			if v, _ := got.Get("claims"); !strings.HasPrefix(string(v), "role=user;seq=") {
				t.Errorf("after k1 went: claims = %q", v)
			}
		}
		if ks := sealedBy(s.id); len(ks) != 1 || !ks[k2.ID] {
			t.Errorf("a session's values are sealed by %v, want %s alone", ks, k2.ID)
		}
	}
	t.Logf("%d load-and-save steps across 3 instances during the rotation", steps.Load())
}

// TestConformanceHASealed runs the Store conformance suite with persistence ha and
// sealing on, whole sessions and deltas: sealing changes nothing a caller sees.
func TestConformanceHASealed(t *testing.T) {
	key := kmsKey(t, "conf-"+randomSuffix())
	for _, c := range []struct {
		name string
		edit func(*client.Config)
	}{
		{"web-method/session", nil},
		{"web-method/modified-attribute", func(c *client.Config) { c.Scope = client.ScopeModifiedAttribute }},
	} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) *client.Store {
				edits := []func(*client.Config){sealWith(t, key)}
				if c.edit != nil {
					edits = append(edits, c.edit)
				}
				return openHA(t, "conformance-sealed-"+randomSuffix(), both(edits...))
			}, storetest.Options{Shared: true, Eventually: 10 * time.Second})
		})
	}
}

// TestScsAdapterSealed: an adapter stores through the client, so sealing reaches it
// with no change: what scs commits on one instance is sealed in the table and found on
// another.
func TestScsAdapterSealed(t *testing.T) {
	ctx := context.Background()
	key := kmsKey(t, "scs-"+randomSuffix())
	a := scsstore.New(openHA(t, "seal-scs-a-"+randomSuffix(), sealWith(t, key)))
	b := scsstore.New(openHA(t, "seal-scs-b-"+randomSuffix(), sealWith(t, key)))
	var tb [32]byte
	_, _ = crand.Read(tb[:])
	token := base64.RawURLEncoding.EncodeToString(tb[:]) // as scs makes them
	marker := "MARKER-scs-" + randomSuffix()
	if err := a.CommitCtx(ctx, token, []byte(marker), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other instance finds what scs committed", func() (bool, string) {
		got, found, err := b.FindCtx(ctx, token)
		return err == nil && found && string(got) == marker, fmt.Sprintf("%q %v %v", got, found, err)
	})
	it := tableItem(t, token)
	checkSealed(t, "the scs session", it.Attrs, key.ID, marker)
}

// TestSealedFailoverBetweenProcesses: auth server processes configured from the site's
// environment with sealing on (ConfigFromEnv with client/kmskeys, as make local's env
// files have it) fail a session over, SIGKILL included, with its values sealed in the
// table by the run's key.
func TestSealedFailoverBetweenProcesses(t *testing.T) {
	marker := "MARKER-proc-" + randomSuffix()
	a := startInstanceWith(t, "seal-proc-a", theSite.SealEnv()...)
	created := a.do(Command{Cmd: "create", Principal: "pat", Attrs: map[string]string{"claims": marker}})
	if !created.OK {
		t.Fatalf("create: %s", describe(created))
	}
	a.kill()
	b := startInstanceWith(t, "seal-proc-b", theSite.SealEnv()...)
	eventually(t, "another process loads the sealed session", func() (bool, string) {
		r := b.do(Command{Cmd: "load", ID: created.ID})
		return r.OK && r.Attrs["claims"] == marker, describe(r)
	})
	runKey, _, _ := strings.Cut(theSite.Stack.SealKeys, ":")
	checkSealed(t, "the table", tableItem(t, created.ID).Attrs, runKey, marker)
	// A process without the keyring cannot open it, and says so without the value.
	c := startInstance(t, "seal-proc-c")
	r := c.do(Command{Cmd: "load", ID: created.ID})
	if r.OK || !strings.Contains(r.Err, "no keyring") || strings.Contains(r.Err+c.stderr.String(), marker) {
		t.Errorf("a process without the keyring: %s", describe(r))
	}
}
