package bench

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The machine.

type machineInfo struct {
	Cores            int
	MemoryGB         float64
	CPU, Go, Commit  string
	DynamoDB, Fauxqs string
}

func machine() machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown",
		DynamoDB: "the local DynamoDB (local/dynamo: minidyn v0.8.2 with sessionha's patch, in the bench process, one replica)",
		Fauxqs:   "fauxqs 2.4.1 on Node 22"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGB = kb / (1 << 20)
			}
		}
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = moduleRoot()
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	m.Commit = git("rev-parse", "--short", "HEAD")
	if m.Commit == "" {
		m.Commit = "unknown"
	} else if git("status", "--porcelain", "--untracked-files=no") != "" {
		m.Commit += " with uncommitted changes"
	}
	return m
}

// The report.

type report struct {
	Started                     time.Time
	Took                        time.Duration
	Machine                     machineInfo
	Concurrency, LatConcurrency int
	N, Samples, LagN            int

	Rounds                                                               []round
	RawPut, RawBus, Pipeline, RawPutLat, RawGet, Direct, Lag, LagPublish run
	// RawPair is a raw consistent BatchGetItem of an item and its logout key: the table
	// calls a direct Load makes since logout items (the read's own baseline).
	RawPair     run
	CPU, RawCPU cpuUse
	Batches     batches
	Bus         busResult
	Bytes       sizeResult
	Cold        coldResult
	Sizes       []sizeOf

	Owner                ownershipResult
	SavePub, SaveApplied run
	Peer                 peerResult
	Costs                []action
	Prices               priceTable
	Seal                 sealResult  // seal_test.go
	Cross                crossResult // two sites in two regions, a stack of their own (crossregion_test.go)
}

// cost is the sessionha and direct-store dollars per million of the named action.
func (r *report) cost(prefix string) (ha, direct float64, ok bool) {
	for _, a := range r.Costs {
		if strings.HasPrefix(a.Name, prefix) {
			ha, _ = a.Sessionha.dollars(r.Prices, r.Bytes)
			direct, _ = a.Direct.dollars(r.Prices, r.Bytes)
			return ha, direct, true
		}
	}
	return 0, 0, false
}

func usd(x float64) string { return fmt.Sprintf("$%.3f", x) }

