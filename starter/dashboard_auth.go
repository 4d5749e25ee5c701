package starter

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Auth for people (docs/dashboard.md): the API tokens, typed once into a login form, become
// a session cookie. The session is stateless so that any API replica accepts it: the cookie
// holds the token's SHA-256 (what the tokens file stores, never the token), an expiry and a
// nonce, signed with HMAC-SHA256 under the session key. Every request looks the hash up in
// the tokens again, so removing a token from the tokens file ends its sessions. Writes carry
// a per-session CSRF token (an HMAC of the session) in a hidden form field, on top of the
// cookie's SameSite=Strict.

// DashboardConfig configures the dashboard at / and its sessions.
type DashboardConfig struct {
	// SessionKey signs session cookies and CSRF tokens (at least 32 bytes). Every API
	// replica must have the same key. Empty: a key derived from the token hashes, so
	// replicas with the same tokens file agree without more configuration (and whoever can
	// read the tokens file can sign sessions: give a key of its own in production).
	SessionKey []byte
	// SessionTTL is how long a login lasts (default 12 h).
	SessionTTL time.Duration
	// Anonymous lets anyone read the dashboard without logging in (read-only, every
	// environment). For a trusted network only; off by default. Writes still need a login.
	Anonymous bool
	// PlanTTL is how long the overview reuses an environment's Plan result (default 5 s;
	// negative: never, one Plan per environment per page view). See envPlan.
	PlanTTL time.Duration
}

// DefaultDashboardPlanTTL is Dashboard.PlanTTL's default.
const DefaultDashboardPlanTTL = 5 * time.Second

// MinSessionKeyBytes is the shortest session key accepted.
const MinSessionKeyBytes = 32

const (
	sessionCookie   = "slipway_session"
	loginCSRFCookie = "slipway_login"
	anonymousName   = "anonymous"
)

func (d *DashboardConfig) defaults(tokens *Tokens) error {
	if d.SessionTTL <= 0 {
		d.SessionTTL = 12 * time.Hour
	}
	if d.PlanTTL == 0 {
		d.PlanTTL = DefaultDashboardPlanTTL
	}
	if len(d.SessionKey) == 0 {
		d.SessionKey = derivedSessionKey(tokens)
	} else if len(d.SessionKey) < MinSessionKeyBytes {
		return errors.New("starter: the dashboard session key must be at least 32 bytes")
	}
	return nil
}

// derivedSessionKey is the session key when none is configured: an HMAC of every token's
// hash, sorted, so every replica reading the same tokens file derives the same key.
func derivedSessionKey(tokens *Tokens) []byte {
	hs := make([]string, 0, tokens.Len())
	for _, p := range tokens.entries {
		hs = append(hs, hex.EncodeToString(p.hash[:]))
	}
	sort.Strings(hs)
	m := hmac.New(sha256.New, []byte("slipway dashboard session key v1"))
	m.Write([]byte(strings.Join(hs, "\n")))
	return m.Sum(nil)
}

// session is the signed content of the session cookie.
type session struct {
	Hash    string `json:"h"` // hex SHA-256 of the token
	Expires int64  `json:"e"` // Unix seconds
	Nonce   string `json:"n"`
}

func (s *Server) sign(purpose, payload string) []byte {
	m := hmac.New(sha256.New, s.cfg.Dashboard.SessionKey)
	m.Write([]byte(purpose + "|" + payload))
	return m.Sum(nil)
}

// newSession returns the cookie value of a new session for the token hash.
func (s *Server) newSession(hash [sha256.Size]byte, now time.Time) (string, error) {
	n := make([]byte, 16)
	if _, err := rand.Read(n); err != nil {
		return "", err
	}
	b, err := json.Marshal(session{Hash: hex.EncodeToString(hash[:]), Expires: now.Add(s.cfg.Dashboard.SessionTTL).Unix(), Nonce: hex.EncodeToString(n)})
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.sign("session", payload)), nil
}

// readSession checks a cookie value (signature, expiry, a token that still exists) and
// returns its principal and the session's payload (for its CSRF token).
func (s *Server) readSession(v string, now time.Time) (*principal, string, bool) {
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return nil, "", false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.sign("session", payload)) {
		return nil, "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, "", false
	}
	var ses session
	if json.Unmarshal(b, &ses) != nil || now.Unix() >= ses.Expires {
		return nil, "", false
	}
	h, err := hex.DecodeString(ses.Hash)
	if err != nil || len(h) != sha256.Size {
		return nil, "", false
	}
	var found *principal
	for _, p := range s.tokens.entries {
		if subtle.ConstantTimeCompare(h, p.hash[:]) == 1 {
			found = p
		}
	}
	return found, payload, found != nil
}

// csrfToken is the CSRF token of a session (payload from readSession).
func (s *Server) csrfToken(payload string) string {
	return base64.RawURLEncoding.EncodeToString(s.sign("csrf", payload))
}

const (
	ctxSessionPayload = "slipway.session"
)

// anonymous is the read-only principal of DashboardConfig.Anonymous.
func anonymousPrincipal() *principal {
	return &principal{name: anonymousName, allEnvs: true, perms: map[Permission]bool{PermRead: true}}
}

