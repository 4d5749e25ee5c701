package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// seeded returns a reproducible uniform source, safe for concurrent handlers.
func seeded(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() float64 { mu.Lock(); defer mu.Unlock(); return r.Float64() }
}

// within fails t unless hits out of n is within k standard deviations of the binomial
// mean n*p.
func within(t *testing.T, what string, hits, n int, p, k float64) {
	t.Helper()
	mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	if math.Abs(float64(hits)-mean) > k*sd {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f (%g sd)", what, hits, n, mean, k*sd, k)
	} else {
		t.Logf("%s: %d of %d (mean %.0f, sd %.1f)", what, hits, n, mean, sd)
	}
}

// The routes the knobs apply to; /healthz is never among them.
var appPaths = []string{"/", "/missing", "/lookup"}

func TestErrorRateIsRandomOnEveryRouteButHealthz(t *testing.T) {
	const n = 4000
	for _, tc := range []struct {
		name   string
		random func() float64
		k      float64 // tolerance in standard deviations
	}{
		{"fixed seed", seeded(42), 4},
		{"default source", nil, 6}, // generous: the draw differs every run
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rate := range []float64{0.05, 0.005, 0.5} {
				s := newServer(config{Version: "bad-intermittent", ErrorRate: rate}, "h", time.Now)
				if tc.random != nil {
					s.random = tc.random
				}
				perPath := map[string]int{}
				fails, run := 0, 0 // the longest run of failures
				longest := 0
				for i := range n {
					path := appPaths[i%len(appPaths)]
					rec := get(t, s, path)
					switch rec.Code {
					case http.StatusInternalServerError:
						fails++
						perPath[path]++
						run++
						longest = max(longest, run)
						var body struct{ Version, Error string }
						if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Version != "bad-intermittent" ||
							!strings.Contains(body.Error, "DEMO_ERROR_RATE") {
							t.Fatalf("%s: 500 body %q (%v)", path, rec.Body, err)
						}
					case http.StatusOK, http.StatusNotFound, http.StatusBadRequest:
						run = 0
					default:
						t.Fatalf("%s: status %d", path, rec.Code)
					}
					if rec := get(t, s, "/healthz"); rec.Code != http.StatusOK {
						t.Fatalf("/healthz with error rate %g: %d", rate, rec.Code)
					}
				}
				within(t, fmt.Sprintf("failures at rate %g", rate), fails, n, rate, tc.k)
				if rate >= 0.05 {
					for _, path := range appPaths {
						if perPath[path] == 0 {
							t.Errorf("rate %g: no failure on %s", rate, path)
						}
					}
				}
				if rate == 0.5 && longest < 3 {
					// evenly spread failures would never run longer than one
					t.Errorf("rate 0.5: longest run of failures %d: not random", longest)
				}
			}
		})
	}
}

func TestErrorsButHealth(t *testing.T) {
	s := newServer(config{Version: "bad-routes", ErrorsButHealth: true}, "h", time.Now)
	for range 20 {
		for _, path := range append(appPaths, "/lookup?host=web") {
			rec := get(t, s, path)
			var body struct{ Version, Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusInternalServerError ||
				body.Version != "bad-routes" || !strings.Contains(body.Error, "DEMO_ERRORS_BUT_HEALTH") {
				t.Fatalf("%s: status %d body %q (%v)", path, rec.Code, rec.Body, err)
			}
		}
		if rec := get(t, s, "/healthz"); rec.Code != http.StatusOK {
			t.Fatalf("/healthz: %d", rec.Code)
		}
	}
}

func TestTailLatency(t *testing.T) {
	const n = 4000
	for _, tc := range []struct {
		name   string
		random func() float64
		k      float64
	}{
		{"fixed seed", seeded(7), 4},
		{"default source", nil, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(config{TailRate: 0.08, TailLatency: 800 * time.Millisecond, Latency: 20 * time.Millisecond}, "h", time.Now)
			if tc.random != nil {
				s.random = tc.random
			}
			var mu sync.Mutex
			delays := map[time.Duration]int{}
			s.after = func(d time.Duration) <-chan time.Time {
				mu.Lock()
				delays[d]++
				mu.Unlock()
				c := make(chan time.Time, 1)
				c <- time.Now()
				return c
			}
			for i := range n {
				get(t, s, appPaths[i%len(appPaths)])
				get(t, s, "/healthz")
			}
			if len(delays) != 2 || delays[20*time.Millisecond]+delays[820*time.Millisecond] != n {
				t.Fatalf("delays %v: want %d in all, each 20ms (DEMO_LATENCY) or 820ms (+ DEMO_TAIL_LATENCY), none for /healthz", delays, n)
			}
			within(t, "slow requests", delays[820*time.Millisecond], n, 0.08, tc.k)
		})
	}

	// Really slow, on a real server: with every request in the tail, GET / takes the delay.
	s := newServer(config{TailRate: 1, TailLatency: 150 * time.Millisecond}, "h", time.Now)
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, path := range []string{"/", "/healthz"} {
		began := time.Now()
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(began)
		if path == "/" && took < 150*time.Millisecond {
			t.Errorf("GET / took %v, want ≥ 150ms", took)
		}
		if path == "/healthz" && took >= 150*time.Millisecond {
			t.Errorf("GET /healthz took %v: the tail applies to it", took)
		}
	}
}

