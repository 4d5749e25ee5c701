package starter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// decisionBody reads the optional {reason} body of a decision.
func (s *Server) decisionBody(c *gin.Context) (apiclient.DecisionRequest, error) {
	var d apiclient.DecisionRequest
	body, err := s.readBody(c)
	if err != nil {
		return d, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return d, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, badRequest("body: %v (expected {\"reason\": \"...\"}, and for approve or abort optionally \"service\" and \"cluster\")", err)
	}
	return d, nil
}

// decide sends an Update (approve, abort, pause, resume) to a running release. A rejected
// update (its validator said no) is a 409 with the reason; the answer is the release's view
// after the update.
func (s *Server) decide(update string, perm Permission) gin.HandlerFunc {
	return func(c *gin.Context) {
		rel, err := s.applyDecision(c, update, perm, s.decisionBody)
		if err != nil {
			writeProblem(c, err)
			return
		}
		c.JSON(http.StatusOK, rel)
	}
}

// applyDecision checks the request's scope on the release of the URL's :id, reads the
// decision (body), sends the update and returns the release's view after it. The API's
// routes and the dashboard's forms both decide through it.
func (s *Server) applyDecision(c *gin.Context, update string, perm Permission, body func(*gin.Context) (apiclient.DecisionRequest, error)) (*apiclient.Release, error) {
	id, env, err := releaseID(c, PermRead)
	if err != nil {
		return nil, err
	}
	if err := authorize(c, perm, env); err != nil {
		// Whoever may release may also abort what they started.
		if update != workflows.UpdateAbort || authorize(c, PermRelease, env) != nil {
			return nil, err
		}
	}
	d, err := body(c)
	if err != nil {
		return nil, err
	}
	if (d.Service != "" || d.Cluster != "") && update != workflows.UpdateApprove && update != workflows.UpdateAbort {
		return nil, badRequest("service and cluster name a gate: only approve and abort take them")
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	h, err := s.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   update,
		Args:         []any{workflows.Decision{Actor: who(c).name, Reason: d.Reason, Service: d.Service, Cluster: d.Cluster}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		return nil, s.updateError(c, id, update, err)
	}
	s.log.Info("release decision", "id", id, "update", update, "actor", who(c).name, "service", d.Service, "cluster", d.Cluster)
	return s.fetch(c.Request.Context(), id, false)
}

// updateError classifies a failed update: unknown release 404, ended release 409, rejected
// by the workflow 409 with its reason, Temporal or the worker not answering 503.
func (s *Server) updateError(c *gin.Context, id, update string, err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return &apiError{status: http.StatusConflict, title: "Rejected", cause: err,
			detail: fmt.Sprintf("%s of %s rejected: %s", update, id, appErr.Message())}
	}
	if isNotFound(err) {
		d, derr := s.describe(c.Request.Context(), id)
		if derr != nil {
			if isNotFound(derr) {
				return notFound("unknown release %q", id)
			}
			return derr
		}
		if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return &apiError{status: http.StatusConflict, title: "Release ended", cause: err,
				detail: fmt.Sprintf("release %s has ended (%s): nothing to %s", id, strings.ToLower(statusName(st)), update)}
		}
	}
	return fmt.Errorf("%s %s: %w", update, id, err)
}

// rollback starts a new, audited release that brings back the versions an ended release
// replaced: fast-tracked (no canary, no soak), RollbackOf the original. One rollback per
// release: a repeated POST returns the same rollback release.
func (s *Server) rollback(c *gin.Context) {
	id, _, err := releaseID(c, PermRelease)
	if err != nil {
		writeProblem(c, err)
		return
	}
	wait, err := s.waitParam(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	d, err := s.decisionBody(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	desc, err := s.describe(ctx, id)
	if err != nil {
		if isNotFound(err) {
			err = notFound("unknown release %q", id)
		}
		writeProblem(c, err)
		return
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		writeProblem(c, &apiError{status: http.StatusConflict, title: "Release in flight", inFlight: id,
			detail: fmt.Sprintf("release %s is still running: abort it (its own rollback runs), or wait for it to end", id)})
		return
	}
	runID := info.GetExecution().GetRunId()
	orig, err := s.releaseInput(c, id, runID)
	if err != nil {
		writeProblem(c, err)
		return
	}
	rel, err := s.fetchRelease(ctx, id)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if rel.Outcome == workflows.OutcomeRolledBack {
		writeProblem(c, conflict("release %s was already rolled back: what it replaced runs again", id))
		return
	}
	back := map[string]string{}
	if rel.Status != nil {
		for _, sp := range rel.Status.Services {
			if sp.Phase == workflows.PhaseSkipped || sp.FromVersion == "" || sp.FromVersion == sp.ToVersion {
				continue
			}
			back[sp.Service] = sp.FromVersion
		}
	}
	if len(back) == 0 {
		writeProblem(c, conflict("nothing to roll back: release %s replaced no running version", id))
		return
	}
	in := workflows.ReleaseInput{
		Spec:       orig.Spec,
		Overrides:  back,
		BuildURL:   orig.BuildURL,
		Commit:     orig.Commit,
		FastTrack:  true,
		RollbackOf: id,
	}
	// Deep-copy the services so the versions we set do not alias the original's slice.
	in.Spec.Services = append([]spec.Service(nil), orig.Spec.Services...)
	for i := range in.Spec.Services {
		if v, ok := back[in.Spec.Services[i].Name]; ok {
			in.Spec.Services[i].Version = v
		}
	}
	for svc := range back {
		in.Services = append(in.Services, svc)
	}
	sort.Strings(in.Services)
	in.Description = "rollback of " + id
	if d.Reason != "" {
		in.Description += ": " + d.Reason
	}
	in.TriggeredBy = who(c).name
	key := c.GetHeader("Idempotency-Key")
	started, err := s.start(c, &releaseRequest{in: in, scope: in.Services}, key, "rollback:"+id)
	if err != nil {
		writeProblem(c, err)
		return
	}
	s.answerStarted(c, started, wait)
}

// releaseInput reads the input a release was started with (its first history event).
func (s *Server) releaseInput(c *gin.Context, id, runID string) (*workflows.ReleaseInput, error) {
	ctx, cancel := s.callCtx(c)
	defer cancel()
	it := s.tc.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return nil, fmt.Errorf("release %s: empty history", id)
	}
	ev, err := it.Next()
	if err != nil {
		return nil, fmt.Errorf("release %s: read history: %w", id, err)
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil {
		return nil, fmt.Errorf("release %s: first history event is %s", id, ev.GetEventType())
	}
	var in workflows.ReleaseInput
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		return nil, fmt.Errorf("release %s: decode input: %w", id, err)
	}
	return &in, nil
}
