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
  requests  messages the functions took: session ops delivered to sessionop, plus
            failover queries delivered to sessionquery
  reads     failover queries answered over the bus (sessionquery). Direct reads, which
            auth servers make on the table themselves, are not seen by the functions:
            the client counts them (client.Store.Stats)
  writes    session ops applied to the table (sessionop Applied)
  deletes   destroys applied (sessionop Destroyed)
  rejected  messages that can never apply (they go to the DLQ); failed: writes that
            failed and will be retried
and the depth of each dead-letter queue with the age of its oldest message.

Where the numbers come from: with SESSIONHA_METRICS_URL set (the local site's site.env
sets it) from the local stack's collector of the functions' metric lines, totals since
the site started; without it from CloudWatch (namespace sessionha, dimension function;
the functions publish in embedded metric format), totals since stats started, which
CloudWatch reports a minute or two late. A dead-letter queue's depth comes from SQS; the
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

// fromFunctions maps the functions' metrics to totals.
func fromFunctions(f map[string]map[string]float64) totals {
	op, q := f["sessionop"], f["sessionquery"]
	return totals{
		// A query dropped because its client stopped waiting was a request too.
		requests: op["Applied"] + op["Unchanged"] + op["Rejected"] + op["Failed"] + q["Queries"] + q["Rejected"] + q["Expired"],
		reads:    q["Queries"],
		writes:   op["Applied"],
		deletes:  op["Destroyed"],
		rejected: op["Rejected"] + q["Rejected"],
		failed:   op["Failed"] + q["Failed"],
	}
}

// counterSource reads the functions' counters.
type counterSource interface {
	read(ctx context.Context) (totals, error)
	since() string
}

// metricsClient reads the local metrics: an answer takes milliseconds, or the site is stuck.
var metricsClient = &http.Client{Timeout: 10 * time.Second}

// localSource reads the local stack's collector (SESSIONHA_METRICS_URL).
type localSource struct {
	url     string
	started time.Time
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
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		return totals{}, fmt.Errorf("the local metrics at %s are not what sessionctl expects: %w", l.url, err)
	}
	l.started = snap.Since
	return fromFunctions(snap.Functions), nil
}

func (l *localSource) since() string {
	return "since the site started at " + l.started.Local().Format("15:04:05")
}

// cloudWatchSource sums the functions' metrics in CloudWatch since it was made.
type cloudWatchSource struct {
	cw      *cloudwatch.Client
	started time.Time
}

var functionMetrics = map[string][]string{
	"sessionop":    {"Applied", "Unchanged", "Rejected", "Failed", "Destroyed"},
	"sessionquery": {"Queries", "Rejected", "Failed", "Expired"},
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
	f := map[string]map[string]float64{"sessionop": {}, "sessionquery": {}}
	p := cloudwatch.NewGetMetricDataPaginator(c.cw, &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(start), EndTime: aws.Time(end), MetricDataQueries: queries,
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return totals{}, explain(err, "CloudWatch GetMetricData (without SESSIONHA_METRICS_URL, stats reads CloudWatch)")
		}
		for _, r := range out.MetricDataResults {
			n := names[aws.ToString(r.Id)]
			for _, v := range r.Values {
				f[n[0]][n[1]] += v
			}
		}
	}
	return fromFunctions(f), nil
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
		src, ages = &localSource{url: u}, peekAge(q, a.now)
	} else {
		cw := c.cloudwatch()
		src, ages = &cloudWatchSource{cw: cw, started: a.now()}, cloudWatchAge(cw)
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
