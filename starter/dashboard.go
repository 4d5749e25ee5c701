package starter

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// The stakeholder dashboard (docs/dashboard.md): server-side HTML from the templates in web/,
// a little plain JavaScript for live progress (web/static/dashboard.js). Every read goes
// through the same logic as the API (the Plan workflow's environment view, the release
// status, visibility), every write through the API's decision logic (applyDecision).

//go:embed web/*.html web/static/*
var webFS embed.FS

// dashboardState is the dashboard's part of the Server.
type dashboardState struct {
	pages  map[string]*template.Template
	static http.Handler
	anon   *principal
	// inputs caches what a release was started with (build URL, commit, description):
	// immutable, read from the first event of its history.
	inputsMu sync.Mutex
	inputs   map[string]releaseMeta
	// plans caches each environment's Plan result for the overview (see envPlan).
	plansMu sync.Mutex
	plans   map[string]*planEntry
}

// planEntry is one environment's cached Plan result; done is closed once res/err are set
// (loads that arrive while the Plan runs wait for it instead of starting another).
type planEntry struct {
	key  string
	done chan struct{}
	at   time.Time
	res  *workflows.PlanResult
	err  error
}

// releaseMeta is the part of a release's input the dashboard shows.
type releaseMeta struct {
	BuildURL, Commit, Description, RollbackOf string
	FastTrack                                 bool
}

// recentReleases is how many ended releases each environment shows.
const recentReleases = 10

func (s *Server) initDashboard() error {
	if err := s.cfg.Dashboard.defaults(s.tokens); err != nil {
		return err
	}
	funcs := template.FuncMap{
		"when":  fmtTime,
		"short": func(v string) string { return v[:min(len(v), 12)] },
		"pct":   func(f float64) string { return fmt.Sprintf("%.1f %%", f*100) },
		"ms":    func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) },
		"chart": evidenceChart,
		"phaseClass": func(v any) string {
			return "phase-" + strings.ReplaceAll(fmt.Sprint(v), "_", "-")
		},
	}
	s.dash.pages = map[string]*template.Template{}
	for _, page := range []string{"overview.html", "release.html", "login.html", "error.html"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(webFS, "web/layout.html", "web/"+page)
		if err != nil {
			return fmt.Errorf("dashboard template %s: %w", page, err)
		}
		s.dash.pages[page] = t
	}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		return err
	}
	s.dash.static = http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	s.dash.anon = anonymousPrincipal()
	s.dash.inputs = map[string]releaseMeta{}
	s.dash.plans = map[string]*planEntry{}
	return nil
}

// dashboardRoutes adds the dashboard's pages, forms and streams to the router.
func (s *Server) dashboardRoutes(e *gin.Engine) {
	e.GET("/", s.webAuth, s.overviewPage)
	e.GET("/environments/:env", s.webAuth, s.overviewPage)
	e.GET("/releases/:id", s.webAuth, s.releasePage)
	e.GET("/releases/:id/events", s.webAuth, s.releaseEvents)
	for _, a := range dashboardActions {
		e.POST("/releases/:id/"+a.update, s.webAuth, s.releaseAction(a.update, a.perm))
	}
	e.GET("/login", s.loginPage)
	e.POST("/login", s.login)
	e.POST("/logout", s.webAuth, s.logout)
	e.GET("/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "no-cache")
		c.Header("X-Content-Type-Options", "nosniff")
		s.dash.static.ServeHTTP(c.Writer, c.Request)
	})
}

// dashboardActions are the writes of the release page, with the permission each needs (as
// on the API's routes).
var dashboardActions = []struct {
	update string
	perm   Permission
}{
	{workflows.UpdateApprove, PermApprove},
	{workflows.UpdateAbort, PermApprove},
	{workflows.UpdatePause, PermApprove},
	{workflows.UpdateResume, PermApprove},
}

