package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

// release is one running Release workflow, in four parts: what it was asked (input, plan,
// resolved policies and targets), how it is steered (control), what it changed (changes:
// exactly what the rollback undoes, and what a repair reads back), and what it reports
// (progress). The parts are embedded, so their fields read as the release's own.
type release struct {
	in   ReleaseInput
	wid  string
	kind string // SlipwayKind: KindRelease, or KindRepair for a repair running its rollback
	plan Plan
	pol  map[string]policy // per service, from the defaulted spec
	tgt  map[string]Target // per cluster

	control
	changes
	progress
	obs observer // metrics and webhook notifications (observe.go, notify.go)
}

// control is how the release is steered: human decisions, the first failure, its locks.
type control struct {
	cancelRun   workflow.CancelFunc // stops the forward path (a failure or an abort)
	paused      bool                // a pause holds before the next batch or wave
	phaseBefore Phase               // the phase a pause replaced, put back on resume
	abort       *Decision           // who aborted, and why
	rollingBack bool                // the rollback has started: no more decisions
	finished    bool                // the outcome is final
	approvals   map[gateKey]*gate   // pending human gates, by service and cluster
	gatePhase   Phase               // the release's phase before its first pending gate opened
	gateSvc     map[string]Phase    // a service's phase before its first pending gate opened
	failure     *failure            // the first reason to roll back
	refused     string              // why nothing was started (outcome refused)
	busy        int                 // clusters changing right now (rollout.max_parallel_clusters)
	locks       []*heldLock         // the release locks it holds (lock.go)
}

// changes is what the release changed, for the rollback, by service → cluster → names.
// Each is recorded before the activity that makes the change runs, so a rollback (or a
// repair after the release was closed from outside) also undoes a change in flight.
type changes struct {
	touched   map[string]map[string]bool
	started   map[string]map[string][]string // new-version containers this release ensured
	detached  map[string]map[string][]string // old containers taken out of traffic
	stopped   map[string]map[string][]string // old containers stopped (keep_previous: stopped)
	completed map[string]bool                // services rolled out and verified everywhere
	failed    map[string]bool                // services whose step failed
	watch     watches                        // the lifecycle watches of the new replicas (watch.go)
}

// progress is what the release reports: the status the query answers and the timeline.
type progress struct {
	st  ReleaseStatus
	seq int       // the last timeline entry's number
	now time.Time // last workflow.Now seen (for progress timestamps)
}

// failure is the first reason the release must roll back.
type failure struct {
	reason  string
	service string
	verdict *Verdict
}

// gate is a pending human decision on one service (and cluster).
type gate struct {
	service   string
	cluster   string // "" for a service's canary approval
	why       string
	opened    time.Time
	deadline  time.Time
	onTimeout string
	decided   bool
	approved  bool
}

// gateKey identifies a pending gate: the clusters of a wave verify in parallel, so one
// service can have a gate open on each of them.
type gateKey struct{ service, cluster string }

func (g *gate) where() string {
	if g.cluster == "" {
		return g.service
	}
	return g.service + " on " + g.cluster
}

// Change IDs of workflow.GetVersion (never reuse or remove one while histories that lack
// it may still be replayed; see replay_test.go).
const (
	// changeVerifyNoWait: a cancelled Verify no longer holds the rollback back.
	changeVerifyNoWait = "verify-no-wait-for-cancel"
	// changeWatchReplicas: the new replicas are watched (exit, OOM, restart, unhealthy) from
	// their start until the release ends, and the release bakes after the last wave
	// (watch.go). Before: nothing watched them between verifications.
	changeWatchReplicas = "watch-replicas"
	// changeGatePerCluster: approval gates are keyed by service and cluster (two clusters of
	// a wave can both wait for a human), and the release's phase goes back only when the
	// last pending gate closes. Before: one gate per service, the later one replacing the
	// earlier, and each closing gate restored the phase it had found.
	changeGatePerCluster = "gate-per-service-and-cluster"
	// changeRefuseMissingImage: a new image missing from a cluster refuses the release
	// (outcome refused) instead of going through the (empty) rollback.
	changeRefuseMissingImage = "refuse-missing-image"
	// changeLockOutlives: a release lock outlives its release and watches it: a release
	// closed from outside Slipway is repaired, and a service a rollback could not put back
	// stays locked until an operator resolves it (repair.go). Before: the lock ended with its
	// release (ParentClosePolicy TERMINATE).
	changeLockOutlives = "lock-outlives-release"
	// changeDescribeHeldLock: a release refused by a held lock asks the lock why, to name
	// the release that holds it (and, after a failure, what runs where).
	changeDescribeHeldLock = "describe-held-lock"
	// changeRefuseUndefaulted: policies come from the defaulted spec only (no fallbacks in
	// the workflow), so a spec that was not defaulted is refused before anything is done.
	changeRefuseUndefaulted = "refuse-undefaulted-spec"
	// changeFailedResult: a release that did not succeed (rolled back, failed, refused,
	// cancelled from outside) ends as a failed workflow, a non-retryable ApplicationError
	// whose details carry its ReleaseStatus (result.go), so the Web UI's list shows it
	// Failed. Before: every release completed with its status as the result.
	changeFailedResult = "release-fails-unless-succeeded"
	// changeSwarmVerifyFirst: on a swarm, a batch is verified before the old replicas it
	// replaces leave. A swarm cannot keep a retired replica running out of traffic (its
	// slot is scaled away), so a batch verified after the retire had fewer old replicas to
	// compare with, and the last one none (absolute ceilings only). Plain engines keep the
	// order start, retire, verify (a retired replica keeps running, and is the baseline).
	changeSwarmVerifyFirst = "swarm-verify-before-retire"
	// changeCapFanOuts: the rollback and the clean-up of the previous versions keep to
	// rollout.max_parallel_services (in service × cluster pairs), like the forward path, and
	// the final sweep of the watches to sweepCap times it. Before: each ran all its pairs at
	// once, 120 of them at the end of a 120-service release.
	changeCapFanOuts = "cap-fan-outs"
)

