package workflows

import (
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// LockWorkflowName is the registered name of the per-(environment, service) release lock.
const LockWorkflowName = "ReleaseLock"

// Concurrency: at most one release in flight per (environment, service).
//
// The starter refuses an overlapping release up front (InFlightQuery over visibility, which
// lets it name the release in flight), but visibility is eventually consistent, so two
// triggers a few milliseconds apart could both pass it. The guarantee therefore lives in
// Temporal itself: every release, once it knows which services it changes, starts one child
// workflow per service with the ID LockWorkflowID(environment, service). Temporal allows
// only one open workflow per ID in a namespace, so the second start fails with "already
// started" — atomically, on the server, whatever the timing. The lock child does nothing
// but wait; the release cancels it when it ends (after its rollback or cleanup), and its
// ParentClosePolicy TERMINATE frees it even if the release is terminated or times out, so a
// lock can never leak. Locks are taken in sorted service order and a release that meets a
// held lock frees those it took before it refuses (or waits, with ReleaseInput.Queue), so
// two multi-service releases cannot deadlock. The holder of a lock is its parent execution
// (DescribeWorkflowExecution of the lock ID), and its memo names the release.

// LockInput is what a lock records about its holder.
type LockInput struct {
	Environment string `json:"environment"`
	Service     string `json:"service"`
	ReleaseID   string `json:"release_id"`
	WorkflowID  string `json:"workflow_id"`
	// RunID is the release run that took the lock. Set (since changeLockOutlives), the lock
	// outlives the run and watches it (repair.go); empty, the lock ends with its parent.
	RunID string `json:"run_id,omitempty"`
}

// ReleaseLock holds the lock of one (environment, service). A lock with a RunID holds it
// until its release frees it, or (the release closed from outside) until the release is
// repaired, or (a rollback or repair that could not finish) until an operator resolves it:
// see repair.go. A lock without one (taken before that change) holds it until its parent
// release cancels it, or the server terminates it when the parent closes.
func ReleaseLock(ctx workflow.Context, in LockInput) (LockResult, error) {
	if in.RunID != "" {
		return watchingLock(ctx, in)
	}
	_ = workflow.Await(ctx, func() bool { return false }) // returns when cancelled
	return LockResult{Freed: "released"}, nil
}

// InFlightQuery is the visibility query for releases in flight in an environment that touch
// any of services (empty: any release of the environment). The starter runs it before it
// starts a release, to refuse an overlap with a 409 naming the release in flight.
func InFlightQuery(environment string, services []string) string {
	return fmt.Sprintf("%s = 'release' AND %s = %s AND ExecutionStatus = 'Running'",
		SAKind, SAEnvironment, quote(environment)) + servicesClause(services)
}

// servicesClause narrows a visibility query to runs of any of services (none: no clause).
func servicesClause(services []string) string {
	if len(services) == 0 {
		return ""
	}
	s := uniqueSorted(services)
	qs := make([]string, len(s))
	for i, v := range s {
		qs[i] = quote(v)
	}
	return fmt.Sprintf(" AND %s IN (%s)", SAServices, strings.Join(qs, ", "))
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Overlap returns the services two releases have in common, sorted.
func Overlap(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range a {
		in[s] = true
	}
	var out []string
	for _, s := range uniqueSorted(b) {
		if in[s] {
			out = append(out, s)
		}
	}
	return out
}

// ReleaseServices is the set of services a release may change, sorted: the input's
// Services, or every service of its spec. The starter checks it against releases in flight;
// the workflow then locks only the services its plan changes.
func ReleaseServices(in ReleaseInput) []string {
	if len(in.Services) > 0 {
		return uniqueSorted(in.Services)
	}
	var out []string
	for _, s := range in.Spec.Services {
		out = append(out, s.Name)
	}
	return uniqueSorted(out)
}

// heldLock is a lock this release holds.
type heldLock struct {
	service string
	cancel  workflow.CancelFunc
	done    workflow.ChildWorkflowFuture
	// outlives: the lock outlives this release and watches it (changeLockOutlives); it can
	// be told to stay held after a failed rollback.
	outlives bool
	id       string
}

// errLockHeld says a lock is held by another release (or after a failed one: detail).
type errLockHeld struct{ service, lockID, detail string }

func (e errLockHeld) Error() string {
	if e.detail != "" {
		return e.detail
	}
	return fmt.Sprintf("service %s is being released by another release (lock %s; its parent workflow is the release in flight)", e.service, e.lockID)
}

// acquireLock starts the lock child of one service. lockCtx must outlive the release's own
// cancellation (a disconnected context), so the lock is held until the rollback is done.
func (r *release) acquireLock(ctx, lockCtx workflow.Context, service string) (*heldLock, error) {
	outlives := workflow.GetVersion(ctx, changeLockOutlives, workflow.DefaultVersion, 1) >= 1
	in := LockInput{Environment: r.in.Spec.Environment, Service: service, ReleaseID: r.in.ID, WorkflowID: r.wid}
	if outlives {
		in.RunID = workflow.GetInfo(ctx).WorkflowExecution.RunID
	}
	l, err := takeLock(ctx, lockCtx, in, r.in.ID)
	var lh errLockHeld
	if asLockHeld(err, &lh) {
		lh.detail = r.describeHeldLock(ctx, lh.lockID)
		return nil, lh
	}
	return l, err
}

// takeLock starts the lock child of one service on lockCtx (which must outlive the caller's
// own cancellation, so the lock is held until the caller's compensation is done): the
// release's locks and the load test's. A lock with a RunID outlives its parent and watches
// it (repair.go); one without ends with its parent. holder names the parent in the lock's
// memo. A lock held by another is errLockHeld.
func takeLock(ctx, lockCtx workflow.Context, in LockInput, holder string) (*heldLock, error) {
	id := LockWorkflowID(in.Environment, in.Service)
	opts := workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_TERMINATE,
		WaitForCancellation:   true,
		WorkflowTaskTimeout:   WorkflowTaskTimeout,
		Memo:                  map[string]any{"release": holder, "release_workflow_id": in.WorkflowID},
		// The Web UI's summary (metadata only: replays with or without it).
		StaticSummary: fmt.Sprintf("release lock of %s in %s, held by %s", in.Service, in.Environment, holder),
	}
	outlives := in.RunID != ""
	if outlives {
		opts.ParentClosePolicy = enumspb.PARENT_CLOSE_POLICY_ABANDON
		// Findable: the API refuses a release up front when one of its services is held
		// after a failure (HeldLocksQuery).
		opts.TypedSearchAttributes = lockStartAttributes(in.Environment, in.Service)
	}
	cctx, cancel := workflow.WithCancel(lockCtx)
	cctx = workflow.WithChildOptions(cctx, opts)
	f := workflow.ExecuteChildWorkflow(cctx, LockWorkflowName, in)
	if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		cancel()
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			return nil, errLockHeld{service: in.Service, lockID: id}
		}
		return nil, fmt.Errorf("take release lock %s: %w", id, err)
	}
	return &heldLock{service: in.Service, cancel: cancel, done: f, outlives: outlives, id: id}, nil
}

