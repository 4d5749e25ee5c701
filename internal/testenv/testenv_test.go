package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/engine"
)

func TestMain(m *testing.M) { Main(m) }

// recorder is a testing.TB that records failures instead of failing the real test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "module github.com/slipwayhq/slipway") {
		t.Fatalf("%s/go.mod is not Slipway's", root)
	}
	if _, err := os.Stat(filepath.Join(root, "examples", "demo-service", "build-images.sh")); err != nil {
		t.Fatal(err)
	}
}

var dnsLabel = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

func TestUniqueEnvIsAShortUniqueDNSLabel(t *testing.T) {
	RequireDocker(t) // UniqueEnv's cleanup looks at the engine
	seen := map[string]bool{}
	for range 50 {
		env := UniqueEnv(t)
		if !dnsLabel.MatchString(env) || len(env) > 20 {
			t.Fatalf("%q is not a short DNS label", env)
		}
		if !strings.HasPrefix(env, "tuniqueenvi-") {
			t.Fatalf("%q does not carry a hint of the test name", env)
		}
		if seen[env] {
			t.Fatalf("%q handed out twice", env)
		}
		seen[env] = true
	}
}

func TestDemoImagesArePresent(t *testing.T) {
	DemoImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tag := range DemoTags {
		out, err := docker(ctx, "", nil, "image", "inspect", "--format", "{{json .Config.Env}} {{.Config.Healthcheck.Test}}", DemoImage(tag))
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if !strings.Contains(out, `"DEMO_VERSION=`+tag+`"`) {
			t.Errorf("%s: env %s", tag, out)
		}
		if !strings.Contains(out, "-healthcheck") {
			t.Errorf("%s: no -healthcheck HEALTHCHECK: %s", tag, out)
		}
	}
}

// TestAssertNoContainersFindsAndRemovesLeftovers leaves a container and a network behind on
// purpose and checks the assertion reports and removes both.
func TestAssertNoContainersFindsAndRemovesLeftovers(t *testing.T) {
	DemoImages(t)
	env := UniqueEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	netName := engine.NetworkName(env, "c1")
	if _, err := docker(ctx, "", nil, "network", "create", netName); err != nil {
		t.Fatal(err)
	}
	name := engine.Key{Environment: env, Cluster: "c1", Service: "web", Version: "1.0.0"}.ContainerName()
	if _, err := docker(ctx, "", nil, "create", "--name", name, "--label", engine.LabelEnvironment+"="+env, DemoImage("1.0.0")); err != nil {
		t.Fatal(err)
	}

	rec := &recorder{TB: t}
	AssertNoContainers(rec, env)
	all := strings.Join(rec.errors, "\n")
	if len(rec.errors) != 2 || !strings.Contains(all, name) || !strings.Contains(all, netName) {
		t.Fatalf("want the container and the network reported, got:\n%s", all)
	}
	// They are gone now: a second check passes.
	rec = &recorder{TB: t}
	AssertNoContainers(rec, env)
	if len(rec.errors) != 0 {
		t.Fatalf("leftovers not removed: %v", rec.errors)
	}
}