// fanOutCap is how many service × cluster pairs the rollback and the clean-up run at once
// (the sweep sweepCap times as many): rollout.max_parallel_services (ApplyDefaults makes it
// 8 when the spec says nothing), or no cap for a release started before changeCapFanOuts.
func (r *release) fanOutCap(ctx workflow.Context) int {
	if workflow.GetVersion(ctx, changeCapFanOuts, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return 0
	}
	return r.in.Spec.Rollout.MaxParallelServices
}

// errStop is returned by steps that stop because the release already failed.
var errStop = errors.New("release stopped")

// Release is the Release workflow: plan, lock, check images, canary and roll out every
// changed service layer by layer, verify, and either clean up (succeeded) or roll back
// everything it touched (rolled_back, or failed when the rollback cannot finish). A release
// that succeeded completes with its final status as the result; one that did not fails with
// a non-retryable ApplicationError whose details are the final status (changeFailedResult,
// result.go: read either form with ReleaseResult).
func Release(ctx workflow.Context, in ReleaseInput) (ReleaseStatus, error) {
	r := newRelease(ctx, in)
	if err := r.registerHandlers(ctx); err != nil {
		return r.st, err
	}
	r.upsert(ctx)

	runCtx, cancel := workflow.WithCancel(ctx)
	r.cancelRun = cancel
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	err := r.run(runCtx, dctx)
	r.stopWatches(ctx) // before the cleanup or the rollback stops a watched replica

	switch {
	case r.refused != "":
		r.st.Outcome, r.st.Reason = OutcomeRefused, r.refused
	case err == nil && r.failure == nil && r.abort == nil && ctx.Err() == nil:
		r.cleanup(dctx)
		r.st.Outcome = OutcomeSucceeded
		if r.st.Reason == "" {
			r.st.Reason = "every changed service runs its new version"
		}
	default:
		r.noteFailure(ctx, err)
		r.rollback(dctx)
	}
	r.holdOrFree(dctx)
	r.locks = nil
	if r.refused == "" && r.abort == nil && ctx.Err() != nil {
		// Cancelled from outside Slipway (a Temporal cancel request: the Web UI, its CLI, an
		// SDK): reported like a termination, with its own rollback as the repair.
		r.st.Repair = &Repair{ClosedBy: "cancelled (a Temporal cancel request)", Outcome: r.st.Outcome, Reason: r.st.Reason, EndedAt: workflow.Now(ctx)}
		r.st.Outcome = OutcomeTerminated
		r.st.Reason = fmt.Sprintf("cancelled from outside Slipway; repair %s: %s", r.st.Repair.Outcome, r.st.Repair.Reason)
	}
	r.finished = true
	r.st.EndedAt = workflow.Now(ctx)
	r.setPhase(dctx, PhaseDone, fmt.Sprintf("release %s: %s", r.st.Outcome, r.st.Reason))
	st := r.status()
	if workflow.GetVersion(dctx, changeFailedResult, workflow.DefaultVersion, 1) >= 1 {
		if err := releaseError(st); err != nil {
			return st, err
		}
	}
	return st, nil
}

func newRelease(ctx workflow.Context, in ReleaseInput) *release {
	r := newReleaseState(ctx, in)
	r.event(ctx, PhasePending, "", "", fmt.Sprintf("release %s of %s triggered by %s", in.ID, in.Spec.Environment, orUnknown(in.TriggeredBy)))
	return r
}

