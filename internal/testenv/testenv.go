// Package testenv holds the helpers every package's integration tests share: the demo images
// (built offline on demand), a second Docker daemon for two-endpoint tests, unique
// environment names, and the check that no test leaves a container behind.
//
// testenv talks to Docker through the docker CLI (os/exec), never through the Docker Go
// client: internal/dockerengine stays the only package importing it, and the helpers check
// the adapter from the outside.
//
// Docker tests skip (with the reason) when the machine cannot run them: no docker CLI, no
// engine answering, not root, or no dockerd for SecondDaemon. When the environment variable
// CI or SLIPWAY_REQUIRE_DOCKER is set, those conditions fail the test instead, so a CI run
// cannot go green by skipping.
//
// Short mode (`go test -short`, `make test-unit`) runs the unit tests only: every helper
// here that needs a Docker engine (RequireDocker, DemoImages, SecondDaemon, IsolatedDaemon,
// SwarmDaemon) or an embedded Temporal server (RequireTemporal) skips t in short mode before
// trying anything, so a unit run needs neither, nor root, and takes seconds.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/engine"
)

// DemoRepository is the image repository of the demo service.
const DemoRepository = "slipway/demo"

// DemoTags are the tags examples/demo-service/build-images.sh builds (its header says what
// each does): good versions 1.0.0 1.1.0 2.0.0; noisy-1.0.0 and noisy-1.1.0 (good, 0.5%
// random 500s); slow-start (503 for 12 s) and slow-stop (ignores SIGTERM); and the bad ones.
var DemoTags = []string{
	"1.0.0", "1.1.0", "2.0.0", "noisy-1.0.0", "noisy-1.1.0", "slow-start", "slow-stop",
	"bad-crash", "bad-crash-later", "bad-health", "bad-errors", "bad-intermittent", "bad-routes",
	"bad-latency", "bad-tail", "bad-oom", "bad-port",
}

// DemoImage returns the full reference of a demo tag: DemoImage("1.0.0") is
// "slipway/demo:1.0.0".
func DemoImage(tag string) string { return DemoRepository + ":" + tag }

// required reports whether missing prerequisites must fail rather than skip tests.
func required() bool {
	return os.Getenv("CI") != "" || os.Getenv("SLIPWAY_REQUIRE_DOCKER") != ""
}

// unavailable skips t with reason, or fails it when Docker tests are required.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if required() {
		t.Fatalf("testenv: %s (CI or SLIPWAY_REQUIRE_DOCKER is set, so this is a failure, not a skip)", reason)
	}
	t.Skip("testenv: " + reason)
}

// integration skips t in short mode: it needs what the unit tests go without.
func integration(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skip("testenv: integration test (needs " + needs + "), not run with -short")
	}
}

// RequireTemporal skips t in short mode (go test -short, make test-unit). Call it before
// starting an embedded Temporal server (devserver): the server needs nothing from the
// machine, but it takes seconds to start and makes a test an integration test.
func RequireTemporal(t testing.TB) {
	t.Helper()
	integration(t, "an embedded Temporal server")
}

var (
	dockerOnce sync.Once
	dockerErr  error
)

// RequireDocker skips (or, in CI, fails) t unless the docker CLI is installed and the
// default engine answers. It skips t in short mode.
func RequireDocker(t testing.TB) {
	t.Helper()
	integration(t, "the Docker engine")
	dockerOnce.Do(func() {
		if _, err := exec.LookPath("docker"); err != nil {
			dockerErr = errors.New("no docker CLI on PATH")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := docker(ctx, "", nil, "version", "--format", "{{.Server.Version}}"); err != nil {
			dockerErr = fmt.Errorf("the Docker engine does not answer: %w", err)
		}
	})
	if dockerErr != nil {
		unavailable(t, dockerErr.Error())
	}
}

// docker runs the docker CLI against host ("" = the process environment) and returns its
// standard output; the error carries standard error.
func docker(ctx context.Context, host string, stdin []byte, args ...string) (string, error) {
	if host != "" {
		args = append([]string{"-H", host}, args...)
	}
	cmd := exec.CommandContext(ctx, "docker", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// RepoRoot returns the directory of the module's go.mod, found by walking up from the
// working directory (a package directory while tests run).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

var (
	imagesOnce sync.Once
	imagesErr  error
)

// DemoImages makes sure every demo tag (DemoTags) is in the default engine's image store,
// running examples/demo-service/build-images.sh once per test process (the script skips
// tags that are up to date and serialises concurrent runs with a lock file).
func DemoImages(t testing.TB) {
	t.Helper()
	RequireDocker(t)
	ProbeAgent(t)
	imagesOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			imagesErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "examples", "demo-service", "build-images.sh"))
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			imagesErr = fmt.Errorf("build-images.sh: %w\n%s", err, out)
		}
	})
	if imagesErr != nil {
		t.Fatalf("testenv: demo images: %v", imagesErr)
	}
}

