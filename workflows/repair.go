package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"
)

// A release closed from outside Slipway (terminated, reset or timed out in the Web UI, the
// Temporal CLI or an SDK) runs none of its own code again: no rollback, no cleanup. The repair
// below finishes its work for it.
//
//   - Every release lock (lock.go) outlives its release (ParentClosePolicy ABANDON) and watches
//     the run that took it (the WatchRelease activity). A release that ends normally frees its
//     locks itself, before it returns; so a lock whose release run closed while the lock is
//     still held knows the release did not finish.
//   - That lock starts the ReleaseRepair workflow of the release (or joins it: the first lock
//     to notice starts it, the others wait for the same one) and keeps the service locked
//     until the repair is done, so no other release can touch a half-done service.
//   - The repair reads what the closed run had done (its repair-state query, answered by
//     replaying its history), terminates a run that a reset started meanwhile (a reset release
//     is not continued: it would act on a world its history does not describe), and runs the
//     release's own rollback code on it: undo, check against the engines, record. A release
//     that had already succeeded and was cleaning up is finished forward instead.
//   - Its result is the release's final status, outcome "terminated", with the repair in
//     Repair. The API shows it for the release (running until the repair ends), so
//     `--wait` and the event stream end with it.
//   - A lock whose service the repair could not put back stays held (as after a failed
//     rollback) until an operator resolves it.
//
// The repair is a workflow and the locks are workflows: a worker or server crash during a
// repair resumes like any release.

// Registered names of the repair and lock messages (never rename).
const (
	RepairWorkflowName = "ReleaseRepair"
	// QueryRepairState answers what a release had done, for its repair (RepairState).
	QueryRepairState = "repair-state"
	// QueryLock answers a lock's state (LockState).
	QueryLock = "lock"
	// SignalHold tells a lock to stay held after its release ends: its rollback could not
	// finish (HoldInfo).
	SignalHold = "hold"
	// UpdateResolve frees a lock held after a failed rollback or repair (Decision: who and
	// why; recorded in the lock's history).
	UpdateResolve = "resolve"
	// KindRepair is the SlipwayKind of a repair workflow, KindLock of a release lock.
	KindRepair = "repair"
	KindLock   = "lock"
)

// Activities of the repair and the locks (they use the Temporal client, not Docker).
const (
	ActivityWatchRelease = "WatchRelease"
	ActivityRunRepair    = "RunRepair"
	ActivityReleaseState = "ReleaseState"
	ActivityDescribeLock = "DescribeLock"
)

// repairGrace is how long a repair waits before it acts: the closed run's activities that
// were still running learn from their next heartbeat (every second) that their workflow is
// gone, and stop.
const repairGrace = 4 * time.Second

// RepairInput names the release run to repair.
type RepairInput struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	// Status is how the run closed, as Temporal says it (Terminated, TimedOut, Failed, ...).
	Status string `json:"status"`
	// NoticedBy is the lock that noticed.
	NoticedBy string `json:"noticed_by"`
}

// RepairState is what a release had done when it stopped: the input of its rollback.
type RepairState struct {
	WorkflowID string                         `json:"workflow_id"`
	Input      ReleaseInput                   `json:"input"`
	Status     ReleaseStatus                  `json:"status"`
	Plan       Plan                           `json:"plan"`
	Touched    map[string]map[string]bool     `json:"touched,omitempty"`
	Started    map[string]map[string][]string `json:"started,omitempty"`
	Detached   map[string]map[string][]string `json:"detached,omitempty"`
	Stopped    map[string]map[string][]string `json:"stopped,omitempty"`
	Completed  map[string]bool                `json:"completed,omitempty"`
	Failed     map[string]bool                `json:"failed,omitempty"`
	Locked     []string                       `json:"locked,omitempty"` // services whose locks it held
	Finished   bool                           `json:"finished,omitempty"`
	Rolling    bool                           `json:"rolling_back,omitempty"`
	Failure    string                         `json:"failure,omitempty"`
	Aborted    bool                           `json:"aborted,omitempty"`
}

// ReleaseStateInput asks for the repair state of a closed release run.
type ReleaseStateInput struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// ReleaseStateResult is the repair state and how the run was closed.
type ReleaseStateResult struct {
	State RepairState `json:"state"`
	// ClosedBy says who closed the run and why, from its close event ("terminated by X: why").
	ClosedBy string `json:"closed_by"`
	// Superseded lists runs of the same workflow ID started after it (a reset) that the
	// activity terminated.
	Superseded []string `json:"superseded,omitempty"`
}