// peerRows are the figures of issue 14: owner reads against scs with Redis, what a
// takeover and an applied save take, and what a request and a save cost.
func (r *report) peerRows() []row {
	p := r.Peer
	o99, f99 := p.Owned.Lat.pct(99), p.FindWithOwned.Lat.pct(99)
	var ownedCalls int64 = -1
	for _, a := range r.Costs {
		if strings.HasPrefix(a.Name, "request on an owned") {
			ownedCalls = 0
			for _, c := range a.Sessionha.Ops {
				ownedCalls += c.Calls
			}
		}
	}
	rows := []row{
		{fmt.Sprintf("owned-session Load p99 (Reads owner: from memory), by %d; AWS calls per Load: %d", p.Owned.Conc, ownedCalls),
			ms(o99), fmt.Sprintf("scs + Redis %s Find p99 %s", p.Redis, ms(f99)), ratio(float64(o99), float64(f99)),
			"≤ 0.1 × scs Find p99, with zero AWS calls", verdict(float64(o99) <= 0.1*float64(f99) && ownedCalls == 0)},
		{fmt.Sprintf("… p50, by %d", p.Owned.Conc), ms(p.Owned.Lat.pct(50)), "scs Find p50 " + ms(p.FindWithOwned.Lat.pct(50)),
			ratio(float64(p.Owned.Lat.pct(50)), float64(p.FindWithOwned.Lat.pct(50))), "-", "-"},
		{fmt.Sprintf("failover Load p99 (direct: a consistent BatchGetItem of the item and its logout item), by %d", p.Failover.Conc), ms(p.Failover.Lat.pct(99)),
			"scs Find p99 " + ms(p.FindWithFail.Lat.pct(99)), ratio(float64(p.Failover.Lat.pct(99)), float64(p.FindWithFail.Lat.pct(99))), "-", "-"},
		{fmt.Sprintf("Save p99 (web-method: returns once published), by %d", p.Save.Conc), ms(p.Save.Lat.pct(99)),
			"scs Commit p99 " + ms(p.Commit.Lat.pct(99)), ratio(float64(p.Save.Lat.pct(99)), float64(p.Commit.Lat.pct(99))), "-", "-"},
		{fmt.Sprintf("ownership moves: the old owner stops serving its copy, p99 after the takeover's write is applied, by %d", r.LatConcurrency),
			ms(r.Owner.AfterApp.pct(99)), "the write's apply p99 " + ms(r.Owner.Applied.pct(99)) + " (from the takeover's Save)", "-",
			"the bound: measured here, said in the docs", "-"},
		{fmt.Sprintf("Save that waits until applied (SaveApplied) p99, by %d", r.LatConcurrency), ms(r.SaveApplied.Lat.pct(99)),
			"publish-only Save p99 " + ms(r.SavePub.Lat.pct(99)), ratio(float64(r.SaveApplied.Lat.pct(99)), float64(r.SavePub.Lat.pct(99))), "-", "-"},
	}
	if ha, direct, ok := r.cost("request on an owned"); ok {
		rows = append(rows, row{"cost of a request on an owned session, per million", usd(ha), "direct-DynamoDB store " + usd(direct), "-", "$0", verdict(ha == 0)})
	}
	if ha, direct, ok := r.cost("save on the owner"); ok {
		rows = append(rows, row{"cost per million saves (publish only)", usd(ha), "direct-DynamoDB store " + usd(direct), ratio(ha, direct),
			"reported, with the reason (What each action costs)", "-"})
	}
	return rows
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + " ×"
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// round is one raw PutItem run, one run of the bus alone and the pipeline run after them.
type round struct {
	Raw, Bus, Pipeline run
	RawCPU, CPU        cpuUse
	Batches            batches
}

func (rd round) ratio() float64 { return rd.Pipeline.perSecond() / rd.Raw.perSecond() }

// ceiling is the lower of the pipeline's two raw ceilings, the table's and the bus's:
// the part that binds it, and what the pipeline reaches of it.
func (rd round) ceiling() (part string, perSecond float64) {
	if rd.Bus.N > 0 && rd.Bus.perSecond() < rd.Raw.perSecond() {
		return "the bus alone", rd.Bus.perSecond()
	}
	return "raw PutItem", rd.Raw.perSecond()
}

// pickMedian makes the round with the median ratio the report's throughput figures.
func (r *report) pickMedian() {
	rs := slices.Clone(r.Rounds)
	slices.SortFunc(rs, func(a, b round) int { return cmp.Compare(a.ratio(), b.ratio()) })
	m := rs[len(rs)/2]
	r.RawPut, r.RawBus, r.Pipeline, r.RawCPU, r.CPU, r.Batches = m.Raw, m.Bus, m.Pipeline, m.RawCPU, m.CPU, m.Batches
}

// binding names the part whose raw ceiling is lower in the reported round.
func (r *report) binding() string {
	rd := round{Raw: r.RawPut, Bus: r.RawBus}
	part, _ := rd.ceiling()
	return part
}

// row is one line of the table: figure, measured, baseline, ratio, goal, verdict.
type row [6]string

func (r *report) rows() []row {
	pr, pp := r.RawPut.perSecond(), r.Pipeline.perSecond()
	g50, g99 := r.RawGet.Lat.pct(50), r.RawGet.Lat.pct(99)
	d50, d99 := r.Direct.Lat.pct(50), r.Direct.Lat.pct(99)
	p99 := r.RawPutLat.Lat.pct(99)
	l50, l99 := r.Lag.Lat.pct(50), r.Lag.Lat.pct(99)
	rows := []row{
		{fmt.Sprintf("pipeline throughput (client publish → applied), %d sessions by %d goroutines", r.N, r.Concurrency),
			fmt.Sprintf("%.0f sessions/s", pp), fmt.Sprintf("raw PutItem %.0f items/s", pr), ratio(pp, pr), "≥ 0.5 × raw PutItem", verdict(pp >= 0.5*pr)},
		{"… against the bus alone (SNS publish → SQS → receive and delete, no function, no table)",
			fmt.Sprintf("%.0f sessions/s", pp), fmt.Sprintf("bus alone %.0f messages/s", r.RawBus.perSecond()), ratio(pp, r.RawBus.perSecond()),
			"the part with the lower ceiling binds: " + r.binding(), "-"},
		{fmt.Sprintf("direct failover read p50 (Load on another instance), by %d", r.LatConcurrency),
			ms(d50), "raw GetItem p50 " + ms(g50), ratio(float64(d50), float64(g50)), "-", "-"},
		{fmt.Sprintf("direct failover read p99, by %d", r.LatConcurrency),
			ms(d99), "raw GetItem p99 " + ms(g99), ratio(float64(d99), float64(g99)), "≤ 1.3 × raw GetItem p99", verdict(float64(d99) <= 1.3*float64(g99))},
		{"… against the table calls it makes: raw BatchGetItem of an item and its logout key, p50 / p99",
			ms(d50) + " / " + ms(d99), "raw BatchGetItem p50 " + ms(r.RawPair.Lat.pct(50)) + " p99 " + ms(r.RawPair.Lat.pct(99)),
			ratio(float64(d50), float64(r.RawPair.Lat.pct(50))) + " / " + ratio(float64(d99), float64(r.RawPair.Lat.pct(99))), "-", "-"},
	}
	b50, b99 := r.Bus.Run.Lat.pct(50), r.Bus.Run.Lat.pct(99)
	rows = append(rows,
		row{fmt.Sprintf("bus failover read p50 (Load with ReadPath bus on another instance), by %d", r.LatConcurrency),
			ms(b50), "direct p50 " + ms(d50), ratio(float64(b50), float64(d50)), "-", "-"},
		row{fmt.Sprintf("bus failover read p99, by %d (%d of %d got no answer within MaxWait)", r.LatConcurrency, r.Bus.Timeouts, r.Bus.Run.N),
			ms(b99), "direct p99 " + ms(d99), ratio(float64(b99), float64(d99)),
			"≤ 5 × direct p99 (and far below the old 5 s Maximum Wait Time)", verdict(float64(b99) <= 5*float64(d99))})
	rows = append(rows,
		row{fmt.Sprintf("visibility lag p50 (Create on A → Load succeeds on B), by %d", r.LatConcurrency),
			ms(l50), "raw PutItem p50 " + ms(r.RawPutLat.Lat.pct(50)), ratio(float64(l50), float64(r.RawPutLat.Lat.pct(50))), "-", "-"},
		row{fmt.Sprintf("visibility lag p99, by %d", r.LatConcurrency),
			ms(l99), "raw PutItem p99 " + ms(p99), ratio(float64(l99), float64(p99)), "≤ 5 × raw PutItem p99", verdict(float64(l99) <= 5*float64(p99))},
		row{"bytes per stored reference session (20 attributes, 2 KB of values): item size",
			fmt.Sprintf("%d B", r.Bytes.Item), fmt.Sprintf("%d B of values", refValueBytes), ratio(float64(r.Bytes.Item), refValueBytes),
			"≤ 1.3 × 2 KB (old rule: 10 KB)", verdict(float64(r.Bytes.Item) <= 1.3*refValueBytes)},
		row{"… billed storage: item + index copy + 100 B overhead each",
			fmt.Sprintf("%d B", r.Bytes.Storage), fmt.Sprintf("%d B of values", refValueBytes), ratio(float64(r.Bytes.Storage), refValueBytes),
			fmt.Sprintf("old rule 10,240 B: %s of it", ratio(float64(r.Bytes.Storage), 10240)), "-"},
		row{"function cold start: process start → first event handled (median)",
			ms(r.Cold.Total.pct(50)), fmt.Sprintf("of which init %s; warm invoke %s", ms(r.Cold.Init.pct(50)), ms(r.Cold.Warm.pct(50))), "-",
			"< 50 ms", verdict(r.Cold.Total.pct(50) < 50*time.Millisecond)},
	)
	rows = append(rows, r.peerRows()...)
	rows = append(rows, r.sealRows()...)
	rows = append(rows, r.crossRows()...)
	for _, s := range r.Sizes {
		rows = append(rows, row{"bootstrap size, " + s.Function + " (linux/arm64, -s -w, -trimpath, lambda.norpc)",
			fmt.Sprintf("%.2f MB (%d bytes)", float64(s.Bytes)/1e6, s.Bytes), "-", "-", "< 8 MB", verdict(s.Bytes < 8e6)})
	}
	return rows
}

// table is the Markdown table of the figures.
func (r *report) table() string {
	var b strings.Builder
	b.WriteString("| figure | sessionha | raw emulator baseline | ratio | goal | |\n|---|---|---|---|---|---|\n")
	for _, x := range r.rows() {
		b.WriteString("| " + strings.Join(x[:], " | ") + " |\n")
	}
	fmt.Fprintf(&b, "\nMeasured by `make bench` on %s (%d cores, %.0f GB, %s), commit %s. Details: [BENCHMARKS.md](BENCHMARKS.md).\n",
		r.Started.UTC().Format("2006-01-02"), r.Machine.Cores, r.Machine.MemoryGB, r.Machine.CPU, r.Machine.Commit)
	return b.String()
}

func (r *report) markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, `# sessionha benchmarks

Written by `+"`make bench`"+` (test/bench): every figure of DESIGN.md's "Numbers to hold",
measured in one run against the local stack and set against the raw emulator in the same run,
at the same concurrency. Numbers from a laptop's emulators say how much sessionha adds to the
store underneath, not what AWS would do.

- date: %s (run took %s)
- machine: %d cores, %.1f GB memory, %s
- commit: %s; %s
- emulators: %s; %s; every request through the edge port
- site: the topology's default settings (batch size 10, no batching window, 4 concurrent
  batches per function, 10 records applied at once per batch); client: persistence ha,
  web-method, scope session, ReadPath direct

`, r.Started.UTC().Format(time.RFC3339), r.Took.Round(time.Second), m.Cores, m.MemoryGB, m.CPU, m.Commit, m.Go, m.DynamoDB, m.Fauxqs)
	b.WriteString("## Figures\n\n")
	tbl := r.table()
	b.WriteString(tbl[:strings.Index(tbl, "\nMeasured by")])
	var ratios []string
	for _, rd := range r.Rounds {
		ratios = append(ratios, fmt.Sprintf("%.0f/s vs %.0f/s = %.2f", rd.Pipeline.perSecond(), rd.Raw.perSecond(), rd.ratio()))
	}
	fmt.Fprintf(&b, "\nPipeline against raw PutItem, round by round (the table shows the median round): %s.\n", strings.Join(ratios, "; "))
	var bus []string
	for _, rd := range r.Rounds {
		part, ps := rd.ceiling()
		bus = append(bus, fmt.Sprintf("bus alone %.0f/s, raw PutItem %.0f/s: %s binds, the pipeline reaches %.2f of it", rd.Bus.perSecond(), rd.Raw.perSecond(), part, rd.Pipeline.perSecond()/ps))
	}
	fmt.Fprintf(&b, "Which part binds, round by round: %s.\n", strings.Join(bus, "; "))
	fmt.Fprintf(&b, `
## How each figure is measured

- **Pipeline throughput**: %d reference sessions (20 attributes, 2 KB of values) created by %d
  goroutines on one client instance (Create publishes to SNS before it returns), timed from the
  first Create until sessionop's counters (the local metrics collector) have counted all of them
  and every one is in the table (consistent BatchGetItem). Baseline: %d PutItem calls of the same item
  (the layout sessionop writes) by %d goroutines, straight to the local DynamoDB through the edge.
  The bus alone: the same number of messages of the reference create's size published to a
  topic of the bench's own by as many goroutines, fanned out to its queue (raw delivery) and
  received ten at a time by 4 pollers (the mapping's concurrency) that delete them in batches:
  what the pipeline pays for the bus, without the function and the table. When the table's
  ceiling is far above the bus's, the pipeline's ratio to raw PutItem says little, and the ratio
  to the bus alone is the one to read.
  Raw and pipeline runs alternate, %d rounds, so that both meet the machine's load as it comes
  and goes. Each applied create costs the pipeline an SNS publish, the SQS fan-out, a share of a
  ReceiveMessage, of an invocation and of a DeleteMessageBatch, and one conditional PutItem (a
  save, a delta or a destroy also reads the item and its logout item first, in one
  BatchGetItem: read-merge-conditional-put; a destroy writes its logout item too).
- **Direct failover read**: %d Loads by a second client instance that never held the sessions,
  %d at once (a consistent BatchGetItem of the item and its logout item, unmarshal, expiry and
  logout check, copy), interleaved with the baselines, a consistent GetItem of a raw
  reference item (the goal's, from before logout items) and a consistent BatchGetItem of such
  an item and its logout key (the calls a Load makes now): each sample does one of each.
- **Bus failover read**: %d Loads (every third sample of the same interleaved run), by a third
  instance with ReadPath bus that never held the sessions: a query on the query topic,
  sessionquery's consistent BatchGetItem and its answer on the reply topic, routed to the instance's
  own queue by a filter policy. An answer that does not come within MaxWait (5 s) counts with
  its 5 s.
- **Visibility lag**: %d sessions, %d at once: instance A creates (publish), instance B calls
  Load in a loop until it succeeds; the time from the start of Create to that success. Baseline:
  PutItem latency, interleaved (%d puts: each sample does one of each).
- **Bytes per session**: one reference session is stored through the pipeline and its item read
  back; its size follows DynamoDB's documented rules (attribute names plus values; numbers 1 byte
  per 2 significant digits + 1; maps 3 bytes + 1 per element). Billed storage adds the
  byPrincipal index's copy and 100 bytes of per-item overhead to each.
- **Cold start**: sessionop built as deployed (%s), for this machine (amd64; Lambda runs arm64),
  started by the local Lambda runner and invoked with one SQS record on a fresh environment, %d
  times: the Invoke's wall time covers process start, init and the event (one conditional
  PutItem through the edge). Init is the runner's InitLast (process start to the runtime's
  first GET /next).
- **Bootstrap size**: each function built for linux/arm64 with the deploy flags.

`, r.N, r.Concurrency, r.RawPut.N, r.RawPut.Conc, len(r.Rounds), r.Direct.N, r.LatConcurrency, r.Bus.Run.N,
		r.Lag.N, r.LatConcurrency, r.RawPutLat.N, r.Cold.Flags, len(r.Cold.Total))

	b.WriteString(r.ownerSections())
	b.WriteString(r.sealSection())
	b.WriteString(r.crossMarkdown())
	b.WriteString("## Where the CPU went\n\n")
	fmt.Fprintf(&b, "CPU time per process during the pipeline run (%s of wall time) and during the raw PutItem throughput run (%s), on %d cores. Per session: the CPU a component spent divided by the sessions (or items) of the run.\n\n",
		r.CPU.Wall.Round(time.Millisecond), r.RawCPU.Wall.Round(time.Millisecond), m.Cores)
	b.WriteString("| process | pipeline: CPU | share of the cores | per session | raw PutItem: CPU | per item |\n|---|---|---|---|---|---|\n")
	var total, rawTotal time.Duration
	share := func(u cpuUse, d time.Duration) float64 {
		return 100 * d.Seconds() / (u.Wall.Seconds() * float64(m.Cores))
	}
	per := func(d time.Duration, n int) string {
		if n == 0 {
			return "-"
		}
		return ms(d / time.Duration(n))
	}
	for i, p := range r.CPU.Parts {
		raw := r.RawCPU.Parts[i].CPU
		total += p.CPU
		rawTotal += raw
		fmt.Fprintf(&b, "| %s | %s | %.0f%% | %s | %s | %s |\n", p.Name, p.CPU.Round(10*time.Millisecond), share(r.CPU, p.CPU), per(p.CPU, r.Pipeline.N),
			raw.Round(10*time.Millisecond), per(raw, r.RawPut.N))
	}
	fmt.Fprintf(&b, "| all of the above | %s | %.0f%% | %s | %s | %s |\n", total.Round(10*time.Millisecond), share(r.CPU, total), per(total, r.Pipeline.N),
		rawTotal.Round(10*time.Millisecond), per(rawTotal, r.RawPut.N))
	fmt.Fprintf(&b, "| other processes on the machine (not sessionha's) | %s | %.0f%% | - | %s | - |\n",
		r.CPU.Others.Round(10*time.Millisecond), share(r.CPU, r.CPU.Others), r.RawCPU.Others.Round(10*time.Millisecond))
	if r.Batches.Invocations > 0 {
		fmt.Fprintf(&b, "\nThe runner delivered the pipeline run's %d messages in %d invocations of sessionop (%.1f records per batch).\n",
			r.Batches.Messages, r.Batches.Invocations, float64(r.Batches.Messages)/float64(r.Batches.Invocations))
	}

	b.WriteString("\n## The reference session's item\n\n| attribute | bytes |\n|---|---|\n")
	for _, p := range r.Bytes.Breakdown {
		fmt.Fprintf(&b, "| `%s` | %d |\n", p.Name, p.Bytes)
	}
	fmt.Fprintf(&b, "| **item** | **%d** |\n| byPrincipal index copy | %d |\n| billed storage (item + index + 2 × 100) | %d |\n",
		r.Bytes.Item, r.Bytes.Index, r.Bytes.Storage)

	b.WriteString("\n## Distributions\n\n| run | n | concurrency | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		r    run
	}{
		{"raw PutItem (throughput run)", r.RawPut}, {"client Create (pipeline run, publish only)", r.Pipeline},
		{"raw PutItem (latency run)", r.RawPutLat}, {"raw GetItem", r.RawGet}, {"raw BatchGetItem, an item and its logout key", r.RawPair}, {"direct failover read", r.Direct},
		{"bus failover read", r.Bus.Run}, {"visibility lag", r.Lag}, {"… of which the publish (Create on A)", r.LagPublish},
		{"owned Load (peer run 1)", r.Peer.Owned}, {"scs + Redis Find (peer run 1)", r.Peer.FindWithOwned},
		{"failover Load, direct (peer run 2)", r.Peer.Failover}, {"scs + Redis Find (peer run 2)", r.Peer.FindWithFail},
		{"Save, publish only (peer run 3)", r.Peer.Save}, {"scs + Redis Commit (peer run 3)", r.Peer.Commit},
		{"Save, publish only (against SaveApplied)", r.SavePub}, {"SaveApplied", r.SaveApplied},
		{"takeover: Save on B → applied in the table", run{N: len(r.Owner.Applied), Conc: r.LatConcurrency, Lat: r.Owner.Applied}},
		{"takeover: Save on B → the old owner A serves B's change", run{N: len(r.Owner.Dropped), Conc: r.LatConcurrency, Lat: r.Owner.Dropped}},
		{"takeover: applied → A serves B's change (the bound)", run{N: len(r.Owner.AfterApp), Conc: r.LatConcurrency, Lat: r.Owner.AfterApp}},
	} {
		if x.r.N == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s |\n", x.name, x.r.N, x.r.Conc, ms(x.r.Lat.pct(50)), ms(x.r.Lat.pct(90)), ms(x.r.Lat.pct(99)), ms(x.r.Lat.pct(100)))
	}
	fmt.Fprintf(&b, "| cold start (Invoke on a fresh environment) | %d | 1 | %s | %s | %s | %s |\n", len(r.Cold.Total), ms(r.Cold.Total.pct(50)), ms(r.Cold.Total.pct(90)), ms(r.Cold.Total.pct(99)), ms(r.Cold.Total.pct(100)))
	fmt.Fprintf(&b, "| init (process start → first GET /next) | %d | 1 | %s | %s | %s | %s |\n", len(r.Cold.Init), ms(r.Cold.Init.pct(50)), ms(r.Cold.Init.pct(90)), ms(r.Cold.Init.pct(99)), ms(r.Cold.Init.pct(100)))
	b.WriteString(profileNotes)
	return b.String()
}