// UniqueEnv returns an environment name no other test (in this process or another) uses: a
// short DNS label made of a hint from the test name and random characters, e.g.
// "tensuretwice-k3j9xa". Call it before creating anything: it registers a cleanup that runs
// after the test's own cleanups and fails the test (AssertNoContainers) if any container or
// network of the environment is left on the default engine or on a second daemon started
// by this process, removing the leftovers so they do not leak into other tests. That
// cleanup needs the engine: UniqueEnv skips t like RequireDocker where there is none, and
// in short mode.
func UniqueEnv(t testing.TB) string {
	t.Helper()
	RequireDocker(t)
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	var hint strings.Builder
	for _, r := range strings.ToLower(strings.TrimPrefix(name, "Test")) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			hint.WriteRune(r)
		}
		if hint.Len() == 10 {
			break
		}
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	suffix := make([]byte, 6)
	for i := range suffix {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			t.Fatalf("testenv: random: %v", err)
		}
		suffix[i] = alphabet[n.Int64()]
	}
	env := "t" + hint.String() + "-" + string(suffix)
	t.Cleanup(func() { AssertNoContainers(t, env) })
	return env
}

// AssertNoContainers fails t if any container labelled io.slipway.environment=environment,
// or any network of the environment (that label, or a name starting with
// "slipway.<environment>."), remains on the default engine or on a second daemon this
// process started. It removes what it finds, so one failing test does not break others.
func AssertNoContainers(t testing.TB, environment string) {
	t.Helper()
	if environment == "" {
		t.Fatal("testenv: AssertNoContainers needs an environment")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, host := range append([]string{""}, runningDaemons()...) {
		where := host
		if where == "" {
			where = "the default engine"
		}
		containers, networks, err := leftovers(ctx, host, environment)
		// A probe container ends on its own: its job has a deadline and the engine removes it
		// (AutoRemove). One started by a worker the test SIGKILLed runs its job to that end,
		// which under load takes longer than the job itself: give probes 30 s before calling
		// them leftovers (any other container is one at once).
		for settle := time.Now().Add(30 * time.Second); err == nil && onlyProbes(containers) && time.Now().Before(settle); {
			time.Sleep(200 * time.Millisecond)
			containers, networks, err = leftovers(ctx, host, environment)
		}
		if err != nil {
			t.Errorf("testenv: looking for leftovers of %q on %s: %v", environment, where, err)
			continue
		}
		if len(containers) > 0 {
			t.Errorf("testenv: containers of environment %q left on %s: %s", environment, where, strings.Join(containers, ", "))
			if _, err := docker(ctx, host, nil, append([]string{"rm", "-f", "-v"}, containers...)...); err != nil {
				t.Errorf("testenv: removing them: %v", err)
			}
		}
		if len(networks) > 0 {
			var names, ids []string
			for _, n := range networks {
				names, ids = append(names, n.name), append(ids, n.id)
			}
			t.Errorf("testenv: networks of environment %q left on %s: %s", environment, where, strings.Join(names, ", "))
			if _, err := docker(ctx, host, nil, append([]string{"network", "rm"}, ids...)...); err != nil {
				t.Errorf("testenv: removing them: %v", err)
			}
		}
	}
}

// onlyProbes reports whether every container named is a probe container (and there is one).
func onlyProbes(containers []string) bool {
	for _, c := range containers {
		if !strings.HasPrefix(c, "slipway-probe.") {
			return false
		}
	}
	return len(containers) > 0
}

// network is a Docker network found by leftovers.
type network struct{ id, name string }

// leftovers lists the environment's containers (names) and networks on host.
func leftovers(ctx context.Context, host, environment string) (containers []string, networks []network, err error) {
	label := "label=" + engine.LabelEnvironment + "=" + environment
	out, err := docker(ctx, host, nil, "ps", "-a", "--filter", label, "--format", "{{.Names}}")
	if err != nil {
		return nil, nil, err
	}
	containers = strings.Fields(out)

	// Docker allows two networks of one name: report names, remove by ID.
	out, err = docker(ctx, host, nil, "network", "ls", "--format", `{{.ID}}	{{.Name}}	{{.Label "`+engine.LabelEnvironment+`"}}`)
	if err != nil {
		return nil, nil, err
	}
	prefix := "slipway." + environment + "."
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) < 2 {
			continue
		}
		id, name, env := f[0], f[1], ""
		if len(f) > 2 {
			env = f[2]
		}
		if env == environment || strings.HasPrefix(name, prefix) {
			networks = append(networks, network{id: id, name: name})
		}
	}
	return containers, networks, nil
}
