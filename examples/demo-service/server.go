package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// config holds the knobs read from the environment.
type config struct {
	Port            string
	ListenPort      string // DEMO_LISTEN_PORT; "" listens on Port
	Version         string
	CrashAtStart    bool
	CrashAfter      time.Duration // 0: never
	FailHealthAfter time.Duration // 0: never
	StartDelay      time.Duration // 0: ready at once
	ErrorRate       float64       // 0..1
	ErrorEven       bool          // DEMO_ERROR_SPREAD=even: failures spread by a counter, not drawn
	ErrorsButHealth bool
	Latency         time.Duration
	TailRate        float64 // 0..1
	TailLatency     time.Duration
	LeakPerSecond   int64 // bytes; 0: no leak
	LeakMax         int64 // bytes; 0: automatic (see leakCap)
	IgnoreSIGTERM   bool
}

// listenPort is the port the service really listens on: DEMO_LISTEN_PORT, else PORT.
func (c config) listenPort() string {
	if c.ListenPort != "" {
		return c.ListenPort
	}
	return c.Port
}

// String lists the knobs that are set ("no misbehaviour" when none is).
func (c config) String() string {
	var k []string
	add := func(set bool, format string, args ...any) {
		if set {
			k = append(k, fmt.Sprintf(format, args...))
		}
	}
	add(c.ListenPort != "", "listen_port=%s (PORT=%s)", c.ListenPort, c.Port)
	add(c.CrashAtStart, "crash_at_start=true")
	add(c.CrashAfter > 0, "crash_after=%s", c.CrashAfter)
	add(c.FailHealthAfter > 0, "fail_health_after=%s", c.FailHealthAfter)
	add(c.StartDelay > 0, "start_delay=%s", c.StartDelay)
	spread := "random"
	if c.ErrorEven {
		spread = "even"
	}
	add(c.ErrorRate > 0, "error_rate=%g (%s)", c.ErrorRate, spread)
	add(c.ErrorsButHealth, "errors_but_health=true")
	add(c.Latency > 0, "latency=%s", c.Latency)
	add(c.TailRate > 0, "tail_rate=%g tail_latency=%s", c.TailRate, c.TailLatency)
	add(c.LeakPerSecond > 0, "leak_per_second=%s", sizeString(c.LeakPerSecond))
	add(c.LeakMax > 0, "leak_max=%s", sizeString(c.LeakMax))
	add(c.IgnoreSIGTERM, "ignore_sigterm=true")
	if len(k) == 0 {
		return "no misbehaviour"
	}
	return strings.Join(k, " ")
}

// loadConfig reads the knobs through getenv and rejects values it cannot parse, naming the
// variable.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{Port: "8080", Version: "dev"}
	var err error
	if v := getenv("PORT"); v != "" {
		if c.Port, err = portVar("PORT", v); err != nil {
			return c, err
		}
	}
	if v := getenv("DEMO_LISTEN_PORT"); v != "" {
		if c.ListenPort, err = portVar("DEMO_LISTEN_PORT", v); err != nil {
			return c, err
		}
	}
	if v := getenv("DEMO_VERSION"); v != "" {
		c.Version = v
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{
		{"DEMO_CRASH_AT_START", &c.CrashAtStart},
		{"DEMO_IGNORE_SIGTERM", &c.IgnoreSIGTERM},
		{"DEMO_ERRORS_BUT_HEALTH", &c.ErrorsButHealth},
	} {
		if *b.dst, err = boolVar(getenv, b.name); err != nil {
			return c, err
		}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"DEMO_CRASH_AFTER", &c.CrashAfter},
		{"DEMO_FAIL_HEALTH_AFTER", &c.FailHealthAfter},
		{"DEMO_START_DELAY", &c.StartDelay},
		{"DEMO_LATENCY", &c.Latency},
		{"DEMO_TAIL_LATENCY", &c.TailLatency},
	} {
		if *d.dst, err = durationVar(getenv, d.name); err != nil {
			return c, err
		}
	}
	for _, r := range []struct {
		name string
		dst  *float64
	}{
		{"DEMO_ERROR_RATE", &c.ErrorRate},
		{"DEMO_TAIL_RATE", &c.TailRate},
	} {
		if *r.dst, err = rateVar(getenv, r.name); err != nil {
			return c, err
		}
	}
	switch v := getenv("DEMO_ERROR_SPREAD"); v {
	case "", "random":
	case "even":
		c.ErrorEven = true
	default:
		return c, fmt.Errorf("DEMO_ERROR_SPREAD=%q: want random or even", v)
	}
	for _, s := range []struct {
		name string
		dst  *int64
	}{
		{"DEMO_LEAK_PER_SECOND", &c.LeakPerSecond},
		{"DEMO_LEAK_MAX", &c.LeakMax},
	} {
		if *s.dst, err = sizeVar(getenv, s.name); err != nil {
			return c, err
		}
	}

	// Knobs that only make sense together.
	if c.TailRate > 0 && c.TailLatency == 0 {
		return c, fmt.Errorf("DEMO_TAIL_RATE=%g needs DEMO_TAIL_LATENCY (the delay of the slow requests, e.g. 800ms)", c.TailRate)
	}
	if c.TailLatency > 0 && c.TailRate == 0 {
		return c, fmt.Errorf("DEMO_TAIL_LATENCY=%s needs DEMO_TAIL_RATE (the share of slow requests, e.g. 0.08)", c.TailLatency)
	}
	if c.LeakMax > 0 && c.LeakPerSecond == 0 {
		return c, fmt.Errorf("DEMO_LEAK_MAX=%s needs DEMO_LEAK_PER_SECOND", sizeString(c.LeakMax))
	}
	if c.ErrorEven && c.ErrorRate == 0 {
		return c, fmt.Errorf("DEMO_ERROR_SPREAD=even needs DEMO_ERROR_RATE")
	}
	return c, nil
}

