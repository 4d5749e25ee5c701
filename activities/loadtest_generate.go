package activities

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	// vegeta is the load generator: a well-kept, widely used HTTP load-testing library with
	// a constant-rate pacer (open model: requests go out at the rate whatever the latency,
	// so a slow target shows as latency, not as a lower rate), worker pool growth, and
	// t-digest latency quantiles in constant memory. Its dependencies are all already in
	// our module graph at newer versions, except four small ones.
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Generate sends the test's load to the serving replicas of the service (or to the named
// containers) on every target cluster: rate requests/s, round robin over every replica ×
// every request of the mix, for warm-up + duration. Only the measured window counts. It
// heartbeats its progress (requests done, current rate, errors) and stops at once when
// the activity is cancelled.
//
// Safety: targets come only from the engine (containers labelled with the environment
// and the service, addresses on the allowed networks), the HTTP client dials nothing else
// (not even through a redirect or a proxy), and rate and duration are capped by the
// worker's options.
func (a *LoadTestActivities) Generate(ctx context.Context, in workflows.LoadTestGenerateInput) (workflows.LoadTestMetrics, error) {
	if err := a.checkLimits(in.Rate, in.WarmUp+in.Duration); err != nil {
		return workflows.LoadTestMetrics{}, err
	}
	if len(in.Requests) == 0 {
		in.Requests = []spec.Probe{{Path: spec.DefaultProbePath}}
	}
	serving, err := a.serving(ctx, in.Environment, in.Service, in.Targets, in.Containers)
	if err != nil {
		return workflows.LoadTestMetrics{}, err
	}
	var addrs []string
	for _, c := range sortedKeys(serving) {
		for _, r := range serving[c] {
			addrs = append(addrs, r.Address)
		}
	}
	hb := startHeartbeat(ctx, a.opts.HeartbeatEvery, workflows.LoadTestProgress{Phase: "starting"})
	defer hb.close()
	m, err := a.runLoad(ctx, loadSpec{
		Addresses: addrs, Requests: in.Requests, Rate: in.Rate, WarmUp: in.WarmUp, Duration: in.Duration, Name: in.Name,
	}, func(p workflows.LoadTestProgress) { hb.set(ctx, p) })
	if err != nil {
		if ctx.Err() != nil {
			return m, ctx.Err()
		}
		return m, badInput("load test %s/%s: %v", in.Environment, in.Service, err)
	}
	logInfo(ctx, "load test measured", "service", in.Service, "requests", m.Requests, "rate", m.Rate, "p95", m.P95, "error_rate", m.ErrorRate)
	return m, nil
}

// loadSpec is one load: where to, what, how fast, how long.
type loadSpec struct {
	// Addresses are ip:port of the replicas; nothing else is ever dialled.
	Addresses []string
	Requests  []spec.Probe
	Rate      int
	WarmUp    time.Duration
	Duration  time.Duration
	Name      string
}

