package prod

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkClusterAPI compares, in one run, the production topology (two API replicas, two
// workers, two Temporal server processes on PostgreSQL) with the embedded default (`slipway
// dev`: Temporal on SQLite, the worker and the API in one process) on the two things the API
// does most:
//
//   - release starts per second: POST /v1/releases, 8 clients in parallel, 120 starts a side.
//     The starts go to a namespace of their own (slipway-bench) that no worker polls, through
//     extra `slipway api` processes (two on the cluster, one per frontend, the clients
//     alternating between them; one on the embedded server), so what is measured is the API
//     and Temporal's persistence of a start, not the releases' work on the engine;
//   - status p99: 200 pollers × 10 GET /v1/releases/{id} of a release standing at its
//     approval gate (every answer a live query to a worker): on the cluster through both
//     replicas (pollers alternate), on the embedded default through its one API.
//
// The side that goes first alternates from iteration to iteration. Metrics: each side's
// starts/s and status p50/p99 in ms, their ratios (cluster/embedded), failed calls, the
// 1-minute load average. It needs what TestProdTopology needs (PostgreSQL, the Temporal
// server binaries: the first run builds them).
func BenchmarkClusterAPI(b *testing.B) {
	testenv.DemoImages(b)
	testenv.RequirePostgres(b)
	envCluster := testenv.UniqueEnv(b) // leftover checks run last
	envEmbedded := testenv.UniqueEnv(b)
	p := newTopology(b, envCluster)
	b.Cleanup(func() { removeEnvironment(b, envEmbedded) }) // after the embedded side stopped
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	p.checkCluster(ctx)

	// A token of the benchmark's own without a rate limit (the default would turn the pollers
	// away), in the topology's tokens file; its API replicas restart to read it.
	tokens := filepath.Join(p.dir, "state", "tokens.yaml")
	const benchToken = "slw_bench_token_for_the_cluster_api_benchmark_0000"
	f, err := os.OpenFile(tokens, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	_, err = fmt.Fprintf(f, `  - name: bench
    sha256: %s
    environments: ["*"]
    permissions: [read, release, approve]
    rate_limit: 100000
    burst: 100000
`, starter.HashToken(benchToken))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	for _, api := range []string{"api-1", "api-2"} {
		if out, err := p.sh(2*time.Minute, "restart", api); err != nil {
			b.Fatalf("prod.sh restart %s: %v\n%s", api, err, out)
		}
	}
	bin := filepath.Join(p.dir, "bin", "slipway")
	if v := os.Getenv("SLIPWAY_PROD_BIN"); v != "" {
		bin = filepath.Join(v, "slipway")
	}
	deployments := filepath.Join(p.dir, "deployments")

	// The embedded default, as `make dev` runs it (its own data directory and ports).
	devDir := filepath.Join(p.dir, "dev")
	devTemporal, devAPI := freePort(b), freePort(b)
	spawn(b, p.dir, "dev", bin, "dev", "--data-dir", devDir, "--temporal-port", strconv.Itoa(devTemporal), "--ui-port", "-1",
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", devAPI), "--deployments", deployments, "--tokens-file", tokens,
		"--secrets-dir", "")
	waitReady(b, fmt.Sprintf("http://127.0.0.1:%d", devAPI), "/readyz")

	// The starts' namespace on both sides, and the API processes that start into it.
	const benchNS = "slipway-bench"
	for _, fe := range []string{p.fe[0], p.fe[1], fmt.Sprintf("127.0.0.1:%d", devTemporal)} {
		run(b, p.root, 3*time.Minute, bin, "namespace", "ensure", "--temporal-address", fe, "--temporal-namespace", benchNS)
	}
	startAPI := func(name, fe string, replicas int) *apiclient.Client {
		port := freePort(b)
		spawn(b, p.dir, name, bin, "api", "--temporal-address", fe, "--temporal-namespace", benchNS,
			"--api-addr", fmt.Sprintf("127.0.0.1:%d", port), "--replicas", strconv.Itoa(replicas),
			"--deployments", deployments, "--tokens-file", tokens)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		waitReady(b, url, "/healthz") // no worker polls its namespace: never ready by /readyz
		c := apiclient.New(url, benchToken)
		c.Timeout = time.Minute
		return c
	}
	clusterStarts := []*apiclient.Client{startAPI("bench-api-1", p.fe[0], 2), startAPI("bench-api-2", p.fe[1], 2)}
	embeddedStarts := []*apiclient.Client{startAPI("bench-api-dev", fmt.Sprintf("127.0.0.1:%d", devTemporal), 1)}

	// A release at its approval gate on each side, for the status pollers.
	clusterAPIs := []*apiclient.Client{apiclient.New(p.api[0].BaseURL(), benchToken), apiclient.New(p.api[1].BaseURL(), benchToken)}
	embeddedAPIs := []*apiclient.Client{apiclient.New(fmt.Sprintf("http://127.0.0.1:%d", devAPI), benchToken)}
	gated := func(env string, apis []*apiclient.Client) string {
		for _, seed := range []bool{true, false} {
			version := "1.1.0"
			if seed {
				version = "1.0.0"
			}
			rel, err := apis[0].StartRelease(ctx, apiclient.StartRequest{Spec: []byte(specYAML(env, version, seed, !seed)), SpecName: env + ".yaml"})
			if err != nil {
				b.Fatal(err)
			}
			for {
				r, err := apis[0].GetRelease(ctx, rel.ID, 0)
				if err != nil {
					b.Fatal(err)
				}
				if seed && !r.Running {
					if r.Outcome != workflows.OutcomeSucceeded {
						b.Fatalf("seed release %s: %s: %s", rel.ID, r.Outcome, r.Reason)
					}
					break
				}
				if !seed && r.Status != nil && len(r.Status.Services) > 0 && r.Status.Services[0].Phase == workflows.PhaseAwaitingApproval {
					b.Cleanup(func() {
						_, _ = apis[0].Decide(context.Background(), rel.ID, apiclient.ActionAbort, "benchmark done")
						_, _ = apis[0].GetRelease(context.Background(), rel.ID, 3*time.Minute)
					})
					return rel.ID
				}
				if !r.Running {
					b.Fatalf("release %s ended (%s: %s) before its gate", rel.ID, r.Outcome, r.Reason)
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
		return ""
	}
	clusterRel := gated(envCluster, clusterAPIs)
	embeddedRel := gated(envEmbedded, embeddedAPIs)

	type side struct {
		name           string
		starts         []*apiclient.Client
		apis           []*apiclient.Client
		rel            string
		startTime      time.Duration
		started        int
		lat            []time.Duration
		failed, sfails int
	}
	sides := []*side{
		{name: "cluster", starts: clusterStarts, apis: clusterAPIs, rel: clusterRel},
		{name: "embedded", starts: embeddedStarts, apis: embeddedAPIs, rel: embeddedRel},
	}
	const starts, clients, pollers, perPoller = 120, 8, 200, 10
	load0 := testenv.LoadAverage(b)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for k := range sides {
			sd := sides[(it+k)%len(sides)]
			var failed atomic.Int64
			sd.startTime += inParallel(starts, clients, func(i int) {
				env := fmt.Sprintf("bench-%s-%d-%d", sd.name, it, i)
				_, err := sd.starts[i%len(sd.starts)].StartRelease(ctx, apiclient.StartRequest{Spec: []byte(specYAML(env, "1.0.0", true, false)), SpecName: env + ".yaml"})
				if err != nil {
					failed.Add(1)
					b.Logf("%s start %d: %v", sd.name, i, err)
				}
			})
			sd.started += starts - int(failed.Load())
			sd.sfails += int(failed.Load())
			lat, failedPolls := pollStatus(sd.apis, benchToken, sd.rel, pollers, perPoller)
			sd.lat, sd.failed = append(sd.lat, lat...), sd.failed+failedPolls
		}
	}
	b.StopTimer()
	res := map[string][3]float64{}
	for _, sd := range sides {
		if sd.started == 0 || len(sd.lat) == sd.failed {
			b.Fatalf("%s: every start or every poll failed", sd.name)
		}
		rate := float64(sd.started) / sd.startTime.Seconds()
		p50, p99 := ms(pctl(sd.lat, 50)), ms(pctl(sd.lat, 99))
		res[sd.name] = [3]float64{rate, p50, p99}
		b.ReportMetric(rate, sd.name+"-starts/s")
		b.ReportMetric(p50, sd.name+"-status-p50-ms")
		b.ReportMetric(p99, sd.name+"-status-p99-ms")
		b.ReportMetric(float64(sd.sfails), sd.name+"-failed-starts")
		b.ReportMetric(float64(sd.failed), sd.name+"-failed-polls")
	}
	b.ReportMetric(res["cluster"][0]/res["embedded"][0], "starts-cluster/embedded")
	b.ReportMetric(res["cluster"][2]/res["embedded"][2], "status-p99-cluster/embedded")
	b.ReportMetric((load0+testenv.LoadAverage(b))/2, "load1")
}

// pollStatus runs n pollers of k GETs each, spread over apis, and returns every call's
// latency (a failed call counts with the time it took to fail) and how many failed.
func pollStatus(apis []*apiclient.Client, token, id string, n, k int) ([]time.Duration, int) {
	var mu sync.Mutex
	var out []time.Duration
	failed := 0
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}, Timeout: time.Minute}
	var wg sync.WaitGroup
	for p := 0; p < n; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := apis[p%len(apis)]
			lat := make([]time.Duration, 0, k)
			bad := 0
			for i := 0; i < k; i++ {
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodGet, c.BaseURL()+"/v1/releases/"+id, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := hc.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					bad++
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			out = append(out, lat...)
			failed += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, failed
}

// inParallel runs fn(0..n-1) on k goroutines and returns the wall time.
func inParallel(n, k int, fn func(i int)) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
	return time.Since(t0)
}

func pctl(l []time.Duration, p int) time.Duration {
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[min(len(l)-1, len(l)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// freePort returns a loopback port free at the time of the call.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close() // only probing
	return port
}

// spawn starts a process of the benchmark (log in dir/<name>.log); t's cleanup stops it
// (SIGTERM, SIGKILL after 15 s).
func spawn(t testing.TB, dir, name, bin string, args ...string) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done); _ = log.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// waitReady waits until the API at url answers path (/readyz; /healthz where no worker
// polls, which /readyz requires) with 200.
func waitReady(t testing.TB, url, path string) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := http.Get(url + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%s not 200 after 3 min (last error: %v)", url, path, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
