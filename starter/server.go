// Package starter is Slipway's HTTP API (Gin): it validates deployment specs, freezes them
// into Release workflow inputs, and starts, steers, queries and lists releases through the
// Temporal client. It never talks to Docker: plans and live state come from the Plan
// workflow, which runs on the worker.
package starter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin" // HTTP router and middleware chain: the issue asks for Gin
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/singleflight" // one status query for many pollers of a release
	"golang.org/x/time/rate"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Config configures the API.
type Config struct {
	// Client reaches Temporal (required).
	Client client.Client
	// Namespace of the releases, for Web UI links (default "default").
	Namespace string
	// TaskQueue releases run on (default workflows.TaskQueue).
	TaskQueue string
	// DeploymentsDir holds the checked-in specs, deployments/<environment>.yaml (default
	// "deployments").
	DeploymentsDir string
	// Tokens are the API tokens (required): LoadTokens, ParseTokens or NewTokens.
	Tokens *Tokens
	// WebUIURL is the Temporal Web UI's base URL (e.g. http://127.0.0.1:8233), for the
	// web_ui link of each release; empty leaves the link out.
	WebUIURL string
	// RateLimit is each token's request rate per second (default 20) and RateBurst its
	// bucket (default 2×RateLimit). A token's own rate_limit wins.
	RateLimit float64
	RateBurst int
	// Replicas is how many API processes serve the same clients (default 1). Rate limits are
	// the whole API's: each replica enforces 1/Replicas of every limit, which adds up to the
	// limit when a load balancer spreads a token's requests evenly (docs/production.md).
	Replicas int
	// MaxBodyBytes caps request bodies (default 1 MiB, spec.MaxSpecBytes): 413 above it.
	MaxBodyBytes int64
	// MaxWait caps ?wait (default 30 min).
	MaxWait time.Duration
	// CallTimeout bounds one Temporal call made for a request (default 15 s).
	CallTimeout time.Duration
	// QueryTimeout bounds the status query (default 5 s): a release whose worker does not
	// answer is still shown, from its search attributes, with status_error set.
	QueryTimeout time.Duration
	// PlanTimeout bounds a Plan workflow (plan, environment view; default 2 min).
	PlanTimeout time.Duration
	// EventPoll is how often the event stream asks a running release for news (default 300 ms).
	EventPoll time.Duration
	// EventKeepAlive is how often an idle event stream sends a comment (default 15 s).
	EventKeepAlive time.Duration
	// MaxPageSize caps page_size of GET /v1/releases (default 200; default page 50).
	MaxPageSize int
	// EngineCheck, when set, is asked by /readyz whether every cluster engine of the
	// checked-in specs answers (cluster → error, nil when it answers).
	EngineCheck func(ctx context.Context) map[string]error
	// Logger for request logs (default slog.Default()). Tokens are never logged.
	Logger *slog.Logger
	// ObserveRequest, when set, is told of every request once it is answered: the route's
	// pattern ("" when none matched), method, status and duration (metrics.Registry's).
	ObserveRequest func(route, method string, status int, d time.Duration)
	// Dashboard configures the stakeholder dashboard at / and its login sessions
	// (dashboard_auth.go, docs/dashboard.md).
	Dashboard DashboardConfig
}

func (c *Config) rateLimit() rate.Limit { return rate.Limit(c.RateLimit) }
func (c *Config) rateBurst() int        { return c.RateBurst }