// Repair says how a release closed from outside Slipway was repaired.
type Repair struct {
	WorkflowID string `json:"workflow_id"`
	// ClosedBy: who closed the release and how ("terminated by X: why").
	ClosedBy string `json:"closed_by"`
	// Outcome: rolled_back (what it touched runs what ran before), succeeded (it had
	// succeeded and was cleaning up; the cleanup was finished), or failed (the repair could
	// not finish; Running says what runs where, and the services stay locked).
	Outcome Outcome   `json:"outcome"`
	Reason  string    `json:"reason"`
	EndedAt time.Time `json:"ended_at,omitempty"`
}

// repairState is the release's repair-state query.
func (r *release) repairState() RepairState {
	rs := RepairState{
		WorkflowID: r.wid, Input: r.in, Status: r.status(), Plan: r.plan,
		Touched: r.touched, Started: r.started, Detached: r.detached, Stopped: r.stopped,
		Completed: r.completed, Failed: r.failed, Finished: r.finished, Rolling: r.rollingBack,
		Aborted: r.abort != nil,
	}
	for _, l := range r.locks {
		rs.Locked = append(rs.Locked, l.service)
	}
	if r.failure != nil {
		rs.Failure = r.failure.reason
	}
	return rs
}

// ReleaseRepair repairs a release closed from outside Slipway (see the top of this file). Its
// result is the release's final status.
func ReleaseRepair(ctx workflow.Context, in RepairInput) (ReleaseStatus, error) {
	var r *release
	status := ReleaseStatus{Phase: PhasePending, Reason: "waiting for the closed release's activities to stop"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (ReleaseStatus, error) {
		if r == nil {
			return status, nil
		}
		return r.status(), nil
	}); err != nil {
		return status, err
	}
	if err := workflow.Sleep(ctx, repairGrace); err != nil {
		return status, err
	}
	var got ReleaseStateResult
	if err := workflow.ExecuteActivity(optionsFor(ctx, ActivityReleaseState, 0), ActivityReleaseState, ReleaseStateInput{WorkflowID: in.WorkflowID, RunID: in.RunID}).Get(ctx, &got); err != nil {
		// Without its state nothing can be undone safely: the locks stay held.
		status.Outcome = OutcomeTerminated
		status.Phase = PhaseDone
		status.Reason = fmt.Sprintf("release %s closed from outside Slipway (%s); its state could not be read, so nothing was repaired: %s", in.WorkflowID, in.Status, errText(err))
		status.Repair = &Repair{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, ClosedBy: in.Status, Outcome: OutcomeFailed, Reason: status.Reason, EndedAt: workflow.Now(ctx)}
		return status, nil
	}
	r = releaseFromState(ctx, got.State)
	r.kind = KindRepair
	closedBy := got.ClosedBy
	if closedBy == "" {
		closedBy = strings.ToLower(in.Status)
	}
	cause := "closed from outside Slipway: " + closedBy
	r.event(ctx, r.st.Phase, "", "", fmt.Sprintf("RELEASE %s; Slipway repairs it (workflow %s)", strings.ToUpper(cause[:1])+cause[1:], workflow.GetInfo(ctx).WorkflowExecution.ID))
	for _, run := range got.Superseded {
		r.event(ctx, r.st.Phase, "", "", fmt.Sprintf("terminated run %s of the release (started by a reset): a reset release is not continued; start a new release", run))
	}
	rep := &Repair{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, ClosedBy: closedBy}
	r.st.Outcome = OutcomeNone
	switch {
	case got.State.Finished:
		// It had reached its end (locks freed last): nothing is half done.
		rep.Outcome, rep.Reason = got.State.Status.Outcome, "the release had already ended: "+got.State.Status.Reason
	case r.st.Phase == PhaseCleaningUp && !got.State.Rolling:
		// Verified everywhere; only the cleanup was cut: finish it (forward, consistent).
		r.cleanup(ctx)
		rep.Outcome = OutcomeSucceeded
		rep.Reason = "every changed service had been rolled out and verified; the cleanup was finished"
		if strings.Contains(r.st.Reason, "cleanup") {
			rep.Reason += " (" + r.st.Reason + ")"
		}
	default:
		r.failure = &failure{reason: "release " + cause}
		if got.State.Failure != "" {
			r.failure.reason += " (it was already rolling back: " + got.State.Failure + ")"
		}
		r.rollback(ctx)
		rep.Outcome, rep.Reason = r.st.Outcome, r.st.Reason
	}
	rep.EndedAt = workflow.Now(ctx)
	r.st.Repair = rep
	r.st.Outcome = OutcomeTerminated
	r.st.Reason = fmt.Sprintf("%s; repair %s: %s", cause, rep.Outcome, rep.Reason)
	r.finished = true
	r.st.EndedAt = rep.EndedAt
	r.setPhase(ctx, PhaseDone, "release terminated; repair "+string(rep.Outcome))
	return r.status(), nil
}

