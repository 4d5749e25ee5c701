package chaos

import (
	"bufio"
	"context"
	"fmt"
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

// buildBinaries builds slipway and, beside it, slipway-probe (the worker loads the probe
// agent it finds next to its own binary) into dir, or returns $SLIPWAY_CHAOS_BIN when set.
func buildBinaries(t *testing.T, root, dir string) string {
	t.Helper()
	if d := os.Getenv("SLIPWAY_CHAOS_BIN"); d != "" {
		for _, b := range []string{"slipway", "slipway-probe"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				t.Fatalf("SLIPWAY_CHAOS_BIN: %v", err)
			}
		}
		return filepath.Join(d, "slipway")
	}
	for _, b := range []struct{ out, pkg string }{{"slipway", "./cmd/slipway"}, {"slipway-probe", "./cmd/slipway-probe"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "slipway")
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer func() { _ = l.Close() }() // only finding a free port
	return l.Addr().(*net.TCPAddr).Port
}

// proc is one Slipway process the test starts, kills and restarts.
type proc struct {
	name string // "worker-1", "api-2", "temporal"
	kind string // "worker", "api", "temporal"
	bin  string
	args []string
	log  string // file the process's output is appended to
	// ready reports when a (re)started process is up; nil: at once.
	ready func(ctx context.Context) error

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	kills  int
}

// start starts the process (it must not be running) and waits until it is ready.
func (p *proc) start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s is already running", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	fmt.Fprintf(f, "\n===== %s start %d at %s: %s %s\n", p.name, p.starts+1, time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close() // nothing was written since the header line
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.starts++
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = f.Close() // the process wrote through its own descriptor; it is gone
		p.mu.Lock()
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		close(done)
	}()
	if p.ready == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := p.ready(rctx)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited while starting (log %s)", p.name, p.log)
		case <-rctx.Done():
			return fmt.Errorf("%s not ready: %v (log %s)", p.name, err, p.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// running reports whether the process runs.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// kill SIGKILLs the process (this process only, by its pid) and waits until it is gone. It
// reports whether the process was running.
func (p *proc) kill() bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd != nil {
		p.kills++
	}
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return true
}

// httpReady is a ready check: GET url answers 200.
func httpReady(url string) func(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// logReady is a ready check: the process's log has a line containing marker after its
// latest start.
func logReady(p *proc, marker string) func(ctx context.Context) error {
	return func(context.Context) error {
		f, err := os.Open(p.log)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }() // opened read-only
		p.mu.Lock()
		want := "===== " + p.name + " start " + strconv.Itoa(p.starts) + " "
		p.mu.Unlock()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, want) {
				seen = true
			} else if seen && strings.Contains(line, marker) {
				return nil
			}
		}
		return fmt.Errorf("%s: no %q in the log yet", p.name, marker)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
