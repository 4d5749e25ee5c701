package main

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/metrics"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/worker"
	"github.com/slipwayhq/slipway/workflows"
)

// receiver is a webhook receiver as docs/observability.md describes one: it checks the
// signature, answers 500 to the first delivery it sees (so the retry is exercised), and
// processes each event id once.
type receiver struct {
	key []byte
	mu  sync.Mutex
	raw []delivery // every request, in arrival order
	ids map[string]bool
	// processed are the event ids processed, in order (each once).
	processed []string
	bodies    map[string][]byte
	failFirst bool
}

type delivery struct {
	id, event, path string
	status          int
	sigOK           bool
}

func newReceiver(key string, failFirst bool) *receiver {
	var k []byte
	if key != "" {
		k = []byte(key)
	}
	return &receiver{key: k, ids: map[string]bool{}, bodies: map[string][]byte{}, failFirst: failFirst}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	id, ev := r.Header.Get(activities.HeaderEventID), r.Header.Get(activities.HeaderEvent)
	ok := true
	if rc.key != nil {
		want := activities.Sign(rc.key, r.Header.Get(activities.HeaderTimestamp), body)
		ok = hmac.Equal([]byte(want), []byte(r.Header.Get(activities.HeaderSignature)))
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := delivery{id: id, event: ev, path: r.URL.Path, sigOK: ok, status: http.StatusOK}
	switch {
	case !ok:
		d.status = http.StatusUnauthorized
	case rc.failFirst && len(rc.raw) == 0:
		d.status = http.StatusInternalServerError
	case !rc.ids[id]:
		rc.ids[id] = true
		rc.processed = append(rc.processed, id)
		rc.bodies[id] = body
	}
	rc.raw = append(rc.raw, d)
	w.WriteHeader(d.status)
}

func (rc *receiver) snapshot() ([]delivery, []string, map[string][]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	b := map[string][]byte{}
	for k, v := range rc.bodies {
		b[k] = v
	}
	return append([]delivery(nil), rc.raw...), append([]string(nil), rc.processed...), b
}

// paths are the URL paths of every request, in arrival order.
func (rc *receiver) paths() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, d := range rc.raw {
		out = append(out, d.path)
	}
	return out
}

// buildSlipway builds the slipway binary into a temporary directory, for tests that run it
// as a process of its own.
func buildSlipway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "slipway")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/slipway")
	b.Dir = testenv.RepoRoot(t)
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startQuietServer starts an ephemeral embedded Temporal server (no Web UI, errors only in
// its log), stopped when the test ends.
func startQuietServer(t *testing.T) *devserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: -1, SearchAttributes: workflows.SearchAttributeTypes, LogLevel: "error"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// payloadData finds the base64 "data" of the payloads in protojson text.
var payloadData = regexp.MustCompile(`"data":"([A-Za-z0-9+/=]*)"`)

// releaseHistoryJSON is the whole history of a release's workflow as JSON text, each
// payload's data decoded after its event (what the Web UI and `temporal workflow show` show).
func releaseHistoryJSON(t *testing.T, c client.Client, workflowID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b strings.Builder
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", workflowID, err)
		}
		j, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
		for _, m := range payloadData.FindAllSubmatch(j, -1) {
			d, err := base64.StdEncoding.DecodeString(string(m[1]))
			if err != nil {
				t.Fatalf("payload data: %v", err)
			}
			b.Write(d)
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		t.Fatalf("history of %s is empty", workflowID)
	}
	return b.String()
}

