package workflows

import (
	"fmt"

	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/spec"
)

// RegisterAll registers every workflow the worker runs (releases, their locks and repairs,
// plans, load tests) under its stable name: the worker and the replay test call it, so a
// history replays against exactly what the worker runs.
func RegisterAll(r sdkworker.WorkflowRegistry) {
	Register(r)
	RegisterLoadTest(r)
}

// Register registers the release workflows (Release, Plan, ReleaseLock, ReleaseRepair) under
// their explicit, stable names.
func Register(r sdkworker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(Release, workflow.RegisterOptions{Name: ReleaseWorkflowName})
	r.RegisterWorkflowWithOptions(PlanWorkflow, workflow.RegisterOptions{Name: PlanWorkflowName})
	r.RegisterWorkflowWithOptions(ReleaseLock, workflow.RegisterOptions{Name: LockWorkflowName})
	r.RegisterWorkflowWithOptions(ReleaseRepair, workflow.RegisterOptions{Name: RepairWorkflowName})
}

// PlanWorkflow is the Plan workflow: it inspects the environment (an engine that does not
// answer is reported, not fatal) and returns what a release of the spec would change, with
// the live state it saw. The API uses it for POST /v1/plan and GET /v1/environments/{env}, so
// only the worker talks to Docker.
func PlanWorkflow(ctx workflow.Context, env spec.Environment) (PlanResult, error) {
	in := InspectInput{Environment: env.Environment, AllowUnreachable: true}
	for _, c := range env.Clusters {
		in.Targets = append(in.Targets, TargetOf(env.Environment, c))
	}
	var live InspectResult
	if err := workflow.ExecuteActivity(optionsFor(ctx, ActivityInspect, 0), ActivityInspect, in).Get(ctx, &live); err != nil {
		return PlanResult{}, fmt.Errorf("inspect %s: %w", env.Environment, err)
	}
	p, err := ComputePlan(env, nil, live)
	if err != nil {
		return PlanResult{}, err
	}
	return PlanResult{Plan: p, Live: live}, nil
}