func TestSecondDaemon(t *testing.T) {
	host := SecondDaemon(t)
	if !strings.HasPrefix(host, "unix:///") {
		t.Fatalf("host %q", host)
	}
	if again := SecondDaemon(t); again != host {
		t.Fatalf("under Main the daemon is shared: %q then %q", host, again)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Its own engine: its own root directory, and the demo images are there.
	root, err := docker(ctx, host, nil, "info", "--format", "{{.DockerRootDir}}")
	if err != nil {
		t.Fatal(err)
	}
	mainRoot, err := docker(ctx, "", nil, "info", "--format", "{{.DockerRootDir}}")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(root) == strings.TrimSpace(mainRoot) {
		t.Fatalf("same data root as the default engine: %s", root)
	}
	for _, tag := range DemoTags {
		if _, err := docker(ctx, host, nil, "image", "inspect", DemoImage(tag)); err != nil {
			t.Errorf("%s not loaded: %v", tag, err)
		}
	}
	if got := runningDaemons(); !slices.Contains(got, host) {
		t.Fatalf("running daemons %v", got)
	}

	// A container there runs, is reachable from this host on its own bridge, and is found
	// by the leftover check.
	env := UniqueEnv(t)
	name := "slipway." + env + ".c2.web.1.0.0.0"
	if _, err := docker(ctx, host, nil, "run", "-d", "--name", name, "--label", engine.LabelEnvironment+"="+env, DemoImage("1.0.0")); err != nil {
		t.Fatal(err)
	}
	ip, err := docker(ctx, host, nil, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimSpace(ip), "10.199.") {
		t.Fatalf("container address %q is not on the daemon's own bridge", ip)
	}
	rec := &recorder{TB: t}
	AssertNoContainers(rec, env)
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], name) || !strings.Contains(rec.errors[0], host) {
		t.Fatalf("leftover on the second daemon not reported: %v", rec.errors)
	}
}

// TestSecondDaemonPerTest checks the path without Main: a daemon of its own, stopped and
// cleaned up (bridge, directory) by the test's cleanup.
func TestSecondDaemonPerTest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops a dockerd")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "a second dockerd needs root")
	}
	DemoImages(t)
	d, err := startDaemon()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := docker(ctx, d.host, nil, "network", "create", "leftover"); err != nil {
		t.Fatal(err)
	}
	if _, err := docker(ctx, d.host, nil, "create", DemoImage("1.0.0")); err != nil {
		t.Fatal(err)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", d.dir, err)
	}
	if out, err := ipCmd("link", "show", d.bridge); err == nil {
		t.Errorf("bridge %s still there: %s", d.bridge, out)
	}
	if out, err := ipCmd("-o", "-4", "addr", "show"); err != nil {
		t.Fatal(err)
	} else if strings.Contains(out, fmt.Sprintf(" 10.%d.", 200+d.idx)) {
		t.Errorf("a bridge of the daemon's pool is still there:\n%s", out)
	}
	for _, h := range runningDaemons() {
		if h == d.host {
			t.Errorf("%s still listed as running", h)
		}
	}
}

func TestAssertUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusNotFound) // any answer counts as reachable
	}))
	defer srv.Close()
	rec := &recorder{TB: t}
	AssertUnreachable(rec, srv.Listener.Addr().String())
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "404") {
		t.Fatalf("a listening server not reported as reachable: %v", rec.errors)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close() // its address is now one nothing listens on
	rec = &recorder{TB: t}
	start := time.Now()
	AssertUnreachable(rec, closed)
	if len(rec.errors) != 0 {
		t.Fatalf("a closed port reported as reachable: %v", rec.errors)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a refused connection took %s", d)
	}
}

// runningDaemon returns the daemon this process runs at host.
func runningDaemon(t *testing.T, host string) *daemon {
	t.Helper()
	daemonsMu.Lock()
	defer daemonsMu.Unlock()
	for _, d := range running {
		if d.host == host {
			return d
		}
	}
	t.Fatalf("no running daemon at %s", host)
	return nil
}

// setnsSyscall is setns(2)'s number (the syscall package lacks SYS_SETNS on amd64).
var setnsSyscall = map[string]uintptr{"amd64": 308, "arm64": 268}

var errSetnsUnknown = errors.New("setns: syscall number unknown on " + runtime.GOARCH)