func portVar(name, v string) (string, error) {
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%s=%q: want a port number 1-65535", name, v)
	}
	return strconv.Itoa(p), nil
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

func rateVar(getenv func(string) string, name string) (float64, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
		return 0, fmt.Errorf("%s=%q: want a number between 0 and 1 (a share: 0.05 is 5%%)", name, v)
	}
	return r, nil
}

var sizeRE = regexp.MustCompile(`^([0-9]+)(|B|Ki|KiB|Mi|MiB|Gi|GiB)$`)

// sizeVar reads a size in bytes: plain bytes or a whole number with a binary unit (Ki, Mi,
// Gi, also written KiB, MiB, GiB).
func sizeVar(getenv func(string) string, name string) (int64, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	bad := fmt.Errorf("%s=%q: want a size in bytes or with a binary unit, e.g. 64Mi or 512MiB (at most 64Gi)", name, v)
	m := sizeRE.FindStringSubmatch(v)
	if m == nil {
		return 0, bad
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, bad
	}
	unit := map[string]int64{"": 1, "B": 1, "Ki": 1 << 10, "KiB": 1 << 10, "Mi": 1 << 20, "MiB": 1 << 20, "Gi": 1 << 30, "GiB": 1 << 30}[m[2]]
	if n > (64<<30)/unit {
		return 0, bad
	}
	return n * unit, nil
}

// sizeString writes a size the way sizeVar reads it, in the largest unit that divides it.
func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

// server is the demo HTTP handler.
type server struct {
	cfg      config
	hostname string
	now      func() time.Time
	resolve  func(ctx context.Context, host string) ([]string, error) // net.DefaultResolver.LookupHost outside tests
	after    func(time.Duration) <-chan time.Time                     // time.After outside tests
	random   func() float64                                           // uniform in [0,1); rand.Float64 outside tests
	started  time.Time

	mux *http.ServeMux

	mu       sync.Mutex
	requests uint64 // GET / requests answered so far (200 or 500)
	served   uint64 // requests on every route but /healthz past the start delay: DEMO_ERROR_SPREAD=even counts these
}

// newServer returns the handler; now is the clock (time.Now outside tests).
func newServer(cfg config, hostname string, now func() time.Time) *server {
	s := &server{cfg: cfg, hostname: hostname, now: now, after: time.After, random: rand.Float64,
		started: now(), resolve: net.DefaultResolver.LookupHost}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /{$}", s.app(s.root))
	s.mux.HandleFunc("GET /lookup", s.app(s.plain(s.lookup)))
	s.mux.HandleFunc("/", s.app(s.plain(http.NotFound)))
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// starting reports whether DEMO_START_DELAY has not passed yet.
func (s *server) starting() bool {
	return s.cfg.StartDelay > 0 && s.now().Sub(s.started) < s.cfg.StartDelay
}

// healthz answers 503 while DEMO_START_DELAY has not passed, 200 until DEMO_FAIL_HEALTH_AFTER
// has passed since start, 503 afterwards.
func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	// The status is the answer; a body that cannot be written means the client left.
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.starting() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "starting: DEMO_START_DELAY=%s has not passed\n", s.cfg.StartDelay)
		return
	}
	if s.cfg.FailHealthAfter > 0 && s.now().Sub(s.started) >= s.cfg.FailHealthAfter {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "unhealthy: DEMO_FAIL_HEALTH_AFTER=%s has passed\n", s.cfg.FailHealthAfter)
		return
	}
	_, _ = fmt.Fprintln(w, "ok")
}

