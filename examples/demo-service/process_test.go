package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the real binary as a process: crash at start, crash after a while,
// graceful stop on SIGTERM, SIGTERM ignored, the -healthcheck flag, another listen port, a
// slow start and memory growth.

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demo-service")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// syncBuffer is a log buffer the process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running demo-service process.
type proc struct {
	cmd  *exec.Cmd
	port string
	logs *syncBuffer
	done chan error // receives cmd.Wait's result once
}

// start runs the binary with extra environment and waits until /healthz answers.
func start(t *testing.T, bin string, extra ...string) *proc {
	t.Helper()
	p := launch(t, bin, freePort(t), extra...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := checkHealth(p.port, time.Second); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("never healthy; logs:\n%s", p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launch runs the binary with PORT=port and extra environment, without waiting.
func launch(t *testing.T, bin, port string, extra ...string) *proc {
	t.Helper()
	p := &proc{port: port, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append([]string{"PORT=" + p.port}, extra...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = <-p.done }) // killed: its exit error says so
	return p
}

// status GETs path on port and returns the status code, or 0 when nothing answers.
func status(port, path string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// rss is the resident set of pid in bytes, from /proc.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// waitExit waits up to within for the process to exit and returns its exit code.
func (p *proc) waitExit(t *testing.T, within time.Duration) (int, bool) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), true
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, true
	case <-time.After(within):
		return 0, false
	}
}

func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)

	t.Run("crash at start", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"DEMO_CRASH_AT_START=1", "PORT=" + freePort(t)}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("want exit 1, got %v; output %q", err, out)
		}
		if !strings.Contains(string(out), "DEMO_CRASH_AT_START") {
			t.Fatalf("output does not say why: %q", out)
		}
	})

	t.Run("serves and stops gracefully on SIGTERM", func(t *testing.T) {
		p := start(t, bin, "DEMO_VERSION=9.9.9")
		port := p.port
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"version":"9.9.9"`) {
			t.Fatalf("GET /: %s", b)
		}
		// The -healthcheck flag exits 0 against a healthy server.
		hc := exec.Command(bin, "-healthcheck")
		hc.Env = []string{"PORT=" + port}
		if out, err := hc.CombinedOutput(); err != nil {
			t.Fatalf("-healthcheck: %v %s", err, out)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, exited := p.waitExit(t, 10*time.Second)
		if !exited || code != 0 {
			t.Fatalf("after SIGTERM: exited=%t code=%d; logs:\n%s", exited, code, p.logs)
		}
		if !strings.Contains(p.logs.String(), "shutting down") {
			t.Fatalf("no graceful shutdown in the log:\n%s", p.logs)
		}
		// And fails once nothing listens.
		hc = exec.Command(bin, "-healthcheck")
		hc.Env = []string{"PORT=" + port}
		if err := hc.Run(); err == nil {
			t.Fatal("-healthcheck succeeded with nothing listening")
		}
	})

	t.Run("ignores SIGTERM", func(t *testing.T) {
		p := start(t, bin, "DEMO_IGNORE_SIGTERM=1")
		port := p.port
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if _, exited := p.waitExit(t, 500*time.Millisecond); exited {
			t.Fatalf("exited on SIGTERM; logs:\n%s", p.logs)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%s/healthz", port), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("not serving after SIGTERM: %v", err)
		}
		resp.Body.Close()
		if !strings.Contains(p.logs.String(), "ignored") {
			t.Fatalf("log does not mention the ignored SIGTERM:\n%s", p.logs)
		}
	})

	t.Run("bad config exits 2 naming the variable", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"DEMO_TAIL_RATE=0.08", "PORT=" + freePort(t)}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "DEMO_TAIL_LATENCY") {
			t.Fatalf("want exit 2 naming DEMO_TAIL_LATENCY, got %v; output %q", err, out)
		}
	})

	t.Run("crashes after DEMO_CRASH_AFTER", func(t *testing.T) {
		began := time.Now()
		p := start(t, bin, "DEMO_CRASH_AFTER=700ms")
		code, exited := p.waitExit(t, 10*time.Second)
		if !exited || code != 1 {
			t.Fatalf("exited=%t code=%d, want exit 1; logs:\n%s", exited, code, p.logs)
		}
		if took := time.Since(began); took < 700*time.Millisecond {
			t.Fatalf("crashed after %v, before 700ms", took)
		}
		if !strings.Contains(p.logs.String(), "DEMO_CRASH_AFTER=700ms") {
			t.Fatalf("log does not say why:\n%s", p.logs)
		}
	})

	t.Run("listens on DEMO_LISTEN_PORT instead of PORT", func(t *testing.T) {
		port, other := freePort(t), freePort(t)
		for other == port {
			other = freePort(t)
		}
		p := launch(t, bin, port, "DEMO_LISTEN_PORT="+other, "DEMO_VERSION=bad-port")
		deadline := time.Now().Add(10 * time.Second)
		for status(other, "/healthz") != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("never answered on DEMO_LISTEN_PORT %s; logs:\n%s", other, p.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code := status(other, "/"); code != http.StatusOK {
			t.Fatalf("GET / on %s: %d", other, code)
		}
		if code := status(port, "/healthz"); code != 0 {
			t.Fatalf("PORT %s answered %d: it should be empty", port, code)
		}
		// The image's HEALTHCHECK (same environment) follows the listen port.
		hc := exec.Command(bin, "-healthcheck")
		hc.Env = []string{"PORT=" + port, "DEMO_LISTEN_PORT=" + other}
		if out, err := hc.CombinedOutput(); err != nil {
			t.Fatalf("-healthcheck: %v %s", err, out)
		}
	})

	t.Run("slow start listens at once and answers 503 until DEMO_START_DELAY", func(t *testing.T) {
		began := time.Now()
		p := launch(t, bin, freePort(t), "DEMO_START_DELAY=1500ms")
		var first int
		for first == 0 && time.Since(began) < 5*time.Second {
			first = status(p.port, "/healthz")
			time.Sleep(10 * time.Millisecond)
		}
		if first != http.StatusServiceUnavailable || time.Since(began) >= 1500*time.Millisecond {
			t.Fatalf("first answer %d after %v: want 503 well before 1.5s", first, time.Since(began))
		}
		if code := status(p.port, "/"); code != http.StatusServiceUnavailable {
			t.Fatalf("GET / while starting: %d", code)
		}
		hc := exec.Command(bin, "-healthcheck")
		hc.Env = []string{"PORT=" + p.port}
		if err := hc.Run(); err == nil {
			t.Fatal("-healthcheck passed while starting")
		}
		for status(p.port, "/healthz") != http.StatusOK {
			if time.Since(began) > 10*time.Second {
				t.Fatalf("never healthy; logs:\n%s", p.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if took := time.Since(began); took < 1500*time.Millisecond {
			t.Fatalf("healthy after %v, before DEMO_START_DELAY", took)
		}
		if code := status(p.port, "/"); code != http.StatusOK {
			t.Fatalf("GET / once started: %d", code)
		}
	})

	t.Run("memory grows to the cap and stays there", func(t *testing.T) {
		p := start(t, bin, "DEMO_LEAK_PER_SECOND=128Mi", "DEMO_LEAK_MAX=64Mi")
		base := rss(t, p.cmd.Process.Pid)
		deadline := time.Now().Add(10 * time.Second)
		for rss(t, p.cmd.Process.Pid) < 64<<20 {
			if time.Now().After(deadline) {
				t.Fatalf("resident set %d MiB after 10s, want ≥ 64 MiB (from %d MiB); logs:\n%s",
					rss(t, p.cmd.Process.Pid)>>20, base>>20, p.logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // the cap was reached after 0.5s
		if got := rss(t, p.cmd.Process.Pid); got > 64<<20+base+32<<20 {
			t.Fatalf("resident set %d MiB: grew past the 64 MiB cap (base %d MiB)", got>>20, base>>20)
		}
		if code := status(p.port, "/"); code != http.StatusOK {
			t.Fatalf("GET / while holding the leak: %d", code)
		}
		if !strings.Contains(p.logs.String(), "holding 64Mi") {
			t.Fatalf("log does not report the cap:\n%s", p.logs)
		}
	})
}
