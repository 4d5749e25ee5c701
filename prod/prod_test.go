package prod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/api/adminservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/workflows"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	service  = "demo"
	replicas = 2
	// releaseTimeout bounds one release, from its POST to its end (the kill included).
	releaseTimeout = 5 * time.Minute
	// portSpan is how many ports from the base scripts/prod.sh uses.
	portSpan = 33
)

var clusters = []string{"a", "b"}

// topology is the production topology of scripts/prod.sh, started for this test in a state
// directory and on ports of its own.
type topology struct {
	t      testing.TB
	root   string
	dir    string
	env    string // the Slipway environment released to
	base   int
	script string
	vars   []string // the environment scripts/prod.sh runs with
	api    [2]*apiclient.Client
	fe     [2]string // Temporal frontends
	token  string

	mu sync.Mutex
	tc [2]client.Client
}

// TestProdTopology releases the demo service four times on the production topology, one
// process killed mid-release each time (see the package documentation).
func TestProdTopology(t *testing.T) {
	testenv.DemoImages(t)
	testenv.RequirePostgres(t)
	env := testenv.UniqueEnv(t) // its leftover check runs last
	p := newTopology(t, env)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	p.checkCluster(ctx)

	seedStart := time.Now()
	seed := p.start(ctx, apiclient.StartRequest{Spec: []byte(p.specYAML("1.0.0", true)), SpecName: env + ".yaml", IdempotencyKey: "seed-" + env})
	p.expectSucceeded(seed, p.waitEnd(ctx, seed.ID))
	t.Logf("seed release %s (demo 1.0.0, no canary) succeeded in %s", seed.ID, time.Since(seedStart).Round(100*time.Millisecond))

	type step struct {
		to     string
		name   string
		phases []workflows.Phase // the kill happens once the release is in one of these
		kill   func(ctx context.Context, rel *apiclient.Release) string
	}
	steps := []step{
		{"1.1.0", "worker SIGKILLed", []workflows.Phase{workflows.PhaseCanary, workflows.PhaseVerifying}, p.killWorker},
		{"2.0.0", "API replica SIGKILLed under an SSE stream and a ?wait", []workflows.Phase{workflows.PhaseVerifying, workflows.PhaseRollingOut}, nil},
		{"1.0.0", "Temporal server SIGKILLed", []workflows.Phase{workflows.PhaseRollingOut, workflows.PhaseVerifying}, p.killTemporal},
		{"1.1.0", "PostgreSQL restarted (immediate)", []workflows.Phase{workflows.PhaseCanary, workflows.PhaseVerifying, workflows.PhaseRollingOut}, p.restartPostgres},
	}
	final := ""
	for i, s := range steps {
		began := time.Now()
		rel := p.start(ctx, apiclient.StartRequest{
			Trigger:        &apiclient.TriggerRequest{Environment: env, Services: map[string]string{service: s.to}, Description: s.name},
			IdempotencyKey: fmt.Sprintf("%s-%d", env, i+1),
		})
		var end *apiclient.Release
		var what string
		if s.kill == nil {
			end, what = p.apiFailover(ctx, rel, s.phases)
		} else {
			phase := p.waitPhase(ctx, rel.ID, s.phases)
			what = fmt.Sprintf("in phase %s: %s", phase, s.kill(ctx, rel))
			end = p.waitEnd(ctx, rel.ID)
		}
		p.expectSucceeded(rel, end)
		t.Logf("release %d (%s → %s) %s: %s in %s; %s", i+1, rel.ID, s.to, s.name, end.Outcome, time.Since(began).Round(100*time.Millisecond), what)
		final = s.to
	}
	p.allUp()
	p.noneRunning(ctx)
	p.checkEngine(ctx, final)
}

