package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	c, err := loadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c != (config{Port: "8080", Version: "dev"}) {
		t.Fatalf("defaults: %+v", c)
	}
	if c.listenPort() != "8080" || c.String() != "no misbehaviour" {
		t.Fatalf("defaults: listen port %s, %q", c.listenPort(), c)
	}

	c, err = loadConfig(env(map[string]string{
		"PORT": "9090", "DEMO_VERSION": "1.1.0", "DEMO_CRASH_AT_START": "1", "DEMO_IGNORE_SIGTERM": "true",
		"DEMO_FAIL_HEALTH_AFTER": "3s", "DEMO_ERROR_RATE": "0.5", "DEMO_LATENCY": "300ms",
		"DEMO_LISTEN_PORT": "8081", "DEMO_CRASH_AFTER": "20s", "DEMO_START_DELAY": "12s",
		"DEMO_ERROR_SPREAD": "even", "DEMO_ERRORS_BUT_HEALTH": "1", "DEMO_TAIL_RATE": "0.08",
		"DEMO_TAIL_LATENCY": "800ms", "DEMO_LEAK_PER_SECOND": "64Mi", "DEMO_LEAK_MAX": "1GiB",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := config{Port: "9090", ListenPort: "8081", Version: "1.1.0", CrashAtStart: true, CrashAfter: 20 * time.Second,
		IgnoreSIGTERM: true, FailHealthAfter: 3 * time.Second, StartDelay: 12 * time.Second,
		ErrorRate: 0.5, ErrorEven: true, ErrorsButHealth: true, Latency: 300 * time.Millisecond,
		TailRate: 0.08, TailLatency: 800 * time.Millisecond, LeakPerSecond: 64 << 20, LeakMax: 1 << 30}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if c.listenPort() != "8081" {
		t.Fatalf("listen port %s, want DEMO_LISTEN_PORT's 8081", c.listenPort())
	}
	for _, part := range []string{"listen_port=8081 (PORT=9090)", "crash_after=20s", "start_delay=12s",
		"error_rate=0.5 (even)", "errors_but_health=true", "tail_rate=0.08 tail_latency=800ms",
		"leak_per_second=64Mi", "leak_max=1Gi", "ignore_sigterm=true"} {
		if !strings.Contains(c.String(), part) {
			t.Errorf("String() %q lacks %q", c, part)
		}
	}

	for in, want := range map[string]int64{"0": 0, "4096": 4096, "512B": 512, "64Ki": 64 << 10, "64Mi": 64 << 20,
		"512MiB": 512 << 20, "2Gi": 2 << 30, "64Gi": 64 << 30} {
		c, err := loadConfig(env(map[string]string{"DEMO_LEAK_PER_SECOND": in}))
		if err != nil || c.LeakPerSecond != want {
			t.Errorf("DEMO_LEAK_PER_SECOND=%s: %d, %v; want %d", in, c.LeakPerSecond, err, want)
		}
	}
	if c, err := loadConfig(env(map[string]string{"DEMO_ERROR_RATE": "0.05", "DEMO_ERROR_SPREAD": "random"})); err != nil || c.ErrorEven || c.ErrorRate != 0.05 {
		t.Errorf("DEMO_ERROR_SPREAD=random: %+v, %v", c, err)
	}
}

func TestLoadConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		name string // the variable the error must name
	}{
		{map[string]string{"PORT": "http"}, "PORT"},
		{map[string]string{"DEMO_LISTEN_PORT": "0"}, "DEMO_LISTEN_PORT"},
		{map[string]string{"DEMO_LISTEN_PORT": "70000"}, "DEMO_LISTEN_PORT"},
		{map[string]string{"DEMO_CRASH_AT_START": "yes please"}, "DEMO_CRASH_AT_START"},
		{map[string]string{"DEMO_IGNORE_SIGTERM": "maybe"}, "DEMO_IGNORE_SIGTERM"},
		{map[string]string{"DEMO_ERRORS_BUT_HEALTH": "all"}, "DEMO_ERRORS_BUT_HEALTH"},
		{map[string]string{"DEMO_FAIL_HEALTH_AFTER": "3 seconds"}, "DEMO_FAIL_HEALTH_AFTER"},
		{map[string]string{"DEMO_CRASH_AFTER": "20"}, "DEMO_CRASH_AFTER"},
		{map[string]string{"DEMO_START_DELAY": "-12s"}, "DEMO_START_DELAY"},
		{map[string]string{"DEMO_LATENCY": "-1s"}, "DEMO_LATENCY"},
		{map[string]string{"DEMO_ERROR_RATE": "1.5"}, "DEMO_ERROR_RATE"},
		{map[string]string{"DEMO_ERROR_RATE": "5%"}, "DEMO_ERROR_RATE"},
		{map[string]string{"DEMO_ERROR_RATE": "NaN"}, "DEMO_ERROR_RATE"},
		{map[string]string{"DEMO_ERROR_RATE": "0.5", "DEMO_ERROR_SPREAD": "round-robin"}, "DEMO_ERROR_SPREAD"},
		{map[string]string{"DEMO_ERROR_SPREAD": "even"}, "DEMO_ERROR_RATE"},
		{map[string]string{"DEMO_TAIL_RATE": "-0.1", "DEMO_TAIL_LATENCY": "800ms"}, "DEMO_TAIL_RATE"},
		{map[string]string{"DEMO_TAIL_RATE": "0.08", "DEMO_TAIL_LATENCY": "800"}, "DEMO_TAIL_LATENCY"},
		{map[string]string{"DEMO_TAIL_RATE": "0.08"}, "DEMO_TAIL_LATENCY"},
		{map[string]string{"DEMO_TAIL_LATENCY": "800ms"}, "DEMO_TAIL_RATE"},
		{map[string]string{"DEMO_LEAK_PER_SECOND": "64MB"}, "DEMO_LEAK_PER_SECOND"},
		{map[string]string{"DEMO_LEAK_PER_SECOND": "1.5Gi"}, "DEMO_LEAK_PER_SECOND"},
		{map[string]string{"DEMO_LEAK_PER_SECOND": "65Gi"}, "DEMO_LEAK_PER_SECOND"},
		{map[string]string{"DEMO_LEAK_PER_SECOND": "99999999999999999999"}, "DEMO_LEAK_PER_SECOND"},
		{map[string]string{"DEMO_LEAK_PER_SECOND": "64Mi", "DEMO_LEAK_MAX": "lots"}, "DEMO_LEAK_MAX"},
		{map[string]string{"DEMO_LEAK_MAX": "512Mi"}, "DEMO_LEAK_PER_SECOND"},
	} {
		_, err := loadConfig(env(tc.env))
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		if !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%v: error %q does not name %s", tc.env, err, tc.name)
		}
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestRootReportsVersionAndHostname(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	s := newServer(config{Port: "8080", Version: "1.1.0"}, "box-1", clock.now)
	clock.advance(1500 * time.Millisecond)
	rec := get(t, s, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var body rootResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Version != "1.1.0" || body.Hostname != "box-1" || body.UptimeMS != 1500 || body.Request != 1 || body.Error != "" {
		t.Fatalf("body %+v", body)
	}
	if rec := get(t, s, "/nope"); rec.Code != http.StatusNotFound {
		t.Fatalf("/nope: status %d", rec.Code)
	}
}

func TestHealthzFailsAfterConfiguredTime(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s := newServer(config{FailHealthAfter: 3 * time.Second}, "h", clock.now)
	if rec := get(t, s, "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("at start: %d", rec.Code)
	}
	clock.advance(2999 * time.Millisecond)
	if rec := get(t, s, "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("before 3s: %d", rec.Code)
	}
	clock.advance(time.Millisecond)
	if rec := get(t, s, "/healthz"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("at 3s: %d", rec.Code)
	}

	healthy := newServer(config{}, "h", clock.now)
	clock.advance(time.Hour)
	if rec := get(t, healthy, "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("without the knob: %d", rec.Code)
	}
}

func TestErrorRateEvenSpreadIsDeterministic(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		want string // one letter per request: o = 200, x = 500
	}{
		{0, "oooooooo"},
		{0.5, "oxoxoxox"},
		{0.25, "oooxooox"},
		{1, "xxxxxxxx"},
	} {
		s := newServer(config{Version: "1.0.0", ErrorRate: tc.rate, ErrorEven: true}, "h", time.Now)
		s.random = func() float64 { t.Fatal("DEMO_ERROR_SPREAD=even drew a random number"); return 0 }
		var got strings.Builder
		for range len(tc.want) {
			rec := get(t, s, "/")
			switch rec.Code {
			case http.StatusOK:
				got.WriteByte('o')
			case http.StatusInternalServerError:
				got.WriteByte('x')
				var body rootResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" || body.Version == "" {
					t.Fatalf("rate %g: 500 body %q (%v)", tc.rate, rec.Body, err)
				}
			default:
				t.Fatalf("rate %g: status %d", tc.rate, rec.Code)
			}
		}
		if got.String() != tc.want {
			t.Errorf("rate %g: got %s, want %s", tc.rate, got.String(), tc.want)
		}
	}
	// Health checks do not count as requests and never fail because of the error rate.
	s := newServer(config{ErrorRate: 1, ErrorEven: true}, "h", time.Now)
	for range 3 {
		if rec := get(t, s, "/healthz"); rec.Code != http.StatusOK {
			t.Fatalf("healthz with error rate 1: %d", rec.Code)
		}
	}
}

