package client

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Sealed attribute values. With a Keyring, the store seals every attribute value before
// it leaves the process (the bus, the table, queues and dead-letter queues, the journal,
// session files) and opens it when it comes back. The functions never open a value: they
// merge bytes.
//
// A sealed value is an envelope, version 1:
//
//	offset  size        field
//	0       3           magic C1 5E A1 (0xC1 starts no UTF-8 text: no text value looks sealed)
//	3       1           version: 1
//	4       1           n: the key id's length, 1-32
//	5       n           the key id (A-Z a-z 0-9 . _ -), in clear: which key of the ring opens it
//	5+n     12          nonce: random, fresh for every value sealed
//	17+n    len(v)+16   AES-256-GCM ciphertext of the value, then its 16-byte tag
//
// so a value grows by 33 bytes plus its key id's length. The AES-256 key is not the
// keyring's key itself but one derived from it per session: HKDF-SHA256 with the
// keyring's key as secret, no salt, and info "sessionha seal v1" 0x00 followed by the
// session's table key (<cluster>#<hash of its id>). Random 96-bit nonces allow one
// AES-GCM key about 2^32 seals (NIST SP 800-38D, 8.3), which a site sealing 20 values a
// save at 1,000 saves a second would use up in under three days; a key per session moves
// that bound to each session, which never comes near it. The associated data is the
// header (bytes 0 to 5+n), the session key's length (2 bytes, big endian), the session
// key, and the attribute name: a value opens only as the attribute, of the session, that
// it was sealed for, and only under the key id it names.
//
// A value without the magic is clear: values written before sealing was turned on, or by
// a store without a keyring, still open, so a deployment turns sealing on without logging
// anyone out. That admits clear values from whoever may publish session ops, as it must
// for those values to keep opening; such a publisher could write any session anyway,
// principal included (the auth-server policies say who may). Sealing keeps values
// secret and tied to their session and attribute; it does not vouch for a session. A
// clear binary value that happens to begin with the magic (about one in 16 million random
// values; never text) reads as sealed and fails to open: seal, or turn sealing on before
// storing such values in clear.

var sealMagic = [3]byte{0xC1, 0x5E, 0xA1}

const (
	sealVersion  = 1
	sealNonce    = 12
	sealTag      = 16
	sealInfo     = "sessionha seal v1\x00"
	sealFixedLen = len(sealMagic) + 2 + sealNonce + sealTag // all but the key id
)

// SealOverhead is how many bytes sealing adds to a value under a key id of that length.
func SealOverhead(keyID string) int { return sealFixedLen + len(keyID) }

// SealedBy reports whether a stored value is sealed and, if so, the id of the key that
// sealed it. It opens nothing: a value whose envelope is damaged still names a key here
// and fails to open.
func SealedBy(stored []byte) (keyID string, sealed bool) {
	if !looksSealed(stored) {
		return "", false
	}
	if len(stored) < 5 || int(stored[4]) > len(stored)-5 {
		return "", true
	}
	return string(stored[5 : 5+int(stored[4])]), true
}

func looksSealed(v []byte) bool {
	return len(v) >= len(sealMagic) && [3]byte(v[:3]) == sealMagic
}

// sessionCipher seals and opens the values of one session under one key. It is not
// safe for concurrent use (its scratch buffer).
type sessionCipher struct {
	keyID  string
	aead   cipher.AEAD
	header []byte // magic, version, key id
	ad     []byte // header, session key length and session key; the name is appended
}

// cipherFor derives the cipher of session sessionKey (cluster#hash) under key id.
func (k *Keyring) cipherFor(id, sessionKey string) (*sessionCipher, error) {
	key, ok := k.keyOf(id)
	if !ok {
		return nil, fmt.Errorf("no key %s", id)
	}
	sub, err := hkdf.Key(sha256.New, key, nil, sealInfo+sessionKey, KeySize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	header := append(append(sealMagic[:len(sealMagic):len(sealMagic)], sealVersion, byte(len(id))), id...)
	ad := make([]byte, 0, len(header)+2+len(sessionKey)+events.MaxAttributeNameBytes)
	ad = append(ad, header...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(sessionKey)))
	ad = append(ad, sessionKey...)
	return &sessionCipher{keyID: id, aead: aead, header: header, ad: ad}, nil
}

