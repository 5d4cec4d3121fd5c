package client

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Where a store's Keyring comes from: Config.Keyring, or the environment
// (SESSIONHA_SEAL_KEYS, SESSIONHA_SEAL_KEY_FILE), or a provider that holds the keys
// wrapped, as KMS does (Config.KeyringSource; SESSIONHA_SEAL_KMS_KEYS with client/kmskeys).

// The variables that configure sealing.
const (
	EnvSealKeys      = "SESSIONHA_SEAL_KEYS"        // "id:base64key,...", the first sealing
	EnvSealKeyFile   = "SESSIONHA_SEAL_KEY_FILE"    // a file of "id:base64key" lines, the first sealing
	EnvSealKMSKeys   = "SESSIONHA_SEAL_KMS_KEYS"    // KMS-wrapped data keys (client/kmskeys)
	EnvSealKMSKeyARN = "SESSIONHA_SEAL_KMS_KEY_ARN" // the site's KMS key, which unwraps them
	EnvSealWith      = "SESSIONHA_SEAL_WITH"        // the key id that seals, or "none"; default the first
)

// KeyringSource gives Open a Keyring whose keys a service holds, such as KMS
// (kmskeys.Source). awsCfg is Config.AWS: nil means the SDK's default chain. An
// interface rather than a func, so that Config stays comparable.
type KeyringSource interface {
	Keyring(ctx context.Context, awsCfg *aws.Config) (*Keyring, error)
}

// kmsFromEnv is set by client/kmskeys when a program imports it (RegisterKMS), so that
// a program that seals without KMS links none of the KMS client.
var kmsFromEnv func(keys, keyARN string) (KeyringSource, error)

// RegisterKMS lets ConfigFromEnv read SESSIONHA_SEAL_KMS_KEYS and
// SESSIONHA_SEAL_KMS_KEY_ARN: client/kmskeys calls it from its init, so importing that
// package (import _ "github.com/sessionha/sessionha/client/kmskeys") is all a program
// needs. fromEnv returns the source for the variables' values, or an error saying what
// is wrong with them, never holding a key.
func RegisterKMS(fromEnv func(keys, keyARN string) (KeyringSource, error)) { kmsFromEnv = fromEnv }

// sealFromEnv sets c's Keyring (or KeyringSource) from the sealing variables. Errors
// name the variable, never a key.
func sealFromEnv(c *Config) error {
	get := func(name string) string { return strings.TrimSpace(os.Getenv(name)) }
	c.SealWith = get(EnvSealWith)
	keys, file, kms := get(EnvSealKeys), get(EnvSealKeyFile), get(EnvSealKMSKeys)
	set := 0
	for _, v := range []string{keys, file, kms} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return fmt.Errorf("client: set one of %s, %s and %s, not several", EnvSealKeys, EnvSealKeyFile, EnvSealKMSKeys)
	}
	var err error
	switch {
	case keys != "":
		if c.Keyring, err = ParseKeyring(keys); err != nil {
			return fmt.Errorf("client: %s: %w", EnvSealKeys, err)
		}
	case file != "":
		if c.Keyring, err = ReadKeyringFile(file); err != nil {
			return fmt.Errorf("client: %s: %w", EnvSealKeyFile, err)
		}
	case kms != "":
		if kmsFromEnv == nil {
			return fmt.Errorf(`client: %s: keys wrapped by KMS need the KMS provider: import _ "github.com/sessionha/sessionha/client/kmskeys" in the program`, EnvSealKMSKeys)
		}
		if c.KeyringSource, err = kmsFromEnv(kms, get(EnvSealKMSKeyARN)); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	}
	return nil
}

// resolveKeyring asks KeyringSource for the Keyring when none is set, and makes SealWith
// the sealing key.
func (c *Config) resolveKeyring(ctx context.Context) error {
	if c.Keyring == nil && c.KeyringSource != nil {
		k, err := c.KeyringSource.Keyring(ctx, c.AWS)
		if err != nil {
			return fmt.Errorf("client: Keyring (%s): %w", EnvSealKMSKeys, err)
		}
		if k == nil {
			return fmt.Errorf("client: KeyringSource returned no keyring")
		}
		c.Keyring = k
	}
	switch {
	case c.SealWith == "":
	case c.Keyring == nil:
		return fmt.Errorf("client: SealWith (%s) %q needs a keyring (%s, %s or %s)", EnvSealWith, c.SealWith, EnvSealKeys, EnvSealKeyFile, EnvSealKMSKeys)
	default:
		id := c.SealWith
		if id == "none" {
			id = ""
		}
		k, err := c.Keyring.SealingWith(id)
		if err != nil {
			return fmt.Errorf("client: SealWith (%s): %w", EnvSealWith, err)
		}
		c.Keyring = k
	}
	return nil
}