// releaseFromState rebuilds a release from the repair state of its closed run, so the repair
// runs the release's own rollback and cleanup code.
func releaseFromState(ctx workflow.Context, rs RepairState) *release {
	r := newReleaseState(ctx, rs.Input)
	r.wid = rs.WorkflowID
	r.st = rs.Status
	r.plan = rs.Plan
	//workflowcheck:ignore map order: fills maps
	for svc, m := range rs.Touched {
		for c := range m {
			r.touch(svc, c)
		}
	}
	copyNames := func(dst, src map[string]map[string][]string) {
		//workflowcheck:ignore map order: copies maps
		for svc, m := range src {
			if dst[svc] == nil {
				dst[svc] = map[string][]string{}
			}
			for c, names := range m {
				dst[svc][c] = append([]string(nil), names...)
			}
		}
	}
	copyNames(r.started, rs.Started)
	copyNames(r.detached, rs.Detached)
	copyNames(r.stopped, rs.Stopped)
	//workflowcheck:ignore map order: copies a map
	for k, v := range rs.Completed {
		r.completed[k] = v
	}
	//workflowcheck:ignore map order: copies a map
	for k, v := range rs.Failed {
		r.failed[k] = v
	}
	if rs.Aborted {
		r.abort = &Decision{Actor: "(aborted before it was closed)"}
	}
	for _, e := range r.st.Events {
		if e.Seq > r.seq {
			r.seq = e.Seq
		}
	}
	r.st.Gates = nil
	return r
}

// LockState is what a lock answers to QueryLock.
type LockState struct {
	Environment string `json:"environment"`
	Service     string `json:"service"`
	ReleaseID   string `json:"release_id"`
	WorkflowID  string `json:"workflow_id"`
	// State: "held" (its release runs), "repairing" (its release was closed from outside and
	// is being repaired), "held_after_failure" (its release's rollback or repair could not
	// finish: resolve it).
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Hold says why it is held after its release ended, and what runs where.
	Hold *HoldInfo `json:"hold,omitempty"`
}

// Lock states.
const (
	LockHeld             = "held"
	LockRepairing        = "repairing"
	LockHeldAfterFailure = "held_after_failure"
	LockResolved         = "resolved" // an operator resolved it; it ends at once
)

// HoldInfo is why a lock stays held after its release ended (SignalHold).
type HoldInfo struct {
	Outcome Outcome `json:"outcome"`
	Reason  string  `json:"reason"`
	// Running is what runs where: cluster → service → versions.
	Running map[string]map[string][]string `json:"running,omitempty"`
}