func (c *sessionCipher) adFor(name string) []byte {
	base := len(c.header) + 2 + int(binary.BigEndian.Uint16(c.ad[len(c.header):]))
	c.ad = append(c.ad[:base], name...)
	return c.ad
}

// seal appends v sealed as attribute name with nonce (sealNonce bytes) to dst.
func (c *sessionCipher) seal(dst []byte, name string, v, nonce []byte) []byte {
	dst = append(dst, c.header...)
	dst = append(dst, nonce...)
	return c.aead.Seal(dst, nonce, v, c.adFor(name))
}

// sealAttrs returns attrs with every value sealed for the session with the sealing key:
// a new map (attrs may be an entry's, which is never changed in place).
func (k *Keyring) sealAttrs(sessionKey string, attrs map[string][]byte) (map[string][]byte, error) {
	if len(attrs) == 0 || k.sealWith == "" {
		return attrs, nil // nothing to seal, or a keyring that only opens
	}
	c, err := k.cipherFor(k.sealWith, sessionKey)
	if err != nil {
		return nil, err
	}
	nonces := make([]byte, sealNonce*len(attrs))
	_, _ = rand.Read(nonces) // never fails (crypto/rand panics instead)
	// One buffer for every sealed value (each a slice of it whose capacity ends where it
	// does): two allocations instead of one per value.
	size := 0
	for _, v := range attrs {
		size += len(c.header) + sealNonce + len(v) + sealTag
	}
	buf := make([]byte, 0, size)
	out := make(map[string][]byte, len(attrs))
	for name, v := range attrs {
		start := len(buf)
		buf = c.seal(buf, name, v, nonces[:sealNonce:sealNonce])
		out[name] = buf[start:len(buf):len(buf)]
		nonces = nonces[sealNonce:]
	}
	return out, nil
}

// opener opens the values of one session, deriving each key's cipher once.
type opener struct {
	k          *Keyring
	sessionKey string
	ciphers    map[string]*sessionCipher
}

// open opens one stored value of attribute name: a clear value as it is (keyID ""), a
// sealed one with its key, appended to dst (which may be nil); any failure wraps
// ErrSealed and names the attribute, never the value.
func (o *opener) open(name string, stored, dst []byte) ([]byte, string, error) {
	if !looksSealed(stored) {
		return stored, "", nil
	}
	if len(stored) < 5 {
		return o.fail(name, "", "a damaged sealed value (%d bytes)", len(stored))
	}
	if stored[3] != sealVersion {
		return o.fail(name, "", "sealed in envelope version %d, which this client does not know (a newer client's?)", stored[3])
	}
	n := int(stored[4])
	if n < 1 || n > maxKeyIDBytes || len(stored) < 5+n+sealNonce+sealTag {
		return o.fail(name, "", "a damaged sealed value (%d bytes)", len(stored))
	}
	c := o.ciphers[string(stored[5:5+n])] // no allocation for the lookup
	if c == nil {
		keyID := string(stored[5 : 5+n])
		switch _, have := o.k.keyOf(keyID); {
		case !keyIDPattern.MatchString(keyID):
			return o.fail(name, "", "a damaged sealed value (its key id is not one)")
		case o.k == nil:
			return o.fail(name, keyID, "sealed with key %s, and this store has no keyring (SESSIONHA_SEAL_KEYS, SESSIONHA_SEAL_KEY_FILE or SESSIONHA_SEAL_KMS_KEYS)", keyID)
		case !have:
			return o.fail(name, keyID, "sealed with key %s, which this store's keyring lacks (it opens %s)", keyID, strings.Join(o.k.KeyIDs(), ", "))
		}
		var err error
		if c, err = o.k.cipherFor(keyID, o.sessionKey); err != nil {
			return o.fail(name, keyID, "key %s: %v", keyID, err)
		}
		if o.ciphers == nil {
			o.ciphers = map[string]*sessionCipher{}
		}
		o.ciphers[keyID] = c
	}
	v, err := c.aead.Open(dst, stored[5+n:5+n+sealNonce], stored[5+n+sealNonce:], c.adFor(name))
	if err != nil {
		return o.fail(name, c.keyID, "does not open with key %s: changed since it was sealed, or sealed for another session or attribute", c.keyID)
	}
	if v == nil {
		v = []byte{}
	}
	return v, c.keyID, nil
}

