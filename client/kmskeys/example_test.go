package kmskeys_test

import (
	"fmt"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/kmskeys"
)

// With the package imported, ConfigFromEnv reads SESSIONHA_SEAL_KMS_KEYS and
// SESSIONHA_SEAL_KMS_KEY_ARN, and Open unwraps the keys with one kms:Decrypt each:
//
//	import _ "github.com/sessionha/sessionha/client/kmskeys"
//
//	cfg, err := client.ConfigFromEnv()
//	store, err := client.Open(ctx, cfg)
//
// Without the environment, a program sets the source itself.
func ExampleSource() {
	keys, err := kmskeys.Parse("k1:eu-west-1=AQICAHg")
	if err != nil {
		fmt.Println(err)
		return
	}
	src, err := kmskeys.Source(keys, "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := client.Config{KeyringSource: src} // Open calls KMS (cfg.AWS, or the SDK's default chain)
	_ = cfg
	_, err = kmskeys.Source(keys, "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	fmt.Println(err)
	// Output:
	// SESSIONHA_SEAL_KMS_KEYS: key k1 has no blob for us-east-1, the region of SESSIONHA_SEAL_KMS_KEY_ARN (arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab): wrap it for this site too (sessionctl seal-key wrap)
}
