package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/workflows"
)

// Releases are the activities of the release locks and of the repair of a release closed from
// outside Slipway (workflows/repair.go). They talk to Temporal, never to Docker.
type Releases struct {
	tc client.Client
	// Poll is how long WatchRelease waits before it asks again after Temporal answered its long
	// poll with an error (default 1 s); it doubles with each error in a row, up to maxWatchRetry.
	Poll time.Duration
}

// maxWatchRetry bounds the wait between two long polls of WatchRelease that failed in a row.
const maxWatchRetry = 10 * time.Second

// NewReleases returns the lock and repair activities on a Temporal client.
func NewReleases(tc client.Client) *Releases { return &Releases{tc: tc, Poll: time.Second} }

// RegisterReleases registers them under their stable names.
func RegisterReleases(r sdkworker.ActivityRegistry, a *Releases) {
	for name, fn := range map[string]any{
		workflows.ActivityWatchRelease: a.WatchRelease,
		workflows.ActivityRunRepair:    a.RunRepair,
		workflows.ActivityReleaseState: a.ReleaseState,
		workflows.ActivityDescribeLock: a.DescribeLock,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// WatchRelease returns when the release run closes, with its close status, or when its window
// (For) ends, with ReleaseStillRunning. It long-polls the run's close event
// (GetWorkflowHistory, isLongPoll, HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT): the server answers
// when the run closes, so a lock notices a terminated release at once, and a lock costs one
// request per server long-poll interval (20 s by default), not one a second; a release of 120
// services has 120 locks watching it (asking each second starved a 2-core machine,
// BENCHMARKS.md). It heartbeats while it waits (every 12 s under the lock watch's 30 s
// heartbeat timeout, see heartbeatPeriod), so a retry on another worker takes over within
// the heartbeat timeout.
func (a *Releases) WatchRelease(ctx context.Context, in workflows.WatchReleaseInput) (workflows.ReleaseEnd, error) {
	if in.WorkflowID == "" || in.RunID == "" {
		return workflows.ReleaseEnd{}, badInput("WatchRelease needs a workflow and a run ID")
	}
	defer startHeartbeat(ctx, DefaultHeartbeatEvery, nil).close()
	// wctx ends with the window. It is cancelled, not given a deadline: the server answers a
	// long poll whose deadline is less than a second away at once, and the SDK asks again at
	// once, so a deadline would make each window end in hundreds of requests.
	wctx, endWindow := context.WithCancel(ctx)
	defer endWindow()
	window := in.For
	if d, ok := ctx.Deadline(); ok && (window <= 0 || time.Until(d)-2*time.Second < window) {
		window = max(time.Until(d)-2*time.Second, time.Millisecond) // ends before the activity's own
	}
	if window > 0 {
		defer time.AfterFunc(window, endWindow).Stop()
	}
	retry := a.poll()
	for {
		t0 := time.Now()
		ev, err := closeEvent(wctx, a.tc, in.WorkflowID, in.RunID)
		switch {
		case ctx.Err() != nil:
			return workflows.ReleaseEnd{}, ctx.Err()
		case isNotFound(err):
			return workflows.ReleaseEnd{Status: "NotFound"}, nil
		case err == nil && ev != nil:
			return workflows.ReleaseEnd{Status: closeStatus(ev)}, nil
		case wctx.Err() != nil:
			return workflows.ReleaseEnd{Status: workflows.ReleaseStillRunning}, nil
		}
		// An error of Temporal itself, or an answer without the close event: ask again, at once
		// after a long poll that waited, else after a wait that grows while Temporal keeps
		// answering at once.
		if time.Since(t0) >= retry {
			retry = a.poll()
			continue
		}
		select {
		case <-ctx.Done():
			return workflows.ReleaseEnd{}, ctx.Err()
		case <-wctx.Done():
			return workflows.ReleaseEnd{Status: workflows.ReleaseStillRunning}, nil
		case <-time.After(retry):
		}
		retry = min(2*retry, maxWatchRetry)
	}
}

// closeEvent long-polls a run's close event: nil without error when the server answered
// without one (its long poll ended first).
func closeEvent(ctx context.Context, tc client.Client, wid, runID string) (*historypb.HistoryEvent, error) {
	it := tc.GetWorkflowHistory(ctx, wid, runID, true, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	if !it.HasNext() {
		return nil, nil
	}
	ev, err := it.Next()
	if err != nil || closeStatus(ev) == "" {
		return nil, err
	}
	return ev, nil
}

// closeStatus is the close status (StatusName) a run's close event stands for; "" for an
// event that does not close a run.
func closeStatus(ev *historypb.HistoryEvent) string {
	st := map[enumspb.EventType]enumspb.WorkflowExecutionStatus{
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:        enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:           enumspb.WORKFLOW_EXECUTION_STATUS_FAILED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:         enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:       enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:        enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT,
	}[ev.GetEventType()]
	if st == enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED {
		return ""
	}
	return StatusName(st)
}

func (a *Releases) poll() time.Duration {
	if a.Poll > 0 {
		return a.Poll
	}
	return time.Second
}

// RunRepair starts the repair of a release (or joins the one another lock started) and
// returns its result: the release's final status.
func (a *Releases) RunRepair(ctx context.Context, in workflows.RepairInput) (workflows.ReleaseStatus, error) {
	id := workflows.RepairWorkflowID(in.WorkflowID)
	run, err := a.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowTaskTimeout:      workflows.WorkflowTaskTimeout,
		StaticSummary:            fmt.Sprintf("repair of release %s, closed from outside Slipway (%s)", in.WorkflowID, in.Status),
	}, workflows.RepairWorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started):
		run = a.tc.GetWorkflow(ctx, id, "") // already repaired: its result
	case err != nil:
		return workflows.ReleaseStatus{}, fmt.Errorf("start repair %s: %w", id, err)
	}
	defer startHeartbeat(ctx, DefaultHeartbeatEvery, nil).close()
	var st workflows.ReleaseStatus
	if err := run.Get(ctx, &st); err != nil {
		return st, fmt.Errorf("repair %s: %w", id, err)
	}
	return st, nil
}

