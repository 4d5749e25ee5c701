package starter_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkStatusPollers: p99 latency of a release's status under 200 concurrent pollers
// (10 calls each), three ways in the same run: GET /v1/releases/{id} through the API; the
// API's own merged status query called directly on a Temporal client (starter.StatusQueries:
// concurrent queries of one release share the one in flight, singleflight), so api/merged is
// what HTTP, auth and the JSON view cost; and the same query with every caller sending its
// own (unmerged/merged is what merging buys). The release stands at its approval gate, so
// the worker answers every query with a live status. The order of the three sides rotates
// from run to run (-count n). Metrics: p50 and p99 of each side in ms (a failed call counts
// with the time it took to fail), the calls that failed, the ratios of the p99s, the 1-minute
// load average.
func BenchmarkStatusPollers(b *testing.B) {
	const pollers, perPoller = 200, 10
	env := benchEnv(b)
	a := newAPI(b, func(c *starter.Config) { c.QueryTimeout = time.Minute })
	startWorker(b)
	c := a.client(tokAdmin)
	ctx := context.Background()
	rel, err := c.StartRelease(ctx, apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: "1.0.0", approval: true})), SpecName: "bench.yaml"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_, _ = c.Decide(context.Background(), rel.ID, apiclient.ActionAbort, "benchmark done")
		_, _ = c.GetRelease(context.Background(), rel.ID, 2*time.Minute)
	})
	for {
		r, err := c.GetRelease(ctx, rel.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		if r.Status != nil && len(r.Status.Services) > 0 && r.Status.Services[0].Phase == workflows.PhaseAwaitingApproval {
			break
		}
		if !r.Running {
			b.Fatalf("release ended before its gate: %+v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pollers, MaxConnsPerHost: pollers}, Timeout: time.Minute}
	url := a.srv.URL + "/v1/releases/" + rel.ID
	viaAPI := func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+tokAdmin)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r apiclient.Release
		if err := jsonDecode(resp, &r); err != nil {
			return err
		}
		if resp.StatusCode != 200 || r.Status == nil {
			return fmt.Errorf("GET: %d %+v", resp.StatusCode, r)
		}
		return nil
	}
	// The direct client: a Server of its own (its own merge group), used only for its status
	// queries, on the same Temporal client.
	ts := temporalServer(b)
	ds, err := starter.New(starter.Config{Client: ts.Client(), Namespace: ts.Namespace(), DeploymentsDir: b.TempDir(),
		Tokens: testTokens(b), QueryTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	mergedQuery, singleQuery := starter.StatusQueries(ds)
	query := func(q func(context.Context, string) (*workflows.ReleaseStatus, error)) func() error {
		return func() error {
			st, err := q(ctx, rel.ID)
			if err == nil && st.Outcome != workflows.OutcomeNone {
				err = fmt.Errorf("release ended: %s", st.Outcome)
			}
			return err
		}
	}
	sides := []struct {
		name   string
		call   func() error
		lat    []time.Duration
		failed int
	}{{"api", viaAPI, nil, 0}, {"merged", query(mergedQuery), nil, 0}, {"unmerged", query(singleQuery), nil, 0}}
	load0 := testenv.LoadAverage(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first := statusRuns.Add(1) - 1
		for k := range sides {
			sd := &sides[(int(first)+k)%len(sides)]
			lat, failed := poll(b, pollers, perPoller, sd.call)
			sd.lat, sd.failed = append(sd.lat, lat...), sd.failed+failed
		}
	}
	b.StopTimer()
	p99s := map[string]float64{}
	for _, sd := range sides {
		p99s[sd.name] = float64(pct(sd.lat, 99)) / 1e6
		b.ReportMetric(float64(pct(sd.lat, 50))/1e6, sd.name+"-p50-ms")
		b.ReportMetric(p99s[sd.name], sd.name+"-p99-ms")
		b.ReportMetric(float64(sd.failed), sd.name+"-failed")
	}
	b.ReportMetric(p99s["api"]/p99s["merged"], "api/merged")
	b.ReportMetric(p99s["unmerged"]/p99s["merged"], "unmerged/merged")
	b.ReportMetric(p99s["api"]/p99s["unmerged"], "api/unmerged")
	b.ReportMetric((load0+testenv.LoadAverage(b))/2, "load1")
}

// statusRuns and startRuns count the runs of each benchmark in this process, so that
// -count n rotates which side goes first.
var statusRuns, startRuns atomic.Int64

// poll runs n pollers, each making k calls, and returns every call's latency and the calls
// that failed (a failed call's latency is the time until it failed: on a loaded machine a
// query can time out, which the figures then show instead of ending the benchmark). It
// fails the benchmark only when every call failed.
func poll(b *testing.B, n, k int, call func() error) ([]time.Duration, int) {
	var mu sync.Mutex
	var out []time.Duration
	var lastErr error
	failed := 0
	var wg sync.WaitGroup
	for p := 0; p < n; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, k)
			var errs []error
			for i := 0; i < k; i++ {
				t0 := time.Now()
				if err := call(); err != nil {
					errs = append(errs, err)
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			out = append(out, lat...)
			failed += len(errs)
			if len(errs) > 0 {
				lastErr = errs[len(errs)-1]
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if failed == n*k {
		b.Fatalf("every call failed: %v", lastErr)
	}
	if failed > 0 {
		b.Logf("%d of %d calls failed, the last: %v", failed, n*k, lastErr)
	}
	return out, failed
}

// pct is the p-th percentile of l (sorted in place).
func pct(l []time.Duration, p int) time.Duration {
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[(len(l)*p)/100]
}

// BenchmarkReleaseStarts: release starts per second through POST /v1/releases (auth, spec
// parse and validation, overlap check, start) next to ExecuteWorkflow of the same input
// straight to Temporal, 8 clients in parallel each. The task queue has no worker, so only
// the start is measured. The side that goes first alternates from run to run (-count n).
// Metrics: starts/s of each side, their ratio (api/direct), the 1-minute load average.
func BenchmarkReleaseStarts(b *testing.B) {
	const starts, clients = 120, 8
	queue := "bench-starts-no-worker"
	a := newAPI(b, func(c *starter.Config) { c.TaskQueue = queue })
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1e6)
	b.Cleanup(func() {
		for i := 0; i < starts*b.N; i++ {
			a.terminateAll(fmt.Sprintf("bench-a%s-%d", run, i))
			a.terminateAll(fmt.Sprintf("bench-d%s-%d", run, i))
		}
	})
	c := a.client(tokAdmin)
	parsed := map[int]*spec.Environment{}
	for i := 0; i < starts*b.N; i++ {
		e, err := spec.Parse("bench.yaml", []byte(specYAML(fmt.Sprintf("bench-d%s-%d", run, i), svc{name: "web", version: "1.0.0"})))
		if err != nil {
			b.Fatal(err)
		}
		parsed[i] = e
	}
	var apiTime, directTime time.Duration
	load0 := testenv.LoadAverage(b)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		base := it * starts
		viaAPI := func() {
			apiTime += parallel(b, starts, clients, func(i int) error {
				env := fmt.Sprintf("bench-a%s-%d", run, base+i)
				_, err := c.StartRelease(context.Background(), apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: "1.0.0"})), SpecName: "bench.yaml"})
				return err
			})
		}
		direct := func() {
			directTime += parallel(b, starts, clients, func(i int) error {
				e := parsed[base+i]
				in := workflows.ReleaseInput{ID: fmt.Sprintf("d%d", base+i), Spec: *e, TriggeredBy: "admin"}
				_, err := a.tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
					ID: workflows.ReleaseWorkflowID(e.Environment, in.ID), TaskQueue: queue,
					WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
					TypedSearchAttributes: workflows.ReleaseStartAttributes(e.Environment, []string{"web"}, []string{"web=1.0.0"}, "admin"),
				}, workflows.ReleaseWorkflowName, in)
				return err
			})
		}
		if startRuns.Add(1)%2 == 1 {
			viaAPI()
			direct()
		} else {
			direct()
			viaAPI()
		}
	}
	b.StopTimer()
	n := float64(starts * b.N)
	ra, rd := n/apiTime.Seconds(), n/directTime.Seconds()
	b.ReportMetric(ra, "api-starts/s")
	b.ReportMetric(rd, "direct-starts/s")
	b.ReportMetric(ra/rd, "starts-ratio")
	b.ReportMetric((load0+testenv.LoadAverage(b))/2, "load1")
}

// parallel runs fn(0..n-1) on k goroutines and returns the wall time.
func parallel(b *testing.B, n, k int, fn func(i int) error) time.Duration {
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}
