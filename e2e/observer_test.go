package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/testenv"
)

// The outside observer of the rollback benchmarks (e2e/observer, BENCHMARKS.md, Rollback): a
// client container on the service's network that asks the service through its DNS name every
// observeEvery and logs, per round, the answer of every address the name resolves to.

// observeEvery is the observer's round: the resolution of its figures.
const observeEvery = 20 * time.Millisecond

// observerImages builds the observer binary once and its image (FROM scratch) on each
// engine that runs an observer; the images are removed when the benchmark ends.
type observerImages struct {
	t     testing.TB
	once  sync.Once
	bin   string
	ref   string
	err   error
	mu    sync.Mutex
	built map[string]bool // host → image built there
}

func newObserverImages(t testing.TB) *observerImages {
	o := &observerImages{t: t, built: map[string]bool{}}
	t.Cleanup(o.remove)
	return o
}

// image returns the observer image's reference on host ("" = the default engine), building
// it there first if needed.
func (o *observerImages) image(t testing.TB, host string) string {
	t.Helper()
	o.once.Do(func() {
		dir, err := os.MkdirTemp("", "slipway-observer-")
		if err != nil {
			o.err = err
			return
		}
		o.t.Cleanup(func() { _ = os.RemoveAll(dir) }) // a temporary build directory
		o.bin = filepath.Join(dir, "observer")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", o.bin, "./e2e/observer")
		cmd.Dir = testenv.RepoRoot(o.t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			o.err = fmt.Errorf("go build ./e2e/observer: %w\n%s", err, out)
			return
		}
		data, err := os.ReadFile(o.bin)
		if err != nil {
			o.err = err
			return
		}
		sum := sha256.Sum256(data)
		o.ref = "slipway/observer:" + hex.EncodeToString(sum[:6])
	})
	require.NoError(t, o.err)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.built[host] {
		return o.ref
	}
	data, err := os.ReadFile(o.bin)
	require.NoError(t, err)
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY observer /observer\nENTRYPOINT [\"/observer\"]\n")},
		{"observer", 0o755, data},
	} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}))
		_, err := tw.Write(f.data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", dockerArgs(host, "build", "-q", "-t", o.ref, "-")...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	cmd.Stdin = &ctxTar
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building the observer image: %s", out)
	o.built[host] = true
	return o.ref
}

// remove removes the observer images it built (an engine that is gone already is fine).
func (o *observerImages) remove() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for host := range o.built {
		_, _ = dockerCLI(host, time.Minute, "image", "rm", o.ref) // a stopped daemon took it along
	}
}

func dockerArgs(host string, args ...string) []string {
	if host != "" {
		args = append([]string{"-H", host}, args...)
	}
	return args
}

func dockerCLI(host string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", dockerArgs(host, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// observer is one running observer container.
type observer struct {
	t     testing.TB
	host  string
	name  string
	want  int    // replicas behind the name when the service is whole
	label string // for the log: which cluster or service it watches
}

// observe starts an observer on host's network, asking dnsName, labelled with the test's
// environment (so a leftover is found); t's cleanup removes it. want is the replica count of
// the service when whole.
func observe(t testing.TB, imgs *observerImages, host, env, network, dnsName string, want int, label string) *observer {
	t.Helper()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	o := &observer{t: t, host: host, name: env + "-observer-" + hex.EncodeToString(suffix), want: want, label: label}
	_, err := dockerCLI(host, time.Minute, "run", "-d", "--name", o.name,
		"--label", engine.LabelEnvironment+"="+env, "--network", network,
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", "64m",
		imgs.image(t, host), "-name", dnsName, "-interval", observeEvery.String())
	require.NoError(t, err)
	t.Cleanup(func() {
		if _, err := dockerCLI(host, time.Minute, "rm", "-f", o.name); err != nil {
			t.Errorf("removing observer %s: %v", o.name, err)
		}
	})
	return o
}

// rounds reads the observer's log so far.
func (o *observer) rounds() []round {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", dockerArgs(o.host, "logs", o.name)...).Output()
	require.NoError(o.t, err, "observer log")
	return parseRounds(string(out))
}

// waitFor polls the observer's log until cond holds for it (or fails after within).
func (o *observer) waitFor(what string, within time.Duration, cond func([]round) bool) []round {
	o.t.Helper()
	deadline := time.Now().Add(within)
	for {
		rs := o.rounds()
		if cond(rs) {
			return rs
		}
		require.False(o.t, time.Now().After(deadline), "observer %s: %s not seen within %v; last rounds: %v", o.label, what, within, tail(rs, 5))
		time.Sleep(200 * time.Millisecond)
	}
}

// round is one observer round.
type round struct {
	at      time.Time
	dns     string // the lookup's error class, or ""
	answers []answer
}

// answer is one address's answer in a round.
type answer struct {
	addr    string
	status  int    // 0: no answer (err says why)
	version string // the version the answer reports
	err     string
}

func (r round) String() string {
	if r.dns != "" {
		return r.at.Format("15:04:05.000") + " dns=" + r.dns
	}
	parts := []string{r.at.Format("15:04:05.000")}
	for _, a := range r.answers {
		if a.err != "" {
			parts = append(parts, a.addr+"=err:"+a.err)
		} else {
			parts = append(parts, fmt.Sprintf("%s=%d:%s", a.addr, a.status, a.version))
		}
	}
	return strings.Join(parts, " ")
}

func parseRounds(log string) []round {
	var rs []round
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		r := round{at: time.Unix(0, ns)}
		for _, w := range f[1:] {
			k, v, _ := strings.Cut(w, "=")
			if k == "dns" {
				r.dns = v
				continue
			}
			code, rest, _ := strings.Cut(v, ":")
			a := answer{addr: k}
			if code == "err" {
				a.err = rest
			} else {
				a.status, _ = strconv.Atoi(code)
				a.version = rest
			}
			r.answers = append(r.answers, a)
		}
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].at.Before(rs[j].at) })
	return rs
}