// LockResult is how a lock ended.
type LockResult struct {
	// Freed: "released" (its release ended and freed it), "repaired" (its release was closed
	// from outside and repaired), "resolved" (an operator resolved it), "cancelled".
	Freed      string `json:"freed"`
	ResolvedBy string `json:"resolved_by,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// ReleaseEnd is how a watched release run closed.
type ReleaseEnd struct {
	// Status is Temporal's close status (Completed, Terminated, TimedOut, Failed, Canceled,
	// ContinuedAsNew), NotFound, or ReleaseStillRunning when the watch window ended first.
	Status string `json:"status"`
}

// ReleaseStillRunning is the ReleaseEnd status of a watch whose window ended first.
const ReleaseStillRunning = "Running"

// lockWatchWindow is how long one WatchRelease call watches; lockWatchMinRound the shortest round.
const (
	lockWatchWindow   = time.Minute
	lockWatchMinRound = 10 * time.Second
)

// changeLockWatchHeartbeat (a workflow.GetVersion change ID, kept here with the watch it
// changes; never reuse or remove it while histories that lack it may replay): a lock's
// WatchRelease runs with a heartbeat timeout of lockWatchHeartbeat instead of the engine
// activities' 2.5 s. The watch long-polls its release; what its heartbeat buys is a retry on
// another worker when its worker dies, and a lock may take that long to notice. With 2.5 s
// the 120 locks of a 120-service release each sent a heartbeat RPC a second (the worker's
// throttle; each a write of the lock's mutable state), and on a loaded topology a heartbeat
// slower than 2 s cancels its activity (the SDK counts it as a heartbeat timeout): hundreds of
// failed watches a minute (BENCHMARKS.md, the 120-service release on the production topology).
const (
	changeLockWatchHeartbeat = "lock-watch-heartbeat"
	lockWatchHeartbeat       = 30 * time.Second
)

// WatchReleaseInput names the release run a lock watches, and for how long at most.
type WatchReleaseInput struct {
	WorkflowID string        `json:"workflow_id"`
	RunID      string        `json:"run_id"`
	For        time.Duration `json:"for"`
}

// DescribeLockInput names a lock to describe.
type DescribeLockInput struct {
	LockID string `json:"lock_id"`
}

// watchingLock is ReleaseLock for locks taken since changeLockOutlives: it outlives its
// release, repairs it when the release was closed from outside, and stays held after a
// rollback or repair that could not finish until an operator resolves it.
func watchingLock(ctx workflow.Context, in LockInput) (LockResult, error) {
	st := LockState{Environment: in.Environment, Service: in.Service, ReleaseID: in.ReleaseID, WorkflowID: in.WorkflowID,
		State: LockHeld, Since: workflow.Now(ctx)}
	var resolved *Decision
	if err := workflow.SetQueryHandler(ctx, QueryLock, func() (LockState, error) { return st, nil }); err != nil {
		return LockResult{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateResolve,
		func(uctx workflow.Context, d Decision) error {
			resolved = &d
			st.State, st.Since = LockResolved, workflow.Now(uctx)
			return nil
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, d Decision) error {
			if err := needActor(d); err != nil {
				return err
			}
			if st.State != LockHeldAfterFailure {
				return fmt.Errorf("the lock of %s is not held after a failure (it is %s): nothing to resolve", in.Service, st.State)
			}
			return nil
		}}); err != nil {
		return LockResult{}, err
	}
	workflow.Go(ctx, func(gctx workflow.Context) {
		ch := workflow.GetSignalChannel(gctx, SignalHold)
		for {
			var h HoldInfo
			if !ch.Receive(gctx, &h) {
				return
			}
			// The release is ending with this service left failed: held from now on (a
			// release refused meanwhile names it), before the watch sees the release close.
			st.Hold = &h
			st.State, st.Since = LockHeldAfterFailure, workflow.Now(gctx)
			lockPhase(gctx, LockHeldAfterFailure)
		}
	})

	// Watch the release run until it closes, or until it frees this lock (cancels it). One
	// WatchRelease call watches for up to lockWatchWindow; the next starts at once (at most one
	// round per lockWatchMinRound), so a lock's history grows by a few events a minute.
	var end *ReleaseEnd
	var watchErr error
	slowBeat := workflow.GetVersion(ctx, changeLockWatchHeartbeat, workflow.DefaultVersion, 1) >= 1
	workflow.Go(ctx, func(gctx workflow.Context) {
		for {
			t0 := workflow.Now(gctx)
			var e ReleaseEnd
			actx := optionsFor(gctx, ActivityWatchRelease, lockWatchWindow)
			if slowBeat {
				actx = workflow.WithHeartbeatTimeout(actx, lockWatchHeartbeat)
			}
			err := workflow.ExecuteActivity(actx, ActivityWatchRelease,
				WatchReleaseInput{WorkflowID: in.WorkflowID, RunID: in.RunID, For: lockWatchWindow}).Get(gctx, &e)
			if gctx.Err() != nil {
				return
			}
			if err != nil {
				watchErr, end = err, &ReleaseEnd{Status: "Unknown"}
				return
			}
			if e.Status != ReleaseStillRunning {
				end = &e
				return
			}
			if rest := lockWatchMinRound - workflow.Now(gctx).Sub(t0); rest > 0 {
				if workflow.Sleep(gctx, rest) != nil {
					return
				}
			}
		}
	})
	if err := workflow.Await(ctx, func() bool { return end != nil || resolved != nil }); err != nil {
		// Cancelled: the release freed its lock (its normal end).
		return LockResult{Freed: "released"}, nil
	}
	if resolved != nil { // held after a failure (the release's hold) and resolved already
		return LockResult{Freed: "resolved", ResolvedBy: resolved.Actor, Reason: resolved.Reason}, nil
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if st.Hold == nil && watchErr == nil {
		// Closed without freeing this lock and without a hold: closed from outside.
		st.State = LockRepairing
		st.Since = workflow.Now(ctx)
		lockPhase(ctx, LockRepairing)
		var final ReleaseStatus
		rin := RepairInput{WorkflowID: in.WorkflowID, RunID: in.RunID, Status: end.Status, NoticedBy: workflow.GetInfo(ctx).WorkflowExecution.ID}
		err := workflow.ExecuteActivity(optionsFor(dctx, ActivityRunRepair, 0), ActivityRunRepair, rin).Get(dctx, &final)
		switch {
		case err != nil:
			st.Hold = &HoldInfo{Outcome: OutcomeFailed, Reason: fmt.Sprintf("release %s was closed from outside Slipway (%s) and its repair could not run: %s", in.ReleaseID, end.Status, errText(err))}
		case serviceFailed(final, in.Service):
			st.Hold = &HoldInfo{Outcome: OutcomeFailed, Reason: final.Reason, Running: final.Running}
		default:
			return LockResult{Freed: "repaired", Reason: final.Reason}, nil
		}
	}
	if st.Hold == nil {
		st.Hold = &HoldInfo{Outcome: OutcomeFailed, Reason: "the lock could not watch its release: " + errText(watchErr)}
	}
	if st.State != LockHeldAfterFailure {
		st.State = LockHeldAfterFailure
		st.Since = workflow.Now(ctx)
		lockPhase(ctx, LockHeldAfterFailure)
	}
	if err := workflow.Await(ctx, func() bool { return resolved != nil }); err != nil {
		return LockResult{Freed: "cancelled", Reason: "the lock was cancelled from outside Slipway while held after a failure"}, nil
	}
	return LockResult{Freed: "resolved", ResolvedBy: resolved.Actor, Reason: resolved.Reason}, nil
}

// lockPhase shows a lock's state in its SlipwayPhase search attribute (HeldLocksQuery).
func lockPhase(ctx workflow.Context, state string) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, saPhase.ValueSet(state)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert lock phase", "error", err)
	}
}

// HeldLocksQuery is the visibility query for the locks of services in an environment held
// after a failed rollback or repair.
func HeldLocksQuery(environment string, services []string) string {
	return fmt.Sprintf("%s = '%s' AND %s = %s AND %s = '%s' AND ExecutionStatus = 'Running'",
		SAKind, KindLock, SAEnvironment, quote(environment), SAPhase, LockHeldAfterFailure) + servicesClause(services)
}

// serviceFailed reports whether a status leaves a service not put back (phase failed), or
// could not be read.
func serviceFailed(st ReleaseStatus, service string) bool {
	if st.Repair != nil && st.Repair.Outcome == OutcomeFailed && len(st.Services) == 0 {
		return true
	}
	for _, s := range st.Services {
		if s.Service == service {
			return s.Phase == PhaseFailed
		}
	}
	return false
}

// HoldMessage is the refusal of a release that meets a lock held after a failure.
func HoldMessage(ls LockState, lockID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "service %s is locked since %s: release %s did not finish its %s: %s",
		ls.Service, ls.Since.UTC().Format(time.RFC3339), releaseName(ls), holdWhat(ls), ls.Hold.Reason)
	if len(ls.Hold.Running) > 0 {
		b.WriteString("; running: ")
		var parts []string
		for _, c := range sortedKeys(ls.Hold.Running) {
			for _, s := range sortedKeys(ls.Hold.Running[c]) {
				parts = append(parts, fmt.Sprintf("%s on %s: %s", s, c, strings.Join(ls.Hold.Running[c][s], ", ")))
			}
		}
		b.WriteString(strings.Join(parts, "; "))
	}
	fmt.Fprintf(&b, ". Put it in order, then resolve: `slipway resolve %s --reason ...` (POST /v1/releases/%s/resolve); lock %s", releaseName(ls), releaseName(ls), lockID)
	return b.String()
}

// releaseName is the release as the API and the CLI name it: its workflow ID.
func releaseName(ls LockState) string {
	if ls.WorkflowID != "" {
		return ls.WorkflowID
	}
	return ls.ReleaseID
}

func holdWhat(ls LockState) string {
	if ls.Hold != nil && strings.Contains(ls.Hold.Reason, "outside Slipway") {
		return "repair"
	}
	return "rollback"
}