// newReleaseState is a release before its first step: input, policies, targets, empty state.
func newReleaseState(ctx workflow.Context, in ReleaseInput) *release {
	r := &release{
		in:      in,
		wid:     workflow.GetInfo(ctx).WorkflowExecution.ID,
		pol:     map[string]policy{},
		tgt:     map[string]Target{},
		control: control{approvals: map[gateKey]*gate{}, gateSvc: map[string]Phase{}},
		changes: changes{
			touched:   map[string]map[string]bool{},
			started:   map[string]map[string][]string{},
			detached:  map[string]map[string][]string{},
			stopped:   map[string]map[string][]string{},
			completed: map[string]bool{},
			failed:    map[string]bool{},
		},
	}
	r.st = ReleaseStatus{
		ID:          in.ID,
		Environment: in.Spec.Environment,
		Phase:       PhasePending,
		TriggeredBy: in.TriggeredBy,
		Description: in.Description,
		BuildURL:    in.BuildURL,
		Commit:      in.Commit,
		StartedAt:   workflow.Now(ctx),
	}
	for _, c := range in.Spec.Clusters {
		r.tgt[c.Name] = TargetOf(in.Spec.Environment, c)
	}
	for _, s := range in.Spec.Services {
		r.pol[s.Name] = resolvePolicy(s)
	}
	return r
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// run is the forward path: everything up to a verified rollout. It returns an error (and
// r.failure says why) when the release must roll back.
func (r *release) run(ctx, dctx workflow.Context) error {
	if workflow.GetVersion(ctx, changeRefuseUndefaulted, workflow.DefaultVersion, 1) >= 1 {
		if err := spec.CheckDefaulted(r.in.Spec); err != nil {
			r.refused = "the release's spec was not defaulted, nothing was changed (start releases through the API, or apply spec.ApplyDefaults): " + err.Error()
			return errStop
		}
	}
	r.setPhase(ctx, PhasePlanning, "inspecting live state")
	scope := r.in.Services
	plan, err := r.makePlan(ctx, scope)
	if err != nil {
		return r.failWith(ctx, "", "planning failed, nothing was changed: "+errText(err), nil)
	}
	if len(plan.Changed()) == 0 {
		r.plan = plan
		r.initServices()
		r.st.Reason = "nothing to change: every service already runs its version"
		return nil
	}
	// Lock what the plan changes, then plan again under the locks: the second plan is the
	// one that counts (another release may have finished in between).
	for i := 0; ; i++ {
		if err := r.lockServices(ctx, dctx, plan.Changed()); err != nil {
			var lh errLockHeld
			if asLockHeld(err, &lh) {
				r.refused = err.Error()
				return err
			}
			return r.failWith(ctx, "", "could not take release locks, nothing was changed: "+errText(err), nil)
		}
		if plan, err = r.makePlan(ctx, scope); err != nil {
			return r.failWith(ctx, "", "planning failed, nothing was changed: "+errText(err), nil)
		}
		if r.holdsAll(plan.Changed()) {
			break
		}
		if i >= 3 {
			return r.failWith(ctx, "", fmt.Sprintf("the services to change kept changing while their locks were taken (now %v), nothing was changed", plan.Changed()), nil)
		}
	}
	r.plan = plan
	r.initServices()
	r.upsert(ctx)
	if len(plan.Changed()) == 0 {
		r.st.Reason = "nothing to change: every service already runs its version"
		return nil
	}
	if len(plan.Unreachable) > 0 {
		return r.failWith(ctx, "", fmt.Sprintf("clusters %v do not answer, nothing was changed", plan.Unreachable), nil)
	}
	if err := r.checkImages(ctx); err != nil {
		return err
	}
	if err := r.ensureNetworks(ctx); err != nil {
		return err
	}
	maxSvc := r.in.Spec.Rollout.MaxParallelServices
	for li, layer := range plan.Layers {
		layer := layer
		r.event(ctx, PhaseRollingOut, "", "", fmt.Sprintf("layer %d: %s", li+1, strings.Join(layer, ", ")))
		err := parallel(ctx, maxSvc, len(layer), func(gctx workflow.Context, i int) error {
			return r.runService(gctx, layer[i])
		})
		if err != nil || r.failure != nil {
			return r.stopErr(err)
		}
	}
	return r.bake(ctx)
}

func (r *release) holdsAll(services []string) bool {
	for _, s := range services {
		if !r.holds(s) {
			return false
		}
	}
	return true
}

// makePlan inspects the environment and computes the plan.
func (r *release) makePlan(ctx workflow.Context, services []string) (Plan, error) {
	live, err := r.inspect(ctx, services, false)
	if err != nil {
		return Plan{}, err
	}
	return ComputePlan(r.in.Spec, services, live)
}

func (r *release) inspect(ctx workflow.Context, services []string, allowUnreachable bool) (InspectResult, error) {
	in := InspectInput{Environment: r.in.Spec.Environment, Services: services, AllowUnreachable: allowUnreachable}
	for _, c := range r.in.Spec.Clusters {
		in.Targets = append(in.Targets, r.tgt[c.Name])
	}
	var live InspectResult
	err := workflow.ExecuteActivity(optionsFor(ctx, ActivityInspect, 0), ActivityInspect, in).Get(ctx, &live)
	return live, err
}

// checkImages makes sure every new image is on every cluster that needs it, before anything
// changes.
func (r *release) checkImages(ctx workflow.Context) error {
	var in CheckImagesInput
	for _, name := range r.plan.Changed() {
		s, _ := findService(r.in.Spec, name)
		for _, cp := range r.plan.Service(name).Clusters {
			if cp.Action == ActionNone {
				continue
			}
			in.Checks = append(in.Checks, ImageCheck{Target: r.tgt[cp.Cluster], Service: name, Image: s.ImageRef()})
		}
	}
	var res CheckImagesResult
	if err := workflow.ExecuteActivity(optionsFor(ctx, ActivityCheckImages, 0), ActivityCheckImages, in).Get(ctx, &res); err != nil {
		return r.failWith(ctx, "", "image check failed, nothing was changed: "+errText(err), nil)
	}
	if len(res.Missing) > 0 {
		var parts []string
		for _, m := range res.Missing {
			parts = append(parts, fmt.Sprintf("%s on cluster %s (service %s)", m.Image, m.Cluster, m.Service))
		}
		reason := "images missing, nothing was changed: " + strings.Join(parts, "; ")
		if workflow.GetVersion(ctx, changeRefuseMissingImage, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return r.failWith(ctx, "", reason, nil)
		}
		// A version that does not exist is not a release that went wrong: refuse it before
		// anything changes, so nothing is rolled back.
		r.refused = reason + " (Slipway never pulls: build or load the image on those engines, or fix the version)"
		r.event(ctx, PhasePlanning, "", "", "REFUSED: "+r.refused)
		return errStop
	}
	r.event(ctx, PhasePlanning, "", "", fmt.Sprintf("%d image checks passed", len(in.Checks)))
	return nil
}

func (r *release) ensureNetworks(ctx workflow.Context) error {
	clusters := map[string]bool{}
	for _, name := range r.plan.Changed() {
		for _, cp := range r.plan.Service(name).Clusters {
			if cp.Action != ActionNone {
				clusters[cp.Cluster] = true
			}
		}
	}
	names := sortedKeys(clusters)
	return parallel(ctx, 0, len(names), func(gctx workflow.Context, i int) error {
		err := workflow.ExecuteActivity(optionsFor(gctx, ActivityEnsureNetwork, 0), ActivityEnsureNetwork,
			EnsureNetworkInput{Target: r.tgt[names[i]]}).Get(gctx, nil)
		if err != nil {
			return r.activityFailed(gctx, "", names[i], "creating the environment network", err)
		}
		return nil
	})
}

// runService takes one changed service through canary, approval and the waves.
func (r *release) runService(ctx workflow.Context, name string) error {
	sp := r.plan.Service(name)
	pol := r.pol[name]
	s, _ := findService(r.in.Spec, name)
	if !r.in.FastTrack && !pol.CanarySkip {
		for i := range sp.Clusters {
			cp := &sp.Clusters[i]
			if !cp.Canary || cp.Action == ActionNone {
				continue
			}
			if err := r.canary(ctx, s, cp, pol); err != nil {
				return err
			}
			if pol.Approval {
				if err := r.gate(ctx, name, "", "canary passed; approve to roll out", pol.ApprovalWait, pol.OnTimeout); err != nil {
					return err
				}
			}
		}
	}
	waves := map[int][]*ClusterPlan{}
	for i := range sp.Clusters {
		if sp.Clusters[i].Action != ActionNone {
			waves[sp.Clusters[i].Wave] = append(waves[sp.Clusters[i].Wave], &sp.Clusters[i])
		}
	}
	for _, w := range sortedInts(waves) {
		if err := r.holdIfPaused(ctx, name); err != nil {
			return err
		}
		cps := waves[w]
		r.svcPhase(name, PhaseRollingOut)
		r.setPhase(ctx, PhaseRollingOut, fmt.Sprintf("%s: wave %d on %s", name, w, clusterNames(cps)))
		err := parallel(ctx, 0, len(cps), func(gctx workflow.Context, i int) error {
			if err := r.takeClusterSlot(gctx); err != nil {
				return err
			}
			defer func() { r.busy-- }()
			return r.rolloutCluster(gctx, s, cps[i], pol)
		})
		if err != nil {
			return r.stopErr(err)
		}
		if !pol.Verify.Skip && !r.in.FastTrack {
			r.svcPhase(name, PhaseVerifying)
			err = parallel(ctx, 0, len(cps), func(gctx workflow.Context, i int) error {
				cp := cps[i]
				return r.verify(gctx, name, cp, fmt.Sprintf("wave %d", w), r.newNames(s, cp, 0, cp.ReplicasTo), pol.Verify.Duration.D())
			})
			if err != nil {
				return r.stopErr(err)
			}
		}
		for _, cp := range cps {
			r.clusterProgress(ctx, name, cp.Cluster, func(p *ClusterProgress) { p.Phase = PhaseDone })
		}
	}
	r.completed[name] = true
	r.watchDone(ctx, name)
	r.svcPhase(name, PhaseDone)
	r.event(ctx, PhaseDone, name, "", fmt.Sprintf("%s runs %s everywhere", name, s.Version))
	return nil
}

// takeClusterSlot waits for one of rollout.max_parallel_clusters (0: no limit).
func (r *release) takeClusterSlot(ctx workflow.Context) error {
	limit := r.in.Spec.Rollout.MaxParallelClusters
	if limit > 0 {
		if err := workflow.Await(ctx, func() bool { return r.busy < limit }); err != nil {
			return err
		}
	}
	r.busy++
	return nil
}

// canary starts the canary replicas of the new version beside the stable ones and verifies
// them against stable over the soak.
func (r *release) canary(ctx workflow.Context, s spec.Service, cp *ClusterPlan, pol policy) error {
	n := pol.CanaryReplicas
	if n > cp.ReplicasTo {
		n = cp.ReplicasTo
	}
	if n < 1 {
		n = 1
	}
	r.setPhase(ctx, PhaseCanary, fmt.Sprintf("%s: %d canary replica(s) of %s on %s", s.Name, n, s.Version, cp.Cluster))
	r.svcPhase(s.Name, PhaseCanary)
	r.clusterProgress(ctx, s.Name, cp.Cluster, func(p *ClusterProgress) { p.Phase = PhaseCanary; p.Message = "starting canary" })
	if err := r.startReplicas(ctx, s, cp, engine.RoleCanary, 0, n, pol, "canary"); err != nil {
		return err
	}
	r.clusterProgress(ctx, s.Name, cp.Cluster, func(p *ClusterProgress) { p.Updated = n; p.Message = "canary in traffic" })
	if pol.Verify.Skip {
		return nil
	}
	r.setPhase(ctx, PhaseVerifying, fmt.Sprintf("%s: soaking the canary for %s", s.Name, pol.Soak))
	r.svcPhase(s.Name, PhaseVerifying)
	if err := r.verify(ctx, s.Name, cp, "canary", r.newNames(s, cp, 0, n), pol.Soak); err != nil {
		return err
	}
	if s.Canary != nil && s.Canary.LoadTest != "" {
		return r.canaryLoadTest(ctx, s, cp, r.newNames(s, cp, 0, n))
	}
	return nil
}

// canaryLoadTest runs the service's canary load test (a LoadTest child workflow aimed at the
// canary replicas only) as a gate after the soak. A test that could not measure is an
// inconclusive verdict (a human decides), never a pass.
func (r *release) canaryLoadTest(ctx workflow.Context, s spec.Service, cp *ClusterPlan, canaries []string) error {
	const stage = "canary load test"
	r.clusterProgress(ctx, s.Name, cp.Cluster, func(p *ClusterProgress) { p.Message = "load testing the canary: " + s.Canary.LoadTest })
	lin, err := CanaryLoadTestInput(r.in.Spec, s.Canary.LoadTest, cp.Cluster, canaries, r.in.ID)
	if err != nil {
		return r.failWith(ctx, s.Name, fmt.Sprintf("%s: canary load test %s: %v", s.Name, s.Canary.LoadTest, err), nil)
	}
	res, err := RunLoadTestChild(ctx, lin)
	if err != nil {
		if temporal.IsCanceledError(err) || r.failure != nil || r.abort != nil {
			return errStop
		}
		return r.judge(ctx, Verdict{Result: VerdictInconclusive, Service: s.Name, Cluster: cp.Cluster, Stage: stage,
			Reason: fmt.Sprintf("load test %s could not measure: %s", s.Canary.LoadTest, errText(err))})
	}
	v := res.Verdict(cp.Cluster, stage)
	v.Service = s.Name
	return r.judge(ctx, v)
}

// rolloutCluster replaces the old replicas of one cluster batch by batch: start the new
// batch, wait healthy, attach it, take as many old replicas out of traffic, verify.
func (r *release) rolloutCluster(ctx workflow.Context, s spec.Service, cp *ClusterPlan, pol policy) error {
	n := cp.ReplicasTo
	b := pol.BatchSize
	batches := (n + b - 1) / b
	active := append([]string(nil), cp.Old...)
	r.clusterProgress(ctx, s.Name, cp.Cluster, func(p *ClusterProgress) { p.Phase = PhaseRollingOut; p.Message = "rolling out" })
	verifyFirst := r.tgt[cp.Cluster].Kind == spec.KindSwarm && workflow.GetVersion(ctx, changeSwarmVerifyFirst, workflow.DefaultVersion, 1) >= 1
	verifyBatch := func(stage string, from, to int) error {
		if pol.Verify.Skip || r.in.FastTrack {
			return nil
		}
		return r.verify(ctx, s.Name, cp, stage, r.newNames(s, cp, from, to), pol.Verify.Duration.D())
	}
	for bi := 0; bi < batches; bi++ {
		if err := r.holdIfPaused(ctx, s.Name); err != nil {
			return err
		}
		from, to := bi*b, min((bi+1)*b, n)
		stage := fmt.Sprintf("batch %d/%d", bi+1, batches)
		if err := r.startReplicas(ctx, s, cp, engine.RoleStable, from, to, pol, stage); err != nil {
			return err
		}
		if verifyFirst {
			if err := verifyBatch(stage, from, to); err != nil {
				return err
			}
		}
		keep := max(0, n-to)
		if keep < len(active) {
			out := active[keep:]
			active = active[:keep]
			if err := r.retire(ctx, s.Name, cp, out, pol); err != nil {
				return err
			}
		}
		r.clusterProgress(ctx, s.Name, cp.Cluster, func(p *ClusterProgress) {
			p.Updated = to
			p.Message = fmt.Sprintf("%s: %d/%d new replicas in traffic", stage, to, n)
		})
		if !verifyFirst {
			if err := verifyBatch(stage, from, to); err != nil {
				return err
			}
		}
		if pol.BatchPause > 0 && bi < batches-1 {
			if err := workflow.Sleep(ctx, pol.BatchPause); err != nil {
				return err
			}
		}
	}
	return nil
}

// startReplicas ensures slots [from, to) of the new version and puts them in traffic once
// healthy. A replica that does not come up is a failed verdict, not an infrastructure error.
func (r *release) startReplicas(ctx workflow.Context, s spec.Service, cp *ClusterPlan, role engine.Role, from, to int, pol policy, stage string) error {
	var slots []int
	for i := from; i < to; i++ {
		slots = append(slots, i)
	}
	r.touch(s.Name, cp.Cluster)
	r.started[s.Name][cp.Cluster] = appendNew(r.started[s.Name][cp.Cluster], r.newNames(s, cp, from, to)...)
	// The lifecycle watch of the service on this cluster runs from now on; these replicas
	// count as starting until this step returns.
	defer r.watchReplicas(ctx, s, cp, r.newNames(s, cp, from, to))()
	in := StartReplicasInput{
		Target: r.tgt[cp.Cluster], Release: r.in.ID, Role: role, Service: s, Slots: slots,
		Attach: true, HealthDeadline: pol.HealthDeadline,
	}
	actx := optionsFor(withSummary(ctx, "start %s %s ×%d on %s (%s)", s.Name, s.Version, len(slots), cp.Cluster, stage), ActivityStartReplicas, pol.HealthDeadline)
	actx = workflow.WithWaitForCancellation(actx, true)
	err := workflow.ExecuteActivity(actx, ActivityStartReplicas, in).Get(ctx, nil)
	if err == nil {
		return nil
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() == ErrUnhealthy {
		v := Verdict{Result: VerdictFailed, Service: s.Name, Cluster: cp.Cluster, Stage: stage,
			Reason: fmt.Sprintf("new replicas of %s did not come up: %s", s.Version, ae.Message())}
		return r.judge(ctx, v)
	}
	return r.activityFailed(ctx, s.Name, cp.Cluster, fmt.Sprintf("starting %s replicas (%s)", s.Version, stage), err)
}

// retire takes old replicas out of traffic (and stops them with keep_previous: stopped).
func (r *release) retire(ctx workflow.Context, service string, cp *ClusterPlan, names []string, pol policy) error {
	dctx := workflow.WithWaitForCancellation(optionsFor(ctx, ActivitySetTraffic, 0), true)
	err := workflow.ExecuteActivity(dctx, ActivitySetTraffic, SetTrafficInput{Target: r.tgt[cp.Cluster], Service: service, Detach: names}).Get(ctx, nil)
	r.detached[service][cp.Cluster] = appendNew(r.detached[service][cp.Cluster], names...)
	if err != nil {
		return r.activityFailed(ctx, service, cp.Cluster, "taking old replicas out of traffic", err)
	}
	if pol.KeepPrevious == spec.KeepStopped {
		sctx := workflow.WithWaitForCancellation(optionsFor(ctx, ActivityStopReplicas, pol.StopGrace), true)
		r.stopped[service][cp.Cluster] = appendNew(r.stopped[service][cp.Cluster], names...)
		res, err := r.stopReplicas(ctx, sctx, service, cp.Cluster, names)
		if err != nil {
			return r.activityFailed(ctx, service, cp.Cluster, "stopping old replicas", err)
		}
		r.event(ctx, r.st.Phase, service, cp.Cluster, "previous replicas out of traffic, "+stopSummary(names, res, pol.StopGrace))
	}
	return nil
}

// stopReplicas stops containers of a service on a cluster with the service's stop grace
// (StopReplicas on actx, whose start-to-close timeout must allow for the grace).
func (r *release) stopReplicas(ctx, actx workflow.Context, service, cluster string, names []string) (StopReplicasResult, error) {
	in := ContainersInput{Target: r.tgt[cluster], Names: names, StopTimeout: r.pol[service].StopGrace}
	var res StopReplicasResult
	err := workflow.ExecuteActivity(actx, ActivityStopReplicas, in).Get(ctx, &res)
	return res, err
}

// stopSummary says how a stop went, for the timeline: how many replicas stopped and which
// were killed because they had not exited when the grace ran out (that does not fail a
// release). A result without Grace comes from a StopReplicas that did not report yet.
func stopSummary(names []string, res StopReplicasResult, grace time.Duration) string {
	if res.Grace == 0 {
		return fmt.Sprintf("stopped %s (grace %s)", plural(len(names), "replica"), grace)
	}
	msg := "stopped " + plural(len(res.Stopped), "replica")
	switch len(res.Killed) {
	case 0:
		if len(res.Stopped) > 0 {
			msg += fmt.Sprintf("; every one exited within the %s grace", res.Grace)
		}
	case 1:
		msg += fmt.Sprintf("; 1 was killed after the %s grace (still running after SIGTERM): %s", res.Grace, res.Killed[0])
	default:
		msg += fmt.Sprintf("; %d were killed after the %s grace (still running after SIGTERM): %s", len(res.Killed), res.Grace, strings.Join(res.Killed, ", "))
	}
	return msg
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// verify runs the Verify activity on new replicas against the old ones that still run, and
// judges the verdict.
func (r *release) verify(ctx workflow.Context, service string, cp *ClusterPlan, stage string, newNames []string, d time.Duration) error {
	pol := r.pol[service]
	v := pol.Verify
	v.Duration = spec.Duration(d)
	// The baseline is every old replica still running: in traffic, or taken out of it and
	// kept warm (keep_previous: running keeps it on the environment network without the
	// service alias, so it can still be probed). Only stopped ones are left out; with none
	// left (keep_previous: stopped, last batch) only the absolute thresholds apply.
	var baseline []string
	out := map[string]bool{}
	for _, n := range r.stopped[service][cp.Cluster] {
		out[n] = true
	}
	for _, n := range cp.Old {
		if !out[n] {
			baseline = append(baseline, n)
		}
	}
	in := VerifyInput{Target: r.tgt[cp.Cluster], Service: service, Stage: stage, New: newNames, Baseline: baseline, Verification: v}
	if s, ok := findService(r.in.Spec, service); ok && s.Health != nil && !s.Health.Image {
		in.HealthPath, in.HealthRetries = s.Health.HTTPPath, s.Health.Retries
	}
	r.clusterProgress(ctx, service, cp.Cluster, func(p *ClusterProgress) { p.Message = "verifying " + stage })
	// Verify only reads: when the release stops, the rollback need not wait for a running
	// verification to notice its cancellation (that can take a heartbeat interval).
	// Releases started before this change keep waiting (their histories say so).
	actx := optionsFor(withSummary(ctx, "verify %s %s on %s (%s)", service, cp.ToVersion, cp.Cluster, stage), ActivityVerify, d)
	if workflow.GetVersion(ctx, changeVerifyNoWait, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		actx = workflow.WithWaitForCancellation(actx, true)
	}
	var verdict Verdict
	if err := workflow.ExecuteActivity(actx, ActivityVerify, in).Get(ctx, &verdict); err != nil {
		return r.activityFailed(ctx, service, cp.Cluster, "verifying "+stage, err)
	}
	verdict.Service, verdict.Cluster, verdict.Stage = service, cp.Cluster, stage
	return r.judge(ctx, verdict)
}

// judge records a verdict and decides: passed goes on, failed rolls back, inconclusive waits
// for a human (no decision in time rolls back).
func (r *release) judge(ctx workflow.Context, v Verdict) error {
	v.At = workflow.Now(ctx)
	r.st.Verdicts = append(r.st.Verdicts, v)
	msg := fmt.Sprintf("verdict %s (%s): %s", v.Result, v.Stage, v.Reason)
	if v.Evidence.Samples > 0 || v.Evidence.Unreachable > 0 {
		msg += fmt.Sprintf(" [samples %d, errors %.1f%%, p95 %s, baseline p95 %s, unreachable %d]",
			v.Evidence.Samples, 100*v.Evidence.ErrorRate, v.Evidence.P95, v.Evidence.BaselineP95, v.Evidence.Unreachable)
	}
	r.event(ctx, PhaseVerifying, v.Service, v.Cluster, msg)
	r.observeVerdict(ctx, v)
	switch v.Result {
	case VerdictPassed:
		return nil
	case VerdictInconclusive:
		return r.gate(ctx, v.Service, v.Cluster, "inconclusive verdict on "+v.Stage+" ("+v.Reason+"); approve to go on", r.pol[v.Service].ApprovalWait, spec.OnTimeoutRollback)
	default:
		vc := v
		return r.failWith(ctx, v.Service, fmt.Sprintf("%s failed verification on %s (%s): %s", v.Service, v.Cluster, v.Stage, v.Reason), &vc)
	}
}

// gate waits for an approve (go on), an abort, or the timeout (onTimeout: proceed or roll
// back) on one service and cluster (cluster "" for a service's canary approval). Several
// gates can be pending at once (the clusters of a wave, the services of a layer): the
// release shows awaiting_approval until the last one closes, a service until its last one.
func (r *release) gate(ctx workflow.Context, service, cluster, why string, timeout time.Duration, onTimeout string) error {
	if workflow.GetVersion(ctx, changeGatePerCluster, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return r.gatePerService(ctx, service, cluster, why, timeout, onTimeout)
	}
	now := workflow.Now(ctx)
	g := &gate{service: service, cluster: cluster, why: why, opened: now, deadline: now.Add(timeout), onTimeout: onTimeout}
	key := gateKey{service, cluster}
	if len(r.approvals) == 0 {
		r.gatePhase = r.st.Phase
	}
	if !r.pendingFor(service) {
		r.gateSvc[service] = r.svcPhaseOf(service)
	}
	r.approvals[key] = g
	r.setPhase(ctx, PhaseAwaitingApproval, fmt.Sprintf("%s: %s (timeout %s, then %s)", g.where(), why, timeout, onTimeout))
	r.svcPhase(service, PhaseAwaitingApproval)
	ok, err := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return g.decided || r.abort != nil })
	delete(r.approvals, key)
	if err != nil {
		return err
	}
	if !ok && onTimeout != spec.OnTimeoutProceed {
		return r.failWith(ctx, service, fmt.Sprintf("%s: no approval within %s (%s)", g.where(), timeout, why), nil)
	}
	if r.abort != nil {
		return errStop
	}
	if !ok {
		r.event(ctx, PhaseAwaitingApproval, service, cluster, fmt.Sprintf("no decision within %s: proceeding as the spec says", timeout))
	}
	if !r.pendingFor(service) {
		r.svcPhase(service, r.gateSvc[service])
	}
	if len(r.approvals) == 0 && r.st.Phase == PhaseAwaitingApproval {
		r.setPhase(ctx, r.gatePhase, "")
	}
	return nil
}

// pendingFor reports whether a gate of the service is pending.
func (r *release) pendingFor(service string) bool {
	//workflowcheck:ignore map order: is there one: any order gives the same answer
	for k := range r.approvals {
		if k.service == service {
			return true
		}
	}
	return false
}

func (r *release) svcPhaseOf(service string) Phase {
	for _, s := range r.st.Services {
		if s.Service == service {
			return s.Phase
		}
	}
	return ""
}

// gatePerService is gate as releases started before changeGatePerCluster ran it (their
// histories replay it): one gate per service, a later one replacing an earlier, and each
// closing gate putting back the phase it found.
func (r *release) gatePerService(ctx workflow.Context, service, cluster, why string, timeout time.Duration, onTimeout string) error {
	now := workflow.Now(ctx)
	g := &gate{service: service, cluster: cluster, why: why, opened: now, deadline: now.Add(timeout), onTimeout: onTimeout}
	key := gateKey{service: service}
	r.approvals[key] = g
	defer delete(r.approvals, key)
	prev := r.st.Phase
	r.setPhase(ctx, PhaseAwaitingApproval, fmt.Sprintf("%s: %s (timeout %s, then %s)", service, why, timeout, onTimeout))
	r.svcPhase(service, PhaseAwaitingApproval)
	ok, err := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return g.decided || r.abort != nil })
	if err != nil {
		return err
	}
	if !ok {
		if onTimeout == spec.OnTimeoutProceed {
			r.event(ctx, PhaseAwaitingApproval, service, "", fmt.Sprintf("no decision within %s: proceeding as the spec says", timeout))
			r.setPhase(ctx, prev, "")
			return nil
		}
		return r.failWith(ctx, service, fmt.Sprintf("%s: no approval within %s (%s)", service, timeout, why), nil)
	}
	if r.abort != nil {
		return errStop
	}
	r.setPhase(ctx, prev, "")
	r.svcPhase(service, prev)
	return nil
}