// appHandler serves a route but /healthz; failure is the reason of an injected 500, or "".
type appHandler func(w http.ResponseWriter, r *http.Request, failure string)

// plain adapts a handler that knows nothing of injected failures: those answer the JSON
// errorResponse instead.
func (s *server) plain(h http.HandlerFunc) appHandler {
	return func(w http.ResponseWriter, r *http.Request, failure string) {
		if failure != "" {
			writeJSON(w, http.StatusInternalServerError, errorResponse{Version: s.cfg.Version, Error: failure})
			return
		}
		h(w, r)
	}
}

// errorResponse is the JSON body of an injected 500 or 503 on a route other than GET /.
type errorResponse struct {
	Version string `json:"version"`
	Error   string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// app wraps every route but /healthz with the misbehaviours, in this order:
//  1. DEMO_START_DELAY: 503 at once while it has not passed;
//  2. DEMO_LATENCY, plus DEMO_TAIL_LATENCY for a DEMO_TAIL_RATE share of the requests drawn
//     at random (a client that goes away during the delay gets no answer and is not counted);
//  3. an injected 500: always with DEMO_ERRORS_BUT_HEALTH=1, else for a DEMO_ERROR_RATE share
//     of the requests, drawn at random per request (DEMO_ERROR_SPREAD=random, the default)
//     or spread evenly by a counter of these requests: request n (from 1) fails when
//     floor(n*r) > floor((n-1)*r), so 0.5 fails every second one (DEMO_ERROR_SPREAD=even).
func (s *server) app(h appHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.starting() {
			writeJSON(w, http.StatusServiceUnavailable, errorResponse{Version: s.cfg.Version,
				Error: fmt.Sprintf("starting: DEMO_START_DELAY=%s has not passed", s.cfg.StartDelay)})
			return
		}
		delay := s.cfg.Latency
		if s.cfg.TailRate > 0 && s.random() < s.cfg.TailRate {
			delay += s.cfg.TailLatency
		}
		if delay > 0 {
			select {
			case <-s.after(delay):
			case <-r.Context().Done():
				return
			}
		}
		s.mu.Lock()
		s.served++
		n := s.served
		s.mu.Unlock()
		h(w, r, s.failure(n))
	}
}

// failure decides whether the n-th served request gets an injected 500, and why.
func (s *server) failure(n uint64) string {
	switch r := s.cfg.ErrorRate; {
	case s.cfg.ErrorsButHealth:
		return "injected failure (DEMO_ERRORS_BUT_HEALTH=1)"
	case r <= 0:
		return ""
	case s.cfg.ErrorEven:
		if math.Floor(float64(n)*r) > math.Floor(float64(n-1)*r) {
			return fmt.Sprintf("injected failure (DEMO_ERROR_RATE=%g, DEMO_ERROR_SPREAD=even)", r)
		}
	case s.random() < r:
		return fmt.Sprintf("injected failure (DEMO_ERROR_RATE=%g)", r)
	}
	return ""
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

// root reports the version, with status 500 and the reason in "error" when app injected a
// failure.
func (s *server) root(w http.ResponseWriter, _ *http.Request, failure string) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.mu.Unlock()

	body := rootResponse{
		Version:  s.cfg.Version,
		Hostname: s.hostname,
		Started:  s.started.UTC().Format(time.RFC3339Nano),
		UptimeMS: s.now().Sub(s.started).Milliseconds(),
		Request:  n,
		Error:    failure,
	}
	status := http.StatusOK
	if failure != "" {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, body)
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
	if host == "" {
		writeJSON(w, http.StatusBadRequest, lookupResponse{Error: "missing ?host="})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	addrs, err := s.resolve(ctx, host)
	body := lookupResponse{Host: host, Addrs: addrs}
	if addrs == nil {
		body.Addrs = []string{}
	}
	sort.Strings(body.Addrs)
	status := http.StatusOK
	if err != nil {
		body.Error = err.Error()
		status = http.StatusBadGateway
	}
	writeJSON(w, status, body)
}
