package activities

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/probe"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// listEvery is how often Verify looks at the replicas' state (running, health) and addresses.
const listEvery = 500 * time.Millisecond

// outcome of one probe, as the verification counts it.
type outcome struct {
	unreachable bool // the probe could not be taken (lost): judged by nobody
	failed      bool
	status      int
	latency     time.Duration
}

// outcomeOf judges one probe result against its request: a refused connection, a timeout, a
// broken answer or a status other than the expected one (any 2xx/3xx when none is set) is
// a failure; a probe that could not be taken (no address, no route) is unreachable.
func outcomeOf(r probe.Result, pr spec.Probe) outcome {
	if r.Lost() {
		return outcome{unreachable: true}
	}
	o := outcome{status: r.Status, latency: r.Latency}
	switch {
	case r.Err != "":
		o.failed = true
	case pr.ExpectStatus != 0:
		o.failed = r.Status != pr.ExpectStatus
	default:
		o.failed = r.Status < 200 || r.Status >= 400
	}
	return o
}

// probeRequest is the prober's form of a spec probe.
func probeRequest(p spec.Probe) probe.Request {
	timeout := p.Timeout.D()
	if timeout <= 0 {
		timeout = spec.DefaultProbeTimeout
	}
	return probe.Request{Method: p.Method, Path: p.Path, Headers: p.Headers, Timeout: timeout}
}

// histogram counts latencies in logarithmic buckets (5% wide from 100µs): compact enough
// to heartbeat, precise enough for a p95 judged against milliseconds.
type histogram map[int]int

const (
	histBase   = 100 * time.Microsecond
	histGrowth = 1.05
)

func bucketOf(d time.Duration) int {
	if d <= histBase {
		return 0
	}
	return int(math.Ceil(math.Log(float64(d)/float64(histBase)) / math.Log(histGrowth)))
}

func bucketUpper(i int) time.Duration {
	return time.Duration(float64(histBase) * math.Pow(histGrowth, float64(i)))
}

func (h histogram) add(d time.Duration) { h[bucketOf(d)]++ }

// percentile returns the upper bound of the bucket holding the q-th percentile (0 when empty).
func (h histogram) percentile(q float64) time.Duration {
	total := 0
	keys := make([]int, 0, len(h))
	for k, n := range h {
		total += n
		keys = append(keys, k)
	}
	if total == 0 {
		return 0
	}
	sort.Ints(keys)
	rank := int(math.Ceil(q / 100 * float64(total)))
	if rank < 1 {
		rank = 1
	}
	seen := 0
	for _, k := range keys {
		seen += h[k]
		if seen >= rank {
			return bucketUpper(k)
		}
	}
	return bucketUpper(keys[len(keys)-1])
}

// side is what one side (new or baseline) of a verification measured.
type side struct {
	Attempts    int         `json:"attempts"`
	Responses   int         `json:"responses"` // samples: probes that reached the replica
	Errors      int         `json:"errors"`
	Unreachable int         `json:"unreachable"`
	Codes       map[int]int `json:"codes,omitempty"`
	Latency     histogram   `json:"latency,omitempty"`
}

func (s *side) record(o outcome) {
	s.Attempts++
	if o.unreachable {
		s.Unreachable++
		return
	}
	s.Responses++
	if o.failed {
		s.Errors++
	}
	if o.status != 0 {
		if s.Codes == nil {
			s.Codes = map[int]int{}
		}
		s.Codes[o.status]++
	}
	if s.Latency == nil {
		s.Latency = histogram{}
	}
	s.Latency.add(o.latency)
}

// verifyProgress is Verify's heartbeat: everything measured so far, so a retry resumes.
type verifyProgress struct {
	New         side           `json:"new"`
	Base        side           `json:"base"`
	Elapsed     time.Duration  `json:"elapsed"`
	HealthFails map[string]int `json:"health_fails,omitempty"`
	Fatal       string         `json:"fatal,omitempty"`
	ProbedFrom  string         `json:"probed_from,omitempty"`
}

