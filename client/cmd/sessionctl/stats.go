package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func init() {
	commands = append(commands, &command{
		name: "stats", args: "[-i SECONDS] [-n COUNT]",
		summary: "print requests, reads, writes, deletes and dead-letter queues every interval",
		help: `
Prints, every -i seconds (as amsessiondb -i did), the site's totals and rates of:
  requests  session ops delivered to sessionop, failover queries sessionquery refused,
            and reads
  reads     reads of sessions in the table, by every reader: the auth servers' direct
            reads (ReadPath direct), the failover queries sessionquery answers (ReadPath
            bus), and the reads an instance makes for a logout. Counted where they
            happen, at the table: its successful GetItem, BatchGetItem and
            TransactGetItems requests, less the reads sessionop makes itself to merge
            a write (its Reads metric). Index queries (List, Revoke, the session cap)
            are not reads of a session
  writes    session ops applied to the table (sessionop Applied)
  deletes   destroys applied (sessionop Destroyed)
  rejected  messages that can never apply (they go to the DLQ); failed: writes that
            failed and will be retried
and the depth of each dead-letter queue with the age of its oldest message.

Where the numbers come from: the functions' counters (namespace sessionha, dimension
function; the functions print them in CloudWatch's embedded metric format) and the
table's requests (AWS/DynamoDB SuccessfulRequestLatency, its SampleCount by TableName
and Operation, in the site's region). With SESSIONHA_METRICS_URL set (the local site's
site.env sets it) both come from the local stack's collector, which keeps the same
counts (the local DynamoDB counts its requests as CloudWatch does), totals since the
site started; without it from CloudWatch, totals since stats started, which CloudWatch
reports a minute or two late. A dead-letter queue's depth comes from SQS; the
age of its oldest message from CloudWatch (AWS/SQS ApproximateAgeOfOldestMessage) on AWS,
and locally, where there is no CloudWatch, by looking at its messages' SentTimestamp
(each is hidden for a moment while stats looks).

-n stops after COUNT reports; without it stats runs until interrupted.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			interval := fs.Int("i", 10, "report every `SECONDS`")
			count := fs.Int("n", 0, "stop after `COUNT` reports (0: until interrupted)")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("stats takes no arguments, got %q", args[0])
				}
				if *interval < 1 {
					return usagef("stats: -i %d: want at least 1 second", *interval)
				}
				if *count < 0 {
					return usagef("stats: -n %d: want a count >= 0", *count)
				}
				return a.stats(ctx, time.Duration(*interval)*time.Second, *count)
			}
		},
	})
}

// totals are the four counters of amsessiondb and what failover adds.
type totals struct {
	requests, reads, writes, deletes, rejected, failed float64
}

// readOps are the DynamoDB operations that read items by key: every session read,
// whoever makes it, is one of these on the table.
var readOps = []string{"GetItem", "BatchGetItem", "TransactGetItems"}

// toTotals maps the functions' metrics (function -> metric -> total) and the table's
// successful requests (operation -> total) to totals.
func toTotals(f map[string]map[string]float64, table map[string]float64) totals {
	op, q := f["sessionop"], f["sessionquery"]
	var tableReads float64
	for _, o := range readOps {
		tableReads += table[o]
	}
	// sessionop reads an item to merge a write into it (record.Table.Apply): a write's
	// cost, not a read of the session. Its Reads metric counts failed reads too, and the
	// two sources may lag each other by a minute on AWS: never below zero.
	reads := max(tableReads-op["Reads"], 0)
	return totals{
		requests: op["Applied"] + op["Unchanged"] + op["Rejected"] + op["Failed"] + q["Rejected"] + reads,
		reads:    reads,
		writes:   op["Applied"],
		deletes:  op["Destroyed"],
		rejected: op["Rejected"] + q["Rejected"],
		failed:   op["Failed"] + q["Failed"],
	}
}

// counterSource reads the functions' counters and the table's requests.
type counterSource interface {
	read(ctx context.Context) (totals, error)
	since() string
}

// metricsClient reads the local metrics: an answer takes milliseconds, or the site is stuck.
var metricsClient = &http.Client{Timeout: 10 * time.Second}

// localSource reads the local stack's collector (SESSIONHA_METRICS_URL).
type localSource struct {
	url, table string
	started    time.Time
}

func (l *localSource) read(ctx context.Context) (totals, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return totals{}, fmt.Errorf("SESSIONHA_METRICS_URL=%s: %w", l.url, err)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return totals{}, fmt.Errorf("read the local metrics at %s: %w\n  is the local site running (make local)?", l.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return totals{}, fmt.Errorf("read the local metrics at %s: status %d %v", l.url, resp.StatusCode, err)
	}
	var snap struct {
		Since     time.Time                     `json:"since"`
		Functions map[string]map[string]float64 `json:"functions"`
		Tables    map[string]map[string]float64 `json:"tables"`
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		return totals{}, fmt.Errorf("the local metrics at %s are not what sessionctl expects: %w", l.url, err)
	}
	if snap.Tables == nil {
		return totals{}, fmt.Errorf("the local metrics at %s carry no table counts: is the local site older than this sessionctl?", l.url)
	}
	l.started = snap.Since
	return toTotals(snap.Functions, snap.Tables[l.table]), nil
}

func (l *localSource) since() string {
	return "since the site started at " + l.started.Local().Format("15:04:05")
}

// cloudWatchSource sums the functions' metrics and the table's requests in CloudWatch
// since it was made.
type cloudWatchSource struct {
	cw      *cloudwatch.Client
	table   string
	started time.Time
}

var functionMetrics = map[string][]string{
	"sessionop":    {"Applied", "Unchanged", "Rejected", "Failed", "Destroyed", "Reads"},
	"sessionquery": {"Queries", "Rejected", "Failed"},
}

func (c *cloudWatchSource) read(ctx context.Context) (totals, error) {
	start := c.started.Truncate(time.Minute)
	end := time.Now().Add(time.Minute).Truncate(time.Minute)
	period := int32(end.Sub(start) / time.Second)
	var queries []cwtypes.MetricDataQuery
	names := map[string][2]string{}
	for fn, metrics := range functionMetrics {
		for _, m := range metrics {
			id := fmt.Sprintf("m%d", len(queries))
			names[id] = [2]string{fn, m}
			queries = append(queries, cwtypes.MetricDataQuery{
				Id: aws.String(id),
				MetricStat: &cwtypes.MetricStat{
					Metric: &cwtypes.Metric{Namespace: aws.String("sessionha"), MetricName: aws.String(m),
						Dimensions: []cwtypes.Dimension{{Name: aws.String("function"), Value: aws.String(fn)}}},
					Period: aws.Int32(period), Stat: aws.String("Sum"),
				},
			})
		}
	}
	// The table's reads: every reader's, from DynamoDB's own metrics.
	tableOps := map[string]string{}
	for _, op := range readOps {
		id := fmt.Sprintf("t%d", len(tableOps))
		tableOps[id] = op
		queries = append(queries, cwtypes.MetricDataQuery{
			Id: aws.String(id),
			MetricStat: &cwtypes.MetricStat{
				Metric: &cwtypes.Metric{Namespace: aws.String("AWS/DynamoDB"), MetricName: aws.String("SuccessfulRequestLatency"),
					Dimensions: []cwtypes.Dimension{
						{Name: aws.String("TableName"), Value: aws.String(c.table)},
						{Name: aws.String("Operation"), Value: aws.String(op)},
					}},
				Period: aws.Int32(period), Stat: aws.String("SampleCount"),
			},
		})
	}
	f := map[string]map[string]float64{"sessionop": {}, "sessionquery": {}}
	table := map[string]float64{}
	p := cloudwatch.NewGetMetricDataPaginator(c.cw, &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(start), EndTime: aws.Time(end), MetricDataQueries: queries,
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return totals{}, explain(err, "CloudWatch GetMetricData (without SESSIONHA_METRICS_URL, stats reads CloudWatch)")
		}
		for _, r := range out.MetricDataResults {
			id := aws.ToString(r.Id)
			for _, v := range r.Values {
				if op, ok := tableOps[id]; ok {
					table[op] += v
				} else if n, ok := names[id]; ok {
					f[n[0]][n[1]] += v
				}
			}
		}
	}
	return toTotals(f, table), nil
}

func (c *cloudWatchSource) since() string {
	return "since " + c.started.Local().Format("15:04:05") + " from CloudWatch (a minute or two late)"
}

// oldestAge is the age of a dead-letter queue's oldest message, -1 if unknown.
type ageSource func(ctx context.Context, name, url string, n int) (time.Duration, error)

// peekAge looks at the queue's messages (locally, where there is no CloudWatch).
func peekAge(q *sqs.Client, now func() time.Time) ageSource {
	return func(ctx context.Context, _, url string, n int) (time.Duration, error) {
		if n == 0 {
			return 0, nil
		}
		msgs, release, err := peek(ctx, q, url, 100)
		if err != nil {
			return -1, err
		}
		release()
		var oldest time.Time
		for _, m := range msgs {
			if t := sentAt(m); !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
				oldest = t
			}
		}
		if oldest.IsZero() {
			return -1, nil
		}
		return now().Sub(oldest), nil
	}
}

// cloudWatchAge reads AWS/SQS ApproximateAgeOfOldestMessage.
func cloudWatchAge(cw *cloudwatch.Client) ageSource {
	return func(ctx context.Context, name, _ string, n int) (time.Duration, error) {
		if n == 0 {
			return 0, nil
		}
		end := time.Now()
		out, err := cw.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{
			StartTime: aws.Time(end.Add(-10 * time.Minute)), EndTime: aws.Time(end),
			ScanBy: cwtypes.ScanByTimestampDescending,
			MetricDataQueries: []cwtypes.MetricDataQuery{{Id: aws.String("age"), MetricStat: &cwtypes.MetricStat{
				Metric: &cwtypes.Metric{Namespace: aws.String("AWS/SQS"), MetricName: aws.String("ApproximateAgeOfOldestMessage"),
					Dimensions: []cwtypes.Dimension{{Name: aws.String("QueueName"), Value: aws.String(name)}}},
				Period: aws.Int32(60), Stat: aws.String("Maximum"),
			}}},
		})
		if err != nil {
			return -1, explain(err, "CloudWatch GetMetricData")
		}
		for _, r := range out.MetricDataResults {
			if len(r.Values) > 0 {
				return time.Duration(r.Values[0]) * time.Second, nil
			}
		}
		return -1, nil
	}
}

type dlqState struct {
	name, url string
	n         int
	age       time.Duration
}

func (a *app) stats(ctx context.Context, interval time.Duration, count int) error {
	c, topo, err := siteClients(ctx)
	if err != nil {
		return err
	}
	q := c.sqs()
	var (
		src  counterSource
		ages ageSource
	)
	if u := env("SESSIONHA_METRICS_URL"); u != "" {
		src, ages = &localSource{url: u, table: topo.Table.Name}, peekAge(q, a.now)
	} else {
		cw := c.cloudwatch()
		src, ages = &cloudWatchSource{cw: cw, table: topo.Table.Name, started: a.now()}, cloudWatchAge(cw)
	}
	dlqs := make([]*dlqState, len(deadQueues))
	for i, dq := range deadQueues {
		name, url, err := queueURL(ctx, q, topo, dq.id)
		if err != nil {
			return err
		}
		dlqs[i] = &dlqState{name: name, url: url}
	}
	prev, err := src.read(ctx)
	if err != nil {
		return err
	}
	prevAt := a.now()
	fmt.Fprintf(a.stdout, "sessionha site %s, every %s; totals %s\n", topo.Site.Name, interval, src.since())
	fmt.Fprintf(a.stdout, "%-8s  %9s %7s  %9s %7s  %9s %7s  %9s %7s  %8s %6s  %7s %8s  %9s %8s\n",
		"TIME", "REQUESTS", "/S", "READS", "/S", "WRITES", "/S", "DELETES", "/S", "REJECTED", "FAILED",
		"OPS-DLQ", "OLDEST", "QUERY-DLQ", "OLDEST")
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for reports := 0; count == 0 || reports < count; reports++ {
		select {
		case <-ctx.Done():
			return nil // interrupted: the end of a stats run, not a failure
		case <-tick.C:
		}
		cur, err := src.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := a.now()
		secs := now.Sub(prevAt).Seconds()
		for _, d := range dlqs {
			if d.n, err = depth(ctx, q, d.url); err == nil {
				d.age, err = ages(ctx, d.name, d.url, d.n)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		rate := func(c, p float64) string { return strconv.FormatFloat((c-p)/secs, 'f', 1, 64) }
		fmt.Fprintf(a.stdout, "%-8s  %9.0f %7s  %9.0f %7s  %9.0f %7s  %9.0f %7s  %8.0f %6.0f  %7d %8s  %9d %8s\n",
			now.Local().Format("15:04:05"),
			cur.requests, rate(cur.requests, prev.requests), cur.reads, rate(cur.reads, prev.reads),
			cur.writes, rate(cur.writes, prev.writes), cur.deletes, rate(cur.deletes, prev.deletes),
			cur.rejected, cur.failed, dlqs[0].n, showAge(dlqs[0].age), dlqs[1].n, showAge(dlqs[1].age))
		prev, prevAt = cur, now
	}
	return nil
}

func showAge(d time.Duration) string {
	switch {
	case d < 0:
		return "?"
	case d == 0:
		return "-"
	}
	return d.Round(time.Second).String()
}