func TestLatencyAppliesToEverythingButHealthz(t *testing.T) {
	s := newServer(config{Latency: 300 * time.Millisecond}, "h", time.Now)
	var mu sync.Mutex
	var delays []time.Duration
	s.after = func(d time.Duration) <-chan time.Time {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
		c := make(chan time.Time, 1)
		c <- time.Now()
		return c
	}
	for _, path := range []string{"/", "/healthz", "/missing", "/"} {
		get(t, s, path)
	}
	if len(delays) != 3 {
		t.Fatalf("delays %v: want 3 (/, /missing, /), none for /healthz", delays)
	}
	for _, d := range delays {
		if d != 300*time.Millisecond {
			t.Fatalf("delay %s", d)
		}
	}

	// A client that goes away during the delay gets no answer and does not count.
	s.after = func(time.Duration) <-chan time.Time { return nil } // never fires
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	ctx, cancel := context.WithCancel(req.Context())
	cancel()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req.WithContext(ctx))
	if rec.Body.Len() != 0 {
		t.Fatalf("answered a gone client: %q", rec.Body)
	}
	s.after = time.After
	s.cfg.Latency = 0
	var body rootResponse
	if err := json.Unmarshal(get(t, s, "/").Body.Bytes(), &body); err != nil || body.Request != 3 {
		t.Fatalf("request counter %d (%v), want 3", body.Request, err)
	}
}

