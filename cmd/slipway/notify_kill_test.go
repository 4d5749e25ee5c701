package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/starter"
)

// TestWebhookAfterWorkerKill runs the worker as its own `slipway worker` process and
// SIGKILLs it while a webhook delivery is in flight (the receiver kills it on the first
// canary_passed delivery, before answering). A second worker takes the release over: the
// receiver, de-duplicating by event id, processes every event exactly once and in order;
// the raw deliveries may repeat an id (at least once), never carry a new id for an event.
func TestWebhookAfterWorkerKill(t *testing.T) {
	testenv.DemoImages(t)
	bin := buildSlipway(t)
	srv := startQuietServer(t)

	logf := filepath.Join(t.TempDir(), "workers.log")
	var mu sync.Mutex
	var cur *exec.Cmd
	startWorker := func() {
		f, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Error(err) // also called from the receiver's goroutine: no Fatal
			return
		}
		c := exec.Command(bin, "worker", "--temporal-address", srv.HostPort(), "--temporal-namespace", srv.Namespace(), "--secrets-dir", "")
		c.Stdout, c.Stderr = f, f
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			_ = f.Close() // nothing was written
			t.Error(err)
			return
		}
		mu.Lock()
		cur = c
		mu.Unlock()
		go func() { _ = c.Wait(); _ = f.Close() }() // reaped; its output went to the log
	}
	killWorker := func() {
		mu.Lock()
		c := cur
		cur = nil
		mu.Unlock()
		if c != nil {
			_ = c.Process.Signal(syscall.SIGKILL) // this test's own worker process, by its pid
		}
	}
	t.Cleanup(killWorker)
	startWorker()

	rc := newReceiver("", false)
	var once sync.Once
	killed := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Slipway-Event") == spec.EventCanaryPassed {
			first := false
			once.Do(func() { first = true })
			if first {
				// Kill the worker with this delivery in flight, then answer nothing useful.
				killWorker()
				close(killed)
				rc.mu.Lock()
				rc.raw = append(rc.raw, delivery{id: r.Header.Get("X-Slipway-Event-Id"), event: spec.EventCanaryPassed, status: 0})
				rc.mu.Unlock()
				hj, ok := w.(http.Hijacker)
				if ok {
					if conn, _, err := hj.Hijack(); err == nil {
						_ = conn.Close() // the delivery's connection dies with its worker
					}
				}
				return
			}
		}
		rc.ServeHTTP(w, r)
	}))
	t.Cleanup(hook.Close)
	go func() {
		<-killed
		startWorker()
	}()

	token := "kill-test-token"
	tokens, err := starter.NewTokens(starter.TokenEntry{Name: "ci", SHA256: starter.HashToken(token), Environments: []string{"*"},
		Permissions: []starter.Permission{starter.PermRelease, starter.PermApprove}, RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	api, err := starter.New(starter.Config{Client: srv.Client(), Namespace: srv.Namespace(), DeploymentsDir: t.TempDir(), Tokens: tokens,
		EventPoll: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	s := &cliStack{url: hs.URL, token: token, srv: srv}

	env := cliEnv(t)
	file := writeCLISpec(t, t.TempDir(), "kill.yaml", cliSpec(env, "1.0.0", false)+"notifications:\n  webhooks:\n    - url: "+hook.URL+"/hook\n")
	code, out, errOut := s.run(t, "release", "-f", file, "--wait")
	if code != codeSucceeded {
		b, _ := os.ReadFile(logf)
		t.Fatalf("release: exit %d\n%s\n%s\nworkers:\n%s", code, out, errOut, b)
	}
	id := cliReleaseID(t, out)
	select {
	case <-killed:
	default:
		t.Fatal("the worker was never killed: no canary_passed delivery")
	}
	raw, processed, _ := rc.snapshot()
	want := []string{id + "/" + spec.EventStarted, id + "/" + spec.EventCanaryPassed + "/web", id + "/" + spec.EventSucceeded}
	if strings.Join(processed, " ") != strings.Join(want, " ") {
		t.Errorf("processed %v, want each of %v once, in order", processed, want)
	}
	perEvent := map[string]map[string]int{}
	for _, d := range raw {
		if perEvent[d.event] == nil {
			perEvent[d.event] = map[string]int{}
		}
		perEvent[d.event][d.id]++
	}
	for ev, ids := range perEvent {
		if len(ids) != 1 {
			t.Errorf("event %s delivered under %d ids: %v", ev, len(ids), ids)
		}
	}
	if perEvent[spec.EventCanaryPassed][id+"/"+spec.EventCanaryPassed+"/web"] < 2 {
		t.Errorf("the delivery cut by the kill was not delivered again: %v", perEvent)
	}
	t.Logf("raw deliveries: %d (%v)", len(raw), perEvent)
}
