package client

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
)

// Instance queue names. An instance id may hold A-Z, a-z, 0-9, '.', '_' and '-' (1-64
// characters); an SQS queue name only A-Z, a-z, 0-9, '_' and '-', at most 80 of them. So
// the name is
//
//	sessionha-<site>-reply-<id, '.' made '_', cut to fit>-<16 hex digits>
//
// where the hex digits are the first 64 bits of the SHA-256 of the whole id. Two ids
// that differ anywhere (in '.' against '_', or past the cut) differ in the hash, so
// they get queues of their own; the readable part only helps an operator. The mapping
// is checked too: the queue carries its instance id as a tag (tagInstance), and Open
// refuses a queue of its name that carries another id. The prefix is what the auth
// servers' IAM policy names (sessionha-<site>-reply-*), and what the sweep lists.
//
// The site must fit too: queueSite is what an instance with a queue accepts, and with
// the longest site (32 characters, as infra/topology allows) 14 characters of the id
// are kept.

const (
	// maxQueueName is SQS's limit on a queue name.
	maxQueueName = 80
	// queueHashLen is how many hex digits of the id's hash end the name.
	queueHashLen = 16
	// maxQueueSite is the longest site an instance with a queue may have: the topology's
	// limit on site names.
	maxQueueSite = 32
)

// queueSite is what a site must look like to name queues: queue name characters, and no
// longer than the topology allows.
var queueSite = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

var notQueueChar = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// InstanceQueuePrefix is the prefix of the name of every instance queue of site: what
// the auth servers' IAM policy allows and what the sweep lists.
func InstanceQueuePrefix(site string) string { return "sessionha-" + site + "-reply-" }

// InstanceQueueName is the name of the queue of instance id in site (see the top of
// queuename.go). site must match queueSite; Open checks it.
func InstanceQueueName(site, id string) string {
	prefix := InstanceQueuePrefix(site)
	sum := sha256.Sum256([]byte(id))
	hash := hex.EncodeToString(sum[:])[:queueHashLen]
	readable := notQueueChar.ReplaceAllString(id, "_")
	room := maxQueueName - len(prefix) - len(hash) - 1
	if room <= 0 {
		return prefix + hash // only with a site longer than Open allows
	}
	if len(readable) > room {
		readable = readable[:room]
	}
	return prefix + readable + "-" + hash
}
