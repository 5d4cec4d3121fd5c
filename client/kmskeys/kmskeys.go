// Package kmskeys gives the sessionha client a keyring whose keys AWS KMS holds, so
// that no sealing key sits in clear in an auth server's configuration. Import it for
// its effect and client.ConfigFromEnv reads the two variables it adds:
//
//	import _ "github.com/sessionha/sessionha/client/kmskeys"
//
//	SESSIONHA_SEAL_KMS_KEY_ARN  the site's seal key (a stack output), which unwraps
//	SESSIONHA_SEAL_KMS_KEYS     k2:eu-west-1=BLOB/us-east-1=BLOB,k1:eu-west-1=BLOB/...
//
// Each entry of SESSIONHA_SEAL_KMS_KEYS is one sealing key: its id, then the same
// 32-byte data key wrapped by each site's seal key (a KMS CiphertextBlob, base64url, per
// region); the first entry seals, the others only open. `sessionctl seal-key new` makes
// an entry: GenerateDataKey under one site's seal key, Encrypt of that data key under
// every other's. Every instance of every site gets the same value and unwraps its own
// region's blobs, with one kms:Decrypt per key at Open; the keys then stay in memory for
// the life of the process, and KMS is not called again. So a value sealed in one region
// opens in every other, and a region's instances need only their own region's KMS, also
// when another region is down.
//
// Why not a data key per process, carried with each value (GenerateDataKey at start,
// the CiphertextBlob in every value's envelope)? That blob is about 180 bytes; in every
// one of a session's values it would more than double the reference session's 2 KB
// (and its write units), and a blob made in one region would open in another only with
// a multi-Region key, whose replicas CloudFormation cannot name across the sites'
// stacks. Looking blobs up instead would need a store that bus-only instances cannot
// reach. A key made once and configured everywhere costs 35 bytes a value and no call
// after Open; it rotates as a key from the environment does (the README's "Sealed
// attributes").
//
// Every wrap and unwrap carries the encryption context {"sessionha-purpose": "seal",
// "sessionha-key-id": <id>}: a blob opens only as the key id it was made for, and the
// auth servers' policies allow kms:Decrypt on the seal key only with that purpose.
package kmskeys

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/infra/topology"
)

func init() {
	client.RegisterKMS(func(keys, keyARN string) (client.KeyringSource, error) {
		ks, err := Parse(keys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", client.EnvSealKMSKeys, err)
		}
		return Source(ks, keyARN)
	})
}

// API is the part of KMS this package calls.
type API interface {
	Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error)
	GenerateDataKey(context.Context, *kms.GenerateDataKeyInput, ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Encrypt(context.Context, *kms.EncryptInput, ...func(*kms.Options)) (*kms.EncryptOutput, error)
}

// WrappedKey is one sealing key as SESSIONHA_SEAL_KMS_KEYS carries it: its id and, by
// region, the key as that region's seal key encrypted it (a KMS CiphertextBlob).
type WrappedKey struct {
	ID    string
	Blobs map[string][]byte
}

// String is the key's entry: "id:region=base64url/region=base64url", regions sorted.
// It holds no key in clear: only KMS can open a blob.
func (w WrappedKey) String() string {
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(w.Blobs)) {
		parts = append(parts, r+"="+base64.RawURLEncoding.EncodeToString(w.Blobs[r]))
	}
	return w.ID + ":" + strings.Join(parts, "/")
}

// Format writes keys as SESSIONHA_SEAL_KMS_KEYS takes them, the first sealing.
func Format(keys []WrappedKey) string {
	var entries []string
	for _, k := range keys {
		entries = append(entries, k.String())
	}
	return strings.Join(entries, ",")
}

var (
	keyID  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)
	region = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
)

