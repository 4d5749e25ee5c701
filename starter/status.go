package starter

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/workflows"
)

// releaseID reads and checks the :id of the URL, and the token's read scope on its
// environment.
func releaseID(c *gin.Context, perm Permission) (id, env string, err error) {
	id = c.Param("id")
	env, ok := envOfID(id)
	if !ok {
		return "", "", notFound("unknown release %q", id)
	}
	if err := authorize(c, perm, env); err != nil {
		return "", "", err
	}
	return id, env, nil
}

// getRelease answers GET /v1/releases/{id}[?wait=].
func (s *Server) getRelease(c *gin.Context) {
	id, _, err := releaseID(c, PermRead)
	if err != nil {
		writeProblem(c, err)
		return
	}
	wait, err := s.waitParam(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	var rel *apiclient.Release
	if wait > 0 {
		rel, err = s.waitForEnd(c, id, "", wait)
	} else {
		rel, err = s.fetchRelease(c.Request.Context(), id)
	}
	if err != nil {
		writeProblem(c, err)
		return
	}
	if err := authorize(c, PermRead, rel.Environment); err != nil {
		writeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, rel)
}

// fetchRelease returns the current view of a release: from the cache once it has closed,
// else from its status query; the workflow's result once it closed.
func (s *Server) fetchRelease(ctx context.Context, id string) (*apiclient.Release, error) {
	return s.fetch(ctx, id, true)
}

// fetch is fetchRelease; shared lets the status query join one already in flight for the
// same release (many pollers of one release cost one query), which a caller that must see
// its own write (after an update) does not want.
func (s *Server) fetch(ctx context.Context, id string, shared bool) (*apiclient.Release, error) {
	if r := s.ended.get(id); r != nil {
		return r, nil
	}
	var st *workflows.ReleaseStatus
	var qerr error
	if shared {
		st, qerr = s.sharedQuery(ctx, id)
	} else {
		qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
		st, qerr = s.queryStatus(qctx, id)
		cancel()
	}
	if qerr == nil && st.Outcome == workflows.OutcomeNone {
		return s.view(id, "", st, true), nil
	}
	if qerr != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// The release ended (or its status could not be queried): ask Temporal what state the
	// workflow is in.
	d, err := s.describe(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, notFound("unknown release %q", id)
		}
		if qerr == nil {
			return s.view(id, "", st, true), nil
		}
		return nil, fmt.Errorf("release %s: %w", id, err)
	}
	info := d.GetWorkflowExecutionInfo()
	runID := info.GetExecution().GetRunId()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		if qerr == nil {
			return s.view(id, runID, st, true), nil
		}
		rel := s.viewFromInfo(info)
		rel.StatusError = "status query failed: " + qerr.Error()
		return rel, nil
	}
	if first := info.GetFirstRunId(); first != "" && first != runID {
		// A reset started this run: the run it closed is repaired, and the repair is the
		// release's truth (this run may have been refused by the locks busy repairing).
		return s.repairView(ctx, id, first, info.GetStatus())
	}
	return s.closedView(ctx, id, runID, info.GetStatus(), st)
}

