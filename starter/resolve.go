package starter

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/workflows"
)

// resolve frees the locks a release left held because its rollback (or, for a release
// closed from outside Slipway, its repair) could not finish (POST /v1/releases/{id}/resolve,
// {reason} required). The operator says the services are in order again; who and why go to
// each lock's history (a resolve update), and the answer lists what was freed. 409 when the
// release holds no lock.
func (s *Server) resolve(c *gin.Context) {
	id, env, err := releaseID(c, PermRead)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if err := authorize(c, PermApprove, env); err != nil {
		writeProblem(c, err)
		return
	}
	d, err := s.decisionBody(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if strings.TrimSpace(d.Reason) == "" {
		writeProblem(c, badRequest("reason: say why the services are in order again (it is recorded in the lock's history)"))
		return
	}
	if d.Service != "" || d.Cluster != "" {
		writeProblem(c, badRequest("resolve frees every lock the release holds: it takes no service or cluster"))
		return
	}
	rel, err := s.fetch(c.Request.Context(), id, false)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if rel.Running {
		writeProblem(c, conflict("release %s is still running: nothing to resolve", id))
		return
	}
	var services []string
	if rel.Status != nil {
		for _, sp := range rel.Status.Services {
			services = append(services, sp.Service)
		}
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	out := apiclient.Resolution{ID: id}
	for _, svc := range services {
		lockID := workflows.LockWorkflowID(rel.Environment, svc)
		ls, err := s.lockState(ctx, lockID)
		if err != nil {
			writeProblem(c, err)
			return
		}
		if ls == nil || ls.WorkflowID != id || ls.State != workflows.LockHeldAfterFailure {
			continue
		}
		h, err := s.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: lockID, UpdateName: workflows.UpdateResolve,
			Args:         []any{workflows.Decision{Actor: who(c).name, Reason: d.Reason}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		if err != nil {
			if isNotFound(err) {
				continue // the lock ended meanwhile: nothing left to free
			}
			writeProblem(c, s.updateError(c, lockID, workflows.UpdateResolve, err))
			return
		}
		s.log.Info("lock resolved", "release", id, "lock", lockID, "actor", who(c).name, "reason", d.Reason)
		out.Resolved = append(out.Resolved, apiclient.ResolvedLock{Service: svc, Lock: lockID, HeldSince: ls.Since, Hold: ls.Hold})
	}
	if len(out.Resolved) == 0 {
		writeProblem(c, conflict("release %s holds no lock: nothing to resolve", id))
		return
	}
	out.By, out.Reason = who(c).name, d.Reason
	c.JSON(http.StatusOK, out)
}

// lockState asks a running lock for its state (nil when no lock runs under that ID).
func (s *Server) lockState(ctx context.Context, lockID string) (*workflows.LockState, error) {
	resp, err := s.tc.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: lockID, QueryType: workflows.QueryLock, QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", lockID, err)
	}
	if resp.QueryRejected != nil || resp.QueryResult == nil {
		return nil, nil
	}
	var ls workflows.LockState
	if err := resp.QueryResult.Get(&ls); err != nil {
		return nil, nil // a lock from before locks answered: held by a running release
	}
	return &ls, nil
}

// checkHeldLocks refuses (409) a release of a service whose lock is held after a failed
// rollback or repair, naming the release and what runs where (the release itself would be
// refused by the lock too; this answers at once).
func (s *Server) checkHeldLocks(ctx context.Context, env string, services []string) error {
	if len(services) == 0 {
		return nil
	}
	resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: s.cfg.Namespace, PageSize: 10, Query: workflows.HeldLocksQuery(env, services),
	})
	if err != nil {
		return fmt.Errorf("look for held release locks: %w", err)
	}
	for _, e := range resp.GetExecutions() {
		lockID := e.GetExecution().GetWorkflowId()
		ls, err := s.lockState(ctx, lockID)
		if err != nil || ls == nil || ls.State != workflows.LockHeldAfterFailure || ls.Hold == nil {
			continue // freed meanwhile, or cannot tell: the release's own lock decides
		}
		return &apiError{status: http.StatusConflict, title: "Service locked after a failure", inFlight: ls.WorkflowID,
			detail: workflows.HoldMessage(*ls, lockID)}
	}
	return nil
}
