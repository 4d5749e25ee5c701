package starter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"gopkg.in/yaml.v3"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/schedules"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Load-test routes (docs/loadtests.md):
//
//	GET    /v1/loadtests/schedules[?environment=]          the load-test schedules (read)
//	POST   /v1/loadtests/schedules[?dry_run=true]          sync an environment's schedules from a spec (release)
//	DELETE /v1/loadtests/schedules?environment=[&name=]    delete one or all of them (release)
//	POST   /v1/loadtests[?name=&wait=]                     run one load test now (release)
//	GET    /v1/loadtests/{id}                              a run: phase while it runs, the result after (read)
//	POST   /v1/loadtests/{id}/cancel                       cancel a run: it stops the load and scales back (release)
//
// POST bodies are a whole deployment spec (YAML or JSON, like POST /v1/releases; a run
// names its test with ?name=) or the short form {environment, name} against the checked-in
// spec deployments/<environment>.yaml.

// loadTestRoutes are the load-test routes, with the permission each needs.
func (s *Server) loadTestRoutes() []route {
	return []route{
		{http.MethodGet, "/v1/loadtests/schedules", true, s.listLoadTestSchedules},
		{http.MethodPost, "/v1/loadtests/schedules", true, s.syncLoadTestSchedules},
		{http.MethodDelete, "/v1/loadtests/schedules", true, s.deleteLoadTestSchedules},
		{http.MethodPost, "/v1/loadtests", true, s.postLoadTest},
		{http.MethodGet, "/v1/loadtests/:id", true, s.getLoadTest},
		{http.MethodPost, "/v1/loadtests/:id/cancel", true, s.cancelLoadTest},
	}
}

// loadTestRequest is the short form of a POST body: a test of the checked-in spec.
type loadTestRequest struct {
	Environment string `yaml:"environment" json:"environment"`
	Name        string `yaml:"name,omitempty" json:"name,omitempty"`
}

// loadTestID is what a load-test workflow ID may look like (scheduled runs end in an
// RFC 3339 time).
var loadTestID = regexp.MustCompile(`^` + workflows.LoadTestIDPrefix + `[a-z0-9][a-z0-9-]*[a-z0-9](-[0-9TZ:.+-]+)?$`)

// loadTestEnvironment reads the body of a POST: a whole spec, or {environment[, name]}
// against the checked-in spec. It returns the spec and the test name of the short form.
func (s *Server) loadTestEnvironment(c *gin.Context) (*spec.Environment, string, error) {
	body, err := s.readBody(c)
	if err != nil {
		return nil, "", err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, "", badRequest("empty body: send a deployment spec (application/yaml or application/json) or {environment, name}")
	}
	ct, err := contentType(c)
	if err != nil {
		return nil, "", err
	}
	var probe map[string]yaml.Node
	if err := yaml.Unmarshal(body, &probe); err == nil && probe != nil {
		if _, isSpec := probe["services"]; !isSpec {
			var req loadTestRequest
			dec := yaml.NewDecoder(bytes.NewReader(body)) // YAML is a superset of JSON
			dec.KnownFields(true)
			if err := dec.Decode(&req); err != nil {
				return nil, "", badRequest("load test request: %v (send {environment, name} or a whole spec)", err)
			}
			if !envName.MatchString(req.Environment) {
				return nil, "", badRequest("environment: %q is not an environment name (lower-case letters, digits, '-')", req.Environment)
			}
			if err := authorize(c, PermRead, req.Environment); err != nil {
				return nil, "", err
			}
			env, err := s.checkedIn(req.Environment, nil)
			return env, req.Name, err
		}
	}
	env, err := loadSpec(specFileName(c.Query("filename"), ct), body, nil)
	return env, "", err
}

