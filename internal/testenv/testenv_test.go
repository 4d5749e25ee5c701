package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	if got := runningDaemons(); len(got) != 1 || got[0] != host {
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
