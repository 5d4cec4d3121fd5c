package client

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Unit tests of sealed attribute values: the envelope against its documented layout,
// what fails to open and how it says so, the keyring's formats, and the store sealing
// what it writes to disk (session files, the journal) and opening it again.

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func testRing(t testing.TB, sealWith string, ids ...string) *Keyring {
	t.Helper()
	keys := map[string][]byte{}
	for i, id := range ids {
		keys[id] = testKey(byte(i + 1))
	}
	k, err := NewKeyring(sealWith, keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSealEnvelopeLayout rebuilds a sealed value from the layout seal.go documents, with
// the standard library alone: HKDF-SHA256 per session, AES-256-GCM, the header and the
// associated data as written there. A change of the format fails here.
func TestSealEnvelopeLayout(t *testing.T) {
	k := testRing(t, "k-1", "k-1")
	sessionKey := record.Key("default", events.HashID("an id"))
	nonce := []byte("twelve bytes")
	c, err := k.cipherFor("k-1", sessionKey)
	if err != nil {
		t.Fatal(err)
	}
	got := c.seal(nil, "roles", []byte("admin"), nonce)

	sub, err := hkdf.Key(sha256.New, testKey(1), nil, "sessionha seal v1\x00"+sessionKey, 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(sub)
	gcm, _ := cipher.NewGCM(block)
	header := []byte{0xC1, 0x5E, 0xA1, 1, 3, 'k', '-', '1'}
	ad := append(bytes.Clone(header), byte(len(sessionKey)>>8), byte(len(sessionKey)))
	ad = append(append(ad, sessionKey...), "roles"...)
	want := gcm.Seal(append(bytes.Clone(header), nonce...), nonce, []byte("admin"), ad)
	if !bytes.Equal(got, want) {
		t.Fatalf("sealed\n %x\nwant (from the documented layout)\n %x", got, want)
	}
	if len(got) != len("admin")+SealOverhead("k-1") || SealOverhead("k-1") != 36 {
		t.Errorf("%d bytes for 5 of value, overhead %d: want 33 + the key id's length", len(got), SealOverhead("k-1"))
	}
	if id, ok := SealedBy(got); !ok || id != "k-1" {
		t.Errorf("SealedBy = %q, %v", id, ok)
	}
	o := &opener{k: k, sessionKey: sessionKey}
	v, id, err := o.open("roles", got, nil)
	if err != nil || string(v) != "admin" || id != "k-1" {
		t.Errorf("open = %q, %q, %v", v, id, err)
	}
}

func TestSealUsesAFreshNonceEveryTime(t *testing.T) {
	k := testRing(t, "k1", "k1")
	key := record.Key("default", events.HashID("x"))
	a, _ := k.sealAttrs(key, map[string][]byte{"a": []byte("same"), "b": []byte("same")})
	b, _ := k.sealAttrs(key, map[string][]byte{"a": []byte("same")})
	nonce := func(v []byte) []byte { return v[5+2 : 5+2+sealNonce] }
	if bytes.Equal(nonce(a["a"]), nonce(a["b"])) || bytes.Equal(nonce(a["a"]), nonce(b["a"])) {
		t.Fatal("two seals share a nonce")
	}
	if bytes.Contains(a["a"], []byte("same")) {
		t.Fatal("the value is in clear in its envelope")
	}
}

// TestOpenFailsClearly: each way a value can fail to open wraps ErrSealed, names the
// attribute and what went wrong, and never holds the value.
func TestOpenFailsClearly(t *testing.T) {
	const secret = "role=admin;token=0123456789"
	k := testRing(t, "k2", "k1", "k2")
	key := record.Key("default", events.HashID("session one"))
	other := record.Key("default", events.HashID("session two"))
	sealed, _ := k.sealAttrs(key, map[string][]byte{"roles": []byte(secret)})
	v := sealed["roles"]

	tampered := bytes.Clone(v)
	tampered[len(tampered)-20] ^= 1
	renamedKey := bytes.Clone(v)
	renamedKey[6] = '1' // names k1 now: the header is associated data
	unknown, _ := testRing(t, "k9", "k9").sealAttrs(key, map[string][]byte{"roles": []byte(secret)})
	future := bytes.Clone(v)
	future[3] = 2

	cases := []struct {
		name       string
		ring       *Keyring
		sessionKey string
		attr       string
		stored     []byte
		want       string
	}{
		{"tampered", k, key, "roles", tampered, "does not open with key k2: changed since it was sealed"},
		{"moved to another attribute", k, key, "groups", v, "does not open with key k2"},
		{"moved to another session", k, other, "roles", v, "does not open with key k2"},
		{"key id rewritten", k, key, "roles", renamedKey, "does not open with key k1"},
		{"unknown key", k, key, "roles", unknown["roles"], "sealed with key k9, which this store's keyring lacks (it opens k1, k2)"},
		{"no keyring", nil, key, "roles", v, "sealed with key k2, and this store has no keyring"},
		{"newer envelope", k, key, "roles", future, "envelope version 2"},
		{"truncated", k, key, "roles", v[:20], "damaged"},
		{"magic alone", k, key, "roles", v[:3], "damaged"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.ring.openAttrs(c.sessionKey, map[string][]byte{c.attr: c.stored, "plain": []byte("clear")})
			if !errors.Is(err, ErrSealed) {
				t.Fatalf("err = %v, want ErrSealed", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", c.attr)) {
				t.Errorf("err = %q, want it to name the attribute and say %q", err, c.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error holds the value: %q", err)
			}
		})
	}
	// Every single-byte change anywhere in the envelope is caught.
	for i := range v {
		bad := bytes.Clone(v)
		bad[i] ^= 0x40
		if _, err := k.openAttrs(key, map[string][]byte{"roles": bad}); err == nil {
			if _, sealed := SealedBy(bad); sealed || i >= 3 {
				t.Errorf("a change of byte %d opened", i)
			}
		}
	}
}

// TestClearAndSealedValuesMix: a session written before sealing was on, and saved since
// by an instance that seals, opens whole; without a keyring only clear values open.
func TestClearAndSealedValuesMix(t *testing.T) {
	k := testRing(t, "k1", "k1")
	key := record.Key("default", events.HashID("mixed"))
	sealed, _ := k.sealAttrs(key, map[string][]byte{"new": []byte("sealed value")})
	attrs := map[string][]byte{"old": []byte("clear value"), "new": sealed["new"], "empty": {}}
	got, err := k.openAttrs(key, attrs)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["old"]) != "clear value" || string(got["new"]) != "sealed value" || got["empty"] == nil || len(got["empty"]) != 0 {
		t.Errorf("opened %q", got)
	}
	clear := map[string][]byte{"a": []byte("x")}
	if got, err := (*Keyring)(nil).openAttrs(key, clear); err != nil || string(got["a"]) != "x" {
		t.Errorf("no keyring, clear values: %q, %v", got, err)
	}
	// An empty value seals and opens as empty (present, not absent).
	e, _ := k.sealAttrs(key, map[string][]byte{"e": {}})
	if got, err := k.openAttrs(key, e); err != nil || got["e"] == nil || len(got["e"]) != 0 {
		t.Errorf("empty value: %q, %v", got["e"], err)
	}
}

func TestParseKeyring(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString(testKey(1))
	k2 := base64.RawURLEncoding.EncodeToString(testKey(2))
	k, err := ParseKeyring(" new:" + k2 + " , old:" + k1)
	if err != nil {
		t.Fatal(err)
	}
	if k.SealingKey() != "new" || strings.Join(k.KeyIDs(), ",") != "new,old" {
		t.Errorf("seals with %s, opens %v", k.SealingKey(), k.KeyIDs())
	}
	short := base64.StdEncoding.EncodeToString(testKey(3)[:16])
	for spec, want := range map[string]string{
		"":                            "no keys",
		"k1":                          `entry 1: want "id:base64key"`,
		"k1:" + k1 + ",k1:" + k1:      "entry 2: key id k1 given twice",
		"k1:" + k1 + ",bad id:" + k1:  "entry 2",
		"k1:" + short:                 "entry 1 (key k1): want 32 bytes (AES-256: openssl rand -base64 32), got 16",
		"k1:" + k1 + ",k2:not*base64": "entry 2 (key k2): not base64",
	} {
		_, err := ParseKeyring(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseKeyring(%q) = %v, want %q", spec, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), k1) || strings.Contains(err.Error(), short)) {
			t.Errorf("the error shows a key: %v", err)
		}
	}
	// Never printed: String, GoString, %v, %+v, slog.
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "keyring", k)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "keyring", k)
	out := fmt.Sprintf("%v %+v %#v %s", k, k, k, k) + logs.String()
	for _, key := range [][]byte{testKey(1), testKey(2)} {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), fmt.Sprint(key), string(key)} {
			if strings.Contains(out, enc) {
				t.Fatalf("a key shows in %q", out)
			}
		}
	}
	if !strings.Contains(out, "seals with new, opens new, old") {
		t.Errorf("the keyring does not name its keys: %q", out)
	}
}

func TestReadKeyringFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	body := "# sessionha seal keys: the first seals\n\nk2:" + base64.StdEncoding.EncodeToString(testKey(2)) +
		"\nk1:" + base64.StdEncoding.EncodeToString(testKey(1)) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyringFile(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a file readable by others: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := ReadKeyringFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if k.SealingKey() != "k2" || len(k.KeyIDs()) != 2 {
		t.Errorf("%s", k)
	}
	os.WriteFile(path, []byte("# nothing\n"), 0o600)
	if _, err := ReadKeyringFile(path); err == nil || !strings.Contains(err.Error(), "no keys") {
		t.Errorf("an empty file: %v", err)
	}
	if _, err := ReadKeyringFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

func TestConfigFromEnvSealing(t *testing.T) {
	good := "k1:" + base64.StdEncoding.EncodeToString(testKey(1))
	t.Setenv(EnvSealKeys, good)
	c, err := ConfigFromEnv()
	if err != nil || c.Keyring.SealingKey() != "k1" {
		t.Fatalf("%s: %v, %v", EnvSealKeys, c.Keyring, err)
	}
	bad := "k1:" + base64.StdEncoding.EncodeToString(testKey(1)[:31])
	t.Setenv(EnvSealKeys, bad)
	_, err = ConfigFromEnv()
	if err == nil || !strings.Contains(err.Error(), EnvSealKeys) || strings.Contains(err.Error(), bad[3:]) {
		t.Errorf("a short key: %v, want an error naming %s and not the key", err, EnvSealKeys)
	}
	t.Setenv(EnvSealKeys, good)
	t.Setenv(EnvSealKeyFile, "/nonexistent")
	if _, err = ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "not several") {
		t.Errorf("two sources: %v", err)
	}
	t.Setenv(EnvSealKeys, "")
	if _, err = ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvSealKeyFile) {
		t.Errorf("a missing key file: %v", err)
	}
	t.Setenv(EnvSealKeyFile, "")
	t.Setenv(EnvSealKMSKeys, "k1:eu-west-1=AAAA")
	saved := kmsFromEnv
	kmsFromEnv = nil
	defer func() { kmsFromEnv = saved }()
	if _, err = ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "client/kmskeys") || !strings.Contains(err.Error(), EnvSealKMSKeys) {
		t.Errorf("KMS keys without the provider: %v", err)
	}
}