// listLoadTestSchedules: GET /v1/loadtests/schedules[?environment=].
func (s *Server) listLoadTestSchedules(c *gin.Context) {
	env := c.Query("environment")
	if env != "" && !envName.MatchString(env) {
		writeProblem(c, badRequest("environment: %q is not an environment name", env))
		return
	}
	if err := authorize(c, PermRead, env); err != nil {
		writeProblem(c, err)
		return
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	list, err := schedules.List(ctx, s.tc, env)
	if err != nil {
		writeProblem(c, err)
		return
	}
	p := who(c)
	out := []schedules.Info{}
	for _, i := range list {
		if p.canEnv(i.Environment) {
			out = append(out, i)
		}
	}
	c.JSON(http.StatusOK, gin.H{"schedules": out})
}

// syncLoadTestSchedules: POST /v1/loadtests/schedules[?dry_run=true].
func (s *Server) syncLoadTestSchedules(c *gin.Context) {
	if err := authorize(c, PermRelease, ""); err != nil {
		writeProblem(c, err)
		return
	}
	dry, err := ltBoolParam(c, "dry_run")
	if err != nil {
		writeProblem(c, err)
		return
	}
	env, _, err := s.loadTestEnvironment(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if err := authorize(c, PermRelease, env.Environment); err != nil {
		writeProblem(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 4*s.cfg.CallTimeout)
	defer cancel()
	rep, err := schedules.SyncWith(ctx, s.tc, env, schedules.Options{TaskQueue: s.cfg.TaskQueue, DryRun: dry})
	if err != nil {
		writeProblem(c, fmt.Errorf("sync load-test schedules of %s (done so far: %d change(s)): %w", env.Environment, len(rep.Changes), err))
		return
	}
	s.log.Info("load-test schedules synced", "environment", env.Environment, "actor", who(c).name, "dry_run", dry,
		"created", rep.Count(schedules.Created), "updated", rep.Count(schedules.Updated), "deleted", rep.Count(schedules.Deleted))
	c.JSON(http.StatusOK, rep)
}

// deleteLoadTestSchedules: DELETE /v1/loadtests/schedules?environment=[&name=].
func (s *Server) deleteLoadTestSchedules(c *gin.Context) {
	env, name := c.Query("environment"), c.Query("name")
	if !envName.MatchString(env) {
		writeProblem(c, badRequest("environment: required, a name such as staging (got %q)", env))
		return
	}
	if name != "" && !envName.MatchString(name) {
		writeProblem(c, badRequest("name: %q is not a load-test name", name))
		return
	}
	if err := authorize(c, PermRelease, env); err != nil {
		writeProblem(c, err)
		return
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	done, err := schedules.Delete(ctx, s.tc, env, name)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if done == nil {
		done = []string{}
	}
	c.JSON(http.StatusOK, gin.H{"deleted": done})
}

// postLoadTest runs one load test now: POST /v1/loadtests[?name=&wait=]. An
// Idempotency-Key names the run, so a retried POST never starts a second one.
func (s *Server) postLoadTest(c *gin.Context) {
	if err := authorize(c, PermRelease, ""); err != nil {
		writeProblem(c, err)
		return
	}
	wait, err := s.waitParam(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	env, name, err := s.loadTestEnvironment(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if q := c.Query("name"); q != "" {
		name = q
	}
	if name == "" {
		writeProblem(c, badRequest("name: say which load test to run (?name= or {environment, name})"))
		return
	}
	if err := authorize(c, PermRelease, env.Environment); err != nil {
		writeProblem(c, err)
		return
	}
	in, err := workflows.LoadTestInputFor(env, name, workflows.LoadTestManual)
	if err != nil {
		writeProblem(c, notFound("%v", err))
		return
	}
	actor := who(c).name
	in.TriggeredBy = actor
	short := newShortID(time.Now())
	if key := c.GetHeader("Idempotency-Key"); key != "" {
		if len(key) > 255 {
			writeProblem(c, badRequest("Idempotency-Key: at most 255 characters"))
			return
		}
		short = keyShortID(actor, key)
	}
	id := workflows.LoadTestWorkflowID(env.Environment, name, short)
	in.ID = short
	ctx, cancel := s.callCtx(c)
	defer cancel()
	existing := false
	_, err = s.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                s.cfg.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// An existing run of the same Idempotency-Key must be an error, so it is answered
		// as existing rather than silently reused.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		WorkflowRunTimeout:                       workflows.LoadTestRunTimeout(in),
		WorkflowTaskTimeout:                      workflows.WorkflowTaskTimeout,
		Memo:                                     map[string]any{"summary": fmt.Sprintf("load test %s, started by %s", in.Name(), actor)},
		TypedSearchAttributes:                    workflows.LoadTestStartAttributes(env.Environment, in.Service.Name, actor),
	}, workflows.LoadTestWorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started) || temporal.IsWorkflowExecutionAlreadyStartedError(err):
		existing = true // the same Idempotency-Key: answer with that run
	case err != nil:
		writeProblem(c, err)
		return
	}
	s.log.Info("load test started", "id", id, "actor", actor, "existing", existing)
	run, err := s.loadTestRun(c, id, wait)
	if err != nil {
		writeProblem(c, err)
		return
	}
	run.Existing = existing
	if run.Service == "" { // no status yet: what the run was started with
		run.Test, run.Service, run.Rate, run.Duration, run.WarmUp = in.Test.Name, in.Service.Name, in.Test.Rate, in.Test.Duration, in.Test.WarmUp
	}
	c.Header("Location", run.Links.Self)
	status := http.StatusAccepted
	if !run.Running || existing {
		status = http.StatusOK
	}
	c.JSON(status, run)
}

// getLoadTest: GET /v1/loadtests/{id}[?wait=].
func (s *Server) getLoadTest(c *gin.Context) {
	id, err := loadTestParam(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	wait, err := s.waitParam(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	run, err := s.loadTestRun(c, id, wait)
	if err != nil {
		writeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, run)
}

// cancelLoadTest: POST /v1/loadtests/{id}/cancel. The run stops its load, scales back what it
// scaled out, frees the lock and ends cancelled; the answer is the run as it stands (202). A
// run that already ended is a conflict.
func (s *Server) cancelLoadTest(c *gin.Context) {
	if err := authorize(c, PermRelease, ""); err != nil {
		writeProblem(c, err)
		return
	}
	id, err := loadTestParam(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	run, err := s.loadTestRun(c, id, 0)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if err := authorize(c, PermRelease, run.Environment); err != nil {
		writeProblem(c, err)
		return
	}
	if !run.Running {
		writeProblem(c, conflict("load test %s has already ended (%s)", id, run.Status))
		return
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	if err := s.tc.CancelWorkflow(ctx, id, run.RunID); err != nil {
		writeProblem(c, err)
		return
	}
	s.log.Info("load test cancel requested", "id", id, "actor", who(c).name)
	c.JSON(http.StatusAccepted, run)
}

// loadTestParam is the run id of a /v1/loadtests/{id} path; an id no run can have is not found.
func loadTestParam(c *gin.Context) (string, error) {
	id := c.Param("id")
	if !loadTestID.MatchString(id) {
		return "", notFound("%q is not a load-test id (loadtest-<environment>-<test>-<id>)", id)
	}
	return id, nil
}

// loadTestRun builds the view of a run (checking the caller may read its environment),
// waiting up to wait for its end.
func (s *Server) loadTestRun(c *gin.Context, id string, wait time.Duration) (*apiclient.LoadTestRun, error) {
	ctx, cancel := s.callCtx(c)
	desc, err := s.tc.DescribeWorkflowExecution(ctx, id, "")
	cancel()
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, notFound("unknown load test %q", id)
	}
	if err != nil {
		return nil, err
	}
	info := desc.GetWorkflowExecutionInfo()
	sa := info.GetSearchAttributes().GetIndexedFields()
	if ltPayloadString(sa[workflows.SAKind]) != workflows.KindLoadTest {
		return nil, notFound("unknown load test %q", id)
	}
	run := &apiclient.LoadTestRun{ID: id, RunID: info.GetExecution().GetRunId(), Environment: ltPayloadString(sa[workflows.SAEnvironment])}
	if err := authorize(c, PermRead, run.Environment); err != nil {
		return nil, err
	}
	run.Links.Self = "/v1/loadtests/" + url.PathEscape(id)
	if s.cfg.WebUIURL != "" {
		run.Links.WebUI = s.cfg.WebUIURL + "/namespaces/" + url.PathEscape(s.cfg.Namespace) + "/workflows/" + url.PathEscape(id) + "/" + url.PathEscape(run.RunID)
	}
	status := info.GetStatus()
	if status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && wait > 0 {
		wctx, cancel := context.WithTimeout(c.Request.Context(), wait)
		_ = s.tc.GetWorkflow(wctx, id, run.RunID).Get(wctx, nil) // ends, or the wait runs out
		cancel()
		if c.Request.Context().Err() != nil {
			return nil, c.Request.Context().Err()
		}
		return s.loadTestRun(c, id, 0)
	}
	run.Status = statusName(status)
	run.Running = status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	run.Outcome = ltPayloadString(sa[workflows.SAOutcome])
	if run.Outcome == "running" {
		run.Outcome = ""
	}
	if run.Running {
		qctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.QueryTimeout)
		defer cancel()
		v, err := s.tc.QueryWorkflow(qctx, id, run.RunID, workflows.QueryStatus)
		var st workflows.LoadTestStatus
		if err == nil {
			err = v.Get(&st)
		}
		if err != nil {
			run.StatusError = "no worker answered the status query: " + err.Error()
			return run, nil
		}
		run.Phase, run.Message = st.Phase, st.Message
		ltParams(run, st.Result)
		return run, nil
	}
	rctx, cancel := s.callCtx(c)
	defer cancel()
	var res workflows.LoadTestResult
	err = s.tc.GetWorkflow(rctx, id, run.RunID).Get(rctx, &res)
	if err == nil {
		run.Result, run.Phase = &res, workflows.LoadTestPhaseDone
		run.Outcome, run.Message = string(res.Outcome), res.Reason
		ltParams(run, res)
	} else {
		run.Error = err.Error()
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			run.Error = ae.Message()
		}
		var summary workflows.LoadTestSummary
		if p := info.GetMemo().GetFields()[workflows.MemoLoadTest]; p != nil && converter.GetDefaultDataConverter().FromPayload(p, &summary) == nil {
			_, run.Test, _ = strings.Cut(summary.Test, "/")
		}
	}
	return run, nil
}

// ltParams copies what a run loads from its (current or final) result.
func ltParams(run *apiclient.LoadTestRun, res workflows.LoadTestResult) {
	run.Test, run.Service, run.Rate, run.Duration, run.WarmUp = res.Test, res.Service, res.Rate, res.Duration, res.WarmUp
}

func ltPayloadString(p *commonpb.Payload) string {
	var v string
	if p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &v)
	}
	return v
}

// ltBoolParam reads ?name=true|false (absent: false).
func ltBoolParam(c *gin.Context, name string) (bool, error) {
	v := c.Query(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("%s: %q is not true or false", name, v)
	}
	return b, nil
}
