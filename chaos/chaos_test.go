package chaos

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/workflows"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Versions of the demo service (internal/testenv, examples/demo-service/build-images.sh).
// The bad ones are those a short verification window catches every time: a crash at start,
// a failing health check, 50% errors, 500 everywhere, +300 ms, nothing on the port. (5%
// errors or an 8% slow tail need more pairs than these windows take; bad-crash-later dies
// after 20 s, which a release may outlast; bad-oom needs a memory limit.)
var (
	goodVersions = []string{"1.0.0", "1.1.0", "2.0.0"}
	badVersions  = []string{"bad-crash", "bad-health", "bad-errors", "bad-routes", "bad-latency", "bad-port"}
)

const (
	replicas = 2
	// Outcomes as the API reports them (docs/api.md); terminated: closed from outside
	// Slipway (a terminate in the Web UI) and repaired by Slipway.
	outcomeSucceeded  = "succeeded"
	outcomeRolledBack = "rolled_back"
	outcomeFailed     = "failed"
	outcomeRefused    = "refused"
	outcomeTerminated = "terminated"
	// releaseTimeout bounds one release, from its POST to its end (kills included).
	releaseTimeout = 10 * time.Minute
)

type config struct {
	releases   int
	seed       int64
	terminates bool
	kills      bool
	keep       bool
}

func readConfig(t *testing.T) config {
	t.Helper()
	c := config{releases: 10, seed: time.Now().UnixNano(), terminates: true, kills: true, keep: os.Getenv("SLIPWAY_CHAOS_KEEP") == "1"}
	if v := os.Getenv("SLIPWAY_CHAOS_RELEASES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SLIPWAY_CHAOS_RELEASES=%q: want a positive number", v)
		}
		c.releases = n
	}
	if v := os.Getenv("SLIPWAY_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("SLIPWAY_CHAOS_SEED=%q: want a number", v)
		}
		c.seed = n
	}
	c.terminates = os.Getenv("SLIPWAY_CHAOS_TERMINATES") != "0"
	c.kills = os.Getenv("SLIPWAY_CHAOS_KILLS") != "0"
	return c
}

// planned is one release of the run, drawn from the seed before anything starts.
type planned struct {
	n         int
	service   string
	badTag    string // a bad version, or "" for a good one
	pick      int    // which good version (among those not running now)
	terminate time.Duration
	dup       bool // POST the same request again to the other replica
	// killPost > 0: SIGKILL the API replica the release is POSTed to that long after the
	// request leaves (before, while or after it starts the release).
	killPost time.Duration
}

func plan(cfg config, services []string) []planned {
	rng := rand.New(rand.NewSource(cfg.seed))
	out := make([]planned, cfg.releases)
	terms := 0 // good releases terminated by hand
	for i := range out {
		p := planned{n: i + 1, service: services[i%len(services)], pick: rng.Intn(1 << 20)}
		if rng.Float64() < 0.4 {
			p.badTag = badVersions[rng.Intn(len(badVersions))]
		}
		// A terminate by hand at a random point of the release: 1-26 s after the start of a
		// good one (planning, canary, rollout, bake or clean-up), 0.5-4 s after the start of
		// a bad one (its canary, or its rollback).
		if rng.Float64() < 0.15 {
			p.terminate = terminateDelay(rng, p.badTag != "")
		}
		p.dup = rng.Float64() < 0.25
		if rng.Float64() < 0.15 {
			p.killPost = time.Millisecond + time.Duration(rng.Int63n(int64(25*time.Millisecond)))
		}
		if !cfg.terminates {
			p.terminate = 0
		}
		if p.terminate > 0 && p.badTag == "" {
			terms++
		}
		out[i] = p
	}
	// Every run terminates at least one good release by hand (from the third on), when it
	// may, and kills an API replica under at least one POST (the second).
	if cfg.terminates && terms == 0 {
		for i := 2; i < len(out); i++ {
			if out[i].badTag == "" {
				out[i].terminate = terminateDelay(rng, false)
				break
			}
		}
	}
	posts := 0
	for _, p := range out {
		if p.killPost > 0 {
			posts++
		}
	}
	if cfg.kills && posts == 0 && len(out) >= 2 {
		out[1].killPost = time.Millisecond + time.Duration(rng.Int63n(int64(25*time.Millisecond)))
	}
	if !cfg.kills {
		for i := range out {
			out[i].killPost = 0
		}
	}
	return out
}

func terminateDelay(rng *rand.Rand, bad bool) time.Duration {
	if bad {
		return 500*time.Millisecond + time.Duration(rng.Int63n(int64(3500*time.Millisecond)))
	}
	return time.Second + time.Duration(rng.Int63n(int64(25*time.Second)))
}