// TestFileStoreSealsWhatItWrites: persistence file writes sealed values, opens them after
// a restart, opens them under a rotated keyring, and fails to load without the key.
func TestFileStoreSealsWhatItWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const marker = "MARKER-file-7f3a"
	open := func(k *Keyring) *Store {
		s, err := Open(ctx, Config{Persistence: PersistenceFile, Dir: dir, Keyring: k, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(testRing(t, "k1", "k1"))
	sess, err := s.Create(ctx, NewSession{Principal: "alice", Attrs: map[string][]byte{"token": []byte(marker)}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(marker)) || strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte(marker))[:12]) {
				t.Errorf("%s holds the value in clear", p)
			}
		}
		return nil
	})

	rotated := open(testRing(t, "k2", "k1", "k2")) // k2 seals now; k1 still opens
	got, err := rotated.Load(ctx, sess.ID())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Get("token"); string(v) != marker {
		t.Fatalf("token %q after a restart", v)
	}
	rotated.Close()

	without := open(testRing(t, "k2", "k2")) // k1 gone before the session was rewritten
	_, err = without.Load(ctx, sess.ID())
	if !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "key k1") {
		t.Errorf("load without the key that sealed it: %v, want ErrSealed naming k1", err)
	}
	without.Close()
}

// TestJournalIsSealed: what degraded mode journals is sealed on disk, replays with the
// keyring, and stops Open, kept, when the keyring lacks its key.
func TestJournalIsSealed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logs := &syncBuffer{}
	const marker = "MARKER-journal-91c2"
	ring := testRing(t, "k1", "k1")
	withRing := func(k *Keyring) func(*Config) { return func(c *Config) { c.Keyring = k } }
	s, err := haStore(t, dir, "auth-seal", logs, withRing(ring))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.Create(ctx, NewSession{Principal: "alice", Attrs: map[string][]byte{"token": []byte(marker)}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode() != ModeDegraded {
		t.Fatalf("mode %s with the bus unreachable", s.Mode())
	}
	crash(s)
	journalPath := filepath.Join(dir, "default", "auth-seal", journalFile)
	body, err := os.ReadFile(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte(marker)) || bytes.Contains(body, []byte(base64.StdEncoding.EncodeToString([]byte(marker))[:12])) {
		t.Fatal("the journal holds the value in clear")
	}

	if _, err := haStore(t, dir, "auth-seal", logs, withRing(testRing(t, "k2", "k2"))); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "SESSIONHA_JOURNAL_DIR") {
		t.Fatalf("Open with a keyring that lacks the journal's key: %v, want ErrSealed naming the journal", err)
	}
	if after, _ := os.ReadFile(journalPath); !bytes.Equal(after, body) {
		t.Fatal("the refused Open changed the journal")
	}
	again, err := haStore(t, dir, "auth-seal", logs, withRing(testRing(t, "k2", "k1", "k2")))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	got, err := again.Load(ctx, sess.ID())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Get("token"); string(v) != marker {
		t.Errorf("replayed token %q", v)
	}
	// Rewritten at Open with the new sealing key.
	recs, _, _ := readJournal(journalPath)
	for _, r := range recs {
		if r.op.Session != nil {
			if id, _ := SealedBy(r.op.Session.Attrs["token"]); id != "k2" {
				t.Errorf("rewritten journal record sealed with %q, want k2", id)
			}
		}
	}
	if strings.Contains(logs.String(), marker) {
		t.Error("a log line holds the value")
	}
}

