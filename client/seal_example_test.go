package client_test

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"github.com/sessionha/sessionha/client"
)

// A keyring as SESSIONHA_SEAL_KEYS writes it: the first key seals, every key opens. A
// store with it (Config.Keyring, or ConfigFromEnv) seals every attribute value before it
// leaves the process.
func ExampleParseKeyring() {
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, client.KeySize)) // openssl rand -base64 32
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, client.KeySize))
	keys, err := client.ParseKeyring("k2:" + k2 + ",k1:" + k1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(keys) // never prints a key

	id := "an-id-as-the-cookie-holds-it"
	sealed, _ := keys.Seal("default", id, "roles", []byte("admin"))
	keyID, isSealed := client.SealedBy(sealed)
	fmt.Println(keyID, isSealed, len(sealed)-len("admin"), "bytes more")

	v, by, err := keys.Open("default", id, "roles", sealed)
	fmt.Println(string(v), by, err)
	_, _, err = keys.Open("default", id, "groups", sealed) // moved to another attribute
	fmt.Println(err)
	// Output:
	// seals with k2, opens k1, k2
	// k2 true 35 bytes more
	// admin k2 <nil>
	// client: sealed attribute value does not open: attribute "groups": does not open with key k2: changed since it was sealed, or sealed for another session or attribute
}
