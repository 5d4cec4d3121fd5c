// Package replication makes several local DynamoDB replicas (local/dynamo, one per
// region) behave like one DynamoDB global table in multi-region eventual consistency
// (MREC) mode. It is a local stand-in for tests and the local stack, not AWS's
// implementation: it reproduces what the project depends on, as AWS documents it, and
// nothing more.
//
// What it reproduces:
//   - Every change a region makes to an item (put, update, delete, each item of a batch
//     or a transaction, a TTL deletion) reaches every other region after a lag: Lag plus
//     a uniform jitter of ±Jitter, drawn per change and destination. A transaction is not
//     atomic across regions (nor is it on AWS): its items travel independently.
//   - Per item, the write with the later source write time (dynamo.Change.At; at equal
//     times the greater region name) wins in every replica, whatever the order of
//     arrival: dynamo.Replica.Replicate decides, the replicator only delivers. Conditions
//     are evaluated against the local replica only, so two regions can both succeed at a
//     conditional write to one item, and one of them is silently overwritten.
//   - Faults: Partition(a, b) holds the changes between two regions (both ways) until
//     Heal(a, b), which delivers them, each after a fresh lag; Kill(region) loses the
//     region's changes not yet delivered, as a region lost for good would, and cuts it off
//     (it neither sends nor receives again). A region that is down for a while and comes
//     back, which AWS handles by sending what was pending, is a partition from all others
//     then a heal. There is no Revive: a region that lost its writes does not come back on AWS.
//
// Why 500 ms ± 250 ms by default: AWS documents that a newly written item is usually
// propagated to all replicas within a second (CloudWatch's ReplicationLatency measures it
// per pair of regions). Delays spread over 250-750 ms keep every change under a second,
// and the spread is wide enough that changes to one item often arrive out of order,
// which is what last-writer-wins must survive.
//
// Replication lag is measured for every delivery as the time from the source write
// (Change.At, the source replica's clock, time.Now by default) to its application or to
// finding it superseded; a change held by a partition counts its whole wait. Stats gives
// the counts since New and the lag percentiles over the most recent LagWindow deliveries.
//
// Nothing is lost silently: a change that cannot be applied (the table is missing in
// the destination, say, a setup error) is retried with exponential backoff between
// RetryMin and RetryMax for as long as the replicator runs, counted in Stats.Failures and
// Stats.Retrying, reported by Err (wrapping ErrApply and the cause) and by Quiesce when it
// gives up, and logged (destination and table, never an item) when a link starts and
// stops failing. Only Kill loses changes, and Stats.Lost counts them.
//
// Tables are not replicated: create each table in every replica (as a global table has a
// replica in every region), before the first write. Items written before New are not copied.
//
// The shortest path, for two regions:
//
//	a := dynamo.New(dynamo.Options{Region: "eu-west-1"})
//	b := dynamo.New(dynamo.Options{Region: "us-east-1"})
//	rep, err := replication.New([]*dynamo.Replica{a, b}, replication.Options{})
//	// create the table in both, write in a, then:
//	err = rep.Quiesce(ctx) // every change delivered: b holds a's writes
//	defer rep.Close()
package replication