// holdIfPaused holds service before its next batch or wave while the release is paused; a
// pause longer than MaxPause rolls back. The service's phase reads paused meanwhile (status
// only: no command depends on it).
func (r *release) holdIfPaused(ctx workflow.Context, service string) error {
	if !r.paused {
		return nil
	}
	if prev := r.svcPhaseOf(service); prev != PhasePaused {
		r.svcPhase(service, PhasePaused)
		defer func() {
			if r.svcPhaseOf(service) == PhasePaused {
				r.svcPhase(service, prev)
			}
		}()
	}
	limit := DefaultMaxPause
	if r.in.MaxPause > 0 {
		limit = r.in.MaxPause.D()
	}
	if r.st.Phase != PhasePaused {
		r.phaseBefore = r.st.Phase
		r.setPhase(ctx, PhasePaused, "holding before the next step")
	}
	ok, err := workflow.AwaitWithTimeout(ctx, limit, func() bool { return !r.paused })
	if err != nil {
		return err
	}
	if !ok {
		return r.failWith(ctx, "", fmt.Sprintf("paused for longer than %s", limit), nil)
	}
	if r.st.Phase == PhasePaused {
		r.setPhase(ctx, r.phaseBefore, "resumed")
	}
	return nil
}

// failWith records the first reason to roll back and stops the forward path.
func (r *release) failWith(ctx workflow.Context, service, reason string, v *Verdict) error {
	if r.failure == nil {
		r.failure = &failure{reason: reason, service: service, verdict: v}
		r.event(ctx, r.st.Phase, service, "", "FAILED: "+reason)
		if r.cancelRun != nil {
			r.cancelRun()
		}
	}
	if service != "" {
		r.failed[service] = true
	}
	return errStop
}

