package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/kmskeys"
	"github.com/sessionha/sessionha/internal/record"
)

// Sealing keys: make one (local, or wrapped by every site's KMS seal key), wrap one for a
// new site, and count which keys the stored values use, the step of a rotation that
// says when an old key may go. get --values opens values with the configured keyring.

func init() {
	commands = append(commands, &command{
		name: "seal-key new", args: "--id ID [--kms-key ARN]...",
		summary: "make a key that seals attribute values",
		help: `
Makes a sealing key with the given id and prints its keyring entry on stdout, to add to
every instance's keyring (see the README's "Sealed attributes" for the rotation steps).

Without --kms-key it prints "ID:<32 random bytes in base64>" for SESSIONHA_SEAL_KEYS or a
key file (SESSIONHA_SEAL_KEY_FILE): the key itself, in clear; keep it like a password.

With --kms-key, once for each site's seal key (SESSIONHA_SEAL_KMS_KEY_ARN of each site's
env file, one per region), it asks KMS for a data key under the first (GenerateDataKey)
and has every other encrypt the same key (Encrypt), and prints
"ID:REGION=BLOB/REGION=BLOB" for SESSIONHA_SEAL_KMS_KEYS: one value for every site, each
unwrapping its own region's blob at Open. The key in clear never leaves this process.
It needs kms:GenerateDataKey and kms:Encrypt on those keys (an administrator's role; the
auth servers may only decrypt).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			id := fs.String("id", "", "the key's `ID`: 1-32 characters of A-Z, a-z, 0-9, '.', '_' and '-' (required)")
			var arns []string
			fs.Func("kms-key", "a site's seal key `ARN` (repeat for every site)", func(v string) error { arns = append(arns, v); return nil })
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("seal-key new takes no arguments, got %q", args[0])
				}
				if *id == "" {
					return usagef("seal-key new: --id ID is required")
				}
				return a.sealKeyNew(ctx, *id, arns)
			}
		},
	}, &command{
		name: "seal-key wrap", args: "--key ENTRY --from ARN --kms-key ARN...",
		summary: "wrap a KMS sealing key for one more site",
		help: `
Adds to a KMS-wrapped key (an entry of SESSIONHA_SEAL_KMS_KEYS, "ID:REGION=BLOB/...") a
blob for each --kms-key whose region it lacks: a site added since the key was made. It
unwraps the key with --from (a seal key it has a blob for) and has each new key encrypt
it, then prints the new entry. It needs kms:Decrypt on --from and kms:Encrypt on the new
keys.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			entry := fs.String("key", "", "the key's `ENTRY` as SESSIONHA_SEAL_KMS_KEYS holds it (required)")
			from := fs.String("from", "", "`ARN` of a seal key the entry has a blob for (required)")
			var arns []string
			fs.Func("kms-key", "a new site's seal key `ARN` (repeat for each)", func(v string) error { arns = append(arns, v); return nil })
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 || *entry == "" || *from == "" || len(arns) == 0 {
					return usagef("seal-key wrap: want --key ENTRY --from ARN and at least one --kms-key ARN")
				}
				return a.sealKeyWrap(ctx, *entry, *from, arns)
			}
		},
	}, &command{
		name: "seal-key usage", args: "[--cluster NAME]",
		summary: "count the stored values each sealing key seals",
		help: `
Scans the table and counts, for the cluster's live sessions, the attribute values sealed
by each key id, and those in clear, with how many sessions hold any. A rotation's old key
may leave the keyrings once it counts none here (and no journal of a stopped instance
holds one); until then every instance must keep it. It reads every item of the table:
on AWS a scan costs read units for the whole table.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			cluster := fs.String("cluster", "", "the cluster `NAME` (default SESSIONHA_CLUSTER, else default)")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("seal-key usage takes no arguments, got %q", args[0])
				}
				return a.sealKeyUsage(ctx, *cluster)
			}
		},
	})
}

func (a *app) kmsFor(c *clients) func(region string) kmskeys.API {
	return func(region string) kmskeys.API {
		cfg := c.cfg.Copy()
		cfg.Region = region
		return kms.NewFromConfig(cfg)
	}
}

func (a *app) sealKeyNew(ctx context.Context, id string, arns []string) error {
	if len(arns) == 0 {
		key := make([]byte, client.KeySize)
		_, _ = rand.Read(key)
		entry := id + ":" + base64.StdEncoding.EncodeToString(key)
		if _, err := client.ParseKeyring(entry); err != nil {
			return usagef("seal-key new: %v", err)
		}
		fmt.Fprintln(a.stdout, entry)
		return nil
	}
	c, err := newClients(ctx)
	if err != nil {
		return err
	}
	w, err := kmskeys.NewKey(ctx, id, arns, a.kmsFor(c))
	if err != nil {
		return fmt.Errorf("seal-key new: %w", err)
	}
	fmt.Fprintln(a.stdout, w.String())
	return nil
}

func (a *app) sealKeyWrap(ctx context.Context, entry, from string, arns []string) error {
	keys, err := kmskeys.Parse(entry)
	if err != nil {
		return usagef("seal-key wrap: --key: %v", err)
	}
	if len(keys) != 1 {
		return usagef("seal-key wrap: --key: want one entry, got %d", len(keys))
	}
	c, err := newClients(ctx)
	if err != nil {
		return err
	}
	w, err := kmskeys.Wrap(ctx, keys[0], from, arns, a.kmsFor(c))
	if err != nil {
		return fmt.Errorf("seal-key wrap: %w", err)
	}
	fmt.Fprintln(a.stdout, w.String())
	return nil
}

func (a *app) sealKeyUsage(ctx context.Context, cluster string) error {
	cluster, table, err := clusterTable(cluster)
	if err != nil {
		return err
	}
	c, err := newClients(ctx)
	if err != nil {
		return err
	}
	values, sessions := map[string]int{}, map[string]int{}
	live := 0
	now := a.now()
	db := c.dynamodb()
	in := &dynamodb.ScanInput{TableName: aws.String(table)}
	for {
		page, err := db.Scan(ctx, in)
		if err != nil {
			return explain(err, "scan")
		}
		for _, raw := range page.Items {
			it, err := record.Unmarshal(raw)
			if err != nil || !strings.HasPrefix(it.Key, cluster+"#") || !it.Readable(now) {
				continue
			}
			live++
			seen := map[string]bool{}
			for _, v := range it.Attrs {
				id, sealed := client.SealedBy(v)
				if !sealed {
					id = "(clear)"
				}
				values[id]++
				seen[id] = true
			}
			for id := range seen {
				sessions[id]++
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEY\tVALUES\tSESSIONS")
	for _, id := range slices.Sorted(maps.Keys(values)) {
		fmt.Fprintf(w, "%s\t%d\t%d\n", id, values[id], sessions[id])
	}
	w.Flush()
	fmt.Fprintf(a.stdout, "%d live sessions in cluster %s (expired and destroyed ones are not counted: no read returns them)\n", live, cluster)
	return nil
}

// keyring is the keyring the environment configures (nil for none), to open values with.
func keyring(ctx context.Context) (*client.Keyring, error) {
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	if cfg.Keyring == nil && cfg.KeyringSource != nil {
		return cfg.KeyringSource.Keyring(ctx, nil)
	}
	return cfg.Keyring, nil
}

// showStored describes one stored value for get: which key sealed it, and with values
// the value, opened when it is sealed, or why it does not open.
func showStored(k *client.Keyring, keyErr error, cluster, id, name string, stored []byte, values bool) (sealedBy, value string) {
	keyID, sealed := client.SealedBy(stored)
	if !sealed {
		if values {
			value = showValue(stored)
		}
		return "", value
	}
	sealedBy = ", sealed by " + keyID
	if !values {
		return sealedBy, ""
	}
	if keyErr != nil {
		return sealedBy, "(cannot open: no keyring: " + keyErr.Error() + ")"
	}
	v, _, err := k.Open(cluster, id, name, stored)
	if err != nil {
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, client.ErrSealed.Error()+": "); ok {
			msg = rest
		}
		return sealedBy, "(cannot open: " + msg + ")"
	}
	return sealedBy, showValue(v)
}