func (c *Config) defaults() error {
	if c.Client == nil {
		return errors.New("starter: a Temporal client is required")
	}
	if c.Tokens == nil || c.Tokens.Len() == 0 {
		return errors.New("starter: API tokens are required (tokens file or $" + TokensEnv + ")")
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.TaskQueue == "" {
		c.TaskQueue = workflows.TaskQueue
	}
	if c.DeploymentsDir == "" {
		c.DeploymentsDir = "deployments"
	}
	c.WebUIURL = strings.TrimRight(c.WebUIURL, "/")
	if c.RateLimit <= 0 {
		c.RateLimit = 20
	}
	if c.RateBurst <= 0 {
		c.RateBurst = int(2 * c.RateLimit)
		if c.RateBurst < 1 {
			c.RateBurst = 1
		}
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = spec.MaxSpecBytes
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 30 * time.Minute
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 15 * time.Second
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 5 * time.Second
	}
	if c.PlanTimeout <= 0 {
		c.PlanTimeout = 2 * time.Minute
	}
	if c.EventPoll <= 0 {
		c.EventPoll = 300 * time.Millisecond
	}
	if c.EventKeepAlive <= 0 {
		c.EventKeepAlive = 15 * time.Second
	}
	if c.MaxPageSize <= 0 {
		c.MaxPageSize = 200
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Server is the HTTP API.
type Server struct {
	cfg    Config
	tc     client.Client
	tokens *Tokens
	log    *slog.Logger
	engine *gin.Engine

	// ended caches the final view of closed releases (immutable once closed).
	ended endedCache
	// envLocks serialise overlap check + start per environment inside this process, and
	// recent remembers releases started here until visibility lists them. Both only make the
	// 409 at the door sharper: with several replicas, a release started through another one
	// in the last second may not be listed yet, and the release locks (workflows/lock.go),
	// taken in Temporal, are what refuses it (outcome refused, nothing changed).
	envMu    sync.Mutex
	envLocks map[string]*sync.Mutex
	recent   recentStarts
	// queries coalesces concurrent status queries of one release.
	queries singleflight.Group
	// dash is the dashboard's state (templates, the anonymous reader).
	dash dashboardState
}

// New builds the API.
func New(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		tc:       cfg.Client,
		tokens:   cfg.Tokens,
		log:      cfg.Logger,
		envLocks: map[string]*sync.Mutex{},
		ended:    endedCache{max: 1024},
	}
	if err := s.initDashboard(); err != nil {
		return nil, err
	}
	s.engine = s.routes()
	return s, nil
}

// Handler is the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.engine }

// route is one API route; the OpenAPI test checks this table against openapi.json.
type route struct {
	method, path string
	auth         bool
	handler      gin.HandlerFunc
}

func (s *Server) routeTable() []route {
	return append(s.coreRoutes(), s.loadTestRoutes()...)
}

func (s *Server) coreRoutes() []route {
	return []route{
		{http.MethodGet, "/healthz", false, s.healthz},
		{http.MethodGet, "/readyz", false, s.readyz},
		{http.MethodGet, "/v1/openapi.json", false, s.openapi},
		{http.MethodPost, "/v1/releases", true, s.postRelease},
		{http.MethodGet, "/v1/releases", true, s.listReleases},
		{http.MethodGet, "/v1/releases/:id", true, s.getRelease},
		{http.MethodGet, "/v1/releases/:id/events", true, s.releaseEvents},
		{http.MethodPost, "/v1/releases/:id/approve", true, s.decide(workflows.UpdateApprove, PermApprove)},
		{http.MethodPost, "/v1/releases/:id/abort", true, s.decide(workflows.UpdateAbort, PermApprove)},
		{http.MethodPost, "/v1/releases/:id/pause", true, s.decide(workflows.UpdatePause, PermApprove)},
		{http.MethodPost, "/v1/releases/:id/resume", true, s.decide(workflows.UpdateResume, PermApprove)},
		{http.MethodPost, "/v1/releases/:id/rollback", true, s.rollback},
		{http.MethodPost, "/v1/releases/:id/resolve", true, s.resolve},
		{http.MethodGet, "/v1/environments/:env", true, s.getEnvironment},
		{http.MethodPost, "/v1/plan", true, s.postPlan},
	}
}

func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(s.recover, s.logRequests)
	e.NoRoute(func(c *gin.Context) {
		writeProblem(c, notFound("no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		writeProblem(c, &apiError{status: http.StatusMethodNotAllowed, title: "Method not allowed",
			detail: fmt.Sprintf("%s is not allowed on %s", c.Request.Method, c.Request.URL.Path)})
	})
	for _, r := range s.routeTable() {
		hs := []gin.HandlerFunc{}
		if r.auth {
			hs = append(hs, s.authenticate)
		}
		hs = append(hs, r.handler)
		e.Handle(r.method, r.path, hs...)
	}
	s.dashboardRoutes(e)
	return e
}

// recover turns a panic in a handler into a 500 problem.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panic", "method", c.Request.Method, "path", c.FullPath(), "panic", fmt.Sprint(v))
			if !c.Writer.Written() {
				writeProblem(c, &apiError{status: 500, title: "Internal error", detail: "the server hit a bug; see its log"})
			}
		}
	}()
	c.Set(ctxServer, s)
	c.Next()
}

// logRequests logs one line per request: method, route, status, duration, actor. Never the
// Authorization header or the query string.
func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	actor := ""
	if p := who(c); p != nil {
		actor = p.name
	}
	lvl := slog.LevelDebug
	if c.Writer.Status() >= 500 {
		lvl = slog.LevelWarn
	} else if c.Request.Method != http.MethodGet {
		lvl = slog.LevelInfo
	}
	d := time.Since(start)
	s.log.Log(c.Request.Context(), lvl, "request", "method", c.Request.Method, "route", c.FullPath(),
		"status", c.Writer.Status(), "duration", d.Round(time.Microsecond), "actor", actor)
	if s.cfg.ObserveRequest != nil {
		s.cfg.ObserveRequest(c.FullPath(), c.Request.Method, c.Writer.Status(), d)
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// callCtx bounds one Temporal call made for a request.
func (s *Server) callCtx(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), s.cfg.CallTimeout)
}