// pageBase is what every page's layout shows.
type pageBase struct {
	Title     string
	User      string
	Anonymous bool
	CSRF      string
}

func (s *Server) base(c *gin.Context, title string) pageBase {
	b := pageBase{Title: title}
	if p := who(c); p != nil {
		b.User = p.name
		b.Anonymous = p == s.dash.anon
	}
	if payload := c.GetString(ctxSessionPayload); payload != "" {
		b.CSRF = s.csrfToken(payload)
	}
	return b
}

func (s *Server) render(c *gin.Context, status int, page string, data any) {
	var buf strings.Builder
	if err := s.dash.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("render dashboard page", "page", page, "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("the dashboard hit a bug rendering this page; see the server's log"))
		return
	}
	c.Data(status, "text/html; charset=utf-8", []byte(buf.String()))
}

type errorData struct {
	pageBase
	Status int
	Detail string
}

func (s *Server) renderError(c *gin.Context, status int, title, detail string) {
	b := s.base(c, title)
	s.render(c, status, "error.html", errorData{pageBase: b, Status: status, Detail: detail})
}

// renderProblem renders an error as the API would classify it.
func (s *Server) renderProblem(c *gin.Context, err error) {
	p := problemFor(err)
	s.renderError(c, p.Status, p.Title, p.Detail)
}

type loginData struct {
	pageBase
	CSRF      string
	Next      string
	Problem   string
	Anonymous bool
}

// ---- overview ----

type overviewData struct {
	pageBase
	Environments []envSection
	Only         string
}

type envSection struct {
	Name        string
	Clusters    []string
	Rows        []matrixRow
	MatrixError string
	Drift       int
	InFlight    []releaseRow
	Recent      []releaseRow
	ListError   string
}

type matrixRow struct {
	Service string
	Cells   []matrixCell
}

type matrixCell struct {
	Cluster  string
	Versions []cellVersion
}

type cellVersion struct {
	Version                     string
	Role                        string // "traffic", "canary", "previous"
	Running, InTraffic, Healthy int
}

type releaseRow struct {
	ID, Environment                  string
	Running                          bool
	Phase                            workflows.Phase
	Outcome                          workflows.Outcome
	Reason, StatusError              string
	TriggeredBy, ApprovedBy, Aborted string
	Versions                         []string
	Started, Ended                   time.Time
	WebUI                            string
	Meta                             releaseMeta
	Services                         []workflows.ServiceProgress
}

// environments lists the checked-in environments the principal may read.
func (s *Server) environments(p *principal) []string {
	files, _ := filepath.Glob(filepath.Join(s.cfg.DeploymentsDir, "*.y*ml"))
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, ".example.yaml") || strings.HasSuffix(base, ".example.yml") {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
		if fi, err := os.Stat(f); err != nil || fi.IsDir() || !envName.MatchString(name) || seen[name] || !p.canEnv(name) {
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// overviewPage is / (every environment the principal may read) and /environments/{env}.
func (s *Server) overviewPage(c *gin.Context) {
	p := who(c)
	envs := s.environments(p)
	only := c.Param("env")
	if only != "" {
		if !envName.MatchString(only) {
			s.renderProblem(c, notFound("unknown environment %q", only))
			return
		}
		if err := authorize(c, PermRead, only); err != nil {
			s.renderProblem(c, err)
			return
		}
		envs = []string{only}
	}
	sections := make([]envSection, len(envs))
	var wg sync.WaitGroup
	for i, env := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sections[i] = s.envSection(c, env)
		}()
	}
	wg.Wait()
	title := "Slipway releases"
	if only != "" {
		title = "Environment " + only
	}
	s.render(c, http.StatusOK, "overview.html", overviewData{pageBase: s.base(c, title), Environments: sections, Only: only})
}