// runLoad runs one load with vegeta and measures the window after the warm-up. progress
// is called about every HeartbeatEvery.
func (a *LoadTestActivities) runLoad(ctx context.Context, ls loadSpec, progress func(workflows.LoadTestProgress)) (workflows.LoadTestMetrics, error) {
	if len(ls.Addresses) == 0 || ls.Rate <= 0 || ls.Duration <= 0 {
		return workflows.LoadTestMetrics{}, fmt.Errorf("no load to run: %d addresses, %d req/s for %s", len(ls.Addresses), ls.Rate, ls.Duration)
	}
	allowed := map[string]bool{}
	for _, addr := range ls.Addresses {
		if err := a.allowed(addr); err != nil {
			return workflows.LoadTestMetrics{}, err
		}
		allowed[addr] = true
	}
	// Targets: every replica × every request, round robin. expect maps method+URL to the
	// status that counts as success.
	var targets []vegeta.Target
	expect := map[string]int{}
	timeout := time.Duration(0)
	for _, p := range ls.Requests {
		method := p.Method
		if method == "" {
			method = http.MethodGet
		}
		path := p.Path
		if path == "" || path[0] != '/' {
			path = "/" + path
		}
		hdr := http.Header{}
		for k, v := range p.Headers {
			hdr.Set(k, v)
		}
		timeout = max(timeout, p.Timeout.D())
		for _, addr := range ls.Addresses {
			u := "http://" + addr + path
			targets = append(targets, vegeta.Target{Method: method, URL: u, Header: hdr})
			expect[method+" "+u] = p.ExpectStatus
		}
	}
	if timeout <= 0 {
		timeout = spec.DefaultProbeTimeout
	}
	dialer := &net.Dialer{Timeout: a.opts.DialTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy: nil, // never through a proxy: load goes straight to the replicas
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !allowed[addr] {
				return nil, fmt.Errorf("load test refuses to dial %s: not a replica of the service", addr)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: a.opts.MaxInFlight,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	defer transport.CloseIdleConnections()
	hc := &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	atk := vegeta.NewAttacker(
		vegeta.Client(hc), // first: the options below change the client it copies
		vegeta.Redirects(vegeta.NoFollow),
		vegeta.MaxBody(0), // bodies are read and discarded, never kept
		vegeta.Workers(uint64(min(max(ls.Rate/50, 10), a.opts.MaxInFlight))),
		vegeta.MaxWorkers(uint64(a.opts.MaxInFlight)),
	)

	var (
		metrics      vegeta.Metrics
		warm, errs   int64
		ok           int64
		done         int64
		lastDone     int64
		began        = time.Now()
		measureFrom  = began.Add(ls.WarmUp)
		lastBeat     = began
		errorSamples []string
		seenErr      = map[string]bool{}
	)
	results := atk.Attack(vegeta.NewStaticTargeter(targets...), vegeta.Rate{Freq: ls.Rate, Per: time.Second}, ls.WarmUp+ls.Duration, ls.Name)
	tick := time.NewTicker(a.opts.HeartbeatEvery)
	defer tick.Stop()
	report := func(now time.Time) {
		phase := "measuring"
		if now.Before(measureFrom) {
			phase = "warm-up"
		}
		rate := 0.0
		if d := now.Sub(lastBeat).Seconds(); d > 0 {
			rate = float64(done-lastDone) / d
		}
		lastBeat, lastDone = now, done
		progress(workflows.LoadTestProgress{Phase: phase, Elapsed: now.Sub(began).Round(time.Millisecond), Requests: done, Errors: errs, CurrentRate: float64(int(rate*10)) / 10})
	}
loop:
	for {
		select {
		case r, open := <-results:
			if !open {
				break loop
			}
			done++
			if r.Timestamp.Before(measureFrom) {
				warm++
				continue
			}
			metrics.Add(r)
			want := expect[r.Method+" "+r.URL]
			if r.Code != 0 && ((want == 0 && r.Code < 400) || int(r.Code) == want) {
				ok++
			} else {
				errs++
				if r.Code == 0 && r.Error != "" && len(errorSamples) < 5 && !seenErr[r.Error] {
					seenErr[r.Error] = true
					errorSamples = append(errorSamples, r.Error)
				}
			}
		case now := <-tick.C:
			report(now)
		case <-ctx.Done():
			atk.Stop()
			for range results { // in-flight requests end within the client timeout
			}
			return workflows.LoadTestMetrics{}, ctx.Err()
		}
	}
	report(time.Now())
	metrics.Close()

	out := workflows.LoadTestMetrics{
		Requests:       int64(metrics.Requests),
		WarmUpRequests: warm,
		Errors:         errs,
		Rate:           float64(int(metrics.Rate*10)) / 10,
		Mean:           spec.Duration(metrics.Latencies.Mean),
		P50:            spec.Duration(metrics.Latencies.P50),
		P90:            spec.Duration(metrics.Latencies.P90),
		P95:            spec.Duration(metrics.Latencies.P95),
		P99:            spec.Duration(metrics.Latencies.P99),
		Max:            spec.Duration(metrics.Latencies.Max),
		StatusCodes:    map[string]int64{},
		ErrorSamples:   errorSamples,
		Targets:        append([]string(nil), ls.Addresses...),
	}
	sort.Strings(out.Targets)
	for code, n := range metrics.StatusCodes {
		if _, err := strconv.Atoi(code); err == nil {
			out.StatusCodes[code] = int64(n)
		}
	}
	window := metrics.Duration + metrics.Wait
	out.Window = spec.Duration(window)
	if out.Requests > 0 {
		out.ErrorRate = float64(int64(float64(errs)/float64(out.Requests)*1e4+0.5)) / 1e4
	}
	if s := window.Seconds(); s > 0 {
		out.Throughput = float64(int64(float64(ok)/s*10+0.5)) / 10
	}
	return out, nil
}