// getInNetns sends GET path to addr from inside the network namespace bound at nsPath and
// returns the response's status line. A thread locked to this goroutine enters the namespace
// for the dial (net.Dial creates the socket on the calling thread; http.Transport would dial
// from another goroutine) and goes back to its own namespace before it is unlocked; should it
// fail to, it stays locked and the runtime ends the thread with the goroutine.
func getInNetns(nsPath, addr, path string) (string, error) {
	nr, ok := setnsSyscall[runtime.GOARCH]
	if !ok {
		return "", errSetnsUnknown
	}
	setns := func(f *os.File) error {
		if _, _, errno := syscall.RawSyscall(nr, f.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
			return fmt.Errorf("setns %s: %w", f.Name(), errno)
		}
		return nil
	}
	type result struct {
		status string
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{"", err}
			return
		}
		defer func() { _ = own.Close() }()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{"", err}
			return
		}
		defer func() { _ = target.Close() }()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{"", err}
			return
		}
		conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if setns(own) == nil {
			runtime.UnlockOSThread()
		}
		if err != nil {
			ch <- result{"", err}
			return
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			ch <- result{"", err}
			return
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	r := <-ch
	return r.status, r.err
}

// TestIsolatedDaemon runs a demo container on a user network of the isolated daemon: the API
// socket, exec and logs work; the container answers inside the daemon's namespace but not from
// the test process.
func TestIsolatedDaemon(t *testing.T) {
	host := IsolatedDaemon(t)
	if !strings.HasPrefix(host, "unix:///") || len(strings.TrimPrefix(host, "unix://")) >= 108 {
		t.Fatalf("host %q", host)
	}
	if again := IsolatedDaemon(t); again != host {
		t.Fatalf("under Main the isolated daemon is shared: %q then %q", host, again)
	}
	d := runningDaemon(t, host)
	if d.netns == "" || !netnsExists(d.netns) {
		t.Fatalf("daemon at %s has no namespace (%q)", host, d.netns)
	}
	// dockerd (nsenter execs it) really is in that namespace, not in ours.
	if pid, err := readPid(filepath.Join(d.dir, "docker.pid")); err != nil || pid != d.cmd.Process.Pid || !isProcess(pid, "dockerd") {
		t.Fatalf("dockerd pid file %d (%v), started process %d", pid, err, d.cmd.Process.Pid)
	}
	procs, err := netnsProcs(filepath.Join(netnsDir, d.netns))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(procs, d.cmd.Process.Pid) {
		t.Fatalf("dockerd (pid %d) is not in namespace %s (its processes: %v)", d.cmd.Process.Pid, d.netns, procs)
	}
	if slices.Contains(procs, os.Getpid()) {
		t.Fatalf("the test process is in namespace %s", d.netns)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := docker(ctx, host, nil, "version", "--format", "{{.Server.Version}}"); err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("docker version: %q %v", out, err)
	}
	if _, err := docker(ctx, host, nil, "image", "inspect", DemoImage("1.0.0")); err != nil {
		t.Fatalf("demo image not loaded: %v", err)
	}

	env := UniqueEnv(t)
	netName := engine.NetworkName(env, "c1")
	if _, err := docker(ctx, host, nil, "network", "create", "--driver", "bridge", "--label", engine.LabelEnvironment+"="+env, netName); err != nil {
		t.Fatal(err)
	}
	name := engine.Key{Environment: env, Cluster: "c1", Service: "web", Version: "1.0.0"}.ContainerName()
	t.Cleanup(func() { // before UniqueEnv's leftover check
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := docker(ctx, host, nil, "rm", "-f", "-v", name); err != nil {
			t.Errorf("removing the container: %v", err)
		}
		if _, err := docker(ctx, host, nil, "network", "rm", netName); err != nil {
			t.Errorf("removing the network: %v", err)
		}
	})
	if _, err := docker(ctx, host, nil, "run", "-d", "--name", name, "--network", netName,
		"--label", engine.LabelEnvironment+"="+env, DemoImage("1.0.0")); err != nil {
		t.Fatal(err)
	}
	out, err := docker(ctx, host, nil, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name)
	if err != nil {
		t.Fatal(err)
	}
	ips := strings.Fields(out)
	if len(ips) != 1 || !mustCIDR(fmt.Sprintf("10.%d.0.0/16", 200+d.idx)).Contains(net.ParseIP(ips[0])) {
		t.Fatalf("container addresses %q, want one in the daemon's pool 10.%d.0.0/16", out, 200+d.idx)
	}
	addr := net.JoinHostPort(ips[0], "8080")

	// exec works (and tells when the server listens); so do logs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := docker(ctx, host, nil, "exec", name, "/demo-service", "-healthcheck")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker exec healthcheck: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs, err := exec.CommandContext(ctx, "docker", "-H", host, "logs", name).CombinedOutput() // the demo logs to stderr
	if err != nil || !strings.Contains(string(logs), "listening on :8080") {
		t.Fatalf("docker logs: %v\n%s", err, logs)
	}

	// Inside the daemon's namespace the address answers...
	status, err := getInNetns(filepath.Join(netnsDir, d.netns), addr, "/healthz")
	t.Logf("GET http://%s/healthz inside %s: %s", addr, d.netns, status)
	if errors.Is(err, errSetnsUnknown) {
		t.Logf("not checked that the container answers inside the namespace: %v", err)
	} else if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("GET http://%s/healthz inside %s: %q %v", addr, d.netns, status, err)
	}
	// ...from the test process it does not.
	AssertUnreachable(t, addr)
	AssertUnreachable(t, net.JoinHostPort(fmt.Sprintf("10.199.%d.1", d.idx), "8080")) // nor the daemon's bridge
}