// newTopology starts the topology in a state directory and on ports of its own, releasing to
// env; t's cleanups stop it and delete its state (kept, with the logs, when t failed or
// SLIPWAY_PROD_KEEP=1), and remove what the environment left on the engine.
func newTopology(t testing.TB, env string) *topology {
	p := &topology{t: t, root: testenv.RepoRoot(t), env: env}
	dir, err := os.MkdirTemp("", "slipway-prod-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	// As root, PostgreSQL runs as the postgres user, who must walk into the state directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.removeEnvironment)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SLIPWAY_PROD_KEEP") == "1" {
			out, err := p.sh(2*time.Minute, "down")
			t.Logf("prod.sh down: %v\n%s\nstate and logs kept in %s", err, out, dir)
			return
		}
		if out, err := p.sh(2*time.Minute, "clean"); err != nil {
			t.Errorf("prod.sh clean: %v\n%s", err, out)
		}
		_ = os.RemoveAll(dir) // clean removed it; a leftover would be empty directories
	})
	p.up()

	return p
}

// up picks the ports, builds what the script runs, writes the environment's spec and runs
// `scripts/prod.sh up`.
func (p *topology) up() {
	t := p.t
	p.base = freeBase(t)
	p.script = filepath.Join(p.root, "scripts", "prod.sh")
	state := filepath.Join(p.dir, "state")
	deployments := filepath.Join(p.dir, "deployments")
	if err := os.MkdirAll(deployments, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deployments, p.env+".yaml"), []byte(p.specYAML("1.0.0", false)), 0o644); err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	bin, tbin := p.binaries()
	t.Logf("binaries ready in %s", time.Since(built).Round(100*time.Millisecond))
	p.vars = append(os.Environ(),
		"SLIPWAY_PROD_DIR="+state,
		"SLIPWAY_PROD_PORT_BASE="+strconv.Itoa(p.base),
		"SLIPWAY_PROD_BIN="+bin,
		"SLIPWAY_PROD_TEMPORAL_BIN="+tbin,
		"SLIPWAY_PROD_DEPLOYMENTS="+deployments,
	)
	began := time.Now()
	out, err := p.sh(5*time.Minute, "up")
	if err != nil {
		t.Fatalf("prod.sh up: %v\n%s", err, out)
	}
	t.Logf("prod.sh up in %s (ports %d-%d):\n%s", time.Since(began).Round(100*time.Millisecond), p.base, p.base+portSpan-1, out)
	tok, err := os.ReadFile(filepath.Join(state, "token"))
	if err != nil {
		t.Fatal(err)
	}
	p.token = strings.TrimSpace(string(tok))
	for i := range 2 {
		p.api[i] = apiclient.New(fmt.Sprintf("http://127.0.0.1:%d", p.base+31+i), p.token)
		p.api[i].Timeout = 30 * time.Second
		p.fe[i] = fmt.Sprintf("127.0.0.1:%d", p.base+10*(i+1))
	}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.tc {
			if c != nil {
				c.Close()
			}
		}
	})
}

// sh runs scripts/prod.sh with the topology's environment.
func (p *topology) sh(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.script, args...)
	cmd.Dir = p.root
	cmd.Env = p.vars
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// binaries returns the directory of slipway and slipway-probe (built with plain go build, as
// the tests build, so the build cache serves) and that of temporal-server and
// temporal-sql-tool (make builds them into .bin once; later runs reuse them).
func (p *topology) binaries() (bin, tbin string) {
	t := p.t
	bin = os.Getenv("SLIPWAY_PROD_BIN")
	if bin == "" {
		bin = filepath.Join(p.dir, "bin")
		for _, b := range []struct{ out, pkg string }{{"slipway", "./cmd/slipway"}, {"slipway-probe", "./cmd/slipway-probe"}} {
			run(t, p.root, 15*time.Minute, "go", "build", "-o", filepath.Join(bin, b.out), b.pkg)
		}
	}
	tbin = os.Getenv("SLIPWAY_PROD_TEMPORAL_BIN")
	if tbin == "" {
		tbin = filepath.Join(p.root, ".bin")
		run(t, p.root, 30*time.Minute, "make", "-s", ".bin/temporal-server", ".bin/temporal-sql-tool")
	}
	return bin, tbin
}

