package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// config holds the knobs read from the environment.
type config struct {
	Port            string
	Version         string
	CrashAtStart    bool
	FailHealthAfter time.Duration // 0: never
	ErrorRate       float64       // 0..1
	Latency         time.Duration
	IgnoreSIGTERM   bool
}

func (c config) String() string {
	return fmt.Sprintf("crash_at_start=%t fail_health_after=%s error_rate=%g latency=%s ignore_sigterm=%t",
		c.CrashAtStart, c.FailHealthAfter, c.ErrorRate, c.Latency, c.IgnoreSIGTERM)
}

// loadConfig reads the knobs through getenv and rejects values it cannot parse, naming the
// variable.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{Port: "8080", Version: "dev"}
	if v := getenv("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return c, fmt.Errorf("PORT=%q: want a port number 1-65535", v)
		}
		c.Port = v
	}
	if v := getenv("DEMO_VERSION"); v != "" {
		c.Version = v
	}
	var err error
	if c.CrashAtStart, err = boolVar(getenv, "DEMO_CRASH_AT_START"); err != nil {
		return c, err
	}
	if c.IgnoreSIGTERM, err = boolVar(getenv, "DEMO_IGNORE_SIGTERM"); err != nil {
		return c, err
	}
	if c.FailHealthAfter, err = durationVar(getenv, "DEMO_FAIL_HEALTH_AFTER"); err != nil {
		return c, err
	}
	if c.Latency, err = durationVar(getenv, "DEMO_LATENCY"); err != nil {
		return c, err
	}
	if v := getenv("DEMO_ERROR_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
			return c, fmt.Errorf("DEMO_ERROR_RATE=%q: want a number between 0 and 1", v)
		}
		c.ErrorRate = r
	}
	return c, nil
}

func boolVar(getenv func(string) string, name string) (bool, error) {
	v := getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want 1/0/true/false", name, v)
	}
	return b, nil
}

func durationVar(getenv func(string) string, name string) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a non-negative duration such as 300ms or 3s", name, v)
	}
	return d, nil
}

// server is the demo HTTP handler.
type server struct {
	cfg      config
	hostname string
	now      func() time.Time
	resolve  func(ctx context.Context, host string) ([]string, error) // net.DefaultResolver.LookupHost outside tests
	after    func(time.Duration) <-chan time.Time                     // time.After outside tests
	started  time.Time

	mux *http.ServeMux

	mu       sync.Mutex
	requests uint64 // GET / requests so far
}

// newServer returns the handler; now is the clock (time.Now outside tests).
func newServer(cfg config, hostname string, now func() time.Time) *server {
	s := &server{cfg: cfg, hostname: hostname, now: now, after: time.After, started: now(),
		resolve: net.DefaultResolver.LookupHost}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /{$}", s.withLatency(s.root))
	s.mux.HandleFunc("GET /lookup", s.withLatency(s.lookup))
	s.mux.HandleFunc("/", s.withLatency(http.NotFound))
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// healthz answers 200 until DEMO_FAIL_HEALTH_AFTER has passed since start, 503 afterwards.
func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.FailHealthAfter > 0 && s.now().Sub(s.started) >= s.cfg.FailHealthAfter {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: DEMO_FAIL_HEALTH_AFTER=%s has passed\n", s.cfg.FailHealthAfter)
		return
	}
	fmt.Fprintln(w, "ok")
}

// rootResponse is the JSON body of GET /.
type rootResponse struct {
	Version  string `json:"version"`
	Hostname string `json:"hostname"`
	Started  string `json:"started"`
	UptimeMS int64  `json:"uptime_ms"`
	Request  uint64 `json:"request"`
	Error    string `json:"error,omitempty"`
}

// root reports the version. With DEMO_ERROR_RATE=r, request n (counting from 1) fails when
// floor(n*r) > floor((n-1)*r): the failures are spread evenly and their share after n
// requests is within 1/n of r.
func (s *server) root(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.mu.Unlock()

	fail := s.cfg.ErrorRate > 0 && math.Floor(float64(n)*s.cfg.ErrorRate) > math.Floor(float64(n-1)*s.cfg.ErrorRate)
	body := rootResponse{
		Version:  s.cfg.Version,
		Hostname: s.hostname,
		Started:  s.started.UTC().Format(time.RFC3339Nano),
		UptimeMS: s.now().Sub(s.started).Milliseconds(),
		Request:  n,
	}
	status := http.StatusOK
	if fail {
		status = http.StatusInternalServerError
		body.Error = fmt.Sprintf("injected failure (DEMO_ERROR_RATE=%g)", s.cfg.ErrorRate)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// lookupResponse is the JSON body of GET /lookup.
type lookupResponse struct {
	Host  string   `json:"host"`
	Addrs []string `json:"addrs"`
	Error string   `json:"error,omitempty"`
}

// lookup resolves ?host= with the container's resolver (Docker's embedded DNS on a user
// network), so tests and demos can see which replicas a service name balances over.
func (s *server) lookup(w http.ResponseWriter, r *http.Request) {
	host := r.URL.Query().Get("host")
	w.Header().Set("Content-Type", "application/json")
	if host == "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(lookupResponse{Error: "missing ?host="})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	addrs, err := s.resolve(ctx, host)
	body := lookupResponse{Host: host, Addrs: addrs}
	if addrs == nil {
		body.Addrs = []string{}
	}
	if err != nil {
		body.Error = err.Error()
		w.WriteHeader(http.StatusBadGateway)
	}
	sort.Strings(body.Addrs)
	_ = json.NewEncoder(w).Encode(body)
}

// withLatency delays h by DEMO_LATENCY, or until the client goes away.
func (s *server) withLatency(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Latency <= 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.after(s.cfg.Latency):
		case <-r.Context().Done():
			return
		}
		h(w, r)
	}
}
