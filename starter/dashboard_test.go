package starter_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/starter"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type webResp struct {
	status int
	hdr    http.Header
	body   string
}

// web sends a dashboard request with the given cookies (name=value) and form.
func (a *api) web(method, path string, form url.Values, cookies []*http.Cookie, hdr ...string) webResp {
	a.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, a.srv.URL+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return webResp{resp.StatusCode, resp.Header, string(b)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func cookieOf(t *testing.T, r webResp, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.hdr}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", name, r.hdr["Set-Cookie"])
	return nil
}

// webLogin logs in through the form and returns the session cookie.
func (a *api) webLogin(t *testing.T, token string) *http.Cookie {
	t.Helper()
	page := a.web("GET", "/login?next=/environments/x", nil, nil)
	m := csrfField.FindStringSubmatch(page.body)
	if page.status != 200 || m == nil {
		t.Fatalf("login page: %d %s", page.status, page.body)
	}
	lc := cookieOf(t, page, "slipway_login")
	r := a.web("POST", "/login", url.Values{"csrf": {m[1]}, "token": {token}, "next": {"/environments/x"}}, []*http.Cookie{lc})
	if r.status != http.StatusSeeOther || r.hdr.Get("Location") != "/environments/x" {
		t.Fatalf("login: %d %s %s", r.status, r.hdr.Get("Location"), r.body)
	}
	return cookieOf(t, r, "slipway_session")
}

// TestDashboardSessions checks auth for people without a browser: the login form and its
// CSRF token, the session cookie's flags, a session that works on another replica (same
// tokens, no shared state) and not when tampered with, CSRF-checked writes, logout, the API
// refusing the cookie, and the anonymous read-only option.
func TestDashboardSessions(t *testing.T) {
	a := newAPI(t, nil)

	// Not logged in: the pages redirect to the login form; the API is unchanged.
	if r := a.web("GET", "/", nil, nil); r.status != http.StatusSeeOther || !strings.HasPrefix(r.hdr.Get("Location"), "/login?next=") {
		t.Fatalf("GET / without a session: %d %v", r.status, r.hdr)
	}
	page := a.web("GET", "/login", nil, nil)
	if !strings.Contains(page.body, `<html lang="en">`) || !strings.Contains(page.body, `<label for="token">`) {
		t.Fatalf("login page: %s", page.body)
	}
	if csp := page.hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("login page CSP %q", csp)
	}
	lc := cookieOf(t, page, "slipway_login")
	token := csrfField.FindStringSubmatch(page.body)[1]
	// A login without the form's CSRF token, or from another site, is refused.
	if r := a.web("POST", "/login", url.Values{"csrf": {"forged"}, "token": {tokAdmin}}, []*http.Cookie{lc}); r.status != http.StatusForbidden {
		t.Fatalf("login with a forged CSRF token: %d", r.status)
	}
	if r := a.web("POST", "/login", url.Values{"csrf": {token}, "token": {tokAdmin}}, []*http.Cookie{lc}, "Origin", "http://evil.example"); r.status != http.StatusForbidden {
		t.Fatalf("login from another origin: %d", r.status)
	}
	if r := a.web("POST", "/login", url.Values{"csrf": {token}, "token": {"wrong"}}, []*http.Cookie{lc}); r.status != http.StatusUnauthorized || strings.Contains(r.body, "wrong") {
		t.Fatalf("login with a wrong token: %d", r.status)
	}

	admin := a.webLogin(t, tokAdmin)
	if !admin.HttpOnly || admin.SameSite != http.SameSiteStrictMode || admin.Path != "/" || admin.MaxAge <= 0 {
		t.Fatalf("session cookie flags: %+v", admin)
	}
	if strings.Contains(admin.Value, tokAdmin) || strings.Contains(admin.Value, starter.HashToken(tokAdmin)) {
		t.Fatal("the session cookie carries the token (or its hash in clear)")
	}
	r := a.web("GET", "/", nil, []*http.Cookie{admin})
	if r.status != 200 || !strings.Contains(r.body, "Logged in as <strong>admin</strong>") {
		t.Fatalf("GET / logged in: %d %s", r.status, r.body)
	}
	csrf := csrfField.FindStringSubmatch(r.body)[1]

	// Another replica (same tokens, nothing shared) accepts the session.
	b := newAPI(t, nil)
	if r := b.web("GET", "/", nil, []*http.Cookie{admin}); r.status != 200 || !strings.Contains(r.body, "admin") {
		t.Fatalf("the session on a second replica: %d", r.status)
	}
	// A tampered cookie is no session.
	bad := *admin
	payload, sig, _ := strings.Cut(admin.Value, ".")
	bad.Value = payload + "A." + sig
	if r := a.web("GET", "/", nil, []*http.Cookie{&bad}); r.status != http.StatusSeeOther {
		t.Fatalf("tampered session: %d", r.status)
	}
	// The API itself still wants a bearer token.
	if r := a.web("GET", "/v1/releases", nil, []*http.Cookie{admin}); r.status != http.StatusUnauthorized {
		t.Fatalf("API with a session cookie only: %d", r.status)
	}

	// Writes need the session's CSRF token (and no foreign Origin).
	id := "release-nowhere-0123456789ab"
	if r := a.web("POST", "/releases/"+id+"/pause", url.Values{"reason": {"x"}}, []*http.Cookie{admin}); r.status != http.StatusForbidden || !strings.Contains(r.body, "CSRF") {
		t.Fatalf("write without a CSRF token: %d %s", r.status, r.body)
	}
	if r := a.web("POST", "/releases/"+id+"/pause", url.Values{"csrf": {csrf}}, []*http.Cookie{admin}, "Origin", "http://evil.example"); r.status != http.StatusForbidden {
		t.Fatalf("write from another origin: %d", r.status)
	}
	// The reader's session may not decide, even with its own CSRF token.
	reader := a.webLogin(t, tokReader)
	rr := a.web("GET", "/", nil, []*http.Cookie{reader})
	rcsrf := csrfField.FindStringSubmatch(rr.body)[1]
	if r := a.web("POST", "/releases/"+id+"/approve", url.Values{"csrf": {rcsrf}}, []*http.Cookie{reader}); r.status != http.StatusForbidden || !strings.Contains(r.body, "lacks the") {
		t.Fatalf("reader approving: %d %s", r.status, r.body)
	}
	if rcsrf == csrf {
		t.Fatal("two sessions share a CSRF token")
	}

	// Logout clears the cookie.
	out := a.web("POST", "/logout", url.Values{"csrf": {csrf}}, []*http.Cookie{admin})
	if out.status != http.StatusSeeOther || cookieOf(t, out, "slipway_session").MaxAge >= 0 {
		t.Fatalf("logout: %d %v", out.status, out.hdr)
	}

	// Anonymous read-only view: off by default (above), on when asked.
	anon := newAPI(t, func(c *starter.Config) { c.Dashboard.Anonymous = true })
	if r := anon.web("GET", "/", nil, nil); r.status != 200 || !strings.Contains(r.body, "anonymous (read-only)") {
		t.Fatalf("anonymous GET /: %d %s", r.status, r.body)
	}
	if r := anon.web("POST", "/releases/"+id+"/approve", url.Values{"csrf": {""}}, nil); r.status != http.StatusForbidden {
		t.Fatalf("anonymous write: %d", r.status)
	}
	// A short session key is refused.
	if _, err := starter.New(starter.Config{Client: a.tc, Tokens: testTokens(t), Dashboard: starter.DashboardConfig{SessionKey: []byte("short")}}); err == nil {
		t.Fatal("a 5-byte session key was accepted")
	}
}