// free cancels the lock and waits until it has ended (cancelled or completed: either frees it).
func (l *heldLock) free(ctx workflow.Context) {
	l.cancel()
	_ = l.done.Get(ctx, nil)
}

// describeHeldLock asks a lock held by someone else why (DescribeLock): a lock held after a
// failed rollback or repair gets a refusal that names the release and what runs where.
func (r *release) describeHeldLock(ctx workflow.Context, lockID string) string {
	if workflow.GetVersion(ctx, changeDescribeHeldLock, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ""
	}
	var ls LockState
	if err := workflow.ExecuteActivity(optionsFor(ctx, ActivityDescribeLock, 0), ActivityDescribeLock, DescribeLockInput{LockID: lockID}).Get(ctx, &ls); err != nil {
		return ""
	}
	switch ls.State {
	case LockHeldAfterFailure:
		if ls.Hold != nil {
			return HoldMessage(ls, lockID)
		}
	case LockRepairing:
		return fmt.Sprintf("service %s is locked while release %s, closed from outside Slipway, is being repaired (lock %s)", ls.Service, releaseName(ls), lockID)
	case LockHeld:
		return fmt.Sprintf("service %s is being released by release %s (lock %s)", ls.Service, releaseName(ls), lockID)
	}
	return ""
}

// holdOrFree ends the release's hold on its locks: a service its rollback left failed stays
// locked (the lock is told why and what runs where, and waits for an operator's resolve);
// every other lock is freed.
func (r *release) holdOrFree(ctx workflow.Context) {
	var free []*heldLock
	for _, l := range r.locks {
		if !l.outlives || r.st.Outcome != OutcomeFailed || r.svcPhaseOf(l.service) != PhaseFailed {
			free = append(free, l)
			continue
		}
		h := HoldInfo{Outcome: r.st.Outcome, Reason: r.st.Reason, Running: r.st.Running}
		if err := l.done.SignalChildWorkflow(ctx, SignalHold, h).Get(ctx, nil); err != nil {
			r.event(ctx, r.st.Phase, l.service, "", "could not keep the lock held ("+errText(err)+"); freeing it")
			free = append(free, l)
			continue
		}
		r.event(ctx, r.st.Phase, l.service, "", fmt.Sprintf("%s stays locked (%s) until an operator resolves it: slipway resolve %s", l.service, l.id, r.in.ID))
	}
	r.freeLocks(ctx, free)
}