// Parse reads SESSIONHA_SEAL_KMS_KEYS: entries "id:region=blob/region=blob" separated by
// commas, the first sealing. Errors name the entry, never a blob.
func Parse(spec string) ([]WrappedKey, error) {
	var keys []WrappedKey
	seen := map[string]bool{}
	for e := range strings.SplitSeq(spec, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		n := len(keys) + 1
		id, rest, ok := strings.Cut(e, ":")
		if !ok || !keyID.MatchString(id) {
			return nil, fmt.Errorf(`entry %d: want "id:region=blob/region=blob" with an id of 1-32 characters of A-Z, a-z, 0-9, '.', '_' and '-'`, n)
		}
		if seen[id] {
			return nil, fmt.Errorf("entry %d: key id %s given twice", n, id)
		}
		seen[id] = true
		w := WrappedKey{ID: id, Blobs: map[string][]byte{}}
		for part := range strings.SplitSeq(rest, "/") {
			r, enc, ok := strings.Cut(part, "=")
			if !ok || !region.MatchString(r) {
				return nil, fmt.Errorf("entry %d (key %s): want region=blob pairs separated by '/', such as eu-west-1=<base64url>", n, id)
			}
			blob, err := base64.RawURLEncoding.DecodeString(enc)
			if err != nil || len(blob) == 0 {
				return nil, fmt.Errorf("entry %d (key %s): the blob of %s is not base64url", n, id, r)
			}
			if _, dup := w.Blobs[r]; dup {
				return nil, fmt.Errorf("entry %d (key %s): region %s given twice", n, id, r)
			}
			w.Blobs[r] = blob
		}
		keys = append(keys, w)
	}
	if len(keys) == 0 {
		return nil, errors.New(`no keys: want "id:region=blob/...", the first entry sealing (sessionctl seal-key new makes one)`)
	}
	return keys, nil
}

// RegionOf is the region of a KMS key or alias ARN.
func RegionOf(arn string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kms" || !region.MatchString(parts[3]) ||
		!(strings.HasPrefix(parts[5], "key/") || strings.HasPrefix(parts[5], "alias/")) {
		return "", fmt.Errorf("%q is not the ARN of a KMS key, such as arn:aws:kms:eu-west-1:123456789012:key/<id>", arn)
	}
	return parts[3], nil
}

// encryptionContext binds a wrapped key to its purpose and id.
func encryptionContext(id string) map[string]string {
	return map[string]string{topology.SealContextPurposeKey: topology.SealContextPurpose, topology.SealContextKeyID: id}
}

// source unwraps keys with keyARN when Open asks (client.KeyringSource).
type source struct {
	keys   []WrappedKey
	keyARN string
	region string
}

// Source is a client.KeyringSource that unwraps keys with the seal key keyARN, in its
// region, at Open: one kms:Decrypt per key, nothing after.
func Source(keys []WrappedKey, keyARN string) (client.KeyringSource, error) {
	if keyARN == "" {
		return nil, fmt.Errorf("%s needs %s: the site's seal key (a stack output), which unwraps them", client.EnvSealKMSKeys, client.EnvSealKMSKeyARN)
	}
	r, err := RegionOf(keyARN)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", client.EnvSealKMSKeyARN, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no keys", client.EnvSealKMSKeys)
	}
	for _, k := range keys {
		if _, ok := k.Blobs[r]; !ok {
			return nil, fmt.Errorf("%s: key %s has no blob for %s, the region of %s (%s): wrap it for this site too (sessionctl seal-key wrap)",
				client.EnvSealKMSKeys, k.ID, r, client.EnvSealKMSKeyARN, keyARN)
		}
	}
	return &source{keys: keys, keyARN: keyARN, region: r}, nil
}

// Keyring unwraps the keys with a KMS client in the seal key's region, made from awsCfg
// (nil: the SDK's default chain).
func (s *source) Keyring(ctx context.Context, awsCfg *aws.Config) (*client.Keyring, error) {
	var cfg aws.Config
	if awsCfg != nil {
		cfg = awsCfg.Copy()
	} else {
		var err error
		if cfg, err = config.LoadDefaultConfig(ctx); err != nil {
			return nil, fmt.Errorf("AWS configuration: %v", err)
		}
	}
	cfg.Region = s.region
	return Unwrap(ctx, kms.NewFromConfig(cfg), s.keys, s.keyARN)
}

