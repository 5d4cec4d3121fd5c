// Package bench measures the figures of DESIGN.md's "Numbers to hold" against the local
// stack, each as a ratio against the raw emulator in the same run and at the same
// concurrency, and writes BENCHMARKS.md (and the README's table). `make bench` runs it;
// `make test` only compiles it: without -sessionha.bench every test here skips and no
// site starts.
//
//	go test -count=1 -timeout 15m -run TestBench -v ./test/bench -sessionha.bench
package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionha/sessionha/local/site"
)

var (
	enabled  = flag.Bool("sessionha.bench", false, "run the benchmark (starts a local site; minutes)")
	outPath  = flag.String("sessionha.out", "../../BENCHMARKS.md", "where to write the results")
	readme   = flag.String("sessionha.readme", "../../README.md", "README whose Numbers table to update (\"\" for none)")
	n        = flag.Int("sessionha.n", 2000, "sessions per throughput run")
	rounds   = flag.Int("sessionha.rounds", 3, "rounds of raw PutItem and pipeline throughput runs, alternating")
	conc     = flag.Int("sessionha.c", 16, "concurrency of the throughput runs")
	latConc  = flag.Int("sessionha.latc", 4, "concurrency of the latency runs")
	samples  = flag.Int("sessionha.samples", 2000, "reads per latency run")
	lagN     = flag.Int("sessionha.lag", 500, "sessions per visibility-lag run")
	cpuProf  = flag.String("sessionha.cpuprofile", "", "write the CPU profile of this process (client, edge, runner, DynamoDB) of the last pipeline run to `FILE`")
	colds    = flag.Int("sessionha.colds", 7, "cold starts to measure")
	fnProf   = flag.String("sessionha.fnprofile", "", "`DIR` where sessionop's bootstraps write CPU profiles (SESSIONHA_CPUPROFILE)")
	ownN     = flag.Int("sessionha.own", 200, "takeovers timed, and saves of each kind timed against SaveApplied")
	costN    = flag.Int("sessionha.cost", 200, "actions of each kind counted for the cost table")
	theSite  *site.Site
	startErr error
)

func TestMain(m *testing.M) { os.Exit(benchMain(m)) }

func benchMain(m *testing.M) int {
	flag.Parse()
	if !*enabled || *onlyCross {
		// compiled and vetted by make test, where TestBench skips; with only-cross the
		// cross-region part starts a stack of its own
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "sessionha-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// The site as `make local` runs it: the topology's default settings.
	fnLog := &tail{}
	o := site.Options{EdgePort: -1, RunDir: tmp, FunctionOutput: fnLog}
	if *fnProf != "" {
		o.FunctionEnv = map[string]string{"SESSIONHA_CPUPROFILE": *fnProf}
	}
	theSite, startErr = site.Start(context.Background(), o)
	if startErr != nil {
		fmt.Fprintln(os.Stderr, "start local site:", startErr)
		return 1
	}
	defer theSite.Stop()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "the functions' last lines but metrics:\n%s", fnLog.String())
	}
	return code
}

// tail keeps the functions' last log lines, metric lines aside.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) Write(p []byte) (int, error) {
	if !bytes.Contains(p, []byte(`"_aws"`)) {
		t.mu.Lock()
		t.lines = append(t.lines, string(p))
		if len(t.lines) > 40 {
			t.lines = t.lines[len(t.lines)-40:]
		}
		t.mu.Unlock()
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "")
}

// TestBench measures every figure in one run and writes the report.
func TestBench(t *testing.T) {
	if !*enabled {
		t.Skip("a benchmark: run it with make bench (go test ./test/bench -sessionha.bench)")
	}
	began := time.Now()
	if *onlyCross {
		r := &report{Cross: crossRegion(t, *latConc)}
		for _, x := range r.crossRows() {
			t.Log(strings.Join(x[:], " | "))
		}
		t.Log("\n" + r.crossMarkdown())
		return
	}
	prices, err := loadPrices()
	if err != nil {
		t.Fatal(err)
	}
	b := newBencher(t)
	r := &report{Started: began, Concurrency: *conc, LatConcurrency: *latConc, N: *n, Samples: *samples, LagN: *lagN}
	r.Machine = machine()

	b.warmUp()
	// Throughput: raw and pipeline runs alternate, so that both meet the machine's load as it
	// comes and goes; the report takes the round with the median ratio.
	for range *rounds {
		var rd round
		cpu0 := b.cpuStart()
		rd.Raw = b.rawPut(*conc, *n)
		rd.RawCPU = b.cpuSince(cpu0, rd.Raw.Elapsed, "")
		rd.Bus = b.rawBus(*conc, *n)
		rd.Pipeline, rd.CPU, rd.Batches = b.pipeline(*conc, *n)
		r.Rounds = append(r.Rounds, rd)
	}
	r.pickMedian()
	r.RawGet, r.RawPair, r.Direct, r.Bus = b.reads(*latConc, *samples)
	r.Lag, r.LagPublish, r.RawPutLat = b.lag(*latConc, *lagN)
	r.Bytes = b.bytes()
	r.Owner = b.ownership(*latConc, *ownN)
	r.SavePub, r.SaveApplied = b.appliedSaves(*latConc, *ownN)
	r.Peer = b.peer(*conc, *samples)
	r.Seal = b.sealing(*latConc, *ownN)
	r.Costs, r.Prices = b.costs(*costN), prices
	r.Cold = b.coldStarts(*colds)
	r.Sizes = b.bootstrapSizes()
	// Last: a stack of its own, so that it does not slow the figures above.
	r.Cross = crossRegion(t, *latConc)
	r.Took = time.Since(began)

	md := r.markdown()
	if err := os.WriteFile(*outPath, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s in %s", *outPath, r.Took.Round(time.Second))
	if *readme != "" {
		if err := updateReadme(*readme, r.table()); err != nil {
			t.Error(err)
		}
		if err := replaceBetween(*readme, lossBegin, lossEnd, r.lossSentence()); err != nil {
			t.Error(err)
		}
	}
	t.Log("\n" + r.table())
}