// webAuth is the dashboard's middleware: a valid session cookie names the principal (with
// its token's rate limit); without one, the anonymous reader when that is on, else a
// redirect to the login form (an event stream or a form post gets 401).
func (s *Server) webAuth(c *gin.Context) {
	s.securityHeaders(c)
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if p, payload, ok := s.readSession(ck, time.Now()); ok {
			if ok, wait := p.allow(s.cfg.rateLimit(), s.cfg.rateBurst(), s.cfg.Replicas); !ok {
				c.Header("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
				s.renderError(c, http.StatusTooManyRequests, "Too many requests", "your token is over its rate limit; try again in a moment")
				c.Abort()
				return
			}
			c.Set(ctxPrincipal, p)
			c.Set(ctxSessionPayload, payload)
			c.Next()
			return
		}
	}
	if s.cfg.Dashboard.Anonymous {
		c.Set(ctxPrincipal, s.dash.anon)
		c.Next()
		return
	}
	if c.Request.Method == http.MethodGet && !strings.HasSuffix(c.Request.URL.Path, "/events") {
		c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
		c.Abort()
		return
	}
	s.renderError(c, http.StatusUnauthorized, "Not logged in", "log in first")
	c.Abort()
}

// securityHeaders: no framing, no inline script, no referrer.
func (s *Server) securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: Chromium then sends "Origin: null" with form posts
	h.Set("Cache-Control", "no-store")
}

// checkCSRF checks a form post: the session's CSRF token in the "csrf" field and, when the
// browser sends one, an Origin of this host.
func (s *Server) checkCSRF(c *gin.Context) bool {
	if !sameOrigin(c.Request) {
		return false
	}
	payload := c.GetString(ctxSessionPayload)
	if payload == "" {
		return false
	}
	got := c.PostForm("csrf")
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.csrfToken(payload))) == 1
}

// sameOrigin: a POST whose Origin names another site (or is "null") is refused; browsers
// send Origin with every form post, other clients may send none.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// cookie sets an HttpOnly, SameSite=Strict cookie on the whole site (Secure over HTTPS).
func setCookie(c *gin.Context, name, value string, maxAge int) {
	secure := c.Request.TLS != nil || strings.EqualFold(c.GetHeader("X-Forwarded-Proto"), "https")
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
}

// loginPage shows the login form (GET /login) with a fresh login CSRF token, kept in a
// cookie and a hidden field (double submit: no session exists yet to derive one from).
func (s *Server) loginPage(c *gin.Context) {
	s.securityHeaders(c)
	s.renderLogin(c, http.StatusOK, "")
}

func (s *Server) renderLogin(c *gin.Context, status int, problem string) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		s.renderError(c, http.StatusInternalServerError, "Internal error", "no randomness")
		return
	}
	tok := hex.EncodeToString(b)
	setCookie(c, loginCSRFCookie, tok, 600)
	s.render(c, status, "login.html", loginData{pageBase: pageBase{Title: "Log in"}, CSRF: tok, Next: safeNext(c.Query("next")), Problem: problem, Anonymous: s.cfg.Dashboard.Anonymous})
}

// login checks the token of the form (POST /login) and sets the session cookie.
func (s *Server) login(c *gin.Context) {
	s.securityHeaders(c)
	ck, err := c.Cookie(loginCSRFCookie)
	if err != nil || !sameOrigin(c.Request) || subtle.ConstantTimeCompare([]byte(ck), []byte(c.PostForm("csrf"))) != 1 {
		s.renderLogin(c, http.StatusForbidden, "The form expired or came from another site: try again.")
		return
	}
	p := s.tokens.lookup(strings.TrimSpace(c.PostForm("token")))
	if p == nil {
		s.log.Info("dashboard login refused", "reason", "unknown token")
		s.renderLogin(c, http.StatusUnauthorized, "Unknown token.")
		return
	}
	if ok, _ := p.allow(s.cfg.rateLimit(), s.cfg.rateBurst(), s.cfg.Replicas); !ok {
		s.renderLogin(c, http.StatusTooManyRequests, "Too many requests for this token: try again in a moment.")
		return
	}
	v, err := s.newSession(p.hash, time.Now())
	if err != nil {
		s.renderError(c, http.StatusInternalServerError, "Internal error", "could not make a session")
		return
	}
	s.log.Info("dashboard login", "actor", p.name)
	setCookie(c, loginCSRFCookie, "", -1)
	setCookie(c, sessionCookie, v, int(s.cfg.Dashboard.SessionTTL.Seconds()))
	c.Redirect(http.StatusSeeOther, safeNext(c.PostForm("next")))
}

// logout clears the session cookie (POST /logout, with the session's CSRF token).
func (s *Server) logout(c *gin.Context) {
	if who(c) != nil && who(c) != s.dash.anon && !s.checkCSRF(c) {
		s.renderError(c, http.StatusForbidden, "Forbidden", "the form's CSRF token is missing or wrong: reload the page and try again")
		return
	}
	setCookie(c, sessionCookie, "", -1)
	c.Redirect(http.StatusSeeOther, "/login")
}

// safeNext keeps a redirect target on this site: a path, never a scheme or host.
func safeNext(v string) string {
	if v == "" || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") || strings.ContainsAny(v, "\r\n") {
		return "/"
	}
	return v
}