// record is what happened to one release.
type record struct {
	planned
	from, to     string
	key, id      string
	via          string
	postRetries  int
	postExisting int // retried POSTs that found the release already started
	dupOK        bool
	terminated   bool
	termPhase    string
	termAt       time.Time
	lastPhase    string
	outcome      string
	reason       string
	repair       string
	started      time.Time
	ended        time.Time
	kills        []string
	violations   []string
}

func (r *record) bad() bool { return r.badTag != "" }

// killEvent is one SIGKILL of the monkey.
type killEvent struct {
	at   time.Time
	name string
}

type harness struct {
	t        *testing.T
	cfg      config
	env      string
	dir      string
	replicas int
	services []string
	clusters []string

	temporal *proc
	workers  []*proc
	apis     []*proc
	api      []*apiClient
	tc       client.Client
	dialer   *dockerengine.Dialer
	eng      engine.Engine

	mu         sync.Mutex
	current    map[string]string // service → the version that serves
	records    []*record
	violations []string
	keys       map[string]map[string]bool // Idempotency-Key → release ids answered
	kills      []killEvent
	restarts   sync.WaitGroup
	restartMu  sync.Mutex
	deadline   time.Time
}

func (h *harness) violate(rec *record, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.mu.Lock()
	defer h.mu.Unlock()
	if rec != nil {
		rec.violations = append(rec.violations, msg)
		msg = fmt.Sprintf("#%02d %s %s→%s: %s", rec.n, rec.service, rec.from, rec.to, msg)
	}
	h.violations = append(h.violations, msg)
	fmt.Printf("chaos: VIOLATION %s\n", msg)
}

