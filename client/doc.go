// Package client is the Go SDK that authentication servers import to keep their users'
// sessions failover-safe.
//
// An auth server creates a session at login, saves it after each request that changes
// it, loads it by the id in the user's cookie, and destroys it at logout. With
// persistence ha, every change is published on the site's ops topic (SNS), applied to the
// session table (DynamoDB) by the sessionop function, and so readable by every other
// instance: when the instance that created a session dies, the next one loads it by id
// and the user neither logs in again nor loses anything. A logout is final everywhere.
//
// The shortest path, against the local site that `make local` runs:
//
//	set -a; . local/.run/site.env; set +a; export SESSIONHA_INSTANCE_ID=auth-1
//
//	cfg, err := client.ConfigFromEnv()
//	store, err := client.Open(ctx, cfg)
//	defer store.Close()                    // sends what is still pending
//	s, err := store.Create(ctx, client.NewSession{Principal: "alice"})
//	s.Set("cart", []byte(`["book"]`))
//	err = store.Save(ctx, s)
//	got, err := store.Load(ctx, s.ID())    // on any instance
//	err = store.Destroy(ctx, s.ID())       // logout everywhere
//
// Without AWS at all, Config{Persistence: PersistenceMemory} gives the same API with
// sessions in this process only (see the package example).
//
// # Knobs
//
// The Sun ONE session persistence knobs, each a Config field and a SESSIONHA_*
// variable (the field's comment names both, and the default); Open refuses a bad value
// with an error naming the variable and the values it accepts:
//
//   - Persistence (SESSIONHA_PERSISTENCE): ha (default: the bus and the table), file
//     (SESSIONHA_FILE_DIR, one file per session: a restarted process on the same host
//     gets its sessions back; for development), memory (this process only).
//   - Frequency (SESSIONHA_FREQUENCY): web-method (default: Save returns once the change
//     is published) or time-based (SESSIONHA_FLUSH_INTERVAL: changed sessions are sent
//     every interval, each once however often it changed; Flush and Close send at once).
//   - Scope (SESSIONHA_SCOPE): session (default: the whole session every Save),
//     modified-session (whole, only if it changed or its last access needs refreshing),
//     modified-attribute (only the attributes set and removed, as a delta).
//   - MaxSessions (SESSIONHA_MAX_SESSIONS): how many sessions an instance keeps in
//     memory, least recently used going first; an instance always reads its own writes.
//   - PublishTimeout (SESSIONHA_PUBLISH_TIMEOUT): the longest a Save waits for the bus.
//   - ReadPath (SESSIONHA_READ_PATH): direct (default: a strongly consistent read of the
//     table) or bus, for instances without table access: a query on the query topic,
//     answered by the sessionquery function on this instance's own queue, waited for at
//     most MaxWait (SESSIONHA_MAX_WAIT, default 5 s, the old products' Maximum Wait
//     Time), then ErrTimeout. Concurrent loads of one id share one query.
//   - NoticeScope (SESSIONHA_NOTICE_SCOPE): off, site (default with a notice topic) or
//     all: which destroy notices this instance publishes and takes, as OpenAM's logout
//     broadcast; a notice makes every instance drop its copy and refuse the id at once,
//     for PurgeDelay (SESSIONHA_PURGE_DELAY).
//   - Reads (SESSIONHA_READS): owner (default with notices) or always. With owner, an
//     instance serves the sessions it owns from memory, with no AWS call (see Owner reads);
//     with always, every Load reads the table (or asks over the bus). Owner needs notices:
//     Open refuses it with NoticeScope off, and always is the default then.
//   - SaveWait (SESSIONHA_SAVE_WAIT): published (default: Create and Save return once the
//     bus took the change) or applied (once it is in the table, read back within MaxWait,
//     else ErrTimeout); Store.SaveApplied waits for one call whatever the setting.
//   - MaxSessionsPerPrincipal (SESSIONHA_MAX_SESSIONS_PER_PRINCIPAL): a cap on a user's
//     sessions; the oldest goes.
//   - Keyring (SESSIONHA_SEAL_KEYS, SESSIONHA_SEAL_KEY_FILE; with client/kmskeys,
//     SESSIONHA_SEAL_KMS_KEYS) and SealWith (SESSIONHA_SEAL_WITH): seal every attribute
//     value before it leaves the process, and open what comes back (see Keyring and the
//     README's "Sealed attributes"); a value that does not open fails Load with ErrSealed.
//     Default: no keyring, values in clear.
//   - JournalDir (SESSIONHA_JOURNAL_DIR): where degraded mode journals what it
//     acknowledges (default: the user's cache directory + "/sessionha"), one directory
//     per instance, JournalDir/<cluster>/<instance id>, locked while it is open: two
//     processes with one instance id are refused.
//   - SweepQueuesEvery (SESSIONHA_SWEEP_QUEUES_EVERY) and OrphanQueueAge
//     (SESSIONHA_ORPHAN_QUEUE_AGE): an instance that reads over the bus or takes notices
//     has a queue of its own (InstanceQueueName), which outlives the process so that a
//     restart opens at once under SQS's rules (a name refused for 60 s after a
//     deletion, one purge a minute): it is kept at Close and reused, unpurged, at the
//     next Open, and marked alive every 5 minutes. Live instances delete their site's
//     queues not seen alive for OrphanQueueAge (default 1 h) about every
//     SweepQueuesEvery (default 1 h, at random); so does SweepInstanceQueues, which
//     `sessionctl sweep-queues` runs.
//
// # Owner reads
//
// An instance owns a session when it wrote the newest version it knows of (it created or
// saved it) and no superseded notice has said that another instance wrote since; with
// Reads owner it answers Load of an owned session from memory, with no AWS call, as the
// old products' home server did. Ownership moves by writing: when another instance saves
// the session (a failover), the sessionop function, which merges every op into the table
// and so alone sees both writers at once, publishes a superseded notice to the old owner's
// queue just before the write, and the old owner's next Load reads the table (or asks over
// the bus). make bench measures how long after the write is applied the old owner still
// serves its copy (BENCHMARKS.md, "Owner reads"): tens of milliseconds on the local stack,
// the time of SNS's fan-out to a queue and one receive. Owner reads stop, and every Load
// reads, while the instance cannot hear notices: degraded, before its queue is
// subscribed, and while receives from it fail. A logout elsewhere reaches the owner by its
// destroy notice, and by a superseded notice too.
//
// A load balancer that is not sticky sends one user's requests to two instances at once.
// Each save moves ownership to its instance, and until the other hears of it (the bound
// above, after the save is applied, which itself takes tens of milliseconds), the other
// answers from its own copy: a request there does not see the change just made on the
// first instance (a cart item seems to vanish, then comes back), and a whole-session save
// made there in that window (scope session) overwrites it for good. Reads always does not
// serve from memory, but reads the table, which has the change only once it is applied;
// with SaveWait applied too, each save is in the table when the response leaves, and a
// request that follows it on any instance sees it. Sticky sessions, the usual setting,
// need neither: owner reads are then exact.
//
// # Start-up checks
//
// With persistence ha, Open describes the table (it must exist, have the session table's
// key and the per-user index) and every topic it is configured with (GetTopicAttributes),
// and fails at once with an error naming the resource and what is wrong, when one does not
// exist or these credentials may not use it; a check that gets no answer does not stop it
// (an instance may start while the bus is down: it starts degraded). An instance id is
// open in one Store of a process at a time: a second Open of it fails (and one in another
// process, by the journal's lock).
//
// # Sessions per user
//
// List, Revoke and DestroyAll read and end a user's sessions through the table's
// per-user index (persistence ha); a session is named there by its Handle, never its id.
// Sessions created with the same Group form an SSO group: an explicit logout (Destroy)
// of one ends them all, while a timeout ends only its own, and so does a new id for one
// of them (Renew).
//
// # Lifecycle events
//
// The site publishes every session's lifecycle (created, destroyed with its reason,
// expired, moved by a failover) on its lifecycle topic, from the table's stream. With
// LifecycleTopicARN (SESSIONHA_LIFECYCLE_TOPIC_ARN) an instance's queue takes the events
// of its own sessions, and OnLifecycle hands them to the app: when another instance
// revokes one of them, the per-user cap or an SSO group's logout ends it, it expires, or
// another instance takes it over. At least once; each carries an idempotency key.
//
// # Degraded mode
//
// When the bus cannot be reached (a publish failed after the SDK's retries, or within
// PublishTimeout), the store switches to ModeDegraded: it goes on serving every session
// from memory, and every change (saves, creates, destroys) is kept: Create, Save and
// Destroy return once it is journaled to local disk (JournalDir: appended and fsynced;
// concurrent calls share an fsync), without waiting for the bus. With ReadPath direct a
// logout is also written to the table at once, so that the other instances refuse the
// session before the bus is back. It probes the bus with backoff; once the bus answers,
// it sends the pending destroys, their notices and a whole snapshot of each changed
// session (with the version it was journaled with, so that it never overwrites a newer
// change made elsewhere meanwhile), empties the journal, and switches back to
// ModeFailover. If the process dies first, the next Open with the same instance id
// replays the journal: it starts in ModeDegraded, serves those sessions, refuses those
// logouts, and sends them all once the bus answers (an instance can start while the bus
// is down). Close sends what it can and removes the journal, or leaves what it could not
// send in it for the next Open. Mode says which mode the store is in; each switch is
// logged and counted (Stats, with the time spent degraded), so an operator knows that
// sessions were not failover-safe meanwhile; client/otelmetrics exports Stats as
// OpenTelemetry metrics, and the client itself imports no OpenTelemetry.
//
// # Ids and errors
//
// Session ids are 256 random bits (base64url). They never leave the client in clear:
// the table key, every message and every file carry the cluster and the SHA-256 of the
// id, and no log line carries either.
//
// Load returns an owned session from memory, any other as the newer of this instance's
// own copy (so an instance reads its own writes before they are applied) and the table's
// strongly consistent copy, and never an expired or destroyed session:
// errors.Is(err, ErrNotFound). Other errors wrap
// ErrUnavailable, ErrInvalid, ErrTimeout or ErrClosed, or a context's error; none
// exposes AWS SDK types.
package client