func (s *Server) envSection(c *gin.Context, env string) envSection {
	sec := envSection{Name: env}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	running, ended, err := s.listEnvReleases(ctx, env)
	var wg sync.WaitGroup
	if err != nil {
		sec.ListError = problemFor(fmt.Errorf("list releases: %w", err)).Detail
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec.InFlight, sec.Recent = s.envReleases(ctx, c, env, running, ended)
		}()
	}
	if spec, err := s.checkedIn(env, nil); err != nil {
		sec.MatrixError = problemFor(err).Detail
	} else if res, err := s.envPlan(c, spec, running, ended); err != nil {
		sec.MatrixError = problemFor(err).Detail
	} else {
		sec.Clusters, sec.Rows = fleetMatrix(res.Live)
		for _, sp := range res.Plan.Services {
			if sp.Action != workflows.ActionNone {
				sec.Drift++
			}
		}
	}
	wg.Wait()
	return sec
}

// envPlan is the environment's Plan result for the overview, cached per API process for
// Dashboard.PlanTTL: a page that many stakeholders keep open would otherwise start one Plan
// workflow per environment per view. The cache key is the checked-in spec and the
// environment's releases (those running and the latest ended), so a release that starts or
// ends, or a spec checked in anew, plans again at once; within the TTL the matrix may lag
// the engines by that much (a canary coming up). The API is stateless across replicas and
// this cache is per process: that is fine only because the overview is a read-only view and
// nothing decides from it. The API's own routes (GET /v1/environments/{env}, POST
// /v1/plan) and every release plan afresh. Loads that arrive while a Plan runs wait for it
// (one Plan, not one per load); a failed Plan is not kept.
func (s *Server) envPlan(c *gin.Context, env *spec.Environment, running, ended []string) (*workflows.PlanResult, error) {
	ttl := s.cfg.Dashboard.PlanTTL
	if ttl < 0 {
		return s.runPlan(c, env)
	}
	js, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	last := ""
	if len(ended) > 0 {
		last = ended[0]
	}
	sum := sha256.Sum256(fmt.Appendf(js, "\x00%s\x00%s", strings.Join(running, ","), last))
	key := hex.EncodeToString(sum[:])
	for {
		s.dash.plansMu.Lock()
		e := s.dash.plans[env.Environment]
		if e != nil && e.key == key {
			select {
			case <-e.done:
				if time.Since(e.at) < ttl {
					s.dash.plansMu.Unlock()
					return e.res, nil
				}
			default:
				// A Plan for this key is running: wait for it.
				s.dash.plansMu.Unlock()
				select {
				case <-e.done:
				case <-c.Request.Context().Done():
					return nil, c.Request.Context().Err()
				}
				if e.err == nil {
					return e.res, nil
				}
				continue // it failed (and was dropped): try again
			}
		}
		e = &planEntry{key: key, done: make(chan struct{})}
		s.dash.plans[env.Environment] = e
		s.dash.plansMu.Unlock()
		e.res, e.err = s.runPlan(c, env)
		e.at = time.Now()
		if e.err != nil {
			s.dash.plansMu.Lock()
			if s.dash.plans[env.Environment] == e {
				delete(s.dash.plans, env.Environment)
			}
			s.dash.plansMu.Unlock()
		}
		close(e.done)
		return e.res, e.err
	}
}