// TestSealedSizeIsChecked: a session that fits in clear but not sealed is refused when it
// is saved, not dropped when it is sent.
func TestSealedSizeIsChecked(t *testing.T) {
	attrs := map[string][]byte{}
	per := (events.MaxMessageBytes-4096)*3/4/events.MaxAttributes - 12
	for i := range events.MaxAttributes {
		attrs[fmt.Sprintf("a%03d", i)] = bytes.Repeat([]byte{0xff}, per)
	}
	if err := checkSession("alice", "", attrs, 0); err != nil {
		t.Fatalf("in clear: %v", err)
	}
	if err := checkSession("alice", "", attrs, SealOverhead("k1")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("sealed: %v, want ErrInvalid", err)
	}
	// And the bound is right: what checkSession admits sealed, encodes.
	k := testRing(t, "k1", "k1")
	for len(attrs) > 0 {
		if checkSession("alice", "", attrs, SealOverhead("k1")) == nil {
			break
		}
		for name := range attrs {
			delete(attrs, name)
			break
		}
	}
	sealed, _ := k.sealAttrs("c#x", attrs)
	if _, err := events.EncodeSessionOp(&events.SessionOp{
		V: events.SchemaVersion, Op: events.OpSave, Cluster: "c", ID: events.HashID(""), Version: "0000000000000001",
		Writer: "w", Site: "s", At: 1, Session: &events.Session{Principal: "alice", Created: 1, LastAccess: 1, MaxIdle: 1, MaxLife: 1, Attrs: sealed},
	}); err != nil {
		t.Errorf("a sealed session checkSession admitted does not encode: %v", err)
	}
}

// refAttrs is the reference session's values: 20 attributes, 2 KB.
func refAttrs() map[string][]byte {
	m := map[string][]byte{}
	for i := range 20 {
		m[fmt.Sprintf("attr%02d", i+1)] = bytes.Repeat([]byte{byte(i)}, 2048/20)
	}
	return m
}