func TestSlowStart(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s := newServer(config{Version: "slow-start", StartDelay: 12 * time.Second, ErrorRate: 1}, "h", clock.now)
	s.random = func() float64 { return 0.99 } // an error rate of 1 still fails: it is not reached before
	check := func(when string, want int) {
		t.Helper()
		for _, path := range append([]string{"/healthz"}, appPaths...) {
			rec := get(t, s, path)
			if want == http.StatusServiceUnavailable {
				if rec.Code != want || !strings.Contains(rec.Body.String(), "DEMO_START_DELAY=12s") {
					t.Fatalf("%s: %s: status %d body %q, want 503 naming DEMO_START_DELAY", when, path, rec.Code, rec.Body)
				}
				continue
			}
			if path == "/healthz" && rec.Code != http.StatusOK {
				t.Fatalf("%s: /healthz %d", when, rec.Code)
			}
			if path != "/healthz" && rec.Code != http.StatusInternalServerError {
				t.Fatalf("%s: %s %d, want the error rate's 500 once started", when, path, rec.Code)
			}
		}
	}
	check("at start", http.StatusServiceUnavailable)
	clock.advance(12*time.Second - time.Millisecond)
	check("just before 12s", http.StatusServiceUnavailable)
	clock.advance(time.Millisecond)
	check("at 12s", 0)
	var body rootResponse
	s.cfg.ErrorRate = 0
	if rec := get(t, s, "/"); rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Request != 2 || body.Version != "slow-start" {
		t.Fatalf("GET / after the start: %d %q: the 503s must not count as requests", rec.Code, rec.Body)
	}

	// With DEMO_FAIL_HEALTH_AFTER too: 503 (starting), 200, then 503 (failing).
	clock = &fakeClock{t: time.Unix(1000, 0)}
	s = newServer(config{StartDelay: time.Second, FailHealthAfter: 3 * time.Second}, "h", clock.now)
	var got []int
	for range 4 {
		got = append(got, get(t, s, "/healthz").Code)
		clock.advance(time.Second)
	}
	if want := []int{503, 200, 200, 503}; !equalInts(got, want) {
		t.Fatalf("/healthz each second: %v, want %v", got, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// files is a fake filesystem for cgroupMemoryLimit.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if v, ok := m[name]; ok {
			return []byte(v), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
}

func TestLeakCap(t *testing.T) {
	const v2, v1 = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	leaking := config{LeakPerSecond: 64 << 20}
	for _, tc := range []struct {
		name  string
		cfg   config
		files map[string]string
		want  int64
	}{
		{"no cgroup files", leaking, nil, 512 << 20},
		{"v2 without limit", leaking, map[string]string{v2: "max\n"}, 512 << 20},
		{"v2 limit", leaking, map[string]string{v2: "134217728\n"}, 2*128<<20 + 64<<20},
		{"v1 without limit", leaking, map[string]string{v1: "9223372036854771712\n"}, 512 << 20},
		{"v1 limit", leaking, map[string]string{v1: "268435456\n"}, 2*256<<20 + 64<<20},
		{"garbage", leaking, map[string]string{v2: "lots"}, 512 << 20},
		{"DEMO_LEAK_MAX wins", config{LeakPerSecond: 64 << 20, LeakMax: 32 << 20}, map[string]string{v2: "134217728"}, 32 << 20},
	} {
		got, why := leakCap(tc.cfg, files(tc.files))
		if got != tc.want || why == "" {
			t.Errorf("%s: cap %d (%s), want %d", tc.name, got, why, tc.want)
		}
	}
}

func TestLeakerGrowsSteadilyUpToTheCap(t *testing.T) {
	l := &leaker{perSecond: 64 << 20, max: 200 << 20}
	mib := func(v []int64) []int {
		out := make([]int, len(v))
		for i, x := range v {
			out[i] = int(x)
		}
		return out
	}
	var got []int64
	for elapsed := time.Duration(0); elapsed <= 4*time.Second; elapsed += time.Second {
		got = append(got, l.grow(elapsed)>>20)
	}
	if want := []int{0, 64, 128, 192, 200}; !equalInts(mib(got), want) {
		t.Fatalf("MiB held each second: %v, want %v", got, want)
	}
	var held int64
	for _, b := range l.held {
		held += int64(len(b))
		for i := 0; i < len(b); i += pageSize {
			if b[i] != 1 {
				t.Fatalf("page at %d not written", i)
			}
		}
	}
	if held != 200<<20 || l.total != held {
		t.Fatalf("held %d bytes, total %d, want %d", held, l.total, 200<<20)
	}
	if l.grow(time.Hour) != 200<<20 || len(l.held) != 4 {
		t.Fatalf("grew past the cap: %d bytes in %d chunks", l.total, len(l.held))
	}
	if l.grow(-time.Second) != 200<<20 {
		t.Fatal("shrank")
	}
}