// activityFailed turns an activity error (retries exhausted, or permanent) into a failure,
// unless it is only the echo of a cancellation.
func (r *release) activityFailed(ctx workflow.Context, service, cluster, what string, err error) error {
	if temporal.IsCanceledError(err) || r.failure != nil || r.abort != nil {
		return errStop
	}
	where := ""
	if cluster != "" {
		where = " on cluster " + cluster
	}
	return r.failWith(ctx, service, fmt.Sprintf("%s%s failed: %s", what, where, errText(err)), nil)
}

// stopErr normalises the error of a stopped branch.
func (r *release) stopErr(err error) error {
	if err == nil {
		return errStop
	}
	return err
}

// noteFailure fills in the failure when the forward path ended by abort or cancellation.
func (r *release) noteFailure(ctx workflow.Context, err error) {
	switch {
	case r.abort != nil:
		reason := "aborted by " + r.abort.Actor
		if r.abort.Reason != "" {
			reason += ": " + r.abort.Reason
		}
		if r.failure == nil || r.failure.reason == "" {
			r.failure = &failure{reason: reason}
		} else {
			r.failure.reason = reason + " (while: " + r.failure.reason + ")"
		}
	case r.failure == nil && ctx.Err() != nil:
		r.failure = &failure{reason: "release cancelled from outside Slipway"}
	case r.failure == nil:
		r.failure = &failure{reason: "release stopped: " + errText(err)}
	}
}