func TestCheckHealth(t *testing.T) {
	status := http.StatusOK
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer ts.Close()
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkHealth(u.Port(), time.Second); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := checkHealth(u.Port(), time.Second); err == nil {
		t.Fatal("503 counted as healthy")
	}
	ts.Close()
	if err := checkHealth(u.Port(), time.Second); err == nil {
		t.Fatal("closed port counted as healthy")
	}
}

func TestLookup(t *testing.T) {
	s := newServer(config{}, "h", time.Now)
	s.resolve = func(_ context.Context, host string) ([]string, error) {
		if host == "web" {
			return []string{"10.0.0.3", "10.0.0.2"}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	rec := get(t, s, "/lookup?host=web")
	var body lookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("status %d body %q (%v)", rec.Code, rec.Body, err)
	}
	if body.Host != "web" || strings.Join(body.Addrs, ",") != "10.0.0.2,10.0.0.3" {
		t.Fatalf("body %+v", body)
	}
	rec = get(t, s, "/lookup?host=nope")
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusBadGateway || body.Error == "" || body.Addrs == nil || len(body.Addrs) != 0 {
		t.Fatalf("unknown host: status %d body %q", rec.Code, rec.Body)
	}
	if rec := get(t, s, "/lookup"); rec.Code != http.StatusBadRequest {
		t.Fatalf("no host: status %d", rec.Code)
	}
}