// Verify probes the new replicas and the baseline (stable) replicas with the same requests
// at the same moments, every Interval for Duration, and returns a verdict with its
// evidence. The probes run next to the replicas, on their own engine (Engine.Probe: a probe
// container on the environment network), or from the worker for a cluster with probes:
// direct; the evidence says which. The verdict is never "passed" on missing data: fewer
// samples than MinSamples, or probes that could not be taken, make it inconclusive. It
// fails on an error rate above MaxErrorRate, a p95 above MaxP95Latency, a p95 above
// MaxLatencyRatio × the baseline p95 (and at least Options.LatencyRatioFloor above it), or
// a new replica that stops running or fails its health check during the verification. An
// error means the verification itself could not run (the engine or its prober did not
// answer: a retryable error naming the cluster and the engine), never a pass.
func (a *Activities) Verify(ctx context.Context, in workflows.VerifyInput) (workflows.Verdict, error) {
	v := in.Verification
	if v.Interval <= 0 || v.Duration <= 0 {
		return workflows.Verdict{}, badInput("verify %s: interval and duration must be positive (got %s, %s)", in.Service, v.Interval, v.Duration)
	}
	if len(v.Requests) == 0 {
		return workflows.Verdict{}, badInput("verify %s: no requests", in.Service)
	}
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return workflows.Verdict{}, err
	}
	where := fmt.Sprintf("on cluster %s (engine %s)", in.Target.Cluster, in.Target.EngineEndpoint().Display())
	var prog verifyProgress
	resume(ctx, &prog)
	if prog.HealthFails == nil {
		prog.HealthFails = map[string]int{}
	}
	hb := startHeartbeat(ctx, a.opts.HeartbeatEvery, prog)
	defer hb.close()

	retries := in.HealthRetries
	if retries <= 0 {
		retries = spec.DefaultHealthRetries
	}
	sel := engine.Selector{Environment: in.Target.Environment, Cluster: in.Target.Cluster, Service: in.Service}
	live, err := e.List(ctx, sel)
	if err != nil {
		if ctx.Err() != nil {
			return workflows.Verdict{}, ctx.Err()
		}
		return workflows.Verdict{}, classify("list "+in.Service+" "+where, err)
	}
	byName := map[string]engine.Container{}
	for _, c := range live {
		byName[c.Name] = c
	}

	// The job: every request to every new and every baseline replica, plus the health path
	// on the new ones, all fired together every Interval (so both sides of the comparison
	// see the same moments).
	type streamOf struct {
		side   *side
		name   string // the replica
		req    int    // index into v.Requests; -1: the health check
		health bool
	}
	var (
		job     = probe.Job{Interval: v.Interval.D(), Duration: v.Duration.D() - prog.Elapsed, DialTimeout: a.opts.DialTimeout}
		streams []streamOf
		targets = map[string]int{}
	)
	target := func(name string, needRunning bool) int {
		if i, ok := targets[name]; ok {
			return i
		}
		addr := ""
		if c, ok := byName[name]; ok && (!needRunning || c.Running()) {
			addr = c.Address
		}
		targets[name] = len(job.Targets)
		job.Targets = append(job.Targets, addr)
		return targets[name]
	}
	for i, p := range v.Requests {
		job.Requests = append(job.Requests, probeRequest(p))
		for _, n := range in.New {
			job.Streams = append(job.Streams, probe.Stream{Target: target(n, false), Request: i})
			streams = append(streams, streamOf{side: &prog.New, name: n, req: i})
		}
		for _, n := range in.Baseline {
			job.Streams = append(job.Streams, probe.Stream{Target: target(n, true), Request: i})
			streams = append(streams, streamOf{side: &prog.Base, name: n, req: i})
		}
	}
	if in.HealthPath != "" {
		job.Requests = append(job.Requests, probe.Request{Path: in.HealthPath, Timeout: spec.DefaultHealthTimeout})
		for _, n := range in.New {
			job.Streams = append(job.Streams, probe.Stream{Target: target(n, false), Request: len(job.Requests) - 1})
			streams = append(streams, streamOf{name: n, req: -1, health: true})
		}
	}
	start := time.Now().Add(-prog.Elapsed)
	network := in.Target.Network()
	prog.ProbedFrom = e.ProbeSite(network)

	var mu sync.Mutex // guards prog while results arrive
	fatal := func() string {
		mu.Lock()
		defer mu.Unlock()
		return prog.Fatal
	}
	pctx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	probeDone := make(chan error, 1)
	if job.Duration <= 0 {
		// A previous attempt measured the whole window (its heartbeat says so): judge that.
		probeDone <- nil
	} else {
		go func() {
			probeDone <- e.Probe(pctx, network, job, func(r probe.Result) {
				st := streams[r.S]
				mu.Lock()
				defer mu.Unlock()
				if !st.health {
					st.side.record(outcomeOf(r, v.Requests[st.req]))
					return
				}
				o := outcomeOf(r, spec.Probe{})
				switch {
				case o.unreachable: // judged by the request probes (inconclusive), not here
				case o.failed:
					prog.HealthFails[st.name]++
					if prog.HealthFails[st.name] >= retries && prog.Fatal == "" {
						prog.Fatal = fmt.Sprintf("new replica %s failed its health check (%s) %d times in a row", st.name, in.HealthPath, prog.HealthFails[st.name])
					}
				default:
					prog.HealthFails[st.name] = 0
				}
			})
		}()
	}

	ticker := time.NewTicker(listEvery)
	defer ticker.Stop()
	var probeErr error
	running := true
	for running && fatal() == "" {
		select {
		case <-ctx.Done():
			<-probeDone
			return workflows.Verdict{}, ctx.Err()
		case probeErr = <-probeDone:
			running = false
			continue
		case <-ticker.C:
		}
		// The replicas' state: a new replica that is gone, stopped or unhealthy fails.
		live, err := e.List(ctx, sel)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			stopProbes()
			<-probeDone
			return workflows.Verdict{}, classify("list "+in.Service+" "+where, err)
		}
		byName := map[string]engine.Container{}
		for _, c := range live {
			byName[c.Name] = c
		}
		mu.Lock()
		for _, n := range in.New {
			c, ok := byName[n]
			switch {
			case prog.Fatal != "":
			case !ok:
				prog.Fatal = fmt.Sprintf("new replica %s is gone", n)
			case !c.Running():
				prog.Fatal = fmt.Sprintf("new replica %s is %s", n, c.State)
			case c.Health == engine.HealthUnhealthy:
				prog.Fatal = fmt.Sprintf("new replica %s turned unhealthy (failed its health check)", n)
			}
		}
		prog.Elapsed = time.Since(start)
		snap := cloneProgress(prog)
		mu.Unlock()
		hb.set(ctx, snap)
	}
	if running {
		stopProbes() // a replica failed: no need to measure on
		<-probeDone
	}
	if ctx.Err() != nil {
		return workflows.Verdict{}, ctx.Err()
	}
	if probeErr != nil && fatal() == "" {
		// The prober could not run (engine gone, probe image refused...): retry per policy,
		// never a verdict on what was measured so far.
		return workflows.Verdict{}, classify("verify "+in.Service+" "+where, probeErr)
	}
	mu.Lock()
	prog.Elapsed = time.Since(start)
	final := cloneProgress(prog)
	mu.Unlock()
	verdict := judge(v, final, len(in.New), len(in.Baseline), a.opts.LatencyRatioFloor)
	verdict.Service, verdict.Cluster, verdict.Stage, verdict.At = in.Service, in.Target.Cluster, in.Stage, time.Now().UTC()
	verdict.Evidence.ProbedFrom = final.ProbedFrom
	logInfo(ctx, "verification", "service", in.Service, "cluster", in.Target.Cluster, "stage", in.Stage, "result", verdict.Result, "reason", verdict.Reason, "probed_from", final.ProbedFrom)
	return verdict, nil
}

