package activities

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/probe"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkLoadGen measures the load generator (the prober, open loop): requested against
// achieved rate at 500 and 2,000 req/s, against an in-process server on 127.0.0.1 (the
// baseline: no network, no container), against one demo-service container on the real
// engine from this process, and the same from a probe container on the engine (how load
// tests run), with the generator's own CPU and memory.
//
// Figures (b.ReportMetric):
//   - achieved/requested: the measured request rate over the requested one (1 = on pace);
//   - req/s: the achieved send rate; ok/s: good answers completed per second;
//     p99-ms: the 99th percentile latency;
//   - cpu-cores: CPU seconds of this process per wall second (getrusage; against the
//     in-process server it includes the server's CPU, against the container only the
//     generator's), and cpu-µs/req;
//   - heap-peak-MB: the largest live heap seen during the load; alloc-B/req: bytes
//     allocated per request.
//
// Each case runs 0.5 s of warm-up and 3 s of measured load, once (b.N is ignored: the load
// has a fixed length).
func BenchmarkLoadGen(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"version":"baseline"}`)
	}))
	b.Cleanup(srv.Close)
	for _, rate := range []int{500, 2000} {
		b.Run(fmt.Sprintf("target=inprocess/rate=%d", rate), func(b *testing.B) {
			benchLoad(b, loadGroup{Addresses: []string{srv.Listener.Addr().String()}}, rate)
		})
	}
	testenv.DemoImages(b)
	env := testenv.UniqueEnv(b)
	d := dockerengine.NewDialer(dockerengine.Options{})
	b.Cleanup(func() { _ = d.Close() })
	tgt, _ := ltDeploy(b, d, env, "1.0.0", 1)
	e, err := d.Dial(context.Background(), tgt.EngineEndpoint())
	if err != nil {
		b.Fatal(err)
	}
	list, err := e.List(context.Background(), engine.Selector{Environment: env, Service: "web"})
	if err != nil || len(list) != 1 || list[0].Address == "" {
		b.Fatalf("demo container: %+v, %v", list, err)
	}
	for _, rate := range []int{500, 2000} {
		b.Run(fmt.Sprintf("target=container/rate=%d", rate), func(b *testing.B) {
			benchLoad(b, loadGroup{Addresses: []string{list[0].Address}}, rate)
		})
	}
	// The way a load test runs: the prober in a probe container beside the replica, its
	// answers streamed back through the engine's API (its own CPU is the container's, not
	// this process's: cpu-cores then counts only reading the stream and the metrics).
	at := engine.ProbeAt{Network: tgt.Network()}
	for _, rate := range []int{500, 2000} {
		b.Run(fmt.Sprintf("target=container-from-engine/rate=%d", rate), func(b *testing.B) {
			benchLoad(b, loadGroup{Addresses: []string{list[0].Address}, Probe: func(ctx context.Context, j probe.Job, emit func(probe.Result)) error {
				return e.Probe(ctx, at, j, emit)
			}}, rate)
		})
	}
}

func benchLoad(b *testing.B, g loadGroup, rate int) {
	a := NewLoadTest(nil, LoadTestOptions{HeartbeatEvery: 100 * time.Millisecond})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var ru0, ru1 syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru0); err != nil {
		b.Fatal(err)
	}
	peak := uint64(0)
	start := time.Now()
	b.ResetTimer()
	m, err := a.runLoad(context.Background(), loadSpec{
		Groups: []loadGroup{g}, Requests: []spec.Probe{{Path: "/", Method: "GET", ExpectStatus: 200}},
		Rate: rate, WarmUp: 500 * time.Millisecond, Duration: 3 * time.Second,
	}, func(workflows.LoadTestProgress) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	})
	b.StopTimer()
	wall := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru1); err != nil {
		b.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	cpu := tvDur(ru1.Utime) - tvDur(ru0.Utime) + tvDur(ru1.Stime) - tvDur(ru0.Stime)
	total := m.Requests + m.WarmUpRequests
	if m.Requests == 0 || m.Errors > m.Requests/100 {
		b.Fatalf("load went wrong: %+v", m)
	}
	b.ReportMetric(m.Rate/float64(rate), "achieved/requested")
	b.ReportMetric(m.Rate, "req/s")
	b.ReportMetric(m.Throughput, "ok/s") // completions (good answers) per second beside the send rate
	b.ReportMetric(float64(m.P99.D())/float64(time.Millisecond), "p99-ms")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu-cores")
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/req")
	b.ReportMetric(float64(peak)/(1<<20), "heap-peak-MB")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(total), "alloc-B/req")
	b.ReportMetric(0, "ns/op") // the load has a fixed length: time per op says nothing
}

func tvDur(tv syscall.Timeval) time.Duration {
	return time.Duration(tv.Sec)*time.Second + time.Duration(tv.Usec)*time.Microsecond
}
