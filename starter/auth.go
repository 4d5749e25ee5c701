package starter

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate" // token-bucket limiter from the Go team: per-token rate limits
	"gopkg.in/yaml.v3"
)

// Permission is what a token may do.
type Permission string

// Permissions. release and approve include read.
const (
	PermRead    Permission = "read"    // GET releases, events, environments, plan
	PermRelease Permission = "release" // start a release, roll back, abort
	PermApprove Permission = "approve" // approve, abort, pause, resume
)

// TokensEnv is the environment variable that may hold the token file's content (YAML or
// JSON) instead of a file.
const TokensEnv = "SLIPWAY_TOKENS"

// TokenFile is the format of the tokens file (and of $SLIPWAY_TOKENS):
//
//	tokens:
//	  - name: jenkins                 # the actor recorded in releases
//	    sha256: 5e884898da28...        # hex SHA-256 of the token (`slipway token hash`)
//	    environments: [staging, prod]  # or ["*"]
//	    permissions: [release]         # read | release | approve
//	    rate_limit: 20                 # requests per second (optional)
//	    burst: 40                      # (optional)
type TokenFile struct {
	Tokens []TokenEntry `yaml:"tokens" json:"tokens"`
}

// TokenEntry is one token: its name, the SHA-256 of its secret, and its scopes.
type TokenEntry struct {
	Name         string       `yaml:"name" json:"name"`
	SHA256       string       `yaml:"sha256" json:"sha256"`
	Environments []string     `yaml:"environments" json:"environments"`
	Permissions  []Permission `yaml:"permissions" json:"permissions"`
	// RateLimit in requests per second for this token; 0 takes Config.RateLimit.
	RateLimit float64 `yaml:"rate_limit,omitempty" json:"rate_limit,omitempty"`
	Burst     int     `yaml:"burst,omitempty" json:"burst,omitempty"`
}

// Tokens is the set of API tokens, stored as SHA-256 hashes only.
type Tokens struct {
	entries []*principal
}

// principal is an authenticated token holder.
type principal struct {
	name    string
	hash    [sha256.Size]byte
	allEnvs bool
	envs    []string
	perms   map[Permission]bool
	rate    float64
	burst   int
	limiter *rate.Limiter
	mu      sync.Mutex
}

// HashToken returns the hex SHA-256 of a token, the form the tokens file stores.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// NewToken returns a new random token (32 random bytes, "slw_" + hex) and its hash.
func NewToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("random token: %w", err)
	}
	token = "slw_" + hex.EncodeToString(b)
	return token, HashToken(token), nil
}

// LoadTokens reads the tokens file at path; with an empty path it reads $SLIPWAY_TOKENS.
// Neither set is an error: the API refuses to run without tokens.
func LoadTokens(path string) (*Tokens, error) {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
		return ParseTokens(path, data)
	}
	if v := os.Getenv(TokensEnv); strings.TrimSpace(v) != "" {
		return ParseTokens("$"+TokensEnv, []byte(v))
	}
	return nil, fmt.Errorf("no API tokens: give a tokens file or set $%s", TokensEnv)
}

// ParseTokens decodes a tokens document (YAML or JSON). source names it in errors.
func ParseTokens(source string, data []byte) (*Tokens, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var f TokenFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	lines := tokenLines(&root)
	var errs []error
	for i, e := range f.Tokens {
		where := fmt.Sprintf("%s: tokens[%d]", source, i)
		if i < len(lines) {
			where = fmt.Sprintf("%s:%d: tokens[%d]", source, lines[i], i)
		}
		if err := e.check(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return NewTokens(f.Tokens...)
}

// tokenLines returns the line of each entry of the tokens sequence.
func tokenLines(root *yaml.Node) []int {
	if root == nil || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "tokens" && m.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, n := range m.Content[i+1].Content {
				out = append(out, n.Line)
			}
			return out
		}
	}
	return nil
}

