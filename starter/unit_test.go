package starter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
)

func TestParseTokens(t *testing.T) {
	tok, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if HashToken(tok) != hash || !strings.HasPrefix(tok, "slw_") {
		t.Fatalf("NewToken: hash %s does not match token", hash)
	}
	doc := fmt.Sprintf(`tokens:
  - name: jenkins
    sha256: %s
    environments: [staging]
    permissions: [release]
  - name: ops
    sha256: %s
    environments: ["*"]
    permissions: [approve]
    rate_limit: 5
`, hash, HashToken("ops-secret"))
	ts, err := ParseTokens("tokens.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p := ts.lookup(tok)
	if p == nil || p.name != "jenkins" {
		t.Fatalf("lookup(jenkins token) = %v", p)
	}
	if !p.can(PermRelease) || !p.can(PermRead) || p.can(PermApprove) {
		t.Errorf("jenkins permissions wrong: release %v read %v approve %v", p.can(PermRelease), p.can(PermRead), p.can(PermApprove))
	}
	if !p.canEnv("staging") || p.canEnv("prod") {
		t.Errorf("jenkins scope wrong")
	}
	ops := ts.lookup("ops-secret")
	if ops == nil || !ops.canEnv("prod") || !ops.can(PermApprove) || ops.can(PermRelease) {
		t.Fatalf("ops token wrong: %+v", ops)
	}
	if ts.lookup("wrong") != nil || ts.lookup("") != nil || ts.lookup(hash) != nil {
		t.Error("a wrong token (or the hash itself) was accepted")
	}
}

func TestParseTokensErrors(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"bad hash":        {"tokens:\n  - name: a\n    sha256: abc\n    environments: ['*']\n    permissions: [read]\n", "tokens.yaml:2: tokens[0]: sha256"},
		"unknown perm":    {"tokens:\n  - name: a\n    sha256: " + HashToken("x") + "\n    environments: ['*']\n    permissions: [admin]\n", `unknown "admin"`},
		"no envs":         {"tokens:\n  - name: a\n    sha256: " + HashToken("x") + "\n    permissions: [read]\n", "environments: required"},
		"unknown field":   {"tokens:\n  - name: a\n    token: plain\n", "field token not found"},
		"duplicate name":  {"tokens:\n  - {name: a, sha256: " + HashToken("x") + ", environments: ['*'], permissions: [read]}\n  - {name: a, sha256: " + HashToken("y") + ", environments: ['*'], permissions: [read]}\n", "name used twice"},
		"empty":           {"tokens: []\n", "no API tokens"},
		"second is wrong": {"tokens:\n  - {name: a, sha256: " + HashToken("x") + ", environments: ['*'], permissions: [read]}\n  - {name: b, environments: ['*'], permissions: [read]}\n", "tokens.yaml:3: tokens[1]: sha256"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseTokens("tokens.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadTokensFromEnv(t *testing.T) {
	t.Setenv(TokensEnv, `{"tokens":[{"name":"ci","sha256":"`+HashToken("s3cret")+`","environments":["*"],"permissions":["read"]}]}`)
	ts, err := LoadTokens("")
	if err != nil {
		t.Fatal(err)
	}
	if p := ts.lookup("s3cret"); p == nil || p.name != "ci" {
		t.Fatalf("token from $%s not found", TokensEnv)
	}
	t.Setenv(TokensEnv, "")
	if _, err := LoadTokens(""); err == nil {
		t.Fatal("no tokens at all was accepted")
	}
}

func TestProblemMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{spec.Errors{{File: "a.yaml", Line: 3, Path: "services[0].version", Message: "required"}}, 400},
		{fmt.Errorf("wrapped: %w", spec.Errors{{Message: "x"}}), 400},
		{badRequest("x"), 400},
		{unauthorized("x"), 401},
		{forbidden("x"), 403},
		{notFound("x"), 404},
		{serviceerror.NewNotFound("workflow not found"), 404},
		{conflict("x"), 409},
		{serviceerror.NewWorkflowExecutionAlreadyStarted("x", "", ""), 409},
		{&http.MaxBytesError{Limit: 10}, 413},
		{&apiError{status: 429, title: "Too many requests", retryAfter: 2}, 429},
		{serviceerror.NewUnavailable("down"), 503},
		{fmt.Errorf("list: %w", context.DeadlineExceeded), 503},
		{errors.New("boom"), 500},
	} {
		if got := problemFor(tc.err).Status; got != tc.want {
			t.Errorf("problemFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	p := problemFor(spec.Errors{{File: "a.yaml", Line: 3, Column: 5, Path: "services[0].version", Message: "required"}})
	if len(p.Errors) != 1 || p.Errors[0].Line != 3 || p.Errors[0].Path != "services[0].version" || p.Errors[0].File != "a.yaml" {
		t.Fatalf("field errors lost: %+v", p.Errors)
	}
}

func TestEnvOfID(t *testing.T) {
	for id, want := range map[string]string{
		"release-staging-20261127t094403abcdef": "staging",
		"release-eu-prod-k0123456789abcdef":     "eu-prod",
		"release-staging":                       "",
		"plan-staging-abc":                      "",
		"release--abc":                          "",
		"release-Staging-abc":                   "",
		"release-staging-a_b":                   "",
	} {
		got, ok := envOfID(id)
		if got != want || ok != (want != "") {
			t.Errorf("envOfID(%q) = %q, %v; want %q", id, got, ok, want)
		}
	}
	if id := newShortID(timeNowForTest()); !shortID.MatchString(id) {
		t.Errorf("newShortID() = %q is not a short id", id)
	}
	if a, b := keyShortID("jenkins", "k1"), keyShortID("jenkins", "k1"); a != b || !shortID.MatchString(a) {
		t.Errorf("keyShortID not stable or not a short id: %q %q", a, b)
	}
	if keyShortID("jenkins", "k1") == keyShortID("other", "k1") {
		t.Error("idempotency keys are not scoped to the token")
	}
}

// lazyServer is a Server whose Temporal client never dials (for tests of the router that
// never reach Temporal).
func lazyServer(t *testing.T, tokens *Tokens) *Server {
	t.Helper()
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s, err := New(Config{Client: c, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpenAPIMatchesRouter checks that every route of the router is described in
// openapi.json, and every described operation is routed.
func TestOpenAPIMatchesRouter(t *testing.T) {
	ts, err := NewTokens(TokenEntry{Name: "t", SHA256: HashToken("t"), Environments: []string{"*"}, Permissions: []Permission{PermRead}})
	if err != nil {
		t.Fatal(err)
	}
	s := lazyServer(t, ts)
	routed := map[string]bool{}
	for _, r := range s.engine.Routes() {
		if isDashboardRoute(r.Path) {
			continue // the dashboard's pages and forms (dashboard.go) are not API operations
		}
		p := r.Path
		for _, seg := range strings.Split(p, "/") {
			if strings.HasPrefix(seg, ":") {
				p = strings.Replace(p, seg, "{"+seg[1:]+"}", 1)
			}
		}
		routed[r.Method+" "+p] = true
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /v1/openapi.json: %d", rec.Code)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			described[strings.ToUpper(m)+" "+path] = true
		}
	}
	var missing, extra []string
	for k := range routed {
		if !described[k] {
			missing = append(missing, k)
		}
	}
	for k := range described {
		if !routed[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes not described in openapi.json: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("operations in openapi.json without a route: %v", extra)
	}
	if len(routed) < 14 {
		t.Errorf("only %d routes", len(routed))
	}
}

// TestAuthWithoutTemporal covers the answers the router gives before reaching Temporal.
func TestAuthWithoutTemporal(t *testing.T) {
	ts, err := NewTokens(
		TokenEntry{Name: "reader", SHA256: HashToken("r"), Environments: []string{"staging"}, Permissions: []Permission{PermRead}},
		TokenEntry{Name: "slow", SHA256: HashToken("s"), Environments: []string{"*"}, Permissions: []Permission{PermRead}, RateLimit: 0.001, Burst: 1},
	)
	if err != nil {
		t.Fatal(err)
	}
	h := lazyServer(t, ts).Handler()
	do := func(method, path, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(""))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/v1/releases", "", 401},
		{"GET", "/v1/releases", "nope", 401},
		{"POST", "/v1/releases", "r", 403},
		{"GET", "/v1/releases/release-prod-abc", "r", 403},
		{"GET", "/v1/releases/not-a-release", "r", 404},
		{"GET", "/v1/nothing", "r", 404},
		{"DELETE", "/v1/releases", "r", 405},
		{"GET", "/healthz", "", 200},
	} {
		rec := do(tc.method, tc.path, tc.token)
		if rec.Code != tc.want {
			t.Errorf("%s %s (token %q) = %d, want %d: %s", tc.method, tc.path, tc.token, rec.Code, tc.want, rec.Body)
			continue
		}
		if tc.want >= 400 {
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s %s: content type %q", tc.method, tc.path, ct)
			}
			var p apiclient.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != tc.want || p.Title == "" {
				t.Errorf("%s %s: problem body %s (%v)", tc.method, tc.path, rec.Body, err)
			}
		}
	}
	if rec := do("GET", "/v1/releases/release-prod-abc", "s"); rec.Code == 429 {
		t.Fatalf("first request of the slow token was rate limited")
	}
	rec := do("GET", "/v1/releases/release-prod-abc", "s")
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("second request of the slow token = %d (Retry-After %q), want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func timeNowForTest() time.Time { return time.Now() }

// TestTemporalDownIs503 runs the real router against a Temporal address where nothing listens.
func TestTemporalDownIs503(t *testing.T) {
	ts, err := NewTokens(TokenEntry{Name: "t", SHA256: HashToken("t"), Environments: []string{"*"}, Permissions: []Permission{PermRelease}})
	if err != nil {
		t.Fatal(err)
	}
	h := lazyServer(t, ts).Handler()
	for _, path := range []string{"/v1/releases", "/v1/releases/release-staging-abc", "/readyz"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s with Temporal down: %d %s", path, rec.Code, rec.Body)
		}
	}
}