func tail(rs []round, n int) []round { return rs[max(0, len(rs)-n):] }

// whole reports whether the round got want answers, every one 200 from version.
func (r round) whole(version string, want int) bool {
	if r.dns != "" || len(r.answers) != want {
		return false
	}
	for _, a := range r.answers {
		if a.status != 200 || a.version != version {
			return false
		}
	}
	return true
}

// failures counts the round's requests that got no answer (and a failed lookup): what a
// switch itself costs a user, beside the bad version's own errors.
func (r round) failures() int {
	if r.dns != "" {
		return 1
	}
	n := 0
	for _, a := range r.answers {
		if a.err != "" {
			n++
		}
	}
	return n
}

// countFailures adds the round's failures to why, by class.
func (r round) countFailures(why *map[string]int) {
	if *why == nil {
		*why = map[string]int{}
	}
	if r.dns != "" {
		(*why)["dns="+r.dns]++
		return
	}
	for _, a := range r.answers {
		if a.err != "" {
			(*why)[a.err]++
		}
	}
}

// switchView is what an observer saw of a switch back to a version.
type switchView struct {
	at       time.Time      // start of the first whole round after the last answer of another version
	lastBad  time.Time      // start of the last round with an answer of another version
	firstBad time.Time      // start of the first round with an answer of another version
	failed   int            // requests without an answer (and failed lookups) from `from` to at
	why      map[string]int // failed by class (dns=…, or the request's error class)
	rounds   int            // rounds in the log
	clusters int            // observers that saw another version (switchedAll)
}

// switched reads, in rounds after from, the moment every answer comes from version again:
// the first round after the last round holding an answer of any other version in which all
// want replicas answer 200 with version. ok is false when no such round follows.
func switched(rs []round, version string, want int, from time.Time) (v switchView, ok bool) {
	v.rounds = len(rs)
	last := -1
	for i, r := range rs {
		other := false
		for _, a := range r.answers {
			if a.version != "" && a.version != "-" && a.version != version {
				other = true
			}
		}
		if other {
			last = i
			v.lastBad = r.at
			if v.firstBad.IsZero() {
				v.firstBad = r.at
			}
		}
	}
	for i := last + 1; i < len(rs); i++ {
		if rs[i].at.Before(from) {
			continue
		}
		if rs[i].whole(version, want) {
			v.at = rs[i].at
			for _, r := range rs {
				if !r.at.Before(from) && r.at.Before(v.at) {
					v.failed += r.failures()
					r.countFailures(&v.why)
				}
			}
			return v, true
		}
	}
	return v, false
}

// settled reports whether the log ends with a second of whole rounds of version.
func settled(rs []round, version string, want int) bool {
	if len(rs) == 0 {
		return false
	}
	end := rs[len(rs)-1].at
	n := 0
	for i := len(rs) - 1; i >= 0 && end.Sub(rs[i].at) < time.Second; i-- {
		if !rs[i].whole(version, want) {
			return false
		}
		n++
	}
	return n >= 20 && end.Sub(rs[0].at) > time.Second
}

// serving reports whether the log's last rounds are whole rounds of version (the service
// serves it through its name).
func serving(version string, want int) func([]round) bool {
	return func(rs []round) bool {
		if len(rs) < 5 {
			return false
		}
		for _, r := range tail(rs, 5) {
			if !r.whole(version, want) {
				return false
			}
		}
		return true
	}
}

// servingOnly is serving for a version that answers errors on purpose: the last rounds have
// want answers, each from version, whatever their status.
func servingOnly(version string, want int) func([]round) bool {
	return func(rs []round) bool {
		if len(rs) < 5 {
			return false
		}
		for _, r := range tail(rs, 5) {
			if r.dns != "" || len(r.answers) != want {
				return false
			}
			for _, a := range r.answers {
				if a.version != version {
					return false
				}
			}
		}
		return true
	}
}