// closedView builds (and caches) the final view of a closed release from its result. A
// workflow that failed or was terminated has no result: its last status (if the query gave
// one) is kept and the outcome says failed.
func (s *Server) closedView(ctx context.Context, id, runID string, status enumspb.WorkflowExecutionStatus, last *workflows.ReleaseStatus) (*apiclient.Release, error) {
	if status == enumspb.WORKFLOW_EXECUTION_STATUS_FAILED {
		// A release that did not succeed fails its workflow with its status in the failure
		// (workflows/result.go); any other failure is a run closed from outside.
		gctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		final, err := workflows.ReleaseResult(gctx, s.tc.GetWorkflow(gctx, id, runID))
		cancel()
		if err == nil {
			rel := s.view(id, runID, &final, false)
			s.ended.put(id, rel)
			return rel, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if closedFromOutside(status) {
		return s.repairView(ctx, id, runID, status)
	}
	gctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	final, err := workflows.ReleaseResult(gctx, s.tc.GetWorkflow(gctx, id, runID))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if last != nil {
			final = *last
		} else {
			d, derr := s.describe(ctx, id)
			if derr != nil {
				return nil, fmt.Errorf("release %s: %w", id, derr)
			}
			rel := s.viewFromInfo(d.GetWorkflowExecutionInfo())
			final = workflows.ReleaseStatus{ID: id, Environment: rel.Environment, Phase: rel.Phase, Outcome: rel.Outcome}
		}
		if final.Outcome == workflows.OutcomeNone {
			final.Outcome = workflows.OutcomeFailed
		}
		if final.Reason == "" {
			final.Reason = fmt.Sprintf("workflow %s: %v", statusName(status), err)
		}
	}
	rel := s.view(id, runID, &final, false)
	s.ended.put(id, rel)
	return rel, nil
}

// closedFromOutside reports whether a release run closed without returning its result:
// terminated (the Web UI, the Temporal CLI, an SDK, or a reset), timed out, or failed (a
// failed run whose failure carries the release's status is not: closedView reads it first).
func closedFromOutside(st enumspb.WorkflowExecutionStatus) bool {
	switch st {
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT,
		enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return true
	}
	return false
}

// repairWindow is how long a release closed from outside may go without a repair before the
// API stops waiting for one: its locks notice within seconds, so none by then means it held
// none (nothing was changed) or predates repairs.
const repairWindow = 2 * time.Minute

// repairView is the view of a release closed from outside Slipway (workflows/repair.go): its
// repair's status while the repair runs (running, so --wait and the event stream go on), then
// the repair's result (outcome terminated). Only a final view is cached. runID is the run
// that was closed (for a reset, the run the reset replaced).
func (s *Server) repairView(ctx context.Context, id, runID string, status enumspb.WorkflowExecutionStatus) (*apiclient.Release, error) {
	rid := workflows.RepairWorkflowID(id)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	d, err := s.tc.DescribeWorkflowExecution(cctx, rid, "")
	switch {
	case err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		v, qerr := s.tc.QueryWorkflow(cctx, rid, "", workflows.QueryStatus)
		var st workflows.ReleaseStatus
		if qerr == nil && v.Get(&st) == nil && st.ID != "" {
			st.Outcome = workflows.OutcomeNone
			return s.view(id, runID, &st, true), nil
		}
		rel := s.view(id, runID, &workflows.ReleaseStatus{ID: id, Phase: workflows.PhaseRollingBack,
			Reason: fmt.Sprintf("closed from outside Slipway (%s); Slipway is repairing it (%s)", statusName(status), rid)}, true)
		return rel, nil
	case err == nil:
		final, gerr := workflows.ReleaseResult(cctx, s.tc.GetWorkflow(cctx, rid, ""))
		if gerr != nil {
			return nil, fmt.Errorf("repair of release %s: %w", id, gerr)
		}
		rel := s.view(id, runID, &final, false)
		s.ended.put(id, rel)
		return rel, nil
	case !isNotFound(err):
		return nil, fmt.Errorf("repair of release %s: %w", id, err)
	}
	// No repair (yet): did the closed run change anything? Only under a lock: its history
	// says whether it took one (no worker needed to tell).
	locked, herr := s.tookLock(cctx, id, runID)
	closedAt := time.Now()
	if dd, derr := s.tc.DescribeWorkflowExecution(cctx, id, runID); derr == nil && dd.GetWorkflowExecutionInfo().GetCloseTime() != nil {
		closedAt = dd.GetWorkflowExecutionInfo().GetCloseTime().AsTime()
	}
	st := workflows.ReleaseStatus{ID: id}
	st.Environment, _ = envOfID(id)
	if herr == nil && !locked {
		st.Outcome = workflows.OutcomeTerminated
		st.Phase = workflows.PhaseDone
		st.Reason = fmt.Sprintf("closed from outside Slipway (%s) before it changed anything: nothing to repair", statusName(status))
		st.Repair = &workflows.Repair{ClosedBy: statusName(status), Outcome: workflows.OutcomeRolledBack, Reason: "nothing was changed"}
		rel := s.view(id, runID, &st, false)
		s.ended.put(id, rel)
		return rel, nil
	}
	if time.Since(closedAt) > repairWindow {
		st.Outcome = workflows.OutcomeTerminated
		st.Reason = fmt.Sprintf("closed from outside Slipway (%s) and no repair ran: check what runs where (slipway env %s)", statusName(status), st.Environment)
		st.Repair = &workflows.Repair{ClosedBy: statusName(status), Outcome: workflows.OutcomeFailed, Reason: "no repair ran"}
		return s.view(id, runID, &st, false), nil
	}
	st.Outcome = workflows.OutcomeNone
	st.Phase = workflows.PhaseRollingBack
	st.Reason = fmt.Sprintf("closed from outside Slipway (%s); its locks start the repair", statusName(status))
	return s.view(id, runID, &st, true), nil
}

// tookLock reports whether a release run's history shows a release lock started (a child
// workflow of type ReleaseLock).
func (s *Server) tookLock(ctx context.Context, id, runID string) (bool, error) {
	it := s.tc.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return false, err
		}
		if a := ev.GetChildWorkflowExecutionStartedEventAttributes(); a != nil && a.GetWorkflowType().GetName() == workflows.LockWorkflowName {
			return true, nil
		}
	}
	return false, nil
}