func BenchmarkSealAll(b *testing.B) {
	k := testRing(b, "k1", "k1")
	attrs := refAttrs()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.SealAll("default", "id", attrs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenAll(b *testing.B) {
	k := testRing(b, "k1", "k1")
	sealed, _ := k.SealAll("default", "id", refAttrs())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.OpenAll("default", "id", sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSealWith: "none" opens but writes in clear (turning sealing on or off across a
// fleet); an id picks the sealing key; a wrong one stops Open naming the variable.
func TestSealWith(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ring := testRing(t, "k1", "k1", "k2")
	open := func(sealWith string) (*Store, error) {
		return Open(ctx, Config{Persistence: PersistenceFile, Dir: dir, Keyring: ring, SealWith: sealWith, Logger: slog.New(slog.DiscardHandler)})
	}
	files := func() []byte {
		var all []byte
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				all = append(all, b...)
			}
			return nil
		})
		return all
	}
	sealing, err := open("")
	if err != nil {
		t.Fatal(err)
	}
	a, err := sealing.Create(ctx, NewSession{Principal: "al", Attrs: map[string][]byte{"v": []byte("MARKER-sealed-a")}})
	if err != nil {
		t.Fatal(err)
	}
	sealing.Close()

	clearing, err := open("none")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := clearing.Load(ctx, a.ID()); err != nil {
		t.Fatalf("none still opens: %v", err)
	} else if v, _ := got.Get("v"); string(v) != "MARKER-sealed-a" {
		t.Fatalf("v = %q", v)
	}
	if _, err := clearing.Create(ctx, NewSession{Principal: "bo", Attrs: map[string][]byte{"v": []byte("MARKER-clear-b")}}); err != nil {
		t.Fatal(err)
	}
	clearing.Close()
	if all := files(); !bytes.Contains(all, []byte(base64.StdEncoding.EncodeToString([]byte("MARKER-clear-b")))) || bytes.Contains(all, []byte("MARKER-sealed-a")) {
		t.Error("with none, a new session should be written in clear and the sealed one stay sealed")
	}

	k2, err := open("k2")
	if err != nil {
		t.Fatal(err)
	}
	c, err := k2.Create(ctx, NewSession{Principal: "cy", Attrs: map[string][]byte{"v": []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	k2.Close()
	var found bool
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if op, err := events.DecodeSessionOp(b); err == nil && op.ID == events.HashID(c.ID()) {
			id, _ := SealedBy(op.Session.Attrs["v"])
			found = id == "k2"
		}
		return nil
	})
	if !found {
		t.Error("SealWith k2: the session's value is not sealed by k2")
	}

	if _, err := open("k9"); err == nil || !strings.Contains(err.Error(), EnvSealWith) {
		t.Errorf("an unknown SealWith: %v", err)
	}
	if _, err := Open(ctx, Config{Persistence: PersistenceMemory, SealWith: "k1"}); err == nil || !strings.Contains(err.Error(), "needs a keyring") {
		t.Errorf("SealWith without a keyring: %v", err)
	}
	t.Setenv(EnvSealWith, "bad id")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvSealWith) {
		t.Errorf("a bad %s: %v", EnvSealWith, err)
	}
}

// FuzzOpen: whatever a stored value holds, opening it neither panics nor opens anything
// but what the keyring sealed for that session and attribute ("value", with any nonce:
// each fuzzing process seals its own seed).
func FuzzOpen(f *testing.F) {
	k := testRing(f, "k1", "k1")
	key := record.Key("default", events.HashID("fuzz"))
	good, _ := k.sealAttrs(key, map[string][]byte{"a": []byte("value")})
	f.Add(good["a"])
	f.Add([]byte{0xC1, 0x5E, 0xA1})
	f.Add([]byte{0xC1, 0x5E, 0xA1, 1, 2, 'k', '1'})
	f.Add([]byte("clear"))
	f.Fuzz(func(t *testing.T, stored []byte) {
		got, err := k.openAttrs(key, map[string][]byte{"a": stored})
		switch {
		case err != nil:
			if !errors.Is(err, ErrSealed) {
				t.Fatalf("error %v does not wrap ErrSealed", err)
			}
		case !looksSealed(stored):
			if !bytes.Equal(got["a"], stored) {
				t.Fatalf("a clear value changed: %q -> %q", stored, got["a"])
			}
		case string(got["a"]) != "value": // the one value ever sealed for this session and name
			t.Fatalf("%x opened as %q", stored, got["a"])
		}
	})
}