// fleetMatrix turns the environment's live view into services × clusters: per cell, the
// version in traffic, a canary in traffic, and previous versions kept (stopped or out of
// traffic).
func fleetMatrix(live workflows.InspectResult) ([]string, []matrixRow) {
	var clusters []string
	svcs := map[string]bool{}
	for _, cs := range live.Clusters {
		clusters = append(clusters, cs.Cluster)
		for _, ss := range cs.Services {
			svcs[ss.Service] = true
		}
	}
	names := make([]string, 0, len(svcs))
	for n := range svcs {
		names = append(names, n)
	}
	sort.Strings(names)
	rows := make([]matrixRow, 0, len(names))
	for _, n := range names {
		row := matrixRow{Service: n}
		for _, cs := range live.Clusters {
			cell := matrixCell{Cluster: cs.Cluster}
			for _, ss := range cs.Services {
				if ss.Service != n {
					continue
				}
				// A canary is a version in traffic beside another one, through canary
				// replicas; once the release is done its canary replicas are the fleet.
				inTraffic := 0
				for _, v := range ss.Versions {
					if v.InTraffic > 0 {
						inTraffic++
					}
				}
				for _, v := range ss.Versions {
					cv := cellVersion{Version: v.Version, Running: v.Running, InTraffic: v.InTraffic, Healthy: v.Healthy, Role: "previous"}
					if v.InTraffic > 0 {
						cv.Role = "traffic"
						for _, ct := range v.Containers {
							if inTraffic > 1 && ct.Role == engine.RoleCanary && ct.InTraffic {
								cv.Role = "canary"
							}
						}
					}
					cell.Versions = append(cell.Versions, cv)
				}
			}
			sort.SliceStable(cell.Versions, func(i, j int) bool { return roleRank(cell.Versions[i].Role) < roleRank(cell.Versions[j].Role) })
			row.Cells = append(row.Cells, cell)
		}
		rows = append(rows, row)
	}
	return clusters, rows
}

func roleRank(r string) int {
	switch r {
	case "traffic":
		return 0
	case "canary":
		return 1
	}
	return 2
}

// listEnvReleases lists the IDs of an environment's releases in flight and of its recent
// ended ones, newest first.
func (s *Server) listEnvReleases(ctx context.Context, env string) (running, ended []string, err error) {
	base := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s'", workflows.ReleaseWorkflowName, workflows.SAEnvironment, env)
	list := func(q string, n int32) ([]string, error) {
		resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: s.cfg.Namespace, PageSize: n, Query: q})
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, e := range resp.GetExecutions() {
			ids = append(ids, e.GetExecution().GetWorkflowId())
		}
		return ids, nil
	}
	if running, err = list(base+" AND ExecutionStatus = 'Running'", 50); err != nil {
		return nil, nil, err
	}
	if ended, err = list(base+" AND ExecutionStatus != 'Running'", recentReleases); err != nil {
		return nil, nil, err
	}
	return running, ended, nil
}

// envReleases fetches the status of the listed releases (the same view GET
// /v1/releases/{id} gives): those still running in flight, the others recent.
func (s *Server) envReleases(ctx context.Context, c *gin.Context, env string, running, ended []string) (inFlight, recent []releaseRow) {
	ids := append(append([]string{}, running...), ended...)
	rows := make([]releaseRow, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := s.fetchRelease(ctx, id)
			if err != nil {
				rows[i] = releaseRow{ID: id, Environment: env, StatusError: problemFor(err).Detail}
				return
			}
			rows[i] = s.row(c, rel)
		}()
	}
	wg.Wait()
	for _, r := range rows {
		if r.Running {
			inFlight = append(inFlight, r)
		} else {
			recent = append(recent, r)
		}
	}
	return inFlight, recent
}

// row is a release as the dashboard lists it.
func (s *Server) row(c *gin.Context, rel *apiclient.Release) releaseRow {
	r := releaseRow{ID: rel.ID, Environment: rel.Environment, Running: rel.Running, Phase: rel.Phase, Outcome: rel.Outcome,
		Reason: rel.Reason, StatusError: rel.StatusError, WebUI: rel.Links.WebUI}
	if st := rel.Status; st != nil {
		r.TriggeredBy, r.ApprovedBy, r.Aborted = st.TriggeredBy, st.ApprovedBy, st.AbortedBy
		r.Started, r.Ended = st.StartedAt, st.EndedAt
		r.Services = st.Services
		for _, sp := range st.Services {
			if sp.Phase != workflows.PhaseSkipped {
				r.Versions = append(r.Versions, sp.Service+" "+sp.FromVersion+" → "+sp.ToVersion)
			}
		}
	}
	r.Meta = s.meta(c, rel.ID, rel.RunID)
	return r
}