func cloneProgress(p verifyProgress) verifyProgress {
	c := p
	c.New.Codes, c.Base.Codes = cloneMap(p.New.Codes), cloneMap(p.Base.Codes)
	c.New.Latency, c.Base.Latency = histogram(cloneMap(p.New.Latency)), histogram(cloneMap(p.Base.Latency))
	c.HealthFails = cloneMap(p.HealthFails)
	return c
}

func cloneMap[K comparable](m map[K]int) map[K]int {
	if m == nil {
		return nil
	}
	out := make(map[K]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// judge turns measurements into a verdict. Order matters: a replica that died or turned
// unhealthy fails; then too few samples is inconclusive (nothing else can be said); then
// the error rate and latency thresholds fail; then any probe that could not run (on the new
// side, or on the baseline when a comparison is asked for) is inconclusive; else passed.
func judge(v spec.Verification, p verifyProgress, newTargets, baseTargets int, floor time.Duration) workflows.Verdict {
	n, b := p.New, p.Base
	ev := workflows.Evidence{
		Samples: n.Responses, Errors: n.Errors, StatusCodes: n.Codes, Unreachable: n.Unreachable,
		P50: n.Latency.percentile(50), P95: n.Latency.percentile(95),
		BaselineSamples: b.Responses, BaselineUnreachable: b.Unreachable, BaselineP95: b.Latency.percentile(95),
		Targets: newTargets, BaselineTargets: baseTargets, MinSamples: v.MinSamples,
	}
	if n.Responses > 0 {
		ev.ErrorRate = float64(n.Errors) / float64(n.Responses)
	}
	if b.Responses > 0 {
		ev.BaselineErrors = float64(b.Errors) / float64(b.Responses)
	}
	out := workflows.Verdict{Evidence: ev}
	verdict := func(r workflows.VerdictResult, format string, args ...any) workflows.Verdict {
		out.Result, out.Reason = r, fmt.Sprintf(format, args...)
		return out
	}
	if p.Fatal != "" {
		return verdict(workflows.VerdictFailed, "%s", p.Fatal)
	}
	if newTargets == 0 {
		return verdict(workflows.VerdictInconclusive, "no new replica to verify")
	}
	if n.Responses < v.MinSamples {
		return verdict(workflows.VerdictInconclusive, "only %d samples of the new version, %d needed (%d probes could not run)", n.Responses, v.MinSamples, n.Unreachable)
	}
	if ev.ErrorRate > v.MaxErrorRate {
		return verdict(workflows.VerdictFailed, "error rate %.1f%% above the %.1f%% allowed (%d of %d requests; stable: %.1f%%)",
			100*ev.ErrorRate, 100*v.MaxErrorRate, n.Errors, n.Responses, 100*ev.BaselineErrors)
	}
	if v.MaxP95Latency > 0 && ev.P95 > v.MaxP95Latency.D() {
		return verdict(workflows.VerdictFailed, "p95 latency %s above the %s allowed", ev.P95, v.MaxP95Latency)
	}
	compare := v.MaxLatencyRatio > 0 && baseTargets > 0
	if compare {
		if b.Responses < v.MinSamples {
			return verdict(workflows.VerdictInconclusive, "only %d samples of the stable version to compare with, %d needed (%d probes could not run)", b.Responses, v.MinSamples, b.Unreachable)
		}
		limit := time.Duration(float64(ev.BaselineP95) * v.MaxLatencyRatio)
		if ev.P95 > limit && ev.P95-ev.BaselineP95 >= floor {
			return verdict(workflows.VerdictFailed, "p95 latency %s is %.1f× the stable p95 %s (at most %.1f× allowed)",
				ev.P95, float64(ev.P95)/float64(max(ev.BaselineP95, time.Microsecond)), ev.BaselineP95, v.MaxLatencyRatio)
		}
	}
	if n.Unreachable > 0 {
		return verdict(workflows.VerdictInconclusive, "%d of %d probes of the new version could not run", n.Unreachable, n.Attempts)
	}
	if compare && b.Unreachable > 0 {
		return verdict(workflows.VerdictInconclusive, "%d of %d probes of the stable version could not run", b.Unreachable, b.Attempts)
	}
	if baseTargets == 0 {
		return verdict(workflows.VerdictPassed, "%d samples, error rate %.1f%%, p95 %s (no stable replica left to compare with)", n.Responses, 100*ev.ErrorRate, ev.P95)
	}
	return verdict(workflows.VerdictPassed, "%d samples, error rate %.1f%%, p95 %s (stable: %d samples, p95 %s)", n.Responses, 100*ev.ErrorRate, ev.P95, b.Responses, ev.BaselineP95)
}