// TestIsolatedDaemonPerTest checks the path without Main: IsolatedDaemon starts a daemon of the
// (sub)test's own, and its cleanup leaves no container process, network, dockerd, containerd,
// namespace, route, bridge or directory behind.
func TestIsolatedDaemonPerTest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops a dockerd")
	}
	var (
		d                                       *daemon
		ns                                      syscall.Stat_t
		dockerdPid, containerdPid, containerPid int
	)
	t.Run("run", func(t *testing.T) {
		daemonsMu.Lock()
		wasMain := mainActive
		mainActive = false
		daemonsMu.Unlock()
		host := IsolatedDaemon(t)
		daemonsMu.Lock()
		mainActive = wasMain
		daemonsMu.Unlock()
		if sharedIsolated.d != nil && sharedIsolated.d.host == host {
			t.Fatalf("got the shared daemon %s", host)
		}
		d = runningDaemon(t, host)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := docker(ctx, d.host, nil, "network", "create", "leftover"); err != nil {
			t.Fatal(err)
		}
		if _, err := docker(ctx, d.host, nil, "run", "-d", "--network", "leftover", DemoImage("1.0.0")); err != nil {
			t.Fatal(err)
		}
		out, err := docker(ctx, d.host, nil, "ps", "-q")
		if err != nil || len(strings.Fields(out)) != 1 {
			t.Fatalf("ps: %q %v", out, err)
		}
		out, err = docker(ctx, d.host, nil, "inspect", "--format", "{{.State.Pid}}", strings.TrimSpace(out))
		if err != nil {
			t.Fatal(err)
		}
		if containerPid, err = strconv.Atoi(strings.TrimSpace(out)); err != nil || !alive(containerPid) {
			t.Fatalf("container pid %q: %v", out, err)
		}
		if err := syscall.Stat(filepath.Join(netnsDir, d.netns), &ns); err != nil {
			t.Fatal(err)
		}
		dockerdPid = d.cmd.Process.Pid
		if containerdPid, err = readPid(filepath.Join(d.dir, "exec", "containerd", "containerd.pid")); err != nil {
			t.Fatal(err)
		}
		// the subtest's cleanup stops the daemon
	})
	if d == nil || containerdPid == 0 {
		t.FailNow()
	}

	var err error
	if netnsExists(d.netns) {
		t.Errorf("namespace %s still there", d.netns)
	}
	if out, err := ipCmd("netns", "list"); err != nil {
		t.Error(err)
	} else {
		for _, line := range strings.Split(out, "\n") { // slpns3 (id: 0)
			if f := strings.Fields(line); len(f) > 0 && f[0] == d.netns {
				t.Errorf("ip netns list still shows %s", line)
			}
		}
	}
	// Nothing runs in the namespace any more, so the kernel has freed it (and its bridges).
	var left []int
	for range 50 {
		if left, err = procsInNetns(ns); err != nil || len(left) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || len(left) > 0 {
		t.Errorf("processes still in the deleted namespace: %v %v", left, err)
	}
	if isProcess(dockerdPid, "dockerd") {
		t.Errorf("dockerd %d still running", dockerdPid)
	}
	if isProcess(containerdPid, "containerd") {
		t.Errorf("containerd %d still running", containerdPid)
	}
	if alive(containerPid) {
		t.Errorf("the container's process %d still running", containerPid)
	}
	if _, err := os.Stat(d.dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", d.dir, err)
	}
	if out, err := ipCmd("link", "show", d.bridge); err == nil {
		t.Errorf("bridge %s on the host: %s", d.bridge, out)
	}
	assertNoSlotRoutes(t, d.idx)
	for _, h := range runningDaemons() {
		if h == d.host {
			t.Errorf("%s still listed as running", h)
		}
	}
}

