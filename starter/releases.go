package starter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"gopkg.in/yaml.v3"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// memoRequestHash is the memo field holding the hash of the request that started a release
// (an Idempotency-Key reused for another request is a conflict).
const (
	memoRequestHash = "slipway_request_hash"
	memoDescription = "slipway_description"
	// memoBuildURL and memoCommit are the Jenkins build and commit of a release (trace.go).
	memoBuildURL = "slipway_build_url"
	memoCommit   = "slipway_commit"
)

// readBody reads the request body up to the configured cap: 413 above it.
func (s *Server) readBody(c *gin.Context) ([]byte, error) {
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		return nil, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes}
	}
	r := http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	b, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, mbe
		}
		return nil, badRequest("read body: %v", err)
	}
	return b, nil
}

// releaseRequest is a decoded POST /v1/releases.
type releaseRequest struct {
	in workflows.ReleaseInput
	// scope is every service the release may touch (for the overlap check).
	scope []string
}

// postRelease starts a release: POST /v1/releases.
func (s *Server) postRelease(c *gin.Context) {
	if err := authorize(c, PermRelease, ""); err != nil {
		writeProblem(c, err)
		return
	}
	wait, err := s.waitParam(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	body, err := s.readBody(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	req, err := s.decodeReleaseRequest(c, body)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if err := authorize(c, PermRelease, req.in.Spec.Environment); err != nil {
		writeProblem(c, err)
		return
	}
	req.in.TriggeredBy = who(c).name
	if req.in.QueueTimeout, err = s.queueParam(c); err != nil {
		writeProblem(c, err)
		return
	}
	req.in.Queue = req.in.QueueTimeout > 0
	h := sha256.New()
	h.Write([]byte(canonicalQuery(c.Request.URL.Query())))
	h.Write([]byte{0})
	h.Write(body)
	rel, err := s.start(c, req, c.GetHeader("Idempotency-Key"), hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		writeProblem(c, err)
		return
	}
	s.answerStarted(c, rel, wait)
}

// answerStarted answers a started (or found) release: 202 while it runs, 200 once ended;
// with wait > 0 it first waits for the end.
func (s *Server) answerStarted(c *gin.Context, rel *apiclient.Release, wait time.Duration) {
	if wait > 0 && rel.Running {
		if final, err := s.waitForEnd(c, rel.ID, rel.RunID, wait); err != nil {
			writeProblem(c, err)
			return
		} else if final != nil {
			final.Existing = rel.Existing
			rel = final
		}
	}
	c.Header("Location", rel.Links.Self)
	status := http.StatusAccepted
	if !rel.Running || rel.Existing {
		status = http.StatusOK
	}
	c.JSON(status, rel)
}

func canonicalQuery(q url.Values) string {
	q = cloneValues(q)
	delete(q, "wait")
	return q.Encode() // sorted by key
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// decodeReleaseRequest reads either a whole spec (YAML or JSON) or a trigger
// {environment, services: {name: version}} against the checked-in spec.
func (s *Server) decodeReleaseRequest(c *gin.Context, body []byte) (*releaseRequest, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest("empty body: send a deployment spec (application/yaml or application/json) or {environment, services}")
	}
	ct, err := contentType(c)
	if err != nil {
		return nil, err
	}
	if trig, ok, err := decodeTrigger(ct, body); err != nil {
		return nil, err
	} else if ok {
		return s.triggerRequest(c, trig)
	}
	q := c.Request.URL.Query()
	overrides, err := overridesParam(q["set"])
	if err != nil {
		return nil, err
	}
	name := specFileName(q.Get("filename"), ct)
	env, err := loadSpec(name, body, overrides)
	if err != nil {
		return nil, err
	}
	req := &releaseRequest{in: workflows.ReleaseInput{
		Spec:        *env,
		Overrides:   overrides,
		Description: q.Get("description"),
		BuildURL:    q.Get("build_url"),
		Commit:      q.Get("commit"),
	}}
	for _, svc := range env.Services {
		req.scope = append(req.scope, svc.Name)
	}
	sort.Strings(req.scope)
	return req, nil
}

// contentType returns "json" or "yaml" (415 for anything else).
func contentType(c *gin.Context) (string, error) {
	raw := c.GetHeader("Content-Type")
	if raw == "" {
		return "yaml", nil
	}
	mt, _, err := mime.ParseMediaType(raw)
	if err != nil {
		return "", &apiError{status: http.StatusUnsupportedMediaType, title: "Unsupported media type", detail: err.Error()}
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return "json", nil
	case mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml" || mt == "text/x-yaml" || mt == "text/plain":
		return "yaml", nil
	}
	return "", &apiError{status: http.StatusUnsupportedMediaType, title: "Unsupported media type",
		detail: fmt.Sprintf("%q: send application/yaml or application/json", mt)}
}

func specFileName(name, ct string) string {
	name = filepath.Base(strings.TrimSpace(name))
	if name == "" || name == "." || name == "/" || len(name) > 200 {
		return "request." + ct
	}
	return name
}

// decodeTrigger recognises the trigger form: a mapping whose services is a mapping (in a
// spec, services is a list).
func decodeTrigger(ct string, body []byte) (*apiclient.TriggerRequest, bool, error) {
	var probe struct {
		Services yaml.Node `yaml:"services"`
	}
	// YAML is a superset of JSON: one probe serves both.
	if err := yaml.Unmarshal(body, &probe); err != nil || probe.Services.Kind != yaml.MappingNode {
		return nil, false, nil // not a trigger: the spec parser reports what is wrong
	}
	var t apiclient.TriggerRequest
	if ct == "json" {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			return nil, true, badRequest("release request: %v", err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(body))
		dec.KnownFields(true)
		if err := dec.Decode(&t); err != nil {
			return nil, true, badRequest("release request: %v", err)
		}
	}
	return &t, true, nil
}

// triggerRequest builds a release of some services of the environment's checked-in spec.
func (s *Server) triggerRequest(c *gin.Context, t *apiclient.TriggerRequest) (*releaseRequest, error) {
	if !envName.MatchString(t.Environment) {
		return nil, badRequest("environment: %q is not an environment name (lower-case letters, digits, '-')", t.Environment)
	}
	if len(t.Services) == 0 {
		return nil, badRequest("services: name at least one service and its version")
	}
	if err := authorize(c, PermRelease, t.Environment); err != nil {
		return nil, err
	}
	env, err := s.checkedIn(t.Environment, t.Services)
	if err != nil {
		return nil, err
	}
	req := &releaseRequest{in: workflows.ReleaseInput{
		Spec:        *env,
		Overrides:   t.Services,
		Description: t.Description,
		BuildURL:    t.BuildURL,
		Commit:      t.Commit,
	}}
	for name := range t.Services {
		req.in.Services = append(req.in.Services, name)
	}
	sort.Strings(req.in.Services)
	req.scope = req.in.Services
	return req, nil
}

// checkedIn loads deployments/<env>.yaml with overrides applied.
func (s *Server) checkedIn(env string, overrides map[string]string) (*spec.Environment, error) {
	path := filepath.Join(s.cfg.DeploymentsDir, env+".yaml")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if data, err = os.ReadFile(filepath.Join(s.cfg.DeploymentsDir, env+".yml")); errors.Is(err, os.ErrNotExist) {
			return nil, notFound("no checked-in spec for environment %q (%s)", env, path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read checked-in spec: %w", err)
	}
	if int64(len(data)) > s.cfg.MaxBodyBytes {
		return nil, fmt.Errorf("checked-in spec %s is larger than %d bytes", path, s.cfg.MaxBodyBytes)
	}
	e, err := loadSpec(path, data, overrides)
	if err != nil {
		// The overrides came in the request's services, not in ?set=.
		var es spec.Errors
		if errors.As(err, &es) {
			for _, fe := range es {
				if rest, ok := strings.CutPrefix(fe.Path, "set."); ok {
					fe.Path, fe.File = "services."+rest, "request"
				}
			}
		}
		return nil, err
	}
	if e.Environment != env {
		return nil, fmt.Errorf("checked-in spec %s names environment %q, not %q", path, e.Environment, env)
	}
	return e, nil
}

// overridesParam reads ?set=svc=version (repeatable).
func overridesParam(sets []string) (map[string]string, error) {
	if len(sets) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, badRequest("set: %q is not service=version", kv)
		}
		if _, dup := out[k]; dup {
			return nil, badRequest("set: service %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// waitParam reads ?wait=<duration>, capped at MaxWait.
func (s *Server) waitParam(c *gin.Context) (time.Duration, error) {
	v := c.Query("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, badRequest("wait: %q is not a duration such as 90s or 10m", v)
	}
	return min(d, s.cfg.MaxWait), nil
}

// queueParam reads ?queue=<duration>: a release that overlaps one in flight waits that long
// for it (in the workflow, under the per-service lock) instead of being refused with 409.
func (s *Server) queueParam(c *gin.Context) (spec.Duration, error) {
	v := c.Query("queue")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, badRequest("queue: %q is not a positive duration such as 30m", v)
	}
	return spec.Duration(min(d, s.cfg.MaxWait)), nil
}

// start starts the release workflow, unless an Idempotency-Key names a release that already
// exists (returned with Existing) or the release overlaps one in flight (409).
func (s *Server) start(c *gin.Context, req *releaseRequest, key, reqHash string) (*apiclient.Release, error) {
	if err := checkTrace(&req.in); err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	env := req.in.Spec.Environment
	actor := req.in.TriggeredBy
	short := newShortID(time.Now())
	var earlier []string // other ids the Idempotency-Key may already name (keyShortIDs)
	if key != "" {
		if len(key) > 255 {
			return nil, badRequest("Idempotency-Key: at most 255 characters")
		}
		ids := keyShortIDs(actor, key, time.Now())
		short, earlier = ids[0], ids[1:]
	} else if req.in.RollbackOf != "" {
		short = "rb" + shortOfID(req.in.RollbackOf)
	}
	if req.in.ID == "" {
		req.in.ID = short
	}
	wid := workflows.ReleaseWorkflowID(env, req.in.ID)
	idempotent := key != "" || req.in.RollbackOf != ""

	lock := s.envLock(env)
	lock.Lock()
	defer lock.Unlock()

	if idempotent {
		lookup := []string{wid}
		if req.in.ID == short {
			for _, e := range earlier {
				lookup = append(lookup, workflows.ReleaseWorkflowID(env, e))
			}
		}
		for _, id := range lookup {
			d, err := s.tc.DescribeWorkflowExecution(ctx, id, "")
			if err == nil {
				return s.existing(c, d, reqHash, key)
			}
			if !isNotFound(err) {
				return nil, fmt.Errorf("look up release %s: %w", id, err)
			}
		}
	}
	// A service held after a failed rollback is refused even when queueing: it stays held
	// until an operator resolves it.
	if err := s.checkHeldLocks(ctx, env, req.scope); err != nil {
		return nil, err
	}
	if !req.in.Queue {
		if err := s.checkOverlap(ctx, env, req.scope, wid); err != nil {
			return nil, err
		}
	}
	var versions []string
	for _, svc := range req.in.Spec.Services {
		if len(req.in.Services) == 0 || contains(req.in.Services, svc.Name) {
			versions = append(versions, svc.Name+"="+svc.Version)
		}
	}
	sort.Strings(versions)
	// An idempotent start that finds its workflow already started (by another API replica
	// in the same instant: the lookup above is not atomic with the start) fails here, and
	// the caller gets that release, marked existing. Temporal decides who started it.
	summary, details := workflows.ReleaseStaticMetadata(req.in, versions)
	opts := client.StartWorkflowOptions{
		ID:                       wid,
		TaskQueue:                s.cfg.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without it the SDK hands back the running workflow as if this call had started it.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		WorkflowTaskTimeout:                      workflows.WorkflowTaskTimeout,
		Memo:                                     traceMemo(reqHash, req.in),
		TypedSearchAttributes:                    workflows.ReleaseStartAttributes(env, req.scope, versions, actor),
		// The Web UI's summary and details (workflows/metadata.go); no RetryPolicy: a
		// release that did not succeed fails its workflow and is never retried.
		StaticSummary: summary,
		StaticDetails: details,
	}
	run, err := s.tc.ExecuteWorkflow(ctx, opts, workflows.ReleaseWorkflowName, req.in)
	if err != nil {
		var as *serviceerror.WorkflowExecutionAlreadyStarted
		if idempotent && errors.As(err, &as) {
			d, derr := s.tc.DescribeWorkflowExecution(ctx, wid, "")
			if derr != nil {
				return nil, fmt.Errorf("look up release %s: %w", wid, derr)
			}
			return s.existing(c, d, reqHash, key)
		}
		return nil, fmt.Errorf("start release: %w", err)
	}
	s.recent.add(env, wid, req.scope)
	s.log.Info("release started", "id", wid, "environment", env, "services", req.scope, "actor", actor)
	return &apiclient.Release{
		ID: wid, RunID: run.GetRunID(), Environment: env, Running: true,
		Phase: workflows.PhasePending, Links: s.links(wid, run.GetRunID()),
	}, nil
}

// existing answers a POST whose Idempotency-Key (or rollback) names a release that exists.
func (s *Server) existing(c *gin.Context, d *workflowservice.DescribeWorkflowExecutionResponse, reqHash, key string) (*apiclient.Release, error) {
	info := d.GetWorkflowExecutionInfo()
	id := info.GetExecution().GetWorkflowId()
	if key != "" {
		var got string
		if p := info.GetMemo().GetFields()[memoRequestHash]; p != nil {
			_ = converter.GetDefaultDataConverter().FromPayload(p, &got)
		}
		if got != reqHash {
			return nil, &apiError{status: http.StatusConflict, title: "Conflict", inFlight: id,
				detail: fmt.Sprintf("Idempotency-Key %q was already used for a different request (release %s)", key, id)}
		}
	}
	rel, err := s.fetchRelease(c.Request.Context(), id)
	if err != nil {
		return nil, err
	}
	rel.Existing = true
	return rel, nil
}

func (s *Server) envLock(env string) *sync.Mutex {
	s.envMu.Lock()
	defer s.envMu.Unlock()
	l := s.envLocks[env]
	if l == nil {
		l = &sync.Mutex{}
		s.envLocks[env] = l
	}
	return l
}

// checkOverlap refuses (409) a release that shares a service with a release in flight in the
// same environment. It asks Temporal visibility, and the releases this process started in
// the last seconds (visibility may not list them yet).
func (s *Server) checkOverlap(ctx context.Context, env string, services []string, self string) error {
	if len(services) == 0 {
		return nil
	}
	resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: s.cfg.Namespace, PageSize: 10, Query: workflows.InFlightQuery(env, services),
	})
	if err != nil {
		return fmt.Errorf("look for releases in flight: %w", err)
	}
	listed := map[string]bool{}
	for _, e := range resp.GetExecutions() {
		id := e.GetExecution().GetWorkflowId()
		listed[id] = true
		if id == self {
			continue
		}
		// Visibility lags behind: a release that just ended may still be listed as running.
		// The execution itself is the truth.
		d, err := s.tc.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return fmt.Errorf("look up release %s: %w", id, err)
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			continue
		}
		inFlight := saStrings(e.GetSearchAttributes().GetIndexedFields(), workflows.SAServices)
		return overlapError(env, id, intersect(services, inFlight))
	}
	for _, r := range s.recent.get(env) {
		if r.id == self || listed[r.id] {
			continue
		}
		both := intersect(services, r.services)
		if len(both) == 0 {
			continue
		}
		d, err := s.tc.DescribeWorkflowExecution(ctx, r.id, "")
		if err != nil {
			return fmt.Errorf("look up release %s: %w", r.id, err)
		}
		if d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return overlapError(env, r.id, both)
		}
	}
	return nil
}

func overlapError(env, id string, services []string) error {
	return &apiError{status: http.StatusConflict, title: "Release in flight", inFlight: id,
		detail: fmt.Sprintf("release %s is in flight in environment %s for %s; wait for it, or abort it",
			id, env, strings.Join(services, ", "))}
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// recentStarts remembers the releases this process started in the last 30 s.
type recentStarts struct {
	mu    sync.Mutex
	byEnv map[string][]recentStart
}

type recentStart struct {
	id       string
	services []string
	at       time.Time
}

const recentWindow = 30 * time.Second

func (r *recentStarts) add(env, id string, services []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byEnv == nil {
		r.byEnv = map[string][]recentStart{}
	}
	r.byEnv[env] = append(r.prune(env), recentStart{id: id, services: services, at: time.Now()})
}

func (r *recentStarts) get(env string) []recentStart {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recentStart(nil), r.prune(env)...)
}

func (r *recentStarts) prune(env string) []recentStart {
	list := r.byEnv[env]
	out := list[:0]
	for _, x := range list {
		if time.Since(x.at) < recentWindow {
			out = append(out, x)
		}
	}
	if r.byEnv != nil {
		r.byEnv[env] = out
	}
	return out
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
