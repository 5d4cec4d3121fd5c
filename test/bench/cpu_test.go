package bench

import (
	"bytes"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/dynamo"
)

// CPU accounting: each run's CPU time per component, from /proc for the processes and,
// for the local DynamoDB, which runs inside the bench process, from a CPU profile of the
// bench process: the samples taken while a goroutine served a DynamoDB request (pprof
// label component=dynamodb, set by local/dynamo) are its share.

// The components, in the report's order.
var cpuOrder = []string{
	"local DynamoDB (in the bench process: its profile samples)",
	"fauxqs: SNS and SQS (node)",
	"sessionop bootstraps",
	"bench process but DynamoDB: client, edge, Lambda runner",
}

// cpuBusy keys the machine's busy CPU time in cpuNow's map.
const cpuBusy = "machine"

// cpuSelf keys the bench process's whole CPU time in cpuNow's map.
const cpuSelf = "self"

// busyCPU is the machine's CPU time spent on anything (/proc/stat), idle and iowait aside.
func busyCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clockTicks = 100

// procCPU is the user+system CPU time of one process, 0 if it is gone.
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// treeCPU is the CPU time of a process and its descendants.
func treeCPU(pid int) time.Duration {
	parents := map[string]string{}
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
			if len(f) > 1 {
				parents[e.Name()] = f[1]
			}
		}
	}
	root := strconv.Itoa(pid)
	var total time.Duration
	for p := range parents {
		for q := p; q != "" && q != "0"; q = parents[q] {
			if q == root {
				total += procCPU(p)
				break
			}
		}
	}
	return total
}

// cpuSample is the counters at the start of a run, and its profile under way.
type cpuSample struct {
	at  map[string]time.Duration
	buf *bytes.Buffer // nil if the profile could not start (another one is running)
}

// cpuStart takes the counters and starts profiling the bench process.
func (b *bencher) cpuStart() cpuSample {
	m := map[string]time.Duration{
		cpuBusy:     busyCPU(),
		cpuOrder[1]: treeCPU(theSite.Fauxqs.PID()),
		cpuSelf:     procCPU("self"),
	}
	for _, pid := range theSite.Functions[topology.FunctionSessionOp].Environments() {
		m[cpuOrder[2]] += procCPU(strconv.Itoa(pid))
	}
	s := cpuSample{at: m, buf: &bytes.Buffer{}}
	if err := pprof.StartCPUProfile(s.buf); err != nil {
		b.t.Logf("no CPU profile of this run (%v): the local DynamoDB's share is not told apart", err)
		s.buf = nil
	}
	return s
}

// cpuSince is the CPU each component used since s, and what other processes of the
// machine used meanwhile (other work on a shared machine skews every figure). It ends
// the run's profile; with -sessionha.cpuprofile the pipeline's is also kept in that file.
func (b *bencher) cpuSince(s cpuSample, wall time.Duration, keep string) cpuUse {
	var ddb time.Duration
	if s.buf != nil {
		pprof.StopCPUProfile()
		if keep != "" {
			if err := os.WriteFile(keep, s.buf.Bytes(), 0o644); err != nil {
				b.t.Error(err)
			}
		}
		ddb = labelledCPU(s.buf.Bytes(), dynamo.ProfileLabel)
	}
	now := b.cpuStart()
	if now.buf != nil {
		pprof.StopCPUProfile()
	}
	d := func(k string) time.Duration { return max(0, now.at[k]-s.at[k]) }
	self := d(cpuSelf)
	ddb = min(ddb, self)
	use := cpuUse{Wall: wall, Parts: []cpuPart{
		{Name: cpuOrder[0], CPU: ddb},
		{Name: cpuOrder[1], CPU: d(cpuOrder[1])},
		{Name: cpuOrder[2], CPU: d(cpuOrder[2])},
		{Name: cpuOrder[3], CPU: self - ddb},
	}}
	var ours time.Duration
	for _, p := range use.Parts {
		ours += p.CPU
	}
	use.Others = max(0, d(cpuBusy)-ours)
	return use
}

// labelledCPU sums the CPU time of a profile's samples labelled component=label.
func labelledCPU(raw []byte, label string) time.Duration {
	p, err := profile.Parse(bytes.NewReader(raw))
	if err != nil {
		return 0
	}
	cpu := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			cpu = i
		}
	}
	if cpu < 0 {
		return 0
	}
	var ns int64
	for _, smp := range p.Sample {
		if slices.Contains(smp.Label["component"], label) {
			ns += smp.Value[cpu]
		}
	}
	return time.Duration(ns)
}
