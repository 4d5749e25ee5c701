package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A second daemon lives in daemonBase/<idx> (short paths: a unix socket path must stay under
// 108 bytes) with its own bridge slpbr<idx> on 10.199.<idx>.1/24 and its own address pool
// 10.<200+idx>.0.0/16 for user networks, so neither clashes with the default engine (which
// allocates from 172.16.0.0/12 and 192.168.0.0/16) nor with another second daemon.
//
// An isolated daemon (IsolatedDaemon) of slot idx runs in the network namespace slpns<idx>
// (ip netns, so /var/run/netns/slpns<idx>); its bridge and the bridges of its user networks
// live in that namespace, which has no link to the host's. The host gets "unreachable" routes
// for the slot's two networks: without them a packet to a container address would follow the
// host's default route, and whatever is out there may answer (here, a proxy on the default
// gateway answers "404" to an HTTP request for any address).
const (
	daemonBase = "/tmp/slipway-dockerd"
	maxDaemons = 50
	netnsDir   = "/var/run/netns" // where ip netns keeps the named namespaces
)

func slotBridge(idx int) string { return fmt.Sprintf("slpbr%d", idx) }
func slotNetns(idx int) string  { return fmt.Sprintf("slpns%d", idx) }

// slotNets returns the slot's bridge network and its address pool.
func slotNets(idx int) (bridgeNet, pool string) {
	return fmt.Sprintf("10.199.%d.0/24", idx), fmt.Sprintf("10.%d.0.0/16", 200+idx)
}

// daemon is a second dockerd started by this process.
type daemon struct {
	idx    int
	dir    string
	bridge string
	netns  string // "" or the network namespace dockerd runs in (its bridge is in there too)
	host   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
}

var (
	daemonsMu  sync.Mutex
	mainActive bool                // Main runs the tests: share one daemon per process
	running    = map[int]*daemon{} // started and not stopped, by slot

	sharedSecond   = sharedDaemon{what: "second Docker daemon"}
	sharedIsolated = sharedDaemon{what: "isolated Docker daemon", isolated: true}
)

// sharedDaemon is the daemon of one kind that the tests of a process share under Main.
type sharedDaemon struct {
	what     string
	isolated bool
	mu       sync.Mutex // held while the daemon starts
	d        *daemon
	err      error
}

// Main runs the package's tests and then stops the second daemons they shared (the
// SecondDaemon one and the IsolatedDaemon one). Use it from TestMain in every package that
// calls SecondDaemon or IsolatedDaemon:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Without it, SecondDaemon starts one daemon per test and stops it in the test's cleanup,
// which is correct but costs a few seconds per test.
func Main(m *testing.M) {
	daemonsMu.Lock()
	mainActive = true
	daemonsMu.Unlock()
	code := m.Run()
	for _, s := range []*sharedDaemon{&sharedSecond, &sharedIsolated} {
		s.mu.Lock()
		d := s.d
		s.d = nil
		s.mu.Unlock()
		if d == nil {
			continue
		}
		if err := d.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stopping the %s: %v\n", s.what, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// SecondDaemon returns the DOCKER_HOST-style address (unix://...) of a second Docker daemon
// beside the default one: its own socket, --data-root, --exec-root, --pidfile, containerd
// namespace, bridge (-b) and address pool, with --iptables=false. The demo images
// (DemoImages) are loaded into it. Under Main one daemon is shared by the whole test
// process and stopped when the tests end; otherwise each call starts one and stops it in
// t's cleanup. Stopping removes every container and network on it, the bridge and the
// directories.
//
// It skips t (fails it in CI, see the package doc) when not root or dockerd is missing.
// A daemon left behind by a killed test process is cleaned up by the next start.
func SecondDaemon(t testing.TB) string {
	t.Helper()
	return sharedSecond.get(t)
}

// IsolatedDaemon returns the DOCKER_HOST-style address (unix:///...) of a second Docker daemon
// that runs in a network namespace of its own (ip netns), so the test process can reach it only
// through its API socket: an HTTP request to one of its containers' addresses fails. The demo images
// (DemoImages) are loaded into it. Under testenv.Main one is shared per test process and stopped (and
// its namespace deleted) when the tests end; otherwise one per call, stopped in t.Cleanup.
//
// Apart from the namespace it is set up like SecondDaemon's (own socket, roots, containerd
// namespace, bridge slpbr<N> on 10.199.<N>.1/24, address pool 10.<200+N>.0.0/16,
// --iptables=false), except that its bridges are inside the namespace slpns<N>, which has no
// link to the host's: besides them only lo (up) and the containers' veths. The host gets
// "unreachable" routes to those two networks, so a request to a container address fails at
// once with "no route to host" rather than following the default route to whatever may
// answer there. dockerd is started with nsenter --net (not ip netns exec, which remounts
// /sys and breaks dockerd's cgroup checks). Stopping removes its containers and networks,
// stops it, kills whatever process is still in the namespace, deletes the routes and the
// namespace; what a killed test process left is removed by the next start. It skips t
// (fails it in CI) when not root or dockerd, ip (iproute2) or nsenter (util-linux) is
// missing.
func IsolatedDaemon(t testing.TB) string {
	t.Helper()
	return sharedIsolated.get(t)
}

// get returns the host of s's kind of daemon for t: the shared one under Main (started on
// first use), else one started for t and stopped in its cleanup.
func (s *sharedDaemon) get(t testing.TB) string {
	t.Helper()
	integration(t, "a "+s.what)
	if os.Geteuid() != 0 {
		unavailable(t, "a second dockerd needs root")
	}
	tools := []string{"dockerd", "ip"}
	if s.isolated {
		tools = append(tools, "nsenter")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "no "+tool+" on PATH: cannot start a "+s.what)
		}
	}
	DemoImages(t)

	daemonsMu.Lock()
	share := mainActive
	daemonsMu.Unlock()
	if share {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.d == nil && s.err == nil {
			s.d, s.err = launchDaemon(s.isolated)
		}
		if s.err != nil {
			t.Fatalf("testenv: %s: %v", s.what, s.err)
		}
		select {
		case <-s.d.exited:
			t.Fatalf("testenv: the shared %s has exited; its log:\n%s", s.what, s.d.logTail())
		default:
		}
		return s.d.host
	}

	d, err := launchDaemon(s.isolated)
	if err != nil {
		t.Fatalf("testenv: %s: %v", s.what, err)
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("testenv: stopping the %s: %v", s.what, err)
		}
	})
	return d.host
}

