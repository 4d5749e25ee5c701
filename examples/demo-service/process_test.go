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

// These tests run the real binary as a process: crash at start, graceful stop on SIGTERM,
// SIGTERM ignored, and the -healthcheck flag.

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
	defer l.Close()
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
	p := &proc{port: freePort(t), logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append([]string{"PORT=" + p.port}, extra...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
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
}