// TestMetricsAndWebhooks runs two real releases (one that succeeds, one that rolls back)
// through the in-process stack of `slipway dev` with metrics on, and webhooks configured in
// the spec: a signed json webhook whose receiver fails the first delivery, and a slack one
// for the outcomes. It then checks the deliveries (order, retry, signature, one processing
// per event id, the Slack shape), scrapes /metrics for the release, verdict, rollback, API
// and Temporal SDK series, and runs promtool check metrics on the scrape.
func TestMetricsAndWebhooks(t *testing.T) {
	promtool := testenv.RequirePromtool(t)
	testenv.DemoImages(t)
	srv := startQuietServer(t)

	secrets := t.TempDir()
	const key = "webhook-signing-key"
	if err := os.WriteFile(filepath.Join(secrets, "hook-key"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := metrics.New()
	wc, err := metricsClient(srv.Client(), srv.Namespace(), reg)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerengine.NewDialer(dockerengine.Options{})
	w, err := worker.New(wc, d, worker.Options{Identity: "obs-test", Activities: activities.Options{Secrets: activities.DirSecrets(secrets)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop(); wc.Close(); _ = d.Close() })

	token := "obs-test-token"
	tokens, err := starter.NewTokens(starter.TokenEntry{Name: "ci", SHA256: starter.HashToken(token), Environments: []string{"*"},
		Permissions: []starter.Permission{starter.PermRelease, starter.PermApprove}, RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	f := &apiFlags{metrics: reg}
	api, err := starter.New(starter.Config{Client: srv.Client(), Namespace: srv.Namespace(), DeploymentsDir: t.TempDir(), Tokens: tokens,
		EventPoll: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ObserveRequest: f.observe()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(f.withMetrics(api.Handler()))
	t.Cleanup(hs.Close)
	s := &cliStack{url: hs.URL, token: token, srv: srv}

	signed := newReceiver(key, true)
	slack := newReceiver("", false)
	signedSrv, slackSrv := httptest.NewServer(signed), httptest.NewServer(slack)
	t.Cleanup(signedSrv.Close)
	t.Cleanup(slackSrv.Close)

	// The Slack-format webhook's URL is a credential, as Slack's are: it comes from a worker
	// secret (url_secret), never from the spec, so it must not reach the history.
	slackURL := slackSrv.URL + "/services/T000/B000/not-in-history"
	if err := os.WriteFile(filepath.Join(secrets, "slack-url"), []byte(slackURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := cliEnv(t)
	body := cliSpec(env, "1.0.0", false) + fmt.Sprintf(`notifications:
  webhooks:
    - url: %s/hook
      secret: hook-key
    - url_secret: slack-url
      format: slack
      events: [succeeded, rolled_back, failed]
`, signedSrv.URL)
	file := writeCLISpec(t, t.TempDir(), "obs.yaml", body)
	good, bad := releaseGoodThenBad(t, s, file)

	// The signed webhook: every event of both releases, in order, each processed once; the
	// first delivery answered 500 and was retried with the same event id.
	raw, processed, bodies := signed.snapshot()
	want := []string{
		good + "/" + spec.EventStarted, good + "/" + spec.EventCanaryPassed + "/web", good + "/" + spec.EventSucceeded,
		bad + "/" + spec.EventStarted, bad + "/" + spec.EventRolledBack,
	}
	if strings.Join(processed, " ") != strings.Join(want, " ") {
		t.Errorf("signed webhook processed\n  %v\nwant\n  %v", processed, want)
	}
	if len(raw) < 2 || raw[0].status != http.StatusInternalServerError || raw[1].id != raw[0].id || raw[1].status != http.StatusOK {
		t.Errorf("the first delivery was not retried after its 500: %+v", raw)
	}
	for _, d := range raw {
		if !d.sigOK {
			t.Errorf("delivery %s: bad signature", d.id)
		}
	}
	var n workflows.Notification
	if err := json.Unmarshal(bodies[good+"/"+spec.EventSucceeded], &n); err != nil || n.Outcome != workflows.OutcomeSucceeded ||
		n.Environment != env || n.Versions["web"] != "1.0.0" || n.ID != good+"/"+spec.EventSucceeded {
		t.Errorf("succeeded notification: %v %+v", err, n)
	}
	// A wrong key does not verify.
	if bodies[good+"/"+spec.EventStarted] != nil && activities.Sign([]byte("other"), "1", bodies[good+"/"+spec.EventStarted]) == activities.Sign([]byte(key), "1", bodies[good+"/"+spec.EventStarted]) {
		t.Error("signatures do not depend on the key")
	}

	// The slack webhook: only the outcomes it asked for, as Slack payloads, posted to the
	// URL of its secret; the history names the secret, never the URL.
	_, sp, sb := slack.snapshot()
	if paths := slack.paths(); len(paths) == 0 || paths[0] != "/services/T000/B000/not-in-history" {
		t.Errorf("slack webhook posted to %v, want the path of the URL in its secret", paths)
	}
	history := releaseHistoryJSON(t, srv.Client(), good)
	if strings.Contains(history, "not-in-history") || !strings.Contains(history, `slack-url`) {
		t.Errorf("the release's history must name the secret slack-url and not hold its URL")
	}
	if strings.Join(sp, " ") != good+"/"+spec.EventSucceeded+" "+bad+"/"+spec.EventRolledBack {
		t.Errorf("slack webhook processed %v", sp)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type, Text string
			} `json:"text"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(sb[bad+"/"+spec.EventRolledBack], &msg); err != nil || !strings.Contains(msg.Text, "rolled back") ||
		len(msg.Blocks) < 1 || msg.Blocks[0].Type != "section" || msg.Blocks[0].Text == nil || msg.Blocks[0].Text.Type != "mrkdwn" ||
		!strings.Contains(msg.Blocks[0].Text.Text, bad) {
		t.Errorf("slack payload: %v %s", err, sb[bad+"/"+spec.EventRolledBack])
	}

	// /metrics on the API's address, without a token.
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	text := string(scrape)
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
		exact  bool
	}{
		{"slipway_releases_total", map[string]string{"environment": env, "service": "web", "outcome": "succeeded"}, 1, true},
		{"slipway_releases_total", map[string]string{"environment": env, "service": "web", "outcome": "rolled_back"}, 1, true},
		{"slipway_release_duration_seconds_count", map[string]string{"environment": env, "outcome": "succeeded"}, 1, true},
		{"slipway_phase_duration_seconds_count", map[string]string{"environment": env, "phase": "canary"}, 2, false},
		{"slipway_verdicts_total", map[string]string{"environment": env, "service": "web", "stage": "canary", "result": "passed"}, 1, true},
		{"slipway_rollbacks_total", map[string]string{"environment": env, "outcome": "rolled_back"}, 1, true},
		{"slipway_time_to_rollback_seconds_count", map[string]string{"environment": env, "outcome": "rolled_back"}, 1, true},
		{"slipway_api_requests_total", map[string]string{"route": "/v1/releases", "method": "POST"}, 2, false},
		{"slipway_api_request_duration_seconds_count", map[string]string{"route": "/v1/releases", "method": "POST"}, 2, false},
		{"temporal_workflow_completed_total", map[string]string{"workflow_type": workflows.ReleaseWorkflowName}, 1, false},
		{"temporal_activity_execution_latency_seconds_count", map[string]string{"activity_type": workflows.ActivitySendWebhook}, 1, false},
	} {
		v, ok := sample(text, c.name, c.labels)
		if !ok || v < c.min || (c.exact && v != c.min) {
			t.Errorf("%s%v = %v (found %v), want %s%v", c.name, c.labels, v, ok, map[bool]string{true: "", false: ">= "}[c.exact], c.min)
		}
	}
	// Every series of the process passes promtool's checks (names, units, help).
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// sample finds the value of the series name with (at least) labels in a text scrape.
func sample(text, name string, labels map[string]string) (float64, bool) {
	total, found := 0.0, false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		end := strings.LastIndex(line, "} ")
		if end < 0 {
			continue
		}
		ls := line[len(name)+1 : end]
		match := true
		for k, v := range labels {
			if !strings.Contains(","+ls+",", ","+k+"="+strconv.Quote(v)+",") {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(line[end+2:])[0], 64)
		if err != nil {
			continue
		}
		total += v
		found = true
	}
	return total, found
}