// assertNoSlotRoutes fails t if the host still has a route to slot idx's networks.
func assertNoSlotRoutes(t *testing.T, idx int) {
	t.Helper()
	out, err := ipCmd("-4", "route", "show", "table", "all")
	if err != nil {
		t.Fatal(err)
	}
	bridgeNet, pool := slotNets(idx)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, bridgeNet) || strings.Contains(line, pool) {
			t.Errorf("route to slot %d's networks left: %s", idx, line)
		}
	}
}

// TestSweepStaleDeletesNamespaces leaves what a killed test process leaves (a slot whose owner
// is gone, its namespace with a process in it; a namespace whose directory is gone) and checks
// the next start's sweep deletes both namespaces.
func TestSweepStaleDeletesNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		unavailable(t, "ip netns needs root")
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "no "+tool+" on PATH")
		}
	}
	claim := func() *daemon {
		t.Helper()
		unlock, err := lockBase()
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		d, err := claimSlot(true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { // if the sweep did not: only while the slot is still ours or orphaned
			unlock, err := lockBase()
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			owner, err := readPid(filepath.Join(d.dir, "owner.pid"))
			_, statErr := os.Stat(d.dir)
			if (err == nil && owner == os.Getpid()) || (os.IsNotExist(statErr) && netnsExists(d.netns)) {
				_ = cleanupSlot(d.idx)
			}
		})
		return d
	}
	sweep := func() {
		t.Helper()
		unlock, err := lockBase()
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		sweepStale()
	}

	// A slot whose owner has exited, with a process still in its namespace.
	stale := claim()
	sleeper := exec.Command("nsenter", "--net="+filepath.Join(netnsDir, stale.netns), "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = sleeper.Process.Kill() // ours; a no-op once reaped
		<-waited
	})
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale.dir, "owner.pid"), []byte(strconv.Itoa(gone.ProcessState.Pid())), 0o600); err != nil {
		t.Fatal(err)
	}
	// A namespace whose slot directory is gone.
	orphan := claim()
	if err := os.RemoveAll(orphan.dir); err != nil {
		t.Fatal(err)
	}

	sweep()
	for _, d := range []*daemon{stale, orphan} {
		if netnsExists(d.netns) {
			t.Errorf("namespace %s not deleted by the sweep", d.netns)
		}
		assertNoSlotRoutes(t, d.idx)
		if _, err := os.Stat(d.dir); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", d.dir, err)
		}
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Errorf("the process in namespace %s was not killed", stale.netns)
	}
}