// lockServices takes the locks of services not yet held, in sorted order. On a held lock it
// frees what this call took and refuses, or (Queue) waits and tries again until QueueTimeout.
func (r *release) lockServices(ctx, lockCtx workflow.Context, services []string) error {
	var want []string
	for _, s := range uniqueSorted(services) {
		if !r.holds(s) {
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		return nil
	}
	deadline := workflow.Now(ctx).Add(r.queueTimeout())
	wait := 2 * time.Second
	for {
		var took []*heldLock
		var held error
		for _, s := range want {
			l, err := r.acquireLock(ctx, lockCtx, s)
			if err != nil {
				held = err
				break
			}
			took = append(took, l)
		}
		if held == nil {
			r.locks = append(r.locks, took...)
			for _, l := range took {
				r.event(ctx, PhasePlanning, l.service, "", "release lock taken: "+LockWorkflowID(r.in.Spec.Environment, l.service))
			}
			return nil
		}
		r.freeLocks(lockCtx, took)
		var lh errLockHeld
		if !asLockHeld(held, &lh) || !r.in.Queue || !workflow.Now(ctx).Before(deadline) {
			return held
		}
		r.event(ctx, PhasePending, lh.service, "", fmt.Sprintf("queued: %v; trying again in %s", held, wait))
		if err := workflow.Sleep(ctx, wait); err != nil {
			return err
		}
		if wait < 30*time.Second {
			wait *= 2
		}
	}
}

func asLockHeld(err error, out *errLockHeld) bool {
	lh, ok := err.(errLockHeld)
	if ok {
		*out = lh
	}
	return ok
}

func (r *release) holds(service string) bool {
	for _, l := range r.locks {
		if l.service == service {
			return true
		}
	}
	return false
}

func (r *release) queueTimeout() time.Duration {
	if r.in.QueueTimeout > 0 {
		return r.in.QueueTimeout.D()
	}
	return time.Hour
}

// freeLocks cancels lock children and waits until they have ended, so a release queued
// behind this one can take them at once.
func (r *release) freeLocks(ctx workflow.Context, locks []*heldLock) {
	sort.Slice(locks, func(i, j int) bool { return locks[i].service < locks[j].service })
	for _, l := range locks {
		l.cancel()
	}
	for _, l := range locks {
		_ = l.done.Get(ctx, nil) // the lock ends cancelled or completed; either frees it
	}
}