// profileNotes is what profiling the pipeline found (kept with the report, so that every
// run carries it; edit it when the findings change).
const profileNotes = `
## Profile: the largest cost in the pipeline, and what changed

Profiled with the per-process CPU accounting above, a pprof CPU profile of the bench process
(client, edge, Lambda runner: ` + "`-sessionha.cpuprofile`" + `) and of every sessionop bootstrap
(` + "`-sessionha.fnprofile DIR`" + `, which sets SESSIONHA_CPUPROFILE for the functions). The machine
has 2 cores, so the pipeline is CPU-bound and the CPU per session bounds its throughput.

What each applied session cost (2026-11-22, 3 runs of 2,000 sessions each, one raw PutItem
run and one pipeline run per bench invocation; the median):
DynamoDB Local 3.04 ms of CPU (a raw PutItem of the same item: 2.4 ms), the sessionop
bootstraps 1.07 ms, the bench process 1.32 ms (client publish, the edge proxying every call,
the runner's polls, invocations and deletes), fauxqs 0.56 ms: 6.0 ms in all, against 3.1 ms
for a raw PutItem. The runner's batching was not the problem (9.9 records per invocation, no
batching window needed), nor the edge (about a seventh of the bench process's CPU in its
profile). The largest cost that is ours was a DynamoDB call: record.Table.Apply read every item
(a consistent GetItem) before its conditional PutItem, also for a create, which nearly always
finds nothing; that read was about a quarter of DynamoDB Local's work per session and a third
of the bootstrap's CPU (most of which is SDK calls).

Change (internal/record/table.go): a create that would write a fresh item is put at once,
conditioned on no item existing; a conditional write that loses gets the item that beat it
back (ReturnValuesOnConditionCheckFailure ALL_OLD) and merges into it without reading again
(and reads as before if the store does not send it). Results are what read-merge-put makes:
the replay proof (test/replay) and TestApplyShortcuts check it against DynamoDB Local. Saves,
deltas and destroys still read first.

| | before | after |
|---|---|---|
| pipeline / raw PutItem throughput (3 runs) | 0.47, 0.62, 0.59 × (median 0.59) | 0.75, 0.75, 0.60 × (median 0.75) |
| CPU per applied session, all processes | 6.25, 6.00, 5.63 ms | 4.35, 4.75, 4.50 ms |
| … of which DynamoDB Local | 3.15, 3.04, 2.73 ms | 2.08, 2.38, 2.24 ms |
| … of which the sessionop bootstraps | 1.08, 1.07, 1.03 ms | 0.68, 0.74, 0.70 ms |

The runs shared the machine with other work (the "other processes" row), which moves the
latency tails most: compare p99s across runs with care.

Not changed, for their owners: the bootstraps are 9.7-9.8 MB against the 8 MB goal, and
about 2 MB of that is aws-sdk-go-v2/config with the SSO, SSO-OIDC, STS and sign-in clients it
links for credential sources a Lambda function never uses (its credentials are in
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN): sessionop built with an
aws.Config made from those variables instead of config.LoadDefaultConfig is 7.73 MB
(7,733,410 bytes, against 9,699,490).
`

// The README's table sits between these markers.
const (
	readmeBegin = "<!-- bench:begin (make bench writes this table) -->"
	readmeEnd   = "<!-- bench:end -->"
)

func updateReadme(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, readmeBegin), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q ... %q markers: the table was not copied there", path, readmeBegin, readmeEnd)
	}
	s = s[:i+len(readmeBegin)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
