package topology

// Logout items (internal/record, "Across regions"): a session's logout is an item of its
// own in the session table, keyed by the session's key and LogoutSuffix, which no session
// write overwrites. The auth servers may write these items and no other (their degraded
// mode writes a logout at once), so their policy names the suffix and the attributes.
const LogoutSuffix = "#logout"

// LogoutAttributes are the attributes of a logout item, as internal/record writes one:
// its key, revision, version, state and TTL, and its destroy's writer, site, reason and
// version (what the tombstone tells lifecycle events, kept where a save of another region
// cannot overwrite it).
var LogoutAttributes = []string{PartitionKey, "rev", "ver", "st", TTLAttribute, "wr", "site", "why", "dv"}
