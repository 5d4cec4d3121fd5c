package client

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

var sqsQueueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// TestInstanceQueueNameKeepsIDsApart: ids that differ only in '.' against '_', or only
// past the part of the id the name keeps, get queues of their own; every name is a valid
// SQS queue name under the IAM prefix, the longest site and id included.
func TestInstanceQueueNameKeepsIDsApart(t *testing.T) {
	longSite := strings.Repeat("s", maxQueueSite)
	longID := strings.Repeat("i", 63)
	pairs := [][2]string{
		{"a.b", "a_b"},
		{"auth.1", "auth_1"},
		{"x.", "x_"},
		{longID + ".", longID + "_"},
		{longID + "a", longID + "b"}, // differ past the cut
		{"web-1", "web-1.local"},
	}
	for _, site := range []string{"local", longSite} {
		for _, p := range pairs {
			a, b := InstanceQueueName(site, p[0]), InstanceQueueName(site, p[1])
			if a == b {
				t.Errorf("site %q: ids %q and %q share the queue %q", site, p[0], p[1], a)
			}
		}
	}
}

func TestInstanceQueueNameFits(t *testing.T) {
	alphabet := "ABCXYZabcxyz0189._-"
	r := rand.New(rand.NewPCG(1, 2))
	randomID := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	seen := map[string]string{}
	sites := []string{"l", "local", "eu-west-1a", strings.Repeat("s", maxQueueSite), strings.Repeat("S_-", 10) + "xy"}
	for _, site := range sites {
		if !queueSite.MatchString(site) {
			t.Fatalf("test site %q is not one Open accepts", site)
		}
		for i := range 2000 {
			id := randomID(1 + i%64)
			if i == 0 {
				id = strings.Repeat(".", 64) // the longest id, all of it replaced
			}
			name := InstanceQueueName(site, id)
			if !sqsQueueName.MatchString(name) {
				t.Fatalf("site %q id %q: name %q (%d characters) is not a valid SQS queue name", site, id, name, len(name))
			}
			if !strings.HasPrefix(name, InstanceQueuePrefix(site)) || !strings.HasPrefix(name, "sessionha-"+site+"-reply-") {
				t.Fatalf("name %q is not under the IAM prefix sessionha-%s-reply-", name, site)
			}
			if InstanceQueueName(site, id) != name {
				t.Fatalf("name of %q not stable", id)
			}
			if other, ok := seen[name]; ok && other != site+"/"+id {
				t.Fatalf("%q and %q share the queue %q", other, site+"/"+id, name)
			}
			seen[name] = site + "/" + id
		}
	}
	// The readable part is the id itself where it fits.
	if got := InstanceQueueName("local", "auth-1"); !strings.HasPrefix(got, "sessionha-local-reply-auth-1-") || len(got) != len("sessionha-local-reply-auth-1-")+queueHashLen {
		t.Errorf("InstanceQueueName(local, auth-1) = %q, want sessionha-local-reply-auth-1-<%d hex digits>", got, queueHashLen)
	}
}