// AssertUnreachable fails t unless an HTTP GET from this process to addr (host:port) fails within a
// couple of seconds (connection refused, no route, timeout all count as unreachable).
//
// The request goes straight to addr (no proxy from the environment); any HTTP answer, whatever
// its status, means addr is reachable.
func AssertUnreachable(t testing.TB, addr string) {
	t.Helper()
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return // unreachable
	}
	resp.Body.Close()
	t.Errorf("testenv: %s is reachable from the test process: GET / answered %s", addr, resp.Status)
}

// runningDaemons returns the hosts of the second daemons this process runs.
func runningDaemons() []string {
	daemonsMu.Lock()
	defer daemonsMu.Unlock()
	var hosts []string
	for _, d := range running {
		hosts = append(hosts, d.host)
	}
	sort.Strings(hosts)
	return hosts
}

// lockBase takes the machine-wide lock that serialises claiming and sweeping daemon slots.
func lockBase() (unlock func(), err error) {
	if err := os.MkdirAll(daemonBase, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(daemonBase, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close() // the lock was not taken: nothing to release
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close() // closing the descriptor releases the lock anyway
	}, nil
}

// startDaemon sweeps stale daemons, claims a free slot and starts dockerd in it.
func startDaemon() (*daemon, error) { return launchDaemon(false) }

func launchDaemon(isolated bool) (*daemon, error) {
	unlock, err := lockBase()
	if err != nil {
		return nil, err
	}
	sweepStale()
	d, err := claimSlot(isolated)
	unlock()
	if err != nil {
		return nil, err
	}
	if err := d.start(); err != nil {
		if stopErr := d.stop(); stopErr != nil {
			err = fmt.Errorf("%w (cleaning up: %v)", err, stopErr)
		}
		return nil, err
	}
	return d, nil
}

// claimSlot finds an index whose bridge, namespace and subnets are free, creates the bridge
// on the host, or for an isolated daemon the namespace (the atomic claim), and the directory
// holding the owner's pid. For an isolated daemon it then adds the host's unreachable routes
// to the slot's networks, brings lo up in the namespace and makes the bridge in there.
// Called with the base lock held.
func claimSlot(isolated bool) (*daemon, error) {
	routes, err := hostRoutes()
	if err != nil {
		return nil, err
	}
	for idx := range maxDaemons {
		bridgeNet, pool := slotNets(idx)
		if overlapsAny(mustCIDR(bridgeNet), routes) || overlapsAny(mustCIDR(pool), routes) {
			continue
		}
		bridge := slotBridge(idx)
		if _, err := ipCmd("link", "show", bridge); err == nil {
			continue // taken
		}
		if netnsExists(slotNetns(idx)) {
			continue // taken by an isolated daemon
		}
		d := &daemon{idx: idx, bridge: bridge, dir: filepath.Join(daemonBase, strconv.Itoa(idx)), exited: make(chan struct{})}
		d.host = "unix://" + filepath.Join(d.dir, "docker.sock")
		if isolated {
			d.netns = slotNetns(idx)
			if _, err := ipCmd("netns", "add", d.netns); err != nil {
				return nil, err
			}
		} else if _, err := ipCmd("link", "add", "name", bridge, "type", "bridge"); err != nil {
			return nil, err
		}
		err := os.RemoveAll(d.dir)
		if err == nil {
			err = os.MkdirAll(d.dir, 0o700)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(d.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600)
		}
		if err == nil && isolated {
			for _, n := range []string{bridgeNet, pool} {
				if err == nil {
					_, err = ipCmd("route", "add", "unreachable", n)
				}
			}
			if err == nil {
				_, err = d.ip("link", "set", "lo", "up")
			}
			if err == nil {
				_, err = d.ip("link", "add", "name", bridge, "type", "bridge")
			}
		}
		if err == nil && !isolated {
			err = forwardRules(idx, true)
		}
		if err == nil {
			_, err = d.ip("addr", "add", fmt.Sprintf("10.199.%d.1/24", idx), "dev", bridge)
		}
		if err == nil {
			_, err = d.ip("link", "set", bridge, "up")
		}
		if err != nil {
			if cleanErr := cleanupSlot(idx); cleanErr != nil {
				err = fmt.Errorf("%w (cleaning up: %v)", err, cleanErr)
			}
			return nil, err
		}
		return d, nil
	}
	return nil, fmt.Errorf("no free slot for a second Docker daemon among %d (see %s)", maxDaemons, daemonBase)
}

// start runs dockerd, waits until it answers and loads the demo images into it.
func (d *daemon) start() error {
	if err := os.WriteFile(filepath.Join(d.dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }() // dockerd writes the log through its own descriptor
	ns := fmt.Sprintf("slipway-second-%d", d.idx)
	args := []string{
		"--config-file", filepath.Join(d.dir, "daemon.json"), // not /etc/docker/daemon.json
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "docker.pid"),
		"-H", d.host,
		"-b", d.bridge,
		"--iptables=false",
		"--ip-masq=false",
		"--default-address-pool", fmt.Sprintf("base=10.%d.0.0/16,size=24", 200+d.idx),
		"--containerd-namespace", ns,
		"--containerd-plugins-namespace", ns + "-plugins",
	}
	if d.netns == "" {
		d.cmd = exec.Command("dockerd", args...)
	} else {
		// nsenter enters the namespace and execs dockerd (no fork: d.cmd's process is dockerd).
		d.cmd = exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, d.netns), "dockerd"}, args...)...)
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group (a ^C to the tests does not reach it first); SIGTERM when the
	// test process dies, so a killed test run does not leave it running.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := docker(ctx, d.host, nil, "version", "--format", "{{.Server.Version}}")
		cancel()
		if err == nil {
			break
		}
		select {
		case <-d.exited:
			return fmt.Errorf("dockerd exited while starting; its log:\n%s", d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd did not answer on %s within 60s: %v; its log:\n%s", d.host, err, d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}

	daemonsMu.Lock()
	running[d.idx] = d
	daemonsMu.Unlock()
	return d.loadImages()
}

// loadImages copies the demo images from the default engine: docker save | docker -H load.
func (d *daemon) loadImages() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	refs := make([]string, len(DemoTags))
	for i, tag := range DemoTags {
		refs[i] = DemoImage(tag)
	}
	save := exec.CommandContext(ctx, "docker", append([]string{"save"}, refs...)...)
	load := exec.CommandContext(ctx, "docker", "-H", d.host, "load", "-q")
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	load.Stdin = pipe
	var saveErr, loadOut strings.Builder
	save.Stderr = &saveErr
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := save.Start(); err != nil {
		return fmt.Errorf("docker save: %w", err)
	}
	if err := load.Run(); err != nil {
		_ = save.Process.Kill()
		_ = save.Wait()
		return fmt.Errorf("docker load into %s: %w: %s", d.host, err, loadOut.String())
	}
	if err := save.Wait(); err != nil {
		return fmt.Errorf("docker save: %w: %s", err, saveErr.String())
	}
	return nil
}