// Unwrap decrypts each key's blob for keyARN's region with keyARN and returns the
// keyring, sealing with the first key. Errors name the key id, the region and KMS's
// error code, never a key.
func Unwrap(ctx context.Context, api API, keys []WrappedKey, keyARN string) (*client.Keyring, error) {
	r, err := RegionOf(keyARN)
	if err != nil {
		return nil, err
	}
	plain := map[string][]byte{}
	defer func() {
		for _, p := range plain {
			clear(p)
		}
	}()
	for _, k := range keys {
		blob, ok := k.Blobs[r]
		if !ok {
			return nil, fmt.Errorf("key %s has no blob for %s", k.ID, r)
		}
		out, err := api.Decrypt(ctx, &kms.DecryptInput{
			CiphertextBlob: blob, KeyId: aws.String(keyARN), EncryptionContext: encryptionContext(k.ID),
		})
		if err != nil {
			return nil, fmt.Errorf("key %s: KMS Decrypt with %s: %s", k.ID, keyARN, describe(err))
		}
		plain[k.ID] = out.Plaintext
	}
	return client.NewKeyring(keys[0].ID, plain)
}

// NewKey makes a sealing key with the given id, wrapped by each of keyARNs (the seal
// keys of the deployment's sites, one per region): GenerateDataKey under the first, then
// Encrypt of the same data key under each other. apiFor returns a KMS client for a
// region. The data key in clear never leaves this call.
func NewKey(ctx context.Context, id string, keyARNs []string, apiFor func(region string) API) (WrappedKey, error) {
	if !keyID.MatchString(id) {
		return WrappedKey{}, fmt.Errorf("key id %q: want 1-32 characters of A-Z, a-z, 0-9, '.', '_' and '-'", id)
	}
	if len(keyARNs) == 0 {
		return WrappedKey{}, errors.New("no KMS key to wrap it with")
	}
	w := WrappedKey{ID: id, Blobs: map[string][]byte{}}
	var plain []byte
	defer func() { clear(plain) }()
	for i, arn := range keyARNs {
		r, err := RegionOf(arn)
		if err != nil {
			return WrappedKey{}, err
		}
		if _, dup := w.Blobs[r]; dup {
			return WrappedKey{}, fmt.Errorf("two seal keys in %s: give one per region", r)
		}
		api := apiFor(r)
		if i == 0 {
			out, err := api.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
				KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, EncryptionContext: encryptionContext(id),
			})
			if err != nil {
				return WrappedKey{}, fmt.Errorf("KMS GenerateDataKey with %s: %s", arn, describe(err))
			}
			plain, w.Blobs[r] = out.Plaintext, out.CiphertextBlob
			continue
		}
		out, err := api.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: plain, EncryptionContext: encryptionContext(id)})
		if err != nil {
			return WrappedKey{}, fmt.Errorf("KMS Encrypt with %s: %s", arn, describe(err))
		}
		w.Blobs[r] = out.CiphertextBlob
	}
	return w, nil
}

// Wrap adds to w a blob for each of keyARNs not yet in it (a site added since the key
// was made): Decrypt with a seal key that w has a blob for (from, its ARN), then
// Encrypt under each new one.
func Wrap(ctx context.Context, w WrappedKey, from string, keyARNs []string, apiFor func(region string) API) (WrappedKey, error) {
	fr, err := RegionOf(from)
	if err != nil {
		return w, err
	}
	blob, ok := w.Blobs[fr]
	if !ok {
		return w, fmt.Errorf("key %s has no blob for %s, the region of %s", w.ID, fr, from)
	}
	out, err := apiFor(fr).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String(from), EncryptionContext: encryptionContext(w.ID)})
	if err != nil {
		return w, fmt.Errorf("key %s: KMS Decrypt with %s: %s", w.ID, from, describe(err))
	}
	plain := out.Plaintext
	defer clear(plain)
	next := WrappedKey{ID: w.ID, Blobs: maps.Clone(w.Blobs)}
	for _, arn := range keyARNs {
		r, err := RegionOf(arn)
		if err != nil {
			return w, err
		}
		if _, have := next.Blobs[r]; have {
			continue
		}
		enc, err := apiFor(r).Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: plain, EncryptionContext: encryptionContext(w.ID)})
		if err != nil {
			return w, fmt.Errorf("KMS Encrypt with %s: %s", arn, describe(err))
		}
		next.Blobs[r] = enc.CiphertextBlob
	}
	return next, nil
}

// describe says what KMS answered without handing its SDK error types on.
func describe(err error) string {
	var ic *types.InvalidCiphertextException
	if errors.As(err, &ic) {
		return "InvalidCiphertextException (the blob was not made by this key, for this key id, or it was changed)"
	}
	return err.Error()
}
