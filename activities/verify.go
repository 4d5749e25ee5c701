package activities

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/judgment"
	"github.com/slipwayhq/slipway/probe"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// listEvery is how often Verify looks at the replicas' state (running, health) and checks
// the pairs so far for an early failure.
const listEvery = 500 * time.Millisecond

// probeRequest is the prober's form of a spec probe.
func probeRequest(p spec.Probe) probe.Request {
	timeout := p.Timeout.D()
	if timeout <= 0 {
		timeout = spec.DefaultProbeTimeout
	}
	return probe.Request{Method: p.Method, Path: p.Path, Headers: p.Headers, Timeout: timeout}
}

// outcome of one probe, as a load test counts it.
type outcome struct {
	unreachable bool // the probe could not be taken (lost)
	failed      bool
}

// outcomeOf judges one probe result against its request alone (load tests, health checks):
// a refused connection, a timeout, a broken answer or a status other than the expected one
// (any 2xx/3xx when none is set) is a failure; a probe that could not be taken (no
// address, no route) is unreachable.
func outcomeOf(r probe.Result, pr spec.Probe) outcome {
	if r.Lost() {
		return outcome{unreachable: true}
	}
	switch {
	case r.Err != "":
		return outcome{failed: true}
	case pr.ExpectStatus != 0:
		return outcome{failed: r.Status != pr.ExpectStatus}
	default:
		return outcome{failed: r.Status < 200 || r.Status >= 400}
	}
}

// verifyProgress is Verify's heartbeat: what it measured so far (for the Web UI and a
// human), and a fatal finding, which a retried attempt reports at once. A retry measures a
// whole new window otherwise: a verdict is judged on one window of pairs.
type verifyProgress struct {
	Rounds     int           `json:"rounds"`
	Results    int           `json:"results"`
	Elapsed    time.Duration `json:"elapsed"`
	Fatal      string        `json:"fatal,omitempty"`
	ProbedFrom string        `json:"probed_from,omitempty"`
}

// streamKind says what a probe stream of a verification measures.
type streamKind int

const (
	streamNew    streamKind = iota // a request to a new replica
	streamBase                     // the same request to a baseline replica
	streamHealth                   // the health path of a new replica
)

type stream struct {
	kind    streamKind
	replica int // index into the new or baseline names
	req     int // index into the verification requests
}

// measurement holds every answer of a verification, by stream and round.
type measurement struct {
	streams     []stream
	reqs        []spec.Probe
	newN, baseN int
	res         [][]*probe.Result // [stream][round]
	status      map[int]int       // new replicas' statuses
}

func (m *measurement) add(r probe.Result) {
	for len(m.res[r.S]) <= r.R {
		m.res[r.S] = append(m.res[r.S], nil)
	}
	m.res[r.S][r.R] = &r
	if st := m.streams[r.S]; st.kind == streamNew && r.Status != 0 {
		m.status[r.Status]++
	}
}

// index of the stream of kind for (replica, request).
func (m *measurement) index(kind streamKind, replica, req int) int {
	switch kind {
	case streamNew:
		return req*(m.newN+m.baseN) + replica
	default:
		return req*(m.newN+m.baseN) + m.newN + replica
	}
}

// rounds returns how many rounds have every request answered on both sides (the complete
// prefix, in the order they were sent, as judgment.Early needs), or every round seen
// (complete false: the final verdict, where a round the prober lost is counted as lost).
func (m *measurement) rounds(complete bool) int {
	n := -1
	for si, st := range m.streams {
		if st.kind == streamHealth {
			continue
		}
		rs := m.res[si]
		if !complete {
			n = max(n, len(rs))
			continue
		}
		k := 0
		for k < len(rs) && rs[k] != nil {
			k++
		}
		if n < 0 || k < n {
			n = k
		}
	}
	return max(n, 0)
}

func bad(r *probe.Result, expect int) bool {
	return r.Err != "" || r.Status >= 500 || (expect != 0 && r.Status != expect)
}