func run(t testing.TB, dir string, timeout time.Duration, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// freeBase picks a port base in 17000-18966 whose portSpan loopback ports are all free now.
func freeBase(t testing.TB) int {
	t.Helper()
	for range 100 {
		base := 17000 + rand.IntN(1967)
		free := true
		var ls []net.Listener
		for port := base; port < base+portSpan && free; port++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				free = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			_ = l.Close() // only probing
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of ports in 17000-18999")
	return 0
}

// specYAML is the environment's spec: clusters a (wave 1, the canary cluster) and b (wave
// 2), both on the local engine, and the demo service. A short but real policy: a 5 s canary
// soak, 3 s verification windows at 100 requests/s per replica, a 3 s bake. The seed release
// (seed) skips canary and verification.
func (p *topology) specYAML(version string, seed bool) string {
	return specYAML(p.env, version, seed, false)
}

// specYAML is that spec for any environment; approval adds an approval gate after the
// canary (what the status benchmark polls at).
func specYAML(env, version string, seed, approval bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "environment: %s\nclusters:\n", env)
	for i, c := range clusters {
		fmt.Fprintf(&b, "  - name: %s\n    wave: %d\n", c, i+1)
	}
	fmt.Fprintf(&b, `defaults:
  replicas: %d
  health:
    http_path: /healthz
    interval: 250ms
    timeout: 1s
    retries: 3
    deadline: 20s
  rollout:
    batch_size: 1
`, replicas)
	if seed {
		b.WriteString("  canary:\n    skip: true\n  verification:\n    skip: true\n    bake: 0s\n")
	} else {
		b.WriteString("  canary:\n    replicas: 1\n    soak: 5s\n")
		if approval {
			b.WriteString("    approval:\n      required: true\n      timeout: 30m\n")
		}
		b.WriteString(`  verification:
    duration: 3s
    interval: 10ms
    min_samples: 150
    max_error_rate: 0.05
    max_latency_ratio: 3
    bake: 3s
`)
	}
	fmt.Fprintf(&b, "services:\n  - name: %s\n    image: slipway/demo\n    version: %q\n    port: 8080\n    stop_grace: 2s\n", service, version)
	return b.String()
}

// retryable: no answer (the replica is down), the replica cannot reach Temporal (5xx), or a
// rate limit.
func retryable(err error) bool {
	var pr *apiclient.Problem
	if errors.As(err, &pr) {
		return pr.Status >= 500 || pr.Status == http.StatusTooManyRequests
	}
	return err != nil
}

// start POSTs the release to the first API replica, and the same request (same
// Idempotency-Key) to the other whenever one does not answer.
func (p *topology) start(ctx context.Context, r apiclient.StartRequest) *apiclient.Release {
	t := p.t
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		rel, err := p.api[i%2].StartRelease(ctx, r)
		if err == nil {
			return rel
		}
		if !retryable(err) || time.Now().After(deadline) {
			t.Fatalf("start release via %s: %v", p.api[i%2].BaseURL(), err)
		}
		t.Logf("start release via %s: %v; again via the other replica", p.api[i%2].BaseURL(), err)
		time.Sleep(300 * time.Millisecond)
	}
}

// get reads a release through either replica (alternating, failing over); wait > 0 holds the
// request until the release ends or wait runs out.
func (p *topology) get(ctx context.Context, id string, wait time.Duration, first int) (*apiclient.Release, error) {
	var err error
	for i := range 6 {
		var rel *apiclient.Release
		if rel, err = p.api[(first+i)%2].GetRelease(ctx, id, wait); err == nil {
			return rel, nil
		}
		if !retryable(err) {
			return nil, err
		}
		time.Sleep(300 * time.Millisecond)
	}
	return nil, err
}