// ReleaseState reads what a closed release run had done (its repair-state query, answered by
// replaying its history), who closed it, and terminates any run of the same workflow ID
// started after it (a reset): the repair acts on the world as the closed run left it, and a
// reset run would act on it at the same time from a history that does not describe it.
func (a *Releases) ReleaseState(ctx context.Context, in workflows.ReleaseStateInput) (workflows.ReleaseStateResult, error) {
	var res workflows.ReleaseStateResult
	if in.WorkflowID == "" || in.RunID == "" {
		return res, badInput("ReleaseState needs a workflow and a run ID")
	}
	defer startHeartbeat(ctx, DefaultHeartbeatEvery, nil).close()
	d, err := a.tc.DescribeWorkflowExecution(ctx, in.WorkflowID, "")
	if err != nil {
		return res, fmt.Errorf("describe %s: %w", in.WorkflowID, err)
	}
	if info := d.GetWorkflowExecutionInfo(); info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && info.GetExecution().GetRunId() != in.RunID {
		run := info.GetExecution().GetRunId()
		reason := fmt.Sprintf("Slipway is repairing run %s of this release, closed from outside Slipway; a reset release is not continued (start a new release)", in.RunID)
		if err := a.tc.TerminateWorkflow(ctx, in.WorkflowID, run, reason); err != nil && !isNotFound(err) {
			return res, fmt.Errorf("terminate the reset run %s of %s: %w", run, in.WorkflowID, err)
		}
		res.Superseded = append(res.Superseded, run)
	}
	res.ClosedBy = a.closedBy(ctx, in.WorkflowID, in.RunID)
	v, err := a.tc.QueryWorkflow(ctx, in.WorkflowID, in.RunID, workflows.QueryRepairState)
	if err != nil {
		return res, fmt.Errorf("query the state of %s (run %s): %w", in.WorkflowID, in.RunID, err)
	}
	if err := v.Get(&res.State); err != nil {
		return res, badInput("decode the state of %s: %v", in.WorkflowID, err)
	}
	return res, nil
}

// closedBy describes a closed run's close event: "terminated by X: why", "timed out", ...
func (a *Releases) closedBy(ctx context.Context, wid, runID string) string {
	it := a.tc.GetWorkflowHistory(ctx, wid, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	if !it.HasNext() {
		return ""
	}
	ev, err := it.Next()
	if err != nil {
		return ""
	}
	return closeText(ev)
}

func closeText(ev *historypb.HistoryEvent) string {
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
		a := ev.GetWorkflowExecutionTerminatedEventAttributes()
		s := "terminated"
		if who := a.GetIdentity(); who != "" {
			s += " by " + who
		}
		if why := strings.TrimSpace(a.GetReason()); why != "" {
			s += ": " + why
		}
		return s
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
		return "timed out (its workflow execution or run timeout)"
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
		return "failed: " + ev.GetWorkflowExecutionFailedEventAttributes().GetFailure().GetMessage()
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
		return "cancelled"
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
		return "continued as new"
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
		return "completed"
	}
	return strings.ToLower(strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_"))
}

// DescribeLock answers a lock's state (its lock query); a lock that is not running answers an
// empty state.
func (a *Releases) DescribeLock(ctx context.Context, in workflows.DescribeLockInput) (workflows.LockState, error) {
	var ls workflows.LockState
	defer startHeartbeat(ctx, DefaultHeartbeatEvery, nil).close()
	resp, err := a.tc.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: in.LockID, QueryType: workflows.QueryLock,
		QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil {
		if isNotFound(err) {
			return ls, nil
		}
		return ls, err
	}
	if resp.QueryRejected != nil || resp.QueryResult == nil {
		return ls, nil
	}
	if err := resp.QueryResult.Get(&ls); err != nil {
		// A lock taken before locks answered queries: held by a running release.
		return workflows.LockState{State: workflows.LockHeld}, nil
	}
	return ls, nil
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

// StatusName is a workflow execution status as the Web UI shows it: Running, Completed,
// Terminated, TimedOut, ContinuedAsNew. The API's String() answers that already
// ("ContinuedAsNew"); older versions answered the constant's name (WORKFLOW_EXECUTION_STATUS_...).
func StatusName(st enumspb.WorkflowExecutionStatus) string {
	n := strings.TrimPrefix(st.String(), "WORKFLOW_EXECUTION_STATUS_")
	if !strings.Contains(n, "_") && strings.ToUpper(n) != n {
		return n // already "TimedOut" (lowering it would answer "Timedout")
	}
	parts := strings.Split(strings.ToLower(n), "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}