// samples pairs each request to a new replica with the same request to a baseline replica in
// the same round (rotating over the baseline replicas), judged as judgment wants: lost when
// the probe could not be taken, failed on a bad answer. Without expect_status a new replica
// must answer like stable: a status class stable does not give on that request is a failure
// (a 404 on both sides is the same behaviour, a 404 against stable's 200 is not). With no
// baseline, solo holds the new replicas' samples alone.
func (m *measurement) samples(rounds int) (pairs []judgment.Pair, solo []judgment.Sample) {
	sample := func(r *probe.Result, expect int) judgment.Sample {
		switch {
		case r == nil || r.Lost():
			return judgment.Sample{Lost: true}
		default:
			return judgment.Sample{Failed: bad(r, expect), Latency: r.Latency}
		}
	}
	at := func(si, round int) *probe.Result {
		if round < len(m.res[si]) {
			return m.res[si][round]
		}
		return nil
	}
	for round := range rounds {
		for ri, p := range m.reqs {
			for j := range m.newN {
				c := at(m.index(streamNew, j, ri), round)
				cs := sample(c, p.ExpectStatus)
				if m.baseN == 0 {
					solo = append(solo, cs)
					continue
				}
				s := at(m.index(streamBase, (j+round)%m.baseN, ri), round)
				ss := sample(s, p.ExpectStatus)
				if p.ExpectStatus == 0 && !cs.Lost && !ss.Lost && !cs.Failed && !ss.Failed && c.Status/100 != s.Status/100 {
					cs.Failed = true
				}
				pairs = append(pairs, judgment.Pair{Canary: cs, Stable: ss})
			}
		}
	}
	return pairs, solo
}

// policyOf turns a service's verification policy into judgment's. The false-failure budget
// (1 − confidence) is shared by the early check and the final verdict.
func policyOf(v spec.Verification, slack time.Duration) judgment.Policy {
	alpha := 1 - v.Confidence
	if v.Confidence <= 0 || v.Confidence >= 1 {
		alpha = 1 - spec.DefaultConfidence
	}
	return judgment.Policy{
		Alpha:        alpha / 2,
		MaxErrorRate: v.MaxErrorRate,
		MaxP95:       v.MaxP95Latency.D(),
		P95Ratio:     v.MaxLatencyRatio,
		LatencySlack: slack,
		MinPairs:     v.MinSamples,
	}
}