// fail is open's error: ErrSealed, the attribute, what went wrong; never the value.
func (o *opener) fail(name, keyID, format string, args ...any) ([]byte, string, error) {
	return nil, keyID, fmt.Errorf("%w: attribute %.40q: %s", ErrSealed, name, fmt.Sprintf(format, args...))
}

// keyOf is the key of an id (a nil keyring has none).
func (k *Keyring) keyOf(id string) ([]byte, bool) {
	if k == nil {
		return nil, false
	}
	key, ok := k.keys[id]
	return key, ok
}

// openAttrs returns attrs with every sealed value opened: a new map, unless nothing in
// attrs is sealed. The first value that does not open fails it all (see ErrSealed).
func (k *Keyring) openAttrs(sessionKey string, attrs map[string][]byte) (map[string][]byte, error) {
	sealed := false
	for _, v := range attrs {
		if looksSealed(v) {
			sealed = true
			break
		}
	}
	if !sealed {
		return attrs, nil
	}
	o := &opener{k: k, sessionKey: sessionKey}
	// One buffer for every value (sealed ones opened, clear ones copied), each a slice of
	// it whose capacity ends where it does.
	size := 0
	for _, v := range attrs {
		if looksSealed(v) {
			size += max(0, len(v)-SealOverhead("")-int(v[min(4, len(v)-1)]))
		} else {
			size += len(v)
		}
	}
	buf := make([]byte, 0, size)
	out := make(map[string][]byte, len(attrs))
	for _, name := range slices.Sorted(maps.Keys(attrs)) { // sorted: the same attribute fails first every time
		stored := attrs[name]
		start := len(buf)
		if looksSealed(stored) {
			v, _, err := o.open(name, stored, buf)
			if err != nil {
				return nil, err
			}
			buf = v
		} else {
			buf = append(buf, stored...)
		}
		out[name] = buf[start:len(buf):len(buf)]
	}
	return out, nil
}

// Open opens one attribute value as the table stores it, of the session with id in
// cluster: a clear value is returned as it is, with keyID ""; a sealed one opened, with
// the id of the key that sealed it. It fails with an error wrapping ErrSealed when the
// value does not open: a key the keyring lacks (a nil Keyring has none), or a value
// changed since it was sealed, or sealed for another session or attribute. sessionctl
// get --values uses it.
func (k *Keyring) Open(cluster, id, name string, stored []byte) (value []byte, keyID string, err error) {
	o := &opener{k: k, sessionKey: record.Key(cluster, events.HashID(id))}
	return o.open(name, stored, nil)
}

// Seal seals value as attribute name of the session with id in cluster, with the
// keyring's sealing key, as a store with this keyring stores it.
func (k *Keyring) Seal(cluster, id, name string, value []byte) ([]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: no keyring to seal with", ErrSealed)
	}
	out, err := k.sealAttrs(record.Key(cluster, events.HashID(id)), map[string][]byte{name: value})
	if err != nil {
		return nil, err
	}
	return out[name], nil
}

// SealAll seals every value of attrs for the session with id in cluster, as a store
// with this keyring seals a whole session before sending it; attrs is not changed.
func (k *Keyring) SealAll(cluster, id string, attrs map[string][]byte) (map[string][]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: no keyring to seal with", ErrSealed)
	}
	return k.sealAttrs(record.Key(cluster, events.HashID(id)), attrs)
}

// OpenAll opens every sealed value of attrs, as stored for the session with id in
// cluster, as a store with this keyring opens a session it reads; clear values are kept
// as they are. The first value that does not open fails it all (ErrSealed).
func (k *Keyring) OpenAll(cluster, id string, attrs map[string][]byte) (map[string][]byte, error) {
	return k.openAttrs(record.Key(cluster, events.HashID(id)), attrs)
}

// LogValue names the keys, never their bytes.
func (k *Keyring) LogValue() slog.Value { return slog.StringValue(k.String()) }