// waitForEnd waits (at most wait) for the release to close and returns its final view; when
// the wait runs out it returns the current view.
func (s *Server) waitForEnd(c *gin.Context, id, runID string, wait time.Duration) (*apiclient.Release, error) {
	if r := s.ended.get(id); r != nil {
		return r, nil
	}
	ctx := c.Request.Context()
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	final, err := workflows.ReleaseResult(wctx, s.tc.GetWorkflow(wctx, id, runID))
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err == nil {
		if runID == "" {
			if d, derr := s.describe(ctx, id); derr == nil {
				runID = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
			}
		}
		rel := s.view(id, runID, &final, false)
		s.ended.put(id, rel)
		return rel, nil
	}
	if isNotFound(err) {
		return nil, notFound("unknown release %q", id)
	}
	// The wait ran out, or the workflow closed without a result (closed from outside: its
	// repair runs): the current view says which; follow a repair until it ends or the wait
	// runs out.
	for {
		rel, err := s.fetchRelease(ctx, id)
		if err != nil || !rel.Running || wctx.Err() != nil {
			return rel, err
		}
		select {
		case <-wctx.Done():
			return rel, nil
		case <-time.After(s.cfg.EventPoll):
		}
	}
}

// sharedQuery runs the status query once for every caller that asks while it is in flight.
// The query has its own deadline, so one caller going away does not fail the others.
func (s *Server) sharedQuery(ctx context.Context, id string) (*workflows.ReleaseStatus, error) {
	ch := s.queries.DoChan(id, func() (any, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.QueryTimeout)
		defer cancel()
		return s.queryStatus(qctx, id)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		st := *r.Val.(*workflows.ReleaseStatus) // a copy: callers may change their view
		return &st, nil
	}
}

func (s *Server) queryStatus(ctx context.Context, id string) (*workflows.ReleaseStatus, error) {
	// Only an open release answers: a closed one would answer too (by replaying its
	// history), as it stood when it closed — for a release terminated from outside, "running".
	resp, err := s.tc.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: id, QueryType: workflows.QueryStatus, QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil {
		return nil, err
	}
	if resp.QueryRejected != nil || resp.QueryResult == nil {
		return nil, errReleaseClosed
	}
	var st workflows.ReleaseStatus
	if err := resp.QueryResult.Get(&st); err != nil {
		return nil, fmt.Errorf("decode status of %s: %w", id, err)
	}
	return &st, nil
}

// errReleaseClosed: the status query was rejected because the release is closed.
var errReleaseClosed = errors.New("release closed")

func (s *Server) describe(ctx context.Context, id string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	return s.tc.DescribeWorkflowExecution(ctx, id, "")
}

// view builds the API view of a release from its status.
func (s *Server) view(id, runID string, st *workflows.ReleaseStatus, running bool) *apiclient.Release {
	env, _ := envOfID(id)
	rel := &apiclient.Release{ID: id, RunID: runID, Environment: env, Running: running, Links: s.links(id, runID)}
	if st != nil {
		if st.Environment != "" {
			rel.Environment = st.Environment
		}
		rel.Phase, rel.Outcome, rel.Reason, rel.Status = st.Phase, st.Outcome, st.Reason, st
	}
	return rel
}