// meta reads (once) the build URL, commit and description a release was started with.
func (s *Server) meta(c *gin.Context, id, runID string) releaseMeta {
	key := id + "/" + runID
	s.dash.inputsMu.Lock()
	m, ok := s.dash.inputs[key]
	s.dash.inputsMu.Unlock()
	if ok {
		return m
	}
	in, err := s.releaseInput(c, id, runID)
	if err != nil {
		return releaseMeta{}
	}
	m = releaseMeta{BuildURL: in.BuildURL, Commit: in.Commit, Description: in.Description, RollbackOf: in.RollbackOf, FastTrack: in.FastTrack}
	if !strings.HasPrefix(m.BuildURL, "https://") && !strings.HasPrefix(m.BuildURL, "http://") {
		m.BuildURL = "" // only links a browser should follow
	}
	s.dash.inputsMu.Lock()
	if len(s.dash.inputs) > 4096 {
		s.dash.inputs = map[string]releaseMeta{}
	}
	s.dash.inputs[key] = m
	s.dash.inputsMu.Unlock()
	return m
}

// ---- release page ----

type releaseData struct {
	pageBase
	R        releaseRow
	Rel      *apiclient.Release
	Verdicts []workflows.Verdict
	Events   []workflows.Event
	Gates    []workflows.Gate
	Paused   bool
	CanAct   bool
	Done     string
}

// releasePage is /releases/{id}: the release's progress per service and cluster (live over
// the event stream), gates with their forms, verdicts with their evidence, the timeline.
func (s *Server) releasePage(c *gin.Context) {
	id, env, err := releaseID(c, PermRead)
	if err != nil {
		s.renderProblem(c, err)
		return
	}
	rel, err := s.fetchRelease(c.Request.Context(), id)
	if err != nil {
		s.renderProblem(c, err)
		return
	}
	d := releaseData{pageBase: s.base(c, "Release "+id), Rel: rel, R: s.row(c, rel)}
	if st := rel.Status; st != nil {
		d.Verdicts, d.Events, d.Gates, d.Paused = st.Verdicts, st.Events, st.Gates, st.Paused
		sort.SliceStable(d.Events, func(i, j int) bool { return d.Events[i].Seq < d.Events[j].Seq })
	}
	d.CanAct = rel.Running && d.CSRF != "" && authorize(c, PermApprove, env) == nil
	switch v := c.Query("done"); v {
	case workflows.UpdateApprove, workflows.UpdateAbort, workflows.UpdatePause, workflows.UpdateResume:
		d.Done = v
	}
	s.render(c, http.StatusOK, "release.html", d)
}

// releaseAction is a form post from the release page (approve, abort, pause, resume): the
// CSRF token checked, then the API's own decision logic; back to the release page.
func (s *Server) releaseAction(update string, perm Permission) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.checkCSRF(c) {
			s.renderError(c, http.StatusForbidden, "Forbidden", "the form's CSRF token is missing or wrong: reload the page and try again")
			return
		}
		form := func(c *gin.Context) (apiclient.DecisionRequest, error) {
			return apiclient.DecisionRequest{Reason: strings.TrimSpace(c.PostForm("reason")),
				Service: c.PostForm("service"), Cluster: c.PostForm("cluster")}, nil
		}
		rel, err := s.applyDecision(c, update, perm, form)
		if err != nil {
			s.renderProblem(c, err)
			return
		}
		c.Redirect(http.StatusSeeOther, rel.Links.Self[len("/v1"):]+"?done="+update)
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// isDashboardRoute reports whether a router path is the dashboard's (a page, a form, its
// event stream or static file), not an API operation described in openapi.json.
func isDashboardRoute(path string) bool {
	if path == "/" || path == "/login" || path == "/logout" {
		return true
	}
	for _, p := range []string{"/environments/", "/releases/", "/static/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}