// waitPhase polls the release until it is in one of phases, and returns that phase. The
// release must not end before.
func (p *topology) waitPhase(ctx context.Context, id string, phases []workflows.Phase) workflows.Phase {
	t := p.t
	deadline := time.Now().Add(releaseTimeout)
	seen := []workflows.Phase{}
	for n := 0; ; n++ {
		rel, err := p.get(ctx, id, 0, n)
		switch {
		case err != nil && !retryable(err):
			t.Fatalf("release %s: %v", id, err)
		case err == nil && slices.Contains(phases, rel.Phase):
			return rel.Phase
		case err == nil && !rel.Running:
			t.Fatalf("release %s ended (%s: %s) before reaching %v (phases seen %v): the kill would not be mid-release", id, rel.Outcome, rel.Reason, phases, seen)
		case err == nil && (len(seen) == 0 || seen[len(seen)-1] != rel.Phase):
			seen = append(seen, rel.Phase)
		}
		if time.Now().After(deadline) {
			t.Fatalf("release %s not in %v after %s (phases seen %v, last error %v)", id, phases, releaseTimeout, seen, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// waitEnd follows the release through either replica until it has ended.
func (p *topology) waitEnd(ctx context.Context, id string) *apiclient.Release {
	t := p.t
	deadline := time.Now().Add(releaseTimeout)
	for n := 0; ; n++ {
		rel, err := p.get(ctx, id, 20*time.Second, n)
		if err == nil && !rel.Running && rel.Outcome != "" {
			return rel
		}
		if err != nil && !retryable(err) {
			t.Fatalf("release %s: %v", id, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("release %s did not end within %s (last error %v)", id, releaseTimeout, err)
		}
		if err != nil {
			time.Sleep(500 * time.Millisecond)
		}
	}
}

func (p *topology) expectSucceeded(rel, end *apiclient.Release) {
	p.t.Helper()
	if end.Outcome != workflows.OutcomeSucceeded {
		p.t.Fatalf("release %s ended %s, want succeeded: %s (status error %q)", rel.ID, end.Outcome, end.Reason, end.StatusError)
	}
}

// temporal returns a client of frontend i (dialled once).
func (p *topology) temporal(ctx context.Context, i int) (client.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tc[i] != nil {
		return p.tc[i], nil
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: p.fe[i],
		Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))})
	if err != nil {
		return nil, err
	}
	p.tc[i] = c
	return c, nil
}

// checkCluster: the two servers form one cluster: each frontend sees both history hosts
// (Temporal's own membership, through the database and ringpop on loopback), and both own
// shards.
func (p *topology) checkCluster(ctx context.Context) {
	t := p.t
	deadline := time.Now().Add(time.Minute)
	for {
		var problems []string
		for i, fe := range p.fe {
			hosts, err := historyHosts(ctx, fe)
			if err != nil {
				problems = append(problems, fmt.Sprintf("frontend %s: %v", fe, err))
				continue
			}
			want := []string{p.historyAddr(1), p.historyAddr(2)}
			if !slices.Equal(hosts, want) {
				problems = append(problems, fmt.Sprintf("frontend %d (%s) sees history hosts %v, want %v", i+1, fe, hosts, want))
			}
		}
		if len(problems) == 0 {
			t.Logf("one cluster: both frontends see the history hosts %s and %s", p.historyAddr(1), p.historyAddr(2))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two Temporal servers do not form one cluster: %s", strings.Join(problems, "; "))
		}
		time.Sleep(time.Second)
	}
}

// historyAddr is the history service address of Temporal server n (scripts/prod.sh ports).
func (p *topology) historyAddr(n int) string { return fmt.Sprintf("127.0.0.1:%d", p.base+10*n+3) }

// historyHosts lists the history hosts a frontend's membership knows, sorted.
func historyHosts(ctx context.Context, frontend string) ([]string, error) {
	conn, err := grpc.NewClient(frontend, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }() // a read-only admin call
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := adminservice.NewAdminServiceClient(conn).DescribeCluster(cctx, &adminservice.DescribeClusterRequest{})
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, r := range resp.GetMembershipInfo().GetRings() {
		if r.GetRole() != "history" {
			continue
		}
		for _, m := range r.GetMembers() {
			hosts = append(hosts, m.GetIdentity())
		}
	}
	slices.Sort(hosts)
	return hosts, nil
}

// killWorker SIGKILLs the worker that runs the release's activity at this moment (its
// Temporal identity starts with its pid), then starts it again.
func (p *topology) killWorker(ctx context.Context, rel *apiclient.Release) string {
	t := p.t
	pids := map[string]string{}
	for _, w := range []string{"worker-1", "worker-2"} {
		pids[p.pid(w)] = w
	}
	victim, why := "", ""
	deadline := time.Now().Add(15 * time.Second)
	for victim == "" && time.Now().Before(deadline) {
		for i := range 2 {
			c, err := p.temporal(ctx, i)
			if err != nil {
				continue
			}
			d, err := c.DescribeWorkflowExecution(ctx, rel.ID, "")
			if err != nil {
				continue
			}
			for _, a := range d.GetPendingActivities() {
				pid, _, _ := strings.Cut(a.GetLastWorkerIdentity(), "@")
				if w, ok := pids[pid]; ok && a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
					victim, why = w, fmt.Sprintf("it ran activity %s (attempt %d)", a.GetActivityType().GetName(), a.GetAttempt())
				}
			}
			break
		}
		if victim == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if victim == "" {
		victim, why = "worker-1", "no activity of the release was running on a worker at that moment"
	}
	if out, err := p.sh(time.Minute, "kill", victim); err != nil {
		t.Fatalf("kill %s: %v\n%s", victim, err, out)
	}
	time.Sleep(2 * time.Second)
	if out, err := p.sh(3*time.Minute, "start", victim); err != nil {
		t.Fatalf("start %s: %v\n%s", victim, err, out)
	}
	return fmt.Sprintf("%s SIGKILLed (%s), started again 2 s later", victim, why)
}

// killTemporal SIGKILLs the Temporal server that owns the release's history shard, then
// starts it again after 5 s: meanwhile the other server takes its shards over.
func (p *topology) killTemporal(ctx context.Context, rel *apiclient.Release) string {
	t := p.t
	victim, shard := 0, ""
	for i := range 2 {
		conn, err := grpc.NewClient(p.fe[i], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := adminservice.NewAdminServiceClient(conn).DescribeMutableState(cctx, &adminservice.DescribeMutableStateRequest{
			Namespace: "default", Execution: &common.WorkflowExecution{WorkflowId: rel.ID},
		})
		cancel()
		_ = conn.Close() // one call done
		if err != nil {
			t.Logf("describe mutable state via %s: %v", p.fe[i], err)
			continue
		}
		for n := 1; n <= 2; n++ {
			if resp.GetHistoryAddr() == p.historyAddr(n) {
				victim, shard = n, resp.GetShardId()
			}
		}
		break
	}
	why := fmt.Sprintf("it owned the release's shard %s", shard)
	if victim == 0 {
		victim, why = 1, "the owner of the release's shard could not be found"
	}
	name := fmt.Sprintf("temporal-%d", victim)
	// The test's own client of that frontend goes with it.
	p.mu.Lock()
	if c := p.tc[victim-1]; c != nil {
		c.Close()
		p.tc[victim-1] = nil
	}
	p.mu.Unlock()
	if out, err := p.sh(time.Minute, "kill", name); err != nil {
		t.Fatalf("kill %s: %v\n%s", name, err, out)
	}
	time.Sleep(5 * time.Second)
	if out, err := p.sh(3*time.Minute, "start", name); err != nil {
		t.Fatalf("start %s: %v\n%s", name, err, out)
	}
	return fmt.Sprintf("%s SIGKILLed (%s), started again 5 s later", name, why)
}

// restartPostgres stops PostgreSQL the way a crash does (immediate shutdown: no checkpoint,
// every connection cut) and starts it again.
func (p *topology) restartPostgres(_ context.Context, _ *apiclient.Release) string {
	began := time.Now()
	if out, err := p.sh(2*time.Minute, "restart", "postgres"); err != nil {
		p.t.Fatalf("restart postgres: %v\n%s", err, out)
	}
	return fmt.Sprintf("PostgreSQL restarted (pg_ctl restart -m immediate) in %s", time.Since(began).Round(100*time.Millisecond))
}

// apiFailover follows the release the way two clients would on API replica 2: one holds
// GET ?wait, one reads the SSE stream. Once the release is in one of phases, replica 2 is
// SIGKILLed; both clients go on through replica 1 (the stream resuming after the last
// event it had, Last-Event-ID), and must see the release end there. Replica 2 is started
// again afterwards.
func (p *topology) apiFailover(ctx context.Context, rel *apiclient.Release, phases []workflows.Phase) (*apiclient.Release, string) {
	t := p.t
	type result struct {
		rel      *apiclient.Release
		switched bool
		err      error
	}
	// The ?wait client.
	waitDone := make(chan result, 1)
	go func() {
		r := result{}
		deadline := time.Now().Add(releaseTimeout)
		i := 1
		for time.Now().Before(deadline) {
			got, err := p.api[i].GetRelease(ctx, rel.ID, 5*time.Minute)
			if err == nil && !got.Running {
				r.rel = got
				waitDone <- r
				return
			}
			if err != nil && !retryable(err) {
				r.err = err
				waitDone <- r
				return
			}
			if err != nil && i == 1 {
				r.switched = true
				i = 0
			}
			time.Sleep(200 * time.Millisecond)
		}
		r.err = fmt.Errorf("no outcome within %s", releaseTimeout)
		waitDone <- r
	}()
	// The SSE client.
	var mu sync.Mutex
	var seqs []int
	last := 0
	var outcome *apiclient.Release
	onEvent := func(ev apiclient.StreamEvent) error {
		mu.Lock()
		defer mu.Unlock()
		switch ev.Type {
		case apiclient.EventPhase:
			seqs = append(seqs, ev.Event.Seq)
			last = ev.Event.Seq
		case apiclient.EventOutcome:
			outcome = ev.Release
		}
		return nil
	}
	sctx, cancelStream := context.WithCancel(ctx)
	streamDone := make(chan error, 1)
	go func() { streamDone <- p.api[1].Follow(sctx, rel.ID, 0, onEvent) }()

	phase := p.waitPhase(ctx, rel.ID, phases)
	mu.Lock()
	before := len(seqs)
	mu.Unlock()
	if out, err := p.sh(time.Minute, "kill", "api-2"); err != nil {
		t.Fatalf("kill api-2: %v\n%s", err, out)
	}
	// apiclient.Follow retries the address it was given: the client moves to replica 1.
	cancelStream()
	_ = <-streamDone // cancelled just above: its error is that cancel
	mu.Lock()
	resumeAfter := last
	mu.Unlock()
	if err := p.api[0].Follow(ctx, rel.ID, resumeAfter, onEvent); err != nil {
		t.Fatalf("SSE on api-1 after api-2 was killed: %v", err)
	}
	w := <-waitDone
	if w.err != nil {
		t.Fatalf("?wait client: %v", w.err)
	}
	if !w.switched {
		t.Errorf("the ?wait client held on api-2 did not notice it die (it got %s from api-2?)", w.rel.Outcome)
	}
	if outcome == nil || outcome.Outcome != w.rel.Outcome {
		t.Errorf("SSE outcome %v, ?wait outcome %s", outcome, w.rel.Outcome)
	}
	// Every event of the timeline exactly once, in order, across the two replicas.
	if outcome != nil && outcome.Status != nil {
		var want []int
		for _, ev := range outcome.Status.Events {
			want = append(want, ev.Seq)
		}
		slices.Sort(want)
		if !slices.Equal(seqs, want) {
			t.Errorf("SSE events seen %v, the timeline has %v", seqs, want)
		}
	}
	if out, err := p.sh(3*time.Minute, "start", "api-2"); err != nil {
		t.Fatalf("start api-2: %v\n%s", err, out)
	}
	return w.rel, fmt.Sprintf("in phase %s: api-2 SIGKILLed under a ?wait and an SSE stream (%d events before, resumed after seq %d on api-1, %d in all), started again after the release",
		phase, before, resumeAfter, len(seqs))
}

// pid reads a process's pid file.
func (p *topology) pid(name string) string {
	b, err := os.ReadFile(filepath.Join(p.dir, "state", "run", name+".pid"))
	if err != nil {
		p.t.Fatalf("pid of %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

// allUp: every process of the topology runs at the end.
func (p *topology) allUp() {
	out, err := p.sh(time.Minute, "status")
	if err != nil {
		p.t.Fatalf("prod.sh status: %v\n%s", err, out)
	}
	if strings.Contains(out, "stopped") {
		p.t.Errorf("a process of the topology is not running:\n%s", out)
	}
}

// noneRunning: once every release has ended, no workflow is left running (the locks end
// through a worker: give them a moment).
func (p *topology) noneRunning(ctx context.Context) {
	t := p.t
	c, err := p.temporal(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: "ExecutionStatus = 'Running'", PageSize: 100})
		if err == nil && len(resp.GetExecutions()) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var ids []string
			for _, e := range resp.GetExecutions() {
				ids = append(ids, e.GetExecution().GetWorkflowId())
			}
			t.Errorf("workflows still running a minute after the last release ended: %v (error %v)", ids, err)
			return
		}
		time.Sleep(time.Second)
	}
}

// checkEngine: the engine runs what the last release asked for and nothing else: the
// service's replicas at version on every cluster, no probe container, nothing running at
// another version (the previous revision is kept stopped).
func (p *topology) checkEngine(ctx context.Context, version string) {
	t := p.t
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "label="+engine.LabelEnvironment+"="+p.env,
		"--format", `{{.Names}}	{{.State}}	{{.Label "`+engine.LabelCluster+`"}}	{{.Label "`+engine.LabelVersion+`"}}`).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	running := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			continue
		}
		switch {
		case strings.HasPrefix(f[0], "slipway-probe."):
			t.Errorf("probe container left: %s (%s)", f[0], f[1])
		case f[1] == "running" && f[3] != version:
			t.Errorf("%s runs version %s, want %s", f[0], f[3], version)
		case f[1] == "running":
			running[f[2]]++
		}
	}
	for _, c := range clusters {
		if running[c] != replicas {
			t.Errorf("cluster %s runs %d replicas of %s %s, want %d:\n%s", c, running[c], service, version, replicas, out)
		}
	}
}