// viewFromInfo builds a view (without status) from visibility / describe data.
func (s *Server) viewFromInfo(info interface {
	GetExecution() *commonpb.WorkflowExecution
	GetSearchAttributes() *commonpb.SearchAttributes
	GetStatus() enumspb.WorkflowExecutionStatus
}) *apiclient.Release {
	id := info.GetExecution().GetWorkflowId()
	f := info.GetSearchAttributes().GetIndexedFields()
	rel := &apiclient.Release{
		ID: id, RunID: info.GetExecution().GetRunId(),
		Environment: saString(f, workflows.SAEnvironment),
		Running:     info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		Phase:       workflows.Phase(saString(f, workflows.SAPhase)),
		Outcome:     workflows.Outcome(saString(f, workflows.SAOutcome)),
		Links:       s.links(id, info.GetExecution().GetRunId()),
	}
	if rel.Environment == "" {
		rel.Environment, _ = envOfID(id)
	}
	if !validOutcome(string(rel.Outcome)) {
		rel.Outcome = workflows.OutcomeNone // e.g. "running", upserted while the release runs
	}
	if closedFromOutside(info.GetStatus()) && rel.Outcome == workflows.OutcomeNone {
		rel.Outcome = workflows.OutcomeTerminated
	}
	return rel
}

func (s *Server) links(id, runID string) apiclient.Links {
	l := apiclient.Links{Self: "/v1/releases/" + url.PathEscape(id), Events: "/v1/releases/" + url.PathEscape(id) + "/events"}
	if s.cfg.WebUIURL != "" {
		l.WebUI = s.cfg.WebUIURL + "/namespaces/" + url.PathEscape(s.cfg.Namespace) + "/workflows/" + url.PathEscape(id)
		if runID != "" {
			l.WebUI += "/" + url.PathEscape(runID)
		}
	}
	return l
}

func statusName(st enumspb.WorkflowExecutionStatus) string {
	n := strings.TrimPrefix(st.String(), "WORKFLOW_EXECUTION_STATUS_")
	if n == "" {
		return "Unknown"
	}
	return strings.ToUpper(n[:1]) + strings.ToLower(strings.ReplaceAll(n[1:], "_", ""))
}

func saString(f map[string]*commonpb.Payload, name string) string {
	var v string
	if p := f[name]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &v)
	}
	return v
}

func saStrings(f map[string]*commonpb.Payload, name string) []string {
	var v []string
	if p := f[name]; p != nil {
		if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
			var one string
			if converter.GetDefaultDataConverter().FromPayload(p, &one) == nil && one != "" {
				v = []string{one}
			}
		}
	}
	return v
}

