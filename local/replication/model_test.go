package replication_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/replication"
)

var histories = flag.Int("replication.histories", 50, "random histories per region count in TestModel")

// The model: random concurrent writes of every kind in every region, with partitions and
// heals between, end with every replica holding, for each item, the write with the
// greatest (write time, region) among all the writes the regions made, deletions
// included. The model reads the writes from the replicas' own change feeds and applies
// last-writer-wins itself. Each history is a subtest named by its seed: rerun one with
// -run 'TestModel/2_regions/seed_N'.
func TestModel(t *testing.T) {
	var total tally
	for _, regions := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d regions", regions), func(t *testing.T) {
			for i := range *histories {
				seed := uint64(regions)<<32 | uint64(i+1)
				if !t.Run(fmt.Sprint("seed_", seed), func(t *testing.T) { runHistory(t, regions, seed, &total) }) {
					return // one failure is enough to read
				}
			}
		})
	}
	t.Logf("over all histories: %s", &total)
	if !t.Failed() && (total.superseded == 0 || total.conflicts == 0 || total.ttl == 0 || total.condFailed == 0 || total.held == 0) {
		t.Errorf("the histories did not exercise what they are for (superseded deliveries, items written in several regions, TTL deletions, failed conditions, partitions holding changes): %s", &total)
	}
}

// tally is what the histories exercised, to show the model test tests something.
type tally struct {
	mu                                              sync.Mutex
	changes, superseded, conflicts, ttl, condFailed int64
	held                                            int64
}

func (t *tally) String() string {
	return fmt.Sprintf("%d changes, %d deliveries superseded, %d items written in several regions, %d TTL deletions, %d failed conditions, %d held deliveries seen",
		t.changes, t.superseded, t.conflicts, t.ttl, t.condFailed, t.held)
}

const (
	modelKeys     = 6  // few, so that regions write the same items
	modelWorkers  = 2  // per region
	modelOps      = 25 // per worker
	modelMaxFault = 3 * time.Millisecond
)