// logTail returns the last lines of the daemon's log.
func (d *daemon) logTail() string {
	b, err := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// stop removes every container and network on the daemon, stops it, and removes its
// bridge and directories (and its network namespace).
func (d *daemon) stop() error {
	daemonsMu.Lock()
	delete(running, d.idx)
	daemonsMu.Unlock()

	var errs []error
	if d.cmd != nil && d.cmd.Process != nil {
		select {
		case <-d.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if out, err := docker(ctx, d.host, nil, "ps", "-aq"); err != nil {
				errs = append(errs, err)
			} else if ids := strings.Fields(out); len(ids) > 0 {
				if _, err := docker(ctx, d.host, nil, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
					errs = append(errs, err)
				}
			}
			if _, err := docker(ctx, d.host, nil, "network", "prune", "-f"); err != nil {
				errs = append(errs, err)
			}
			cancel()
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(30 * time.Second):
				errs = append(errs, errors.New("dockerd did not stop within 30s of SIGTERM; killed"))
				_ = d.cmd.Process.Kill()
				<-d.exited
			}
		}
	}
	unlock, err := lockBase()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer unlock()
	if err := cleanupSlot(d.idx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sweepStale stops and removes the daemons of test processes that are gone, and deletes
// slot namespaces that have no directory (left by a process killed while it claimed or
// released the slot). Called with the base lock held.
func sweepStale() {
	if nss, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range nss {
			idx, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "slpns"))
			if err != nil || e.Name() != slotNetns(idx) {
				continue
			}
			if _, err := os.Stat(filepath.Join(daemonBase, strconv.Itoa(idx))); os.IsNotExist(err) {
				_ = cleanupSlot(idx)
			}
		}
	}
	entries, err := os.ReadDir(daemonBase)
	if err != nil {
		return
	}
	for _, e := range entries {
		idx, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(daemonBase, e.Name())
		owner, err := readPid(filepath.Join(dir, "owner.pid"))
		if err != nil {
			if info, statErr := e.Info(); statErr != nil || time.Since(info.ModTime()) < 2*time.Minute {
				continue // being set up right now, perhaps
			}
		} else if alive(owner) {
			continue
		}
		if pid, err := readPid(filepath.Join(dir, "docker.pid")); err == nil && isProcess(pid, "dockerd") {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 300 && isProcess(pid, "dockerd"); i++ {
				time.Sleep(100 * time.Millisecond)
			}
			if isProcess(pid, "dockerd") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = cleanupSlot(idx)
	}
}