// listReleases answers GET /v1/releases from Temporal visibility, newest first.
func (s *Server) listReleases(c *gin.Context) {
	if err := authorize(c, PermRead, ""); err != nil {
		writeProblem(c, err)
		return
	}
	p := who(c)
	clauses := []string{fmt.Sprintf("WorkflowType = '%s'", workflows.ReleaseWorkflowName)}
	add := func(param, attr string, check func(string) bool) error {
		v := c.Query(param)
		if v == "" {
			return nil
		}
		if !safeValue.MatchString(v) || (check != nil && !check(v)) {
			return badRequest("%s: %q is not a valid value", param, v)
		}
		clauses = append(clauses, fmt.Sprintf("%s = '%s'", attr, v))
		return nil
	}
	env := c.Query("environment")
	if env != "" && !p.canEnv(env) {
		writeProblem(c, forbidden("token %q is not scoped to environment %q", p.name, env))
		return
	}
	for _, f := range []struct {
		param, attr string
		check       func(string) bool
	}{
		{"environment", workflows.SAEnvironment, envName.MatchString},
		{"service", workflows.SAServices, nil},
		{"phase", workflows.SAPhase, validPhase},
		{"outcome", workflows.SAOutcome, validOutcome},
		{"triggered_by", workflows.SATriggeredBy, nil},
	} {
		if err := add(f.param, f.attr, f.check); err != nil {
			writeProblem(c, err)
			return
		}
	}
	if env == "" && !p.allEnvs {
		if len(p.envs) == 0 {
			c.JSON(http.StatusOK, apiclient.ReleaseList{Releases: []apiclient.ReleaseSummary{}})
			return
		}
		q := make([]string, len(p.envs))
		for i, e := range p.envs {
			q[i] = "'" + e + "'"
		}
		clauses = append(clauses, fmt.Sprintf("%s IN (%s)", workflows.SAEnvironment, strings.Join(q, ", ")))
	}
	switch c.Query("running") {
	case "":
	case "true":
		clauses = append(clauses, "ExecutionStatus = 'Running'")
	case "false":
		clauses = append(clauses, "ExecutionStatus != 'Running'")
	default:
		writeProblem(c, badRequest("running: true or false"))
		return
	}
	size := 50
	if v := c.Query("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeProblem(c, badRequest("page_size: a positive number"))
			return
		}
		size = min(n, s.cfg.MaxPageSize)
	}
	var token []byte
	if v := c.Query("page_token"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			writeProblem(c, badRequest("page_token: not a token from next_page_token"))
			return
		}
		token = b
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: s.cfg.Namespace, PageSize: int32(size), NextPageToken: token,
		Query: strings.Join(clauses, " AND "),
	})
	if err != nil {
		var ae *apiError
		if token != nil && !errors.As(err, &ae) && problemFor(err).Status == http.StatusBadRequest {
			err = badRequest("page_token: %v", err)
		}
		writeProblem(c, fmt.Errorf("list releases: %w", err))
		return
	}
	out := apiclient.ReleaseList{Releases: make([]apiclient.ReleaseSummary, 0, len(resp.GetExecutions()))}
	for _, e := range resp.GetExecutions() {
		f := e.GetSearchAttributes().GetIndexedFields()
		id := e.GetExecution().GetWorkflowId()
		sum := apiclient.ReleaseSummary{
			ID: id, RunID: e.GetExecution().GetRunId(),
			Environment:     saString(f, workflows.SAEnvironment),
			Services:        saStrings(f, workflows.SAServices),
			Versions:        saStrings(f, workflows.SAVersions),
			Phase:           workflows.Phase(saString(f, workflows.SAPhase)),
			Outcome:         terminalOutcome(saString(f, workflows.SAOutcome)),
			TriggeredBy:     saString(f, workflows.SATriggeredBy),
			Description:     memoString(e.GetMemo(), memoDescription),
			BuildURL:        memoString(e.GetMemo(), memoBuildURL),
			Commit:          memoString(e.GetMemo(), memoCommit),
			ExecutionStatus: statusName(e.GetStatus()),
			StartedAt:       e.GetStartTime().AsTime(),
			Links:           s.links(id, e.GetExecution().GetRunId()),
		}
		if e.GetCloseTime() != nil {
			sum.ClosedAt = e.GetCloseTime().AsTime()
		}
		out.Releases = append(out.Releases, sum)
	}
	if len(resp.GetNextPageToken()) > 0 {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString(resp.GetNextPageToken())
	}
	c.JSON(http.StatusOK, out)
}

func validPhase(v string) bool {
	switch workflows.Phase(v) {
	case workflows.PhasePending, workflows.PhasePlanning, workflows.PhaseCanary, workflows.PhaseVerifying,
		workflows.PhaseAwaitingApproval, workflows.PhasePaused, workflows.PhaseRollingOut, workflows.PhaseBaking,
		workflows.PhaseRollingBack, workflows.PhaseCleaningUp, workflows.PhaseDone, workflows.PhaseSkipped:
		return true
	}
	return false
}

// terminalOutcome keeps an outcome only once the release has one ("" while it runs).
func terminalOutcome(v string) workflows.Outcome {
	if validOutcome(v) {
		return workflows.Outcome(v)
	}
	return workflows.OutcomeNone
}

func validOutcome(v string) bool {
	switch workflows.Outcome(v) {
	case workflows.OutcomeSucceeded, workflows.OutcomeRolledBack, workflows.OutcomeFailed, workflows.OutcomeRefused, workflows.OutcomeTerminated:
		return true
	}
	return false
}

// endedCache keeps the final views of closed releases (they never change).
type endedCache struct {
	mu    sync.Mutex
	max   int
	m     map[string]*apiclient.Release
	order []string
}

func (e *endedCache) get(id string) *apiclient.Release {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.m[id]; r != nil {
		cp := *r
		return &cp
	}
	return nil
}

func (e *endedCache) put(id string, r *apiclient.Release) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]*apiclient.Release{}
	}
	if _, ok := e.m[id]; !ok {
		e.order = append(e.order, id)
	}
	cp := *r
	cp.Existing = false
	e.m[id] = &cp
	for len(e.order) > e.max {
		delete(e.m, e.order[0])
		e.order = e.order[1:]
	}
}