// errText is an error's message without the SDK's wrapping noise.
func errText(err error) string {
	if err == nil {
		return ""
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%s (%s)", ae.Message(), ae.Type())
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return "timed out: " + te.Error()
	}
	return err.Error()
}

// stepErrText is errText with the step that failed in front (the load test's messages):
// the step and the application error's own message, without the SDK's wrapping.
func stepErrText(err error) string {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		return err.Error()
	}
	step, _, _ := strings.Cut(err.Error(), ": ")
	msg := strings.TrimSuffix(ae.Message(), ".")
	if step != "" && !strings.HasPrefix(msg, step) && !strings.Contains(step, " error (") {
		msg = step + ": " + msg
	}
	if ae.Type() != "" {
		msg += " (" + ae.Type() + ")"
	}
	return msg
}

// errType is the application error type of err ("LoadTestError" when it has none).
func errType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() != "" {
		return ae.Type()
	}
	return "LoadTestError"
}

// newNames are the container names of slots [from, to) of the new version on a cluster.
func (r *release) newNames(s spec.Service, cp *ClusterPlan, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, engine.Key{Environment: r.in.Spec.Environment, Cluster: cp.Cluster, Service: s.Name, Version: s.Version, Slot: i}.ContainerName())
	}
	return out
}

func (r *release) touch(service, cluster string) {
	for _, m := range []map[string]map[string][]string{r.started, r.detached, r.stopped} {
		if m[service] == nil {
			m[service] = map[string][]string{}
		}
	}
	if r.touched[service] == nil {
		r.touched[service] = map[string]bool{}
	}
	r.touched[service][cluster] = true
}

