package starter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// runPlan runs the Plan workflow (on the worker, which alone talks to the engines) and waits
// for its result.
func (s *Server) runPlan(c *gin.Context, env *spec.Environment) (*workflows.PlanResult, error) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.PlanTimeout)
	defer cancel()
	id := workflows.PlanWorkflowID(env.Environment, newShortID(time.Now()))
	run, err := s.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                s.cfg.TaskQueue,
		WorkflowExecutionTimeout: s.cfg.PlanTimeout,
		WorkflowTaskTimeout:      workflows.WorkflowTaskTimeout,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:            "plan of " + env.Environment + " (read-only: what a release would change)",
	}, workflows.PlanWorkflowName, *env)
	if err != nil {
		return nil, fmt.Errorf("start plan: %w", err)
	}
	var res workflows.PlanResult
	if err := run.Get(ctx, &res); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && c.Request.Context().Err() == nil {
			return nil, &apiError{status: http.StatusServiceUnavailable, title: "Plan timed out",
				detail: fmt.Sprintf("plan %s did not finish within %s: is a worker running?", id, s.cfg.PlanTimeout), cause: err}
		}
		return nil, fmt.Errorf("plan %s: %w", id, err)
	}
	return &res, nil
}

// postPlan answers POST /v1/plan: the dry-run diff of a spec (YAML or JSON body, ?set=
// overrides) against the live engines.
func (s *Server) postPlan(c *gin.Context) {
	if err := authorize(c, PermRead, ""); err != nil {
		writeProblem(c, err)
		return
	}
	body, err := s.readBody(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	ct, err := contentType(c)
	if err != nil {
		writeProblem(c, err)
		return
	}
	var env *spec.Environment
	if trig, ok, err := decodeTrigger(ct, body); err != nil {
		writeProblem(c, err)
		return
	} else if ok {
		req, err := s.triggerRequest(c, trig)
		if err != nil {
			writeProblem(c, err)
			return
		}
		env = &req.in.Spec
	} else {
		q := c.Request.URL.Query()
		overrides, err := overridesParam(q["set"])
		if err != nil {
			writeProblem(c, err)
			return
		}
		if env, err = loadSpec(specFileName(q.Get("filename"), ct), body, overrides); err != nil {
			writeProblem(c, err)
			return
		}
	}
	if err := authorize(c, PermRead, env.Environment); err != nil {
		writeProblem(c, err)
		return
	}
	res, err := s.runPlan(c, env)
	if err != nil {
		writeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, res)
}

// getEnvironment answers GET /v1/environments/{env}: what runs where (per cluster and
// service: versions, replicas, health), and what releasing the checked-in spec would change.
func (s *Server) getEnvironment(c *gin.Context) {
	name := c.Param("env")
	if !envName.MatchString(name) {
		writeProblem(c, notFound("unknown environment %q", name))
		return
	}
	if err := authorize(c, PermRead, name); err != nil {
		writeProblem(c, err)
		return
	}
	env, err := s.checkedIn(name, nil)
	if err != nil {
		writeProblem(c, err)
		return
	}
	res, err := s.runPlan(c, env)
	if err != nil {
		writeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, apiclient.EnvironmentView{Environment: name, Live: res.Live, Drift: res.Plan})
}