// cleanupSlot removes what a daemon of slot idx leaves when it has stopped: a containerd it
// started, mounts and files under its directory, bridges on its address pool, its bridge,
// the host's unreachable routes to its networks, and its network namespace (after killing
// any process still in it but this one, so the namespace and the bridges inside it really
// go). The bridge and the namespace go last: they are the slot's claim.
func cleanupSlot(idx int) error {
	dir := filepath.Join(daemonBase, strconv.Itoa(idx))
	var errs []error
	if pid, err := readPid(filepath.Join(dir, "exec", "containerd", "containerd.pid")); err == nil && isProcess(pid, "containerd") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var under []string
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
				under = append(under, f[1])
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(under))) // deepest first
		for _, m := range under {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := forwardRules(idx, false); err != nil {
		errs = append(errs, err)
	}
	bridgeNet, poolNet := slotNets(idx)
	pool := mustCIDR(poolNet)
	if out, err := ipCmd("-o", "-4", "addr", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line) // 7: br-0123abcd    inet 10.200.0.1/24 brd ...
			if len(f) < 4 || !strings.HasPrefix(f[1], "br-") {
				continue
			}
			if ip, _, err := net.ParseCIDR(f[3]); err == nil && pool.Contains(ip) {
				if _, err := ipCmd("link", "del", f[1]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if out, err := ipCmd("-4", "route", "show", "type", "unreachable"); err != nil {
		errs = append(errs, err)
	} else {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line) // unreachable 10.200.0.0/16
			if len(f) > 1 && f[0] == "unreachable" && (f[1] == bridgeNet || f[1] == poolNet) {
				if _, err := ipCmd("route", "del", "unreachable", f[1]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	bridge := slotBridge(idx)
	if _, err := ipCmd("link", "show", bridge); err == nil {
		if _, err := ipCmd("link", "del", bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if ns := slotNetns(idx); netnsExists(ns) {
		pids, err := netnsProcs(filepath.Join(netnsDir, ns))
		if err != nil {
			errs = append(errs, err)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if _, err := ipCmd("netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// netnsExists reports whether ip netns knows a namespace of that name.
func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// netnsProcs returns the pids of the processes whose network namespace is the one bound at
// path (an nsfs file such as /var/run/netns/NAME or /proc/PID/ns/net).
func netnsProcs(path string) ([]int, error) {
	var ns syscall.Stat_t
	if err := syscall.Stat(path, &ns); err != nil {
		return nil, err
	}
	return procsInNetns(ns)
}

// procsInNetns returns the pids of the processes in the network namespace ns (its nsfs stat).
func procsInNetns(ns syscall.Stat_t) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue // never this process (a thread of it may have entered the namespace)
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Dev == ns.Dev && st.Ino == ns.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// alive reports whether a process with that pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// isProcess reports whether pid is a running process named name (guards against pid reuse).
func isProcess(pid int, name string) bool {
	if !alive(pid) {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == name
}

// ip runs ip in the daemon's network namespace (ip -n), or on the host for a daemon without one.
func (d *daemon) ip(args ...string) (string, error) {
	if d.netns != "" {
		args = append([]string{"-n", d.netns}, args...)
	}
	return ipCmd(args...)
}

func ipCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// hostRoutes returns the IPv4 destinations in the host's routing table (default excluded).
func hostRoutes() ([]*net.IPNet, error) {
	out, err := ipCmd("-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var nets []*net.IPNet
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "broadcast" || dst == "local" || dst == "unicast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, n, err := net.ParseCIDR(dst); err == nil {
			nets = append(nets, n)
		}
	}
	return nets, nil
}

func overlapsAny(n *net.IPNet, others []*net.IPNet) bool {
	for _, o := range others {
		if n.Contains(o.IP) || o.Contains(n.IP) {
			return true
		}
	}
	return false
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// forwardRules adds (or removes) the host firewall rules that let the containers of a
// second daemon in the host's namespace talk to each other on its bridges. That daemon runs
// with --iptables=false, and with br_netfilter bridged traffic passes the host's FORWARD
// chain, whose policy the default engine sets to DROP: without an ACCEPT for the slot's
// networks, a probe container could not reach a replica on the same network. The rules
// carry a comment naming the slot; removing absent rules is success, and without iptables
// there is nothing to do.
func forwardRules(idx int, add bool) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	chain := "DOCKER-USER"
	if exec.Command("iptables", "-n", "-L", chain).Run() != nil {
		chain = "FORWARD"
	}
	bridgeNet, poolNet := slotNets(idx)
	comment := fmt.Sprintf("slipway-testenv-%d", idx)
	for _, n := range []string{bridgeNet, poolNet} {
		rule := []string{chain, "-s", n, "-d", n, "-m", "comment", "--comment", comment, "-j", "ACCEPT"}
		if !add {
			// Delete every copy of the rule: -D removes one at a time and fails once none is left.
			for {
				if err := exec.Command("iptables", append([]string{"-D"}, rule...)...).Run(); err != nil {
					break
				}
			}
			continue
		}
		if exec.Command("iptables", append([]string{"-C"}, rule...)...).Run() == nil {
			continue
		}
		if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -I %s: %v: %s", strings.Join(rule, " "), err, out)
		}
	}
	return nil
}