// parallel runs fn(0..n-1) in workflow goroutines, at most limit at a time (0: all), and
// waits for every one of them even when ctx is cancelled, so nothing of the forward path
// still runs when the rollback starts. It returns the first error.
func parallel(ctx workflow.Context, limit, n int, fn func(ctx workflow.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	var first error
	running, done := 0, 0
	for i := 0; i < n; i++ {
		i := i
		workflow.Go(ctx, func(gctx workflow.Context) {
			defer func() { done++ }()
			if limit > 0 {
				if err := workflow.Await(gctx, func() bool { return running < limit }); err != nil {
					if first == nil {
						first = err
					}
					return
				}
			}
			running++
			defer func() { running-- }()
			if err := fn(gctx, i); err != nil && first == nil {
				first = err
			}
		})
	}
	wctx, _ := workflow.NewDisconnectedContext(ctx)
	_ = workflow.Await(wctx, func() bool { return done == n })
	return first
}

// sortedKeys returns a map's keys in order (deterministic iteration, workflows included).
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m)) //workflowcheck:ignore map order: sorted
}

func sortedInts[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	//workflowcheck:ignore map order: sorted below
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func clusterNames(cps []*ClusterPlan) string {
	var out []string
	for _, c := range cps {
		out = append(out, c.Cluster)
	}
	return strings.Join(out, ", ")
}

func appendNew(list []string, names ...string) []string {
	seen := map[string]bool{}
	for _, n := range list {
		seen[n] = true
	}
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			list = append(list, n)
		}
	}
	return list
}
