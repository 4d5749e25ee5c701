package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// listEvery is how often Verify looks at the replicas' state (running, health) and addresses.
const listEvery = 500 * time.Millisecond

// prober sends verification probes from the worker to replica addresses.
type prober struct {
	client *http.Client
}

func newProber(dialTimeout time.Duration) *prober {
	tr := &http.Transport{
		Proxy:               nil, // probes go straight to container addresses, never through a proxy
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	// No client-wide timeout: every probe carries its own (spec probe timeout) in its context.
	return &prober{client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// outcome of one probe.
type outcome struct {
	unreachable bool
	failed      bool
	status      int
	latency     time.Duration
}

// do sends one probe to addr (host:port). A connection that cannot be opened is
// unreachable (the measurement could not be taken); a wrong status, a broken response or a
// response slower than the probe timeout is a failed sample.
func (p *prober) do(ctx context.Context, addr string, pr spec.Probe) outcome {
	if addr == "" {
		return outcome{unreachable: true}
	}
	timeout := pr.Timeout.D()
	if timeout <= 0 {
		timeout = spec.DefaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := pr.Method
	if method == "" {
		method = http.MethodGet
	}
	path := pr.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		return outcome{failed: true}
	}
	for k, v := range pr.Headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return outcome{unreachable: true}
		}
		return outcome{failed: true, latency: time.Since(start)}
	}
	_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	o := outcome{status: resp.StatusCode, latency: time.Since(start)}
	switch {
	case rerr != nil:
		o.failed = true
	case pr.ExpectStatus != 0:
		o.failed = resp.StatusCode != pr.ExpectStatus
	default:
		o.failed = resp.StatusCode < 200 || resp.StatusCode >= 400
	}
	return o
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
}

// Verify probes the new replicas and the baseline (stable) replicas with the same requests
// at the same moments, every Interval for Duration, and returns a verdict with its
// evidence. The verdict is never "passed" on missing data: fewer samples than MinSamples, or
// probes that could not run, make it inconclusive. It fails on an error rate above
// MaxErrorRate, a p95 above MaxP95Latency, a p95 above MaxLatencyRatio × the baseline p95
// (and at least Options.LatencyRatioFloor above it), or a new replica that stops running
// or fails its health check during the verification. An error means the verification
// itself could not run (engine unreachable), not that the version is bad.
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
	start := time.Now().Add(-prog.Elapsed)
	ticker := time.NewTicker(v.Interval.D())
	defer ticker.Stop()
	// Probes are fired on a fixed schedule and not awaited before the next tick: a slow
	// version gets as many samples as a fast one (it must not slip under min_samples and
	// turn a clear failure into an inconclusive verdict).
	var (
		mu       sync.Mutex // guards prog while probes are in flight
		inflight sync.WaitGroup
		byName   map[string]engine.Container
		listedAt time.Time
	)
	defer inflight.Wait()
	fatal := func() string {
		mu.Lock()
		defer mu.Unlock()
		return prog.Fatal
	}
	for fatal() == "" && time.Since(start) < v.Duration.D() {
		if byName == nil || time.Since(listedAt) >= listEvery {
			live, err := e.List(ctx, engine.Selector{Environment: in.Target.Environment, Cluster: in.Target.Cluster, Service: in.Service})
			if err != nil {
				if ctx.Err() != nil {
					return workflows.Verdict{}, ctx.Err()
				}
				return workflows.Verdict{}, classify("list "+in.Service+" on cluster "+in.Target.Cluster, err)
			}
			listedAt = time.Now()
			byName = map[string]engine.Container{}
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
			mu.Unlock()
			if fatal() != "" {
				break
			}
		}
		probe := func(s *side, addr string, p spec.Probe) {
			defer inflight.Done()
			o := a.probe.do(ctx, addr, p)
			mu.Lock()
			s.record(o)
			mu.Unlock()
		}
		for _, p := range v.Requests {
			for _, n := range in.New {
				inflight.Add(1)
				go probe(&prog.New, byName[n].Address, p)
			}
			for _, n := range in.Baseline {
				addr := ""
				if c, ok := byName[n]; ok && c.Running() {
					addr = c.Address
				}
				inflight.Add(1)
				go probe(&prog.Base, addr, p)
			}
		}
		if in.HealthPath != "" {
			for _, n := range in.New {
				inflight.Add(1)
				go func(addr string) {
					defer inflight.Done()
					o := a.probe.do(ctx, addr, spec.Probe{Path: in.HealthPath, Method: http.MethodGet})
					mu.Lock()
					defer mu.Unlock()
					// an unreachable replica is judged by the probes (inconclusive), not here
					if o.unreachable {
						return
					}
					if o.failed {
						prog.HealthFails[n]++
						if prog.HealthFails[n] >= retries && prog.Fatal == "" {
							prog.Fatal = fmt.Sprintf("new replica %s failed its health check (%s) %d times in a row", n, in.HealthPath, prog.HealthFails[n])
						}
					} else {
						prog.HealthFails[n] = 0
					}
				}(byName[n].Address)
			}
		}
		mu.Lock()
		prog.Elapsed = time.Since(start)
		snap := cloneProgress(prog)
		mu.Unlock()
		hb.set(ctx, snap)
		select {
		case <-ctx.Done():
			return workflows.Verdict{}, ctx.Err()
		case <-ticker.C:
		}
	}
	inflight.Wait() // the last probes (bounded by their timeout)
	if ctx.Err() != nil {
		return workflows.Verdict{}, ctx.Err()
	}
	prog.Elapsed = time.Since(start)
	verdict := judge(v, prog, len(in.New), len(in.Baseline), a.opts.LatencyRatioFloor)
	verdict.Service, verdict.Cluster, verdict.Stage, verdict.At = in.Service, in.Target.Cluster, in.Stage, time.Now().UTC()
	logInfo(ctx, "verification", "service", in.Service, "cluster", in.Target.Cluster, "stage", in.Stage, "result", verdict.Result, "reason", verdict.Reason)
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