// Verify probes the new replicas and the baseline (stable) replicas with the same requests
// at the same moments, every Interval for Duration, and returns a verdict with its
// evidence. The probes run next to the replicas, on their own engine (Engine.Probe: a probe
// container on the environment network), or from the worker for a cluster with probes:
// direct; the evidence says which.
//
// The verdict is judgment's (see docs/spec.md, "How a verdict is reached"): with a
// baseline, canary against stable pair by pair (errors and slow answers with exact tests,
// latency distributions, p95 ratio, ceilings); without one (a first release, or every old
// replica stopped), absolute ceilings only, and the reason says so. While the window runs,
// an anytime-valid check fails a clearly bad canary early; nothing passes early. A new
// replica that stops running, or fails its health check Retries times in a row, fails at
// once. Missing data is never a pass: too few pairs, or too many lost, is inconclusive. An
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
	// Heartbeats from the start (the engine can be slow to answer), with the previous
	// attempt's details until this one has its own.
	var prev verifyProgress
	resumed := resume(ctx, &prev)
	hb := startHeartbeat(ctx, a.opts.HeartbeatEvery, prev)
	defer hb.close()
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return workflows.Verdict{}, err
	}
	where := fmt.Sprintf("on cluster %s (engine %s)", in.Target.Cluster, in.Target.EngineEndpoint().Display())
	// The prober shares the network namespace of a stable replica (not under test), else of
	// a new one, else runs on the environment network.
	at := engine.ProbeAt{Network: in.Target.Network(), Beside: append(append([]string(nil), in.Baseline...), in.New...)}
	finish := func(verdict workflows.Verdict) (workflows.Verdict, error) {
		verdict.Service, verdict.Cluster, verdict.Stage, verdict.At = in.Service, in.Target.Cluster, in.Stage, time.Now().UTC()
		verdict.Evidence.ProbedFrom = e.ProbeSite(at)
		logInfo(ctx, "verification", "service", in.Service, "cluster", in.Target.Cluster, "stage", in.Stage, "result", verdict.Result, "reason", verdict.Reason, "probed_from", verdict.Evidence.ProbedFrom)
		return verdict, nil
	}
	if resumed && prev.Fatal != "" {
		return finish(workflows.Verdict{Result: workflows.VerdictFailed, Reason: prev.Fatal, Evidence: workflows.Evidence{Targets: len(in.New), BaselineTargets: len(in.Baseline)}})
	}
	if len(in.New) == 0 {
		return finish(workflows.Verdict{Result: workflows.VerdictInconclusive, Reason: "no new replica to verify"})
	}
	prog := verifyProgress{ProbedFrom: e.ProbeSite(at)}
	hb.update(prog)

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
	// The baseline is the old replicas that run now. One the workflow still names may have
	// been stopped or scaled away by an earlier batch (on a swarm, a batch scales the old
	// version's service down, and Swarm picks the task that goes): its probes would all be
	// lost and the verdict inconclusive for want of pairs, not for anything the new version
	// did. Without any, the verdict is on the absolute ceilings, as for a first release.
	var baseline []string
	for _, n := range in.Baseline {
		if c, ok := byName[n]; ok && c.Running() {
			baseline = append(baseline, n)
		}
	}
	in.Baseline = baseline
	at.Beside = append(append([]string(nil), in.Baseline...), in.New...)
	prog.ProbedFrom = e.ProbeSite(at)
	addr := func(name string) string {
		if c, ok := byName[name]; ok && c.Running() {
			return c.Address
		}
		return ""
	}

	// The job: every request to every new and every baseline replica, plus the health path
	// on the new ones, all fired together every Interval, so both sides of a comparison see
	// the same moments, from the same place.
	m := &measurement{reqs: v.Requests, newN: len(in.New), baseN: len(in.Baseline), status: map[int]int{}}
	job := probe.Job{Interval: v.Interval.D(), Duration: v.Duration.D(), DialTimeout: a.opts.DialTimeout}
	for _, n := range in.New {
		job.Targets = append(job.Targets, addr(n))
	}
	for _, n := range in.Baseline {
		job.Targets = append(job.Targets, addr(n))
	}
	for ri, p := range v.Requests {
		job.Requests = append(job.Requests, probeRequest(p))
		for j := range in.New {
			job.Streams = append(job.Streams, probe.Stream{Target: j, Request: ri})
			m.streams = append(m.streams, stream{kind: streamNew, replica: j, req: ri})
		}
		for j := range in.Baseline {
			job.Streams = append(job.Streams, probe.Stream{Target: len(in.New) + j, Request: ri})
			m.streams = append(m.streams, stream{kind: streamBase, replica: j, req: ri})
		}
	}
	if in.HealthPath != "" {
		job.Requests = append(job.Requests, probe.Request{Path: in.HealthPath, Timeout: spec.DefaultHealthTimeout})
		for j := range in.New {
			job.Streams = append(job.Streams, probe.Stream{Target: j, Request: len(job.Requests) - 1})
			m.streams = append(m.streams, stream{kind: streamHealth, replica: j})
		}
	}
	m.res = make([][]*probe.Result, len(m.streams))
	healthFails := make([]int, len(in.New))
	pol := policyOf(v, a.opts.LatencyRatioFloor)
	start := time.Now()

	var mu sync.Mutex // guards m, healthFails and prog while results arrive
	pctx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	probeDone := make(chan error, 1)
	go func() {
		probeDone <- e.Probe(pctx, at, job, func(r probe.Result) {
			mu.Lock()
			defer mu.Unlock()
			prog.Results++
			st := m.streams[r.S]
			if st.kind != streamHealth {
				m.add(r)
				return
			}
			switch {
			case r.Lost(): // judged by the request probes (lost pairs), not here
			case bad(&r, 0) || r.Status >= 400:
				healthFails[st.replica]++
				if healthFails[st.replica] >= retries && prog.Fatal == "" {
					prog.Fatal = fmt.Sprintf("new replica %s failed its health check (%s) %d times in a row", in.New[st.replica], in.HealthPath, healthFails[st.replica])
				}
			default:
				healthFails[st.replica] = 0
			}
		})
	}()

	ticker := time.NewTicker(listEvery)
	defer ticker.Stop()
	var (
		probeErr error
		early    *judgment.Result
	)
	for running := true; running; {
		select {
		case <-ctx.Done():
			_ = <-probeDone // the probes end with ctx: ctx.Err() is the error
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
			_ = <-probeDone // stopped just above: the list error is the one to report
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
		// An anytime-valid look at the pairs so far: a clearly bad canary fails now.
		if prog.Fatal == "" && m.baseN > 0 {
			pairs, _ := m.samples(m.rounds(true))
			if res, failed := judgment.Early(pol, pairs); failed {
				early = &res
			}
		}
		prog.Rounds, prog.Elapsed = m.rounds(false), time.Since(start)
		snap := prog
		mu.Unlock()
		hb.set(ctx, snap)
		if snap.Fatal != "" || early != nil {
			stopProbes() // decided: no need to measure on
			// Their error is that stop: what they measured is in m.
			_ = <-probeDone
			running = false
		}
	}
	if ctx.Err() != nil {
		return workflows.Verdict{}, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	if probeErr != nil && prog.Fatal == "" && early == nil {
		// The prober could not run (engine gone, probe image refused...): retry per policy,
		// never a verdict on what was measured so far.
		return workflows.Verdict{}, classify("verify "+in.Service+" "+where, probeErr)
	}
	verdict := m.verdict(pol, prog.Fatal, early)
	return finish(verdict)
}

// verdict judges a finished (or decided) measurement.
func (m *measurement) verdict(pol judgment.Policy, fatal string, early *judgment.Result) workflows.Verdict {
	var res judgment.Result
	switch {
	case early != nil:
		res = *early
	case m.baseN > 0:
		pairs, _ := m.samples(m.rounds(false))
		res = judgment.Compare(pol, pairs)
	default:
		_, solo := m.samples(m.rounds(false))
		res = judgment.Absolute(pol, solo)
	}
	ev := workflows.Evidence{
		Samples: res.Canary.N, Errors: res.Canary.Errors, ErrorRate: res.Canary.ErrorRate,
		P50: res.Canary.P50, P95: res.Canary.P95, P99: res.Canary.P99,
		StatusCodes: m.status, Unreachable: res.Lost,
		Targets: m.newN, BaselineTargets: m.baseN, MinSamples: pol.MinPairs,
		Rule: res.Rule, Baseline: res.Baseline, Statistics: &res,
	}
	if res.Baseline {
		ev.BaselineSamples, ev.BaselineErrors, ev.BaselineP95 = res.Stable.N, res.Stable.ErrorRate, res.Stable.P95
	}
	out := workflows.Verdict{Evidence: ev, Reason: res.Reason}
	switch {
	case fatal != "":
		out.Result, out.Reason = workflows.VerdictFailed, fatal
	case res.Outcome == judgment.Failed:
		out.Result = workflows.VerdictFailed
		if early != nil {
			out.Reason = "failed early, after " + fmt.Sprint(res.Pairs) + " pairs: " + res.Reason
		}
	case res.Outcome == judgment.Passed:
		out.Result = workflows.VerdictPassed
	default:
		out.Result = workflows.VerdictInconclusive
	}
	return out
}