// removeEnvironment removes the environment's containers and networks (the service the
// releases deployed) before the leftover check.
func (p *topology) removeEnvironment() { removeEnvironment(p.t, p.env) }

// removeEnvironment removes env's containers and networks from the engine (what a release's
// stable replicas leave by design).
func removeEnvironment(t testing.TB, env string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+engine.LabelEnvironment+"="+env).Output()
	// Stopped first, then removed, 16 at a time: Debian's dockerd 20.10 crashed (a nil
	// pointer in the health check's exec) when containers with a HEALTHCHECK were
	// force-removed while being connected and disconnected by the dozen. (The stale endpoint
	// count that can keep an environment's network from being removed comes from elsewhere:
	// BENCHMARKS.md, runs 5-7 of the 120-service release.)
	for ids := range slices.Chunk(strings.Fields(string(out)), 16) {
		_ = exec.CommandContext(ctx, "docker", append([]string{"stop", "-t", "2"}, ids...)...).Run()
		if b, err := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f", "-v"}, ids...)...).CombinedOutput(); err != nil {
			t.Errorf("remove containers: %v: %s", err, b)
		}
	}
	for _, c := range clusters {
		name := engine.NetworkName(env, c)
		if exec.CommandContext(ctx, "docker", "network", "inspect", name).Run() == nil {
			if b, err := exec.CommandContext(ctx, "docker", "network", "rm", name).CombinedOutput(); err != nil {
				t.Errorf("remove network %s: %v: %s", name, err, b)
			}
		}
	}
}
