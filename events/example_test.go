package events_test

import (
	"errors"
	"fmt"

	"github.com/sessionha/sessionha/events"
)

func ExampleEncodeSessionOp() {
	b, err := events.EncodeSessionOp(&events.SessionOp{
		V:       events.SchemaVersion,
		Op:      events.OpCreate,
		Cluster: "default",
		ID:      events.HashID("AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEErxVPvx8.*AAJTSQACMDE.*"),
		Version: "0193512b1c0c0001",
		Writer:  "auth-a",
		Site:    "local",
		At:      1732233600012,
		Session: &events.Session{
			Principal:  "jdoe",
			Created:    1732233600000,
			LastAccess: 1732233600000,
			MaxIdle:    1800,
			MaxLife:    7200,
			Attrs:      map[string][]byte{"Locale": []byte("en-US")},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))

	op, err := events.DecodeSessionOp(b)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(op.Op, op.Session.Principal, string(op.Session.Attrs["Locale"]), op.Expires().UTC())
	// Output:
	// {"v":1,"op":"create","cluster":"default","id":"vIF74XTvNRmnpgRJ17cyXW1L-1sgRt7B5qjL9KFMOKA","ver":"0193512b1c0c0001","writer":"auth-a","site":"local","at":1732233600012,"session":{"principal":"jdoe","created":1732233600000,"lastAccess":1732233600000,"maxIdle":1800,"maxLife":7200,"attrs":{"Locale":"ZW4tVVM="}}}
	// create jdoe en-US 2024-11-22 00:30:00 +0000 UTC
}

func ExampleDecodeSessionOp() {
	for _, msg := range []string{
		`{"v":1,"op":"destroy","cluster":"default","id":"vIF74XTvNRmnpgRJ17cyXW1L-1sgRt7B5qjL9KFMOKA","ver":"01935132c85d0001","writer":"auth-a","site":"local","at":1732234102877,"reason":"logout"}`,
		`{"v":2,"op":"destroy"}`,
		`{"v":1,"op":"destroy","cluster":"default","id":"vIF74XTvNRmn","ver":"01935132c85d0001","writer":"auth-a","site":"local","at":1732234102877}`,
	} {
		op, err := events.DecodeSessionOp([]byte(msg))
		switch {
		case err == nil:
			fmt.Println("apply:", op.Op, op.Reason)
		case errors.Is(err, events.ErrSchemaVersion):
			fmt.Println("keep for another build:", err)
		default:
			fmt.Println("drop:", err)
		}
	}
	// Output:
	// apply: destroy logout
	// keep for another build: events: schema version 2 not supported (this build reads 1)
	// drop: events: session op field "id": want 43 base64url characters encoding a 32-byte SHA-256, got 12 characters
}

func ExampleDecodeLifecycle() {
	// As an auditor's queue receives it from the lifecycle topic (raw delivery).
	msg := `{"v":1,"key":"MEr-5vPphkmEh7UehQnfiqNs7_fzuQ1mpljQodbFxWM","kind":"destroyed","cluster":"default",` +
		`"id":"vIF74XTvNRmnpgRJ17cyXW1L-1sgRt7B5qjL9KFMOKA","principal":"jdoe","instance":"auth-a","site":"local",` +
		`"by":"auth-b","bySite":"local","reason":"revoked","at":1732234102000,"created":1732233600000}`
	e, err := events.DecodeLifecycle([]byte(msg))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Keep the first delivery of each key: every region and retry sends the same.
	seen := map[string]bool{}
	if !seen[e.Key] {
		seen[e.Key] = true
		fmt.Println(e.Kind, e.Reason, "by", e.By, "of", e.Principal+"'s session", e.ID[:8]+"…")
	}
	// Output:
	// destroyed revoked by auth-b of jdoe's session vIF74XTv…
}