func (e TokenEntry) check() error {
	var problems []string
	if strings.TrimSpace(e.Name) == "" {
		problems = append(problems, "name: required")
	}
	if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != sha256.Size {
		problems = append(problems, "sha256: must be the 64 hex digits of the token's SHA-256 (slipway token hash)")
	}
	if len(e.Environments) == 0 {
		problems = append(problems, `environments: required (names, or "*" for all)`)
	}
	if len(e.Permissions) == 0 {
		problems = append(problems, "permissions: required (read, release, approve)")
	}
	for _, p := range e.Permissions {
		switch p {
		case PermRead, PermRelease, PermApprove:
		default:
			problems = append(problems, fmt.Sprintf("permissions: unknown %q (read, release, approve)", p))
		}
	}
	if e.RateLimit < 0 || math.IsNaN(e.RateLimit) || math.IsInf(e.RateLimit, 0) {
		problems = append(problems, "rate_limit: must be a positive number of requests per second")
	}
	if e.Burst < 0 {
		problems = append(problems, "burst: must not be negative")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// NewTokens builds a token set from entries (e.g. a dev token made at start).
func NewTokens(entries ...TokenEntry) (*Tokens, error) {
	t := &Tokens{}
	names := map[string]bool{}
	hashes := map[string]bool{}
	for _, e := range entries {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("token %q: %w", e.Name, err)
		}
		if names[e.Name] {
			return nil, fmt.Errorf("token %q: name used twice", e.Name)
		}
		h := strings.ToLower(e.SHA256)
		if hashes[h] {
			return nil, fmt.Errorf("token %q: the same secret is listed twice", e.Name)
		}
		names[e.Name], hashes[h] = true, true
		p := &principal{name: e.Name, perms: map[Permission]bool{}, rate: e.RateLimit, burst: e.Burst}
		b, _ := hex.DecodeString(h)
		copy(p.hash[:], b)
		for _, env := range e.Environments {
			if env == "*" {
				p.allEnvs = true
			} else {
				p.envs = append(p.envs, env)
			}
		}
		for _, perm := range e.Permissions {
			p.perms[perm] = true
		}
		t.entries = append(t.entries, p)
	}
	if len(t.entries) == 0 {
		return nil, errors.New("no API tokens defined")
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// lookup finds the holder of token. It hashes the token and compares against every stored
// hash in constant time, so neither the secret nor its position leaks through timing.
func (t *Tokens) lookup(token string) *principal {
	h := sha256.Sum256([]byte(token))
	var found *principal
	for _, p := range t.entries {
		if subtle.ConstantTimeCompare(h[:], p.hash[:]) == 1 {
			found = p
		}
	}
	return found
}

// can reports whether the principal holds perm (release and approve include read).
func (p *principal) can(perm Permission) bool {
	if p.perms[perm] {
		return true
	}
	return perm == PermRead && (p.perms[PermRelease] || p.perms[PermApprove])
}

// canEnv reports whether the principal's scope covers the environment.
func (p *principal) canEnv(env string) bool {
	return p.allEnvs || slices.Contains(p.envs, env)
}

// allow takes one request from the principal's bucket; it returns how long to wait when the
// bucket is empty. A token's limit is for the whole API: with replicas > 1 API processes
// behind one address, this process enforces its share, rate/replicas with a bucket of
// burst/replicas (at least one request), so the replicas together admit what one would.
func (p *principal) allow(def rate.Limit, defBurst, replicas int) (bool, time.Duration) {
	p.mu.Lock()
	if p.limiter == nil {
		lim, burst := def, defBurst
		if p.rate > 0 {
			lim = rate.Limit(p.rate)
			if p.burst == 0 {
				burst = int(math.Ceil(p.rate * 2))
			}
		}
		if p.burst > 0 {
			burst = p.burst
		}
		p.limiter = rate.NewLimiter(shareOf(lim, burst, replicas))
	}
	lim := p.limiter
	p.mu.Unlock()
	now := time.Now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// shareOf is one replica's share of a token's limit: the rate divided by the number of
// replicas, and the bucket too, rounded up to at least one request.
func shareOf(lim rate.Limit, burst, replicas int) (rate.Limit, int) {
	if replicas <= 1 {
		return lim, burst
	}
	b := (burst + replicas - 1) / replicas
	if b < 1 {
		b = 1
	}
	return lim / rate.Limit(replicas), b
}

const (
	ctxPrincipal = "slipway.principal"
	ctxServer    = "slipway.server"
)

// authenticate is the middleware that requires a valid bearer token (401) and applies the
// token's rate limit (429). It never logs or echoes the token.
func (s *Server) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" {
		writeProblem(c, unauthorized("missing bearer token (Authorization: Bearer <token>)"))
		return
	}
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		writeProblem(c, unauthorized("the Authorization header must be: Bearer <token>"))
		return
	}
	p := s.tokens.lookup(tok)
	if p == nil {
		writeProblem(c, unauthorized("unknown token"))
		return
	}
	if ok, wait := p.allow(s.cfg.rateLimit(), s.cfg.rateBurst(), s.cfg.Replicas); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		if secs < 1 {
			secs = 1
		}
		writeProblem(c, &apiError{status: 429, title: "Too many requests",
			detail:     fmt.Sprintf("token %q is over its rate limit; retry in %d s", p.name, secs),
			retryAfter: secs})
		return
	}
	c.Set(ctxPrincipal, p)
	c.Next()
}

// who returns the authenticated principal of the request.
func who(c *gin.Context) *principal {
	v, _ := c.Get(ctxPrincipal)
	p, _ := v.(*principal)
	return p
}

// authorize checks that the request's token holds perm for the environment (env "" checks
// the permission only).
func authorize(c *gin.Context, perm Permission, env string) error {
	p := who(c)
	if p == nil {
		return unauthorized("no token")
	}
	if !p.can(perm) {
		return forbidden("token %q lacks the %q permission", p.name, perm)
	}
	if env != "" && !p.canEnv(env) {
		return forbidden("token %q is not scoped to environment %q", p.name, env)
	}
	return nil
}