// runHistory runs one seeded history and checks it.
func runHistory(t *testing.T, regions int, seed uint64, total *tally) {
	rs := startRegions(t, regions)
	rp := replicate(t, rs, replication.Options{Lag: 3 * time.Millisecond, Jitter: 2 * time.Millisecond, Seed: seed})
	ctx := context.Background()

	var condFailed, held int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, regions*modelWorkers)
	done := make(chan struct{})
	for ri, r := range rs {
		for w := range modelWorkers {
			rng := rand.New(rand.NewPCG(seed, uint64(ri*modelWorkers+w+1)))
			wg.Go(func() {
				for range modelOps {
					failed, err := randomWrite(ctx, rng, r)
					if err != nil {
						errs <- fmt.Errorf("%s: %w", r.name, err)
						return
					}
					if failed {
						mu.Lock()
						condFailed++
						mu.Unlock()
					}
				}
			})
		}
	}
	faults := sync.WaitGroup{}
	faults.Go(func() { // partitions and heals while the regions write
		rng := rand.New(rand.NewPCG(seed, 0))
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(rng.Int64N(int64(modelMaxFault)))):
			}
			a, b := rs[rng.IntN(regions)].name, rs[rng.IntN(regions)].name
			if a == b {
				continue
			}
			var err error
			if rng.IntN(2) == 0 {
				err = rp.Partition(a, b)
			} else {
				err = rp.Heal(a, b)
			}
			if err != nil {
				errs <- err
				return
			}
			if h := rp.Stats().Held; h > 0 {
				mu.Lock()
				held += h
				mu.Unlock()
			}
		}
	})
	wg.Wait()
	close(done)
	faults.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("seed %d: %v", seed, err)
	}
	for _, a := range rs {
		for _, b := range rs {
			if a != b {
				if err := rp.Heal(a.name, b.name); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	quiesce(t, rp)

	want, conflicts, ttl, changes := lastWriterWins(rs)
	for _, r := range rs {
		if d := diff(scan(t, r), want); d != "" {
			t.Errorf("seed %d: %s differs from the model:%s", seed, r.name, d)
		}
	}
	st := rp.Stats()
	if st.Lost != 0 || st.Dropped != 0 || st.Pending != 0 || st.Failures != 0 || st.Deliveries != int64(regions-1)*changes {
		t.Errorf("seed %d: stats %+v after %d changes: want each delivered to the %d other regions", seed, st, changes, regions-1)
	}
	checkBalance(t, st)
	total.mu.Lock()
	total.changes += changes
	total.superseded += st.Superseded
	total.conflicts += conflicts
	total.ttl += ttl
	total.condFailed += condFailed
	total.held += held
	total.mu.Unlock()
}

// lastWriterWins computes, from the regions' own change feeds, each item's final state:
// the image of its change with the greatest write time, the greater region at equal
// times; absent if that change deleted it. It also counts the items written in more than
// one region and the TTL deletions.
func lastWriterWins(rs []*region) (want map[string]dynamo.Item, conflicts, ttl, changes int64) {
	last := map[string]dynamo.Change{}
	origins := map[string]map[string]bool{}
	for _, r := range rs {
		for _, c := range r.changes() {
			changes++
			k := keyOf(c)
			if c.Cause == dynamo.CauseTTL {
				ttl++
			}
			if origins[k] == nil {
				origins[k] = map[string]bool{}
			}
			origins[k][c.Origin] = true
			prev, seen := last[k]
			if !seen || c.At.After(prev.At) || (c.At.Equal(prev.At) && c.Origin > prev.Origin) {
				last[k] = c
			}
		}
	}
	want = map[string]dynamo.Item{}
	for k, c := range last {
		if c.New != nil {
			want[k] = c.New
		}
		if len(origins[k]) > 1 {
			conflicts++
		}
	}
	return want, conflicts, ttl, changes
}

// randomWrite makes one random write in r: a put with random attributes (some already
// expired), an update, a delete, a conditional put or update, a batch, a transaction, or
// a TTL sweep. failed reports a write refused by its condition, as expected at times.
func randomWrite(ctx context.Context, rng *rand.Rand, r *region) (failed bool, err error) {
	tbl := aws.String(table)
	k := func() string { return "k" + strconv.Itoa(rng.IntN(modelKeys)) }
	item := func(pk string) map[string]types.AttributeValue {
		it := map[string]types.AttributeValue{"pk": s(pk), "v": s(fmt.Sprintf("%s-%d", r.name, rng.IntN(1000)))}
		if rng.IntN(2) == 0 {
			it["n"] = n(strconv.Itoa(rng.IntN(100)))
		}
		if rng.IntN(3) == 0 {
			it["m"] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
				"b": &types.AttributeValueMemberBOOL{Value: rng.IntN(2) == 0}, "l": &types.AttributeValueMemberL{Value: []types.AttributeValue{n("1"), s("x")}}}}
		}
		if rng.IntN(6) == 0 { // expired: the next sweep deletes it
			it["exp"] = n(strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10))
		}
		return it
	}
	switch op := rng.IntN(10); op {
	case 0, 1:
		_, err = r.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tbl, Item: item(k())})
	case 2:
		_, err = r.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: tbl, Key: key(k()),
			UpdateExpression:          aws.String("SET v = :v ADD n :one"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": s(r.name + "-updated"), ":one": n("1")}})
	case 3:
		_, err = r.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: tbl, Key: key(k())})
	case 4:
		_, err = r.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tbl, Item: item(k()),
			ConditionExpression: aws.String("attribute_not_exists(pk)")})
	case 5:
		_, err = r.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: tbl, Key: key(k()),
			UpdateExpression: aws.String("SET v = :v"), ConditionExpression: aws.String("attribute_exists(pk) AND n < :max"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": s(r.name + "-conditional"), ":max": n("50")}})
	case 6:
		k1, k2 := k(), k()
		reqs := []types.WriteRequest{{PutRequest: &types.PutRequest{Item: item(k1)}}}
		if k2 != k1 {
			reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(k2)}})
		}
		_, err = r.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
	case 7:
		k1, k2 := k(), k()
		items := []types.TransactWriteItem{{Put: &types.Put{TableName: tbl, Item: item(k1)}}}
		if k2 != k1 {
			items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: tbl, Key: key(k2),
				ConditionExpression: aws.String("attribute_exists(pk)")}})
		}
		_, err = r.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	case 8:
		r.replica.Sweep()
	case 9:
		_, err = r.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: tbl, Key: key(k()),
			ConditionExpression: aws.String("n >= :min"), ExpressionAttributeValues: map[string]types.AttributeValue{":min": n("50")}})
	}
	var ccf *types.ConditionalCheckFailedException
	var tc *types.TransactionCanceledException
	if errors.As(err, &ccf) || errors.As(err, &tc) {
		return true, nil
	}
	return false, err
}