// TestChaos is the chaos test (BENCHMARKS.md, Chaos); see the package documentation.
func TestChaos(t *testing.T) {
	testenv.DemoImages(t)
	cfg := readConfig(t)
	h := &harness{
		t: t, cfg: cfg, replicas: replicas,
		services: []string{"api", "web"}, clusters: []string{"a", "b"},
		current: map[string]string{}, keys: map[string]map[string]bool{},
	}
	h.env = "chaos-" + randomName(6)
	fmt.Printf("chaos: seed %d (replay: SLIPWAY_CHAOS_SEED=%d), %d releases, environment %s, terminates by hand %v, kills %v\n",
		cfg.seed, cfg.seed, cfg.releases, h.env, cfg.terminates, cfg.kills)

	// Cleanups run last-in first-out: processes die first, then the environment's
	// containers and networks go, then nothing may be left.
	t.Cleanup(func() { testenv.AssertNoContainers(t, h.env) })
	t.Cleanup(h.removeEnvironment)
	dir, err := os.MkdirTemp("", "slipway-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	h.dir = dir
	t.Cleanup(func() {
		if t.Failed() || cfg.keep {
			fmt.Printf("chaos: logs kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if dl, ok := t.Deadline(); ok {
		h.deadline = dl.Add(-3 * time.Minute)
	}

	h.startProcesses()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.seedVersions(ctx)

	releases := plan(cfg, h.services)
	mctx, stopMonkey := context.WithCancel(ctx)
	monkeyDone := make(chan struct{})
	go func() {
		defer close(monkeyDone)
		if cfg.kills {
			h.monkey(mctx, rand.New(rand.NewSource(cfg.seed+1)))
		}
	}()
	runStart := time.Now()
	var wg sync.WaitGroup
	for _, svc := range h.services {
		var lane []planned
		for _, p := range releases {
			if p.service == svc {
				lane = append(lane, p)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.lane(ctx, lane)
		}()
	}
	wg.Wait()
	wall := time.Since(runStart)
	stopMonkey()
	<-monkeyDone
	h.restarts.Wait()
	h.everyoneUp(ctx)

	h.finalChecks(ctx)
	h.summary(wall)
	if t.Failed() {
		h.dumpLogs()
	}
}

func randomName(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// startProcesses builds the binaries and starts the embedded Temporal server, two workers
// and two API replicas, each a process of its own.
func (h *harness) startProcesses() {
	t := h.t
	root := testenv.RepoRoot(t)
	bindir := filepath.Join(h.dir, "bin")
	if err := os.MkdirAll(bindir, 0o755); err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	bin := buildBinaries(t, root, bindir)
	fmt.Printf("chaos: binaries ready in %s\n", time.Since(built).Round(time.Millisecond))

	token := randomName(40)
	sum := sha256.Sum256([]byte(token))
	tokens := fmt.Sprintf("tokens:\n  - name: chaos\n    sha256: %s\n    environments: [\"*\"]\n    permissions: [release, approve]\n    rate_limit: 1000\n    burst: 2000\n", hex.EncodeToString(sum[:]))
	tokensFile := filepath.Join(h.dir, "tokens.yaml")
	deployments := filepath.Join(h.dir, "deployments")
	if err := os.MkdirAll(deployments, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokensFile, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{}
	for _, s := range h.services {
		versions[s] = goodVersions[0]
	}
	if err := os.WriteFile(filepath.Join(deployments, h.env+".yaml"), []byte(h.specYAML(versions, false)), 0o644); err != nil {
		t.Fatal(err)
	}

	tport := freePort(t)
	taddr := fmt.Sprintf("127.0.0.1:%d", tport)
	h.temporal = &proc{name: "temporal", kind: "temporal", bin: bin, log: filepath.Join(h.dir, "temporal.log"),
		args: []string{"dev", "--temporal-only", "--ephemeral", "--data-dir", filepath.Join(h.dir, "data"),
			"--temporal-port", strconv.Itoa(tport), "--ui-port", "-1"}}
	h.temporal.ready = logReady(h.temporal, "Temporal is up")
	for i := 1; i <= 2; i++ {
		w := &proc{name: fmt.Sprintf("worker-%d", i), kind: "worker", bin: bin, log: filepath.Join(h.dir, fmt.Sprintf("worker-%d.log", i)),
			args: []string{"worker", "--temporal-address", taddr, "--secrets-dir", ""}}
		w.ready = logReady(w, "polling task queue")
		h.workers = append(h.workers, w)
		port := freePort(t)
		a := &proc{name: fmt.Sprintf("api-%d", i), kind: "api", bin: bin, log: filepath.Join(h.dir, fmt.Sprintf("api-%d.log", i)),
			args: []string{"api", "--temporal-address", taddr, "--api-addr", fmt.Sprintf("127.0.0.1:%d", port),
				"--deployments", deployments, "--tokens-file", tokensFile, "--readyz-engines=false"}}
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		a.ready = httpReady(base + "/healthz")
		h.apis = append(h.apis, a)
		h.api = append(h.api, newAPIClient(a.name, base, token))
	}
	t.Cleanup(func() {
		for _, p := range append(append([]*proc{}, h.apis...), h.workers...) {
			p.kill()
		}
		if h.tc != nil {
			h.tc.Close()
		}
		h.temporal.kill()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := h.temporal.start(ctx); err != nil {
		t.Fatalf("%v\n%s", err, tail(h.temporal.log, 30))
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, p := range append(append([]*proc{}, h.workers...), h.apis...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.start(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.dumpLogs()
		t.Fatal(err)
	}
	tc, err := client.DialContext(ctx, client.Options{HostPort: taddr,
		Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))})
	if err != nil {
		t.Fatalf("temporal client: %v", err)
	}
	h.tc = tc
	fmt.Printf("chaos: processes up in %s (temporal, %d workers, %d API replicas)\n", time.Since(start).Round(time.Millisecond), len(h.workers), len(h.apis))
	h.dialer = dockerengine.NewDialer(dockerengine.Options{})
	t.Cleanup(func() { _ = h.dialer.Close() })
	if h.eng, err = h.dialer.Dial(ctx, engine.Endpoint{}); err != nil {
		t.Fatal(err)
	}
}

// specYAML is the environment's spec: clusters a (wave 1, the canary cluster) and b (wave
// 2), both on the local engine, and the services at versions. Its policy is short but real:
// a 4 s canary soak, 2 s verification windows at 100 requests/s per replica (150 pairs at
// least), a 3 s bake, and an inconclusive verdict rolls back after 20 s without a human.
// The seed release (seed) skips canary and verification.
func (h *harness) specYAML(versions map[string]string, seed bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "environment: %s\nclusters:\n", h.env)
	for i, c := range h.clusters {
		fmt.Fprintf(&b, "  - name: %s\n    wave: %d\n", c, i+1)
	}
	fmt.Fprintf(&b, `defaults:
  replicas: %d
  health:
    http_path: /healthz
    interval: 250ms
    timeout: 1s
    retries: 3
    deadline: 15s
  rollout:
    batch_size: 2
`, h.replicas)
	if seed {
		b.WriteString(`  canary:
    skip: true
  verification:
    skip: true
    bake: 0s
`)
	} else {
		b.WriteString(`  canary:
    replicas: 1
    soak: 4s
    approval:
      timeout: 20s
      on_timeout: rollback
  verification:
    duration: 2s
    interval: 10ms
    min_samples: 150
    max_error_rate: 0.05
    max_latency_ratio: 3
    bake: 3s
`)
	}
	b.WriteString("services:\n")
	for _, s := range h.services {
		fmt.Fprintf(&b, "  - name: %s\n    image: slipway/demo\n    version: %q\n    port: 8080\n    stop_grace: 2s\n", s, versions[s])
	}
	return b.String()
}

// seedVersions makes every service serve goodVersions[0] on every cluster: one release of
// a whole spec that skips canary and verification, before any chaos.
func (h *harness) seedVersions(ctx context.Context) {
	t := h.t
	versions := map[string]string{}
	for _, s := range h.services {
		versions[s] = goodVersions[0]
	}
	started := time.Now()
	rel, err := h.api[0].start(ctx, []byte(h.specYAML(versions, true)), true, "seed")
	if err != nil {
		t.Fatalf("seed release: %v", err)
	}
	for rel.Running || rel.Outcome == "" {
		if time.Since(started) > 3*time.Minute {
			t.Fatalf("seed release %s did not end: %+v", rel.ID, rel)
		}
		if rel, err = h.api[1].get(ctx, rel.ID, 30*time.Second); err != nil {
			t.Fatalf("seed release: %v", err)
		}
	}
	if rel.Outcome != outcomeSucceeded {
		t.Fatalf("seed release %s: %s: %s", rel.ID, rel.Outcome, rel.Reason)
	}
	short := rel.ID[strings.LastIndexByte(rel.ID, '-')+1:]
	for _, s := range h.services {
		h.current[s] = versions[s]
		for _, c := range h.clusters {
			if v := h.checkEngine(ctx, c, s, versions[s], short, true); len(v) > 0 {
				t.Fatalf("after the seed release: %s", strings.Join(v, "; "))
			}
		}
	}
	h.mu.Lock()
	h.keys["seed"] = map[string]bool{rel.ID: true}
	h.mu.Unlock()
	fmt.Printf("chaos: seed release %s: %s serve %s on %s in %s\n", rel.ID, strings.Join(h.services, ", "), goodVersions[0],
		strings.Join(h.clusters, ", "), time.Since(started).Round(time.Millisecond))
}

// monkey SIGKILLs a random worker or API replica every 5-15 s and restarts it after
// 0.5-5 s, until ctx ends.
func (h *harness) monkey(ctx context.Context, rng *rand.Rand) {
	victims := append(append([]*proc{}, h.workers...), h.apis...)
	for {
		gap := 5*time.Second + time.Duration(rng.Int63n(int64(10*time.Second)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		var up []*proc
		for _, p := range victims {
			if p.running() {
				up = append(up, p)
			}
		}
		if len(up) == 0 {
			continue
		}
		p := up[rng.Intn(len(up))]
		delay := 500*time.Millisecond + time.Duration(rng.Int63n(int64(4500*time.Millisecond)))
		h.killAndRestart(p, delay, "")
	}
}

// killAndRestart SIGKILLs p and restarts it after delay (in the background).
func (h *harness) killAndRestart(p *proc, delay time.Duration, why string) {
	if !p.kill() {
		return
	}
	h.mu.Lock()
	h.kills = append(h.kills, killEvent{at: time.Now(), name: p.name})
	h.mu.Unlock()
	fmt.Printf("chaos: %s SIGKILL %s%s (restart in %s)\n", time.Now().Format("15:04:05.000"), p.name, why, delay.Round(time.Millisecond))
	h.restarts.Add(1)
	go func() {
		defer h.restarts.Done()
		time.Sleep(delay)
		h.restart(p)
	}()
}

// restart starts a killed process again (a few tries: the port of an API replica may take a
// moment to be free).
func (h *harness) restart(p *proc) {
	h.restartMu.Lock() // one restart at a time: the monkey's and a lane's may meet
	defer h.restartMu.Unlock()
	var err error
	for i := 0; i < 5; i++ {
		if p.running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err = p.start(ctx)
		cancel()
		if err == nil {
			return
		}
		p.kill()
		time.Sleep(time.Second)
	}
	h.violate(nil, "could not restart %s: %v\n%s", p.name, err, tail(p.log, 20))
}

// everyoneUp restarts any process still down (the final checks need the workers: locks end
// through them).
func (h *harness) everyoneUp(_ context.Context) {
	for _, p := range append(append([]*proc{}, h.workers...), h.apis...) {
		if !p.running() {
			h.restart(p)
		}
	}
}

// lane runs one service's releases one after the other.
func (h *harness) lane(ctx context.Context, lane []planned) {
	for i, p := range lane {
		if !h.deadline.IsZero() && time.Now().After(h.deadline) {
			h.violate(nil, "the test's deadline is near: %s ran %d of its %d releases", p.service, i, len(lane))
			return
		}
		if !h.runRelease(ctx, p) {
			h.violate(nil, "%s: the lane stops after release #%d (see above)", p.service, p.n)
			return
		}
	}
}

// runRelease runs one release through the API and checks it; false means the lane cannot
// go on (the service's state is unknown).
func (h *harness) runRelease(ctx context.Context, p planned) bool {
	h.mu.Lock()
	from := h.current[p.service]
	h.mu.Unlock()
	rec := &record{planned: p, from: from, to: p.badTag}
	if rec.to == "" {
		var goods []string
		for _, v := range goodVersions {
			if v != from {
				goods = append(goods, v)
			}
		}
		rec.to = goods[p.pick%len(goods)]
	}
	rec.key = fmt.Sprintf("%s-%d-%03d", h.env, h.cfg.seed, p.n)
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	body, _ := json.Marshal(trigger{Environment: h.env, Services: map[string]string{p.service: rec.to}, Description: fmt.Sprintf("chaos #%d", p.n)})

	rec.started = time.Now()
	rel := h.post(ctx, rec, body, (p.n-1)%2)
	if rel == nil {
		h.report(rec)
		return false
	}
	rec.id = rel.ID
	if p.dup {
		other := 1 - (p.n-1)%2
		h.duplicate(ctx, rec, body, other)
	}
	final := h.waitEnd(ctx, rec)
	rec.ended = time.Now()
	if final == nil {
		h.report(rec)
		return false
	}
	rec.outcome, rec.reason = final.Outcome, final.Reason
	if !rec.bad() && final.Outcome != outcomeSucceeded && final.Status != nil {
		// A good version that did not pass: say why, with the evidence.
		for _, v := range final.Status.Verdicts {
			if v.Result != "passed" {
				ev := string(v.Evidence)
				if len(ev) > 1500 {
					ev = ev[:1500] + "…"
				}
				fmt.Printf("chaos: #%02d verdict %s on %s (%s): %s\n  evidence %s\n", p.n, v.Result, v.Cluster, v.Stage, v.Reason, ev)
			}
		}
	}
	if final.Status != nil && final.Status.Repair != nil {
		rec.repair = final.Status.Repair.Outcome
	}
	want, ok := h.expected(rec, final)
	h.checkLock(ctx, rec)
	if rec.terminated {
		h.checkRepair(ctx, rec)
	}
	if ok {
		short := rec.id[strings.LastIndexByte(rec.id, '-')+1:]
		for _, c := range h.clusters {
			for _, v := range h.checkEngine(ctx, c, p.service, want, short, want == rec.to) {
				h.violate(rec, "%s", v)
			}
		}
		h.mu.Lock()
		h.current[p.service] = want
		h.mu.Unlock()
	}
	h.mu.Lock()
	for _, k := range h.kills {
		if !k.at.Before(rec.started) && !k.at.After(rec.ended) {
			rec.kills = append(rec.kills, k.name)
		}
	}
	h.mu.Unlock()
	h.report(rec)
	return ok
}

// expected is the version the release's outcome says must serve, and false when the outcome
// leaves it unknown (the lane stops).
func (h *harness) expected(rec *record, final *release) (string, bool) {
	switch final.Outcome {
	case outcomeSucceeded:
		if rec.bad() {
			h.violate(rec, "bad version %s succeeded: %s", rec.to, final.Reason)
		}
		if rec.terminated {
			h.violate(rec, "terminated by hand, yet the outcome is %s (%s)", final.Outcome, final.Reason)
		}
		return rec.to, true
	case outcomeRolledBack:
		if rec.terminated {
			h.violate(rec, "terminated by hand, yet the outcome is %s (%s)", final.Outcome, final.Reason)
		}
		return rec.from, true
	case outcomeTerminated:
		if !rec.terminated {
			h.violate(rec, "outcome terminated, but the test did not terminate it: %s", final.Reason)
		}
		switch rec.repair {
		case outcomeSucceeded:
			// It had succeeded and was cleaning up: the repair finished the cleanup.
			if rec.bad() {
				h.violate(rec, "bad version %s kept by the repair: %s", rec.to, final.Reason)
			}
			return rec.to, true
		case outcomeRolledBack, "":
			return rec.from, true
		default:
			h.violate(rec, "the repair ended %q: %s", rec.repair, final.Reason)
			return "", false
		}
	default:
		h.violate(rec, "outcome %q: %s", final.Outcome, final.Reason)
		return "", false
	}
}

// post starts the release through replica first, and sends the same request (same
// Idempotency-Key) to the other replica whenever one does not answer.
func (h *harness) post(ctx context.Context, rec *record, body []byte, first int) *release {
	r := first
	rec.via = h.api[r].name
	conflicts := 0
	for attempt := 0; ; attempt++ {
		if attempt == 0 && rec.killPost > 0 {
			victim := h.apis[r]
			time.AfterFunc(rec.killPost, func() {
				h.killAndRestart(victim, time.Second, fmt.Sprintf(" %s into the POST of #%02d", rec.killPost.Round(time.Millisecond), rec.n))
			})
		}
		rel, err := h.api[r].start(ctx, body, false, rec.key)
		if err == nil {
			if attempt > 0 && rel.Existing {
				rec.postExisting++
			}
			h.answered(rec, rel.ID, h.api[r].name)
			return rel
		}
		var p *problem
		switch {
		case retryable(err):
		case errors.As(err, &p) && p.Status == 409 && strings.Contains(p.Detail, "Idempotency-Key"):
			h.violate(rec, "POST to %s: the same request under the same Idempotency-Key was refused: %v", h.api[r].name, err)
			return nil
		case errors.As(err, &p) && p.Status == 409 && conflicts < 30:
			// Another release of the service is in flight: there should be none.
			conflicts++
			if conflicts == 1 {
				h.violate(rec, "POST to %s: refused, a release of %s is in flight (%s): %v", h.api[r].name, rec.service, p.InFlight, err)
			}
			time.Sleep(2 * time.Second)
			continue
		default:
			h.violate(rec, "POST to %s: %v", h.api[r].name, err)
			return nil
		}
		if time.Since(rec.started) > 3*time.Minute {
			h.violate(rec, "POST: no replica answered for 3 minutes: %v", err)
			return nil
		}
		rec.postRetries++
		fmt.Printf("chaos: #%02d POST to %s: %v; again to the other replica, same Idempotency-Key\n", rec.n, h.api[r].name, err)
		r = 1 - r
		time.Sleep(200 * time.Millisecond)
	}
}

// duplicate sends the release's request again, to the other replica: it must answer the same
// release, found (existing), not a second one.
func (h *harness) duplicate(ctx context.Context, rec *record, body []byte, r int) {
	for attempt := 0; attempt < 20; attempt++ {
		rel, err := h.api[r].start(ctx, body, false, rec.key)
		if err == nil {
			h.answered(rec, rel.ID, h.api[r].name)
			if !rel.Existing {
				h.violate(rec, "a repeated POST with the same Idempotency-Key to %s was not answered as existing", h.api[r].name)
			}
			rec.dupOK = rel.ID == rec.id && rel.Existing
			return
		}
		if !retryable(err) {
			h.violate(rec, "repeated POST to %s: %v", h.api[r].name, err)
			return
		}
		r = 1 - r
		time.Sleep(300 * time.Millisecond)
	}
}

// answered records the release id an answer gave for the record's key: one release per key.
func (h *harness) answered(rec *record, id, via string) {
	h.mu.Lock()
	ids := h.keys[rec.key]
	if ids == nil {
		ids = map[string]bool{}
		h.keys[rec.key] = ids
	}
	ids[id] = true
	n := len(ids)
	h.mu.Unlock()
	if n > 1 {
		h.violate(rec, "Idempotency-Key %s answered by %s with release %s: %d releases for one key", rec.key, via, id, n)
	}
}

// waitEnd follows the release (alternating the replicas, failing over when one does not
// answer) until it has ended, terminating it by hand on the way when planned.
func (h *harness) waitEnd(ctx context.Context, rec *record) *release {
	r := (rec.n - 1) % 2
	termTried := false
	early := false
	for {
		if rec.terminate > 0 && !termTried && time.Since(rec.started) >= rec.terminate {
			termTried = true
			h.terminate(ctx, rec)
		}
		wait := 10 * time.Second
		if rec.terminate > 0 && !termTried {
			wait = max(100*time.Millisecond, min(wait, rec.terminate-time.Since(rec.started)))
		}
		asked := time.Now()
		rel, err := h.api[r].get(ctx, rec.id, wait)
		r = 1 - r
		if time.Since(rec.started) > releaseTimeout {
			h.violate(rec, "release %s did not end within %s (last phase %s, error %v)", rec.id, releaseTimeout, rec.lastPhase, err)
			return nil
		}
		if err != nil {
			if !retryable(err) {
				h.violate(rec, "GET %s: %v", rec.id, err)
				return nil
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if rel.Phase != "" {
			rec.lastPhase = rel.Phase
		}
		if !rel.Running && rel.Outcome != "" {
			if rec.terminated && rel.Outcome != outcomeTerminated && time.Since(rec.termAt) < 90*time.Second {
				// The contract: a release terminated by hand is shown running (rolling
				// back) until Slipway has repaired it, then ends terminated.
				if !early {
					early = true
					h.violate(rec, "terminated by hand: the API showed it ended %s before the repair (%s)", rel.Outcome, rel.Reason)
				}
				time.Sleep(time.Second)
				continue
			}
			if rec.terminate > 0 && !termTried {
				fmt.Printf("chaos: #%02d not terminated: it ended before %s\n", rec.n, rec.terminate.Round(time.Millisecond))
			}
			return rel
		}
		if time.Since(asked) < time.Second && wait >= time.Second {
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// terminate terminates the release through Temporal, as the Web UI's Terminate does (it
// skips all of Slipway's own code: the repair must undo what the release did).
func (h *harness) terminate(ctx context.Context, rec *record) {
	d, err := h.tc.DescribeWorkflowExecution(ctx, rec.id, "")
	if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		fmt.Printf("chaos: #%02d not terminated: it ended before (%v)\n", rec.n, err)
		return
	}
	err = h.tc.TerminateWorkflow(ctx, rec.id, "", "chaos: terminated by hand, as from the Web UI")
	var nf *serviceerror.NotFound
	switch {
	case err == nil:
		rec.terminated, rec.termAt, rec.termPhase = true, time.Now(), rec.lastPhase
		fmt.Printf("chaos: %s #%02d TERMINATE %s by hand in phase %s\n", time.Now().Format("15:04:05.000"), rec.n, rec.id, rec.lastPhase)
	case errors.As(err, &nf):
		fmt.Printf("chaos: #%02d not terminated: it ended before (%v)\n", rec.n, err)
	default:
		h.violate(rec, "terminate %s: %v", rec.id, err)
	}
}

// checkLock: once a release has ended, its service's lock is free (soon: a lock ends through
// a worker, which may just have been killed).
func (h *harness) checkLock(ctx context.Context, rec *record) {
	id := workflows.LockWorkflowID(h.env, rec.service)
	deadline := time.Now().Add(90 * time.Second)
	for {
		d, err := h.tc.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) || (err == nil && d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING) {
			return
		}
		if time.Now().After(deadline) {
			h.violate(rec, "lock %s still held 90 s after the release ended (err %v)", id, err)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkRepair: a release terminated by hand was repaired by its repair workflow, which has
// ended.
func (h *harness) checkRepair(ctx context.Context, rec *record) {
	id := workflows.RepairWorkflowID(rec.id)
	deadline := time.Now().Add(90 * time.Second)
	for {
		d, err := h.tc.DescribeWorkflowExecution(ctx, id, "")
		if err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			return
		}
		if time.Now().After(deadline) {
			status := "none"
			if err == nil {
				status = d.GetWorkflowExecutionInfo().GetStatus().String()
			}
			h.violate(rec, "repair workflow %s: %s, want completed (err %v)", id, status, err)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// report prints one line per release.
func (h *harness) report(rec *record) {
	kind := "good"
	if rec.bad() {
		kind = "bad"
	}
	var extra []string
	if rec.terminated {
		extra = append(extra, fmt.Sprintf("terminated in %s, repair %s", rec.termPhase, orNone(rec.repair)))
	}
	if len(rec.kills) > 0 {
		extra = append(extra, "killed meanwhile: "+strings.Join(rec.kills, " "))
	}
	if rec.postRetries > 0 {
		extra = append(extra, fmt.Sprintf("POST retried %d× (existing %d)", rec.postRetries, rec.postExisting))
	}
	if rec.dup {
		extra = append(extra, fmt.Sprintf("repeated POST same release: %v", rec.dupOK))
	}
	if len(rec.violations) > 0 {
		extra = append(extra, fmt.Sprintf("%d VIOLATIONS", len(rec.violations)))
	}
	d := time.Duration(0)
	if !rec.ended.IsZero() {
		d = rec.ended.Sub(rec.started)
	}
	reason := rec.reason
	if len(reason) > 160 {
		reason = reason[:160] + "…"
	}
	fmt.Printf("chaos: #%02d %-3s %s→%s (%s) via %s: %s in %s [%s] %s\n", rec.n, rec.service, rec.from, rec.to, kind, rec.via,
		orNone(rec.outcome), d.Round(100*time.Millisecond), strings.Join(extra, "; "), reason)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// finalChecks: one release per Idempotency-Key in Temporal itself, and nothing left running
// (no release, repair or lock) once every release has ended.
func (h *harness) finalChecks(ctx context.Context) {
	want := map[string]bool{}
	h.mu.Lock()
	for _, ids := range h.keys {
		for id := range ids {
			want[id] = true
		}
	}
	h.mu.Unlock()
	var runs map[string]int
	var running []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var err error
		runs, err = h.list(ctx, fmt.Sprintf("WorkflowType = 'Release' AND SlipwayEnvironment = '%s'", h.env))
		if err == nil {
			var r map[string]int
			r, err = h.list(ctx, "ExecutionStatus = 'Running'")
			running = running[:0]
			for id := range r {
				running = append(running, id)
			}
			sort.Strings(running)
		}
		if err == nil && len(running) == 0 && len(runs) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				h.violate(nil, "visibility: %v", err)
			}
			break
		}
		time.Sleep(time.Second)
	}
	for _, id := range running {
		h.violate(nil, "workflow %s still running after every release ended", id)
	}
	for id, n := range runs {
		if n != 1 {
			h.violate(nil, "release %s has %d runs", id, n)
		}
		if !want[id] {
			h.violate(nil, "release %s was started, but no POST was answered with it", id)
		}
	}
	for id := range want {
		if runs[id] == 0 {
			h.violate(nil, "release %s was answered but Temporal does not list it", id)
		}
	}
}

// list returns the workflow IDs (with their number of runs) a visibility query finds.
func (h *harness) list(ctx context.Context, query string) (map[string]int, error) {
	out := map[string]int{}
	var token []byte
	for {
		resp, err := h.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 1000, NextPageToken: token})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			out[e.GetExecution().GetWorkflowId()]++
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// summary prints the figures of the run (BENCHMARKS.md) and fails the test on any violation.
func (h *harness) summary(wall time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	type group struct {
		n   int
		dur []time.Duration
	}
	by := map[string]*group{}
	add := func(k string, d time.Duration) {
		g := by[k]
		if g == nil {
			g = &group{}
			by[k] = g
		}
		g.n++
		g.dur = append(g.dur, d)
	}
	var all []time.Duration
	terms, postRetries, postExisting, dups, dupsOK := 0, 0, 0, 0, 0
	for _, r := range h.records {
		if r.ended.IsZero() {
			continue
		}
		d := r.ended.Sub(r.started)
		all = append(all, d)
		kind := "good"
		if r.bad() {
			kind = "bad"
		}
		k := r.outcome + " (" + kind + ")"
		if r.terminated {
			terms++
			k = r.outcome + " by hand, " + kind + " (repair " + orNone(r.repair) + ")"
		}
		add(k, d)
		postRetries += r.postRetries
		postExisting += r.postExisting
		if r.dup {
			dups++
			if r.dupOK {
				dupsOK++
			}
		}
	}
	wk, ak := 0, 0
	for _, k := range h.kills {
		if strings.HasPrefix(k.name, "worker") {
			wk++
		} else {
			ak++
		}
	}
	fmt.Printf("chaos: ===== summary: seed %d, environment %s\n", h.cfg.seed, h.env)
	fmt.Printf("chaos: %d of %d releases ended in %s (2 services × 2 clusters, 2 replicas each; 2 workers, 2 API replicas, 1 Temporal server)\n",
		len(all), h.cfg.releases, wall.Round(time.Second))
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := by[k]
		fmt.Printf("chaos:   %-48s %3d  duration p50 %s, max %s\n", k, g.n, pct(g.dur, 50), pct(g.dur, 100))
	}
	fmt.Printf("chaos: duration of a release: p50 %s, p90 %s, max %s\n", pct(all, 50), pct(all, 90), pct(all, 100))
	fmt.Printf("chaos: SIGKILLs: %d of workers, %d of API replicas; terminates by hand: %d\n", wk, ak, terms)
	fmt.Printf("chaos: POSTs sent again to the other replica: %d (found the release already started: %d); repeated POSTs: %d, same release back: %d\n",
		postRetries, postExisting, dups, dupsOK)
	fmt.Printf("chaos: invariant violations: %d\n", len(h.violations))
	for _, v := range h.violations {
		fmt.Printf("chaos:   %s\n", v)
	}
	if len(h.violations) > 0 {
		h.t.Errorf("%d invariant violations (seed %d):\n%s", len(h.violations), h.cfg.seed, strings.Join(h.violations, "\n"))
	}
	if len(all) < h.cfg.releases {
		h.t.Errorf("only %d of %d releases ended", len(all), h.cfg.releases)
	}
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (p*len(s)+99)/100 - 1
	i = max(0, min(i, len(s)-1))
	return s[i].Round(100 * time.Millisecond)
}

// removeEnvironment removes every container (replicas and probe containers) and network of
// the environment from the engine.
func (h *harness) removeEnvironment() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+engine.LabelEnvironment+"="+h.env).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		if b, err := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f", "-v"}, ids...)...).CombinedOutput(); err != nil {
			h.t.Errorf("remove containers: %v: %s", err, b)
		}
	}
	for _, c := range h.clusters {
		name := engine.NetworkName(h.env, c)
		if exec.CommandContext(ctx, "docker", "network", "inspect", name).Run() == nil {
			if b, err := exec.CommandContext(ctx, "docker", "network", "rm", name).CombinedOutput(); err != nil {
				h.t.Errorf("remove network %s: %v: %s", name, err, b)
			}
		}
	}
}

// dumpLogs prints the end of every process's log.
func (h *harness) dumpLogs() {
	for _, p := range append(append([]*proc{h.temporal}, h.workers...), h.apis...) {
		if p == nil {
			continue
		}
		fmt.Printf("----- %s (%s), last lines:\n%s\n", p.name, p.log, tail(p.log, 25))
	}
}
