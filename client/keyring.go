package client

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

// KeySize is the size of a sealing key: AES-256.
const KeySize = 32

// maxKeyIDBytes bounds a key id: it is stored with every sealed value.
const maxKeyIDBytes = 32

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// A Keyring holds the keys that seal attribute values (seal.go): one key seals, every
// key opens. Keys rotate without logging anyone out: give every instance the new key to
// open with, then make it the one that seals, and drop the old one once no stored value
// uses it (see the README's "Sealed attributes"). A Keyring is immutable and safe for
// concurrent use. It never prints its keys: String and GoString name the ids only.
type Keyring struct {
	sealWith string            // "": seals nothing (values go in clear); every key still opens
	keys     map[string][]byte // id -> KeySize bytes
}

// NewKeyring returns a keyring that seals with the key named sealWith and opens with
// every key of keys (id -> KeySize bytes); with sealWith "" it seals nothing, for turning
// sealing on or off across a fleet (see SealingWith). Ids are 1-32 characters of A-Z,
// a-z, 0-9, '.', '_' and '-'; they are stored, in clear, with every value they seal. The
// keys are copied.
func NewKeyring(sealWith string, keys map[string][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	k := &Keyring{sealWith: sealWith, keys: make(map[string][]byte, len(keys))}
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		if !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("key id %.40q: want 1-%d characters of A-Z, a-z, 0-9, '.', '_' and '-'", id, maxKeyIDBytes)
		}
		if n := len(keys[id]); n != KeySize {
			return nil, fmt.Errorf("key %s: want %d bytes (AES-256), got %d", id, KeySize, n)
		}
		k.keys[id] = bytes.Clone(keys[id])
	}
	if _, ok := k.keys[sealWith]; !ok && sealWith != "" {
		return nil, fmt.Errorf("the sealing key %.40q is not among the keys (%s)", sealWith, strings.Join(k.KeyIDs(), ", "))
	}
	return k, nil
}

// SealingWith returns the keyring with the key id sealing instead (its keys shared), or
// with "" sealing nothing: every key still opens, values go in clear. That is the first
// step of turning sealing on across running instances (every instance must open sealed
// values before any seals) and the way to turn it off (sealed values keep opening).
// SESSIONHA_SEAL_WITH sets it: an id, or "none".
func (k *Keyring) SealingWith(id string) (*Keyring, error) {
	if k == nil {
		return nil, errors.New("no keyring")
	}
	if _, ok := k.keys[id]; !ok && id != "" {
		return nil, fmt.Errorf("key %.40q is not among the keys (%s)", id, strings.Join(k.KeyIDs(), ", "))
	}
	return &Keyring{sealWith: id, keys: k.keys}, nil
}

// ParseKeyring reads a keyring written as SESSIONHA_SEAL_KEYS takes it:
// "id:key,id:key,...", each key KeySize bytes in base64 (standard or URL alphabet,
// padded or not: `openssl rand -base64 32` makes one). The first entry seals; the others
// only open. Errors name the entry by position and id, never a key.
func ParseKeyring(spec string) (*Keyring, error) {
	var entries []string
	for e := range strings.SplitSeq(spec, ",") {
		if e = strings.TrimSpace(e); e != "" {
			entries = append(entries, e)
		}
	}
	return keyringOf(entries, "entry")
}

// ReadKeyringFile reads a keyring from a file, as SESSIONHA_SEAL_KEY_FILE names it: one
// "id:key" entry per line (as ParseKeyring's), blank lines and lines starting with #
// skipped; the first entry seals. The file must not be readable by group or others
// (chmod 600), as ssh insists for its keys.
func ReadKeyringFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %#o): it holds keys; chmod 600 it", path, perm)
	}
	var entries []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		entries = append(entries, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return keyringOf(entries, "line")
}

// keyringOf makes a keyring of "id:base64" entries, the first sealing; what names an
// entry in errors ("entry", "line").
func keyringOf(entries []string, what string) (*Keyring, error) {
	if len(entries) == 0 {
		return nil, errors.New(`no keys: want "id:base64key", the first entry sealing`)
	}
	keys := map[string][]byte{}
	for i, e := range entries {
		id, enc, ok := strings.Cut(e, ":")
		id = strings.TrimSpace(id)
		if !ok || !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf(`%s %d: want "id:base64key" with an id of 1-%d characters of A-Z, a-z, 0-9, '.', '_' and '-'`, what, i+1, maxKeyIDBytes)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("%s %d: key id %s given twice", what, i+1, id)
		}
		key, err := DecodeKey(enc)
		if err != nil {
			return nil, fmt.Errorf("%s %d (key %s): %w", what, i+1, id, err)
		}
		keys[id] = key
	}
	first, _, _ := strings.Cut(entries[0], ":")
	return NewKeyring(strings.TrimSpace(first), keys)
}

// DecodeKey decodes a base64 key (standard or URL alphabet, padded or not) of KeySize
// bytes. Its errors never hold the key.
func DecodeKey(enc string) ([]byte, error) {
	enc = strings.TrimSpace(enc)
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := e.DecodeString(enc); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("want %d bytes (AES-256: openssl rand -base64 32), got %d", KeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("not base64: want %d random bytes in base64 (openssl rand -base64 32)", KeySize)
}

// SealingKey is the id of the key that seals, "" for none.
func (k *Keyring) SealingKey() string {
	if k == nil {
		return ""
	}
	return k.sealWith
}

// KeyIDs lists the ids of the keys that open, sorted.
func (k *Keyring) KeyIDs() []string {
	if k == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(k.keys))
}

// String names the keys, never their bytes: "seals with k2, opens k1, k2".
func (k *Keyring) String() string {
	if k == nil {
		return "no keyring"
	}
	seals := "seals with " + k.sealWith
	if k.sealWith == "" {
		seals = "seals nothing"
	}
	return seals + ", opens " + strings.Join(k.KeyIDs(), ", ")
}

// GoString is String, so that %#v prints no key either.
func (k *Keyring) GoString() string { return "client.Keyring(" + k.String() + ")" }
