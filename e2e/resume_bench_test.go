package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// A worker process started with these variables stops at a kill point (see killHook): the
// first worker to reach it claims the token file, tells the benchmark on file descriptor 3,
// and holds there until the benchmark SIGKILLs it.
const (
	envKillPoint = "SLIPWAY_E2E_KILL_POINT"
	envKillToken = "SLIPWAY_E2E_KILL_TOKEN"
)

// killPoint is where in a release a worker dies.
type killPoint struct {
	name string
	// activity is the activity type the kill lands in, or, with workflowTask, the activity
	// the workflow task schedules when the kill lands in that workflow task.
	activity     string
	workflowTask bool
	// match picks the call among the activity's calls (nil: the first one).
	match func(args []any) bool
	// after: how long into the activity the kill lands, or at its end if it ends sooner
	// (before its result reaches the server). 0: as it starts.
	after time.Duration
	// bad: the release's new version fails its canary verification (bad-errors), so the
	// release rolls back.
	bad bool
}

func role(r engine.Role) func([]any) bool {
	return func(args []any) bool {
		in, ok := args[0].(workflows.StartReplicasInput)
		return ok && in.Role == r
	}
}

// killPoints: the five kill points of BENCHMARKS.md (Worker death), and a workflow task. Activities heartbeat
// every second from their start, so a kill just after a heartbeat (1.05 s, 2.05 s in, or at
// the start) is the worst case: the server waits a whole heartbeat timeout.
var killPoints = []killPoint{
	{name: "canary-start", activity: workflows.ActivityStartReplicas, match: role(engine.RoleCanary), after: 1050 * time.Millisecond},
	{name: "verification", activity: workflows.ActivityVerify, after: 2050 * time.Millisecond},
	{name: "batch-start", activity: workflows.ActivityStartReplicas, match: role(engine.RoleStable)},
	{name: "traffic-switch", activity: workflows.ActivitySetTraffic},
	{name: "rollback", activity: workflows.ActivityRemoveReplicas, bad: true},
	{name: "workflow-task", activity: workflows.ActivityVerify, workflowTask: true},
}

// killNotice is what a worker at its kill point tells the benchmark.
type killNotice struct {
	Point        string        `json:"point"`
	PID          int           `json:"pid"`
	Identity     string        `json:"identity"`
	WorkflowID   string        `json:"workflow_id"`
	Activity     string        `json:"activity"`
	ActivityID   string        `json:"activity_id,omitempty"`
	Attempt      int32         `json:"attempt,omitempty"`
	Into         time.Duration `json:"into,omitempty"`
	AtEnd        bool          `json:"at_end,omitempty"`
	WorkflowTask bool          `json:"workflow_task,omitempty"`
}

// workerInterceptors installs the kill point of a worker process started by
// BenchmarkWorkerDeath (none otherwise).
func workerInterceptors() []interceptor.WorkerInterceptor {
	name := os.Getenv(envKillPoint)
	if name == "" {
		return nil
	}
	i := slices.IndexFunc(killPoints, func(p killPoint) bool { return p.name == name })
	if i < 0 {
		fmt.Fprintln(os.Stderr, "worker process: unknown kill point", name)
		os.Exit(2)
	}
	return []interceptor.WorkerInterceptor{&killHook{p: killPoints[i], token: os.Getenv(envKillToken), notify: os.NewFile(3, "kill-notices")}}
}

type killHook struct {
	interceptor.WorkerInterceptorBase
	p      killPoint
	token  string
	notify *os.File
}

// claim is true for the one worker (of all processes) that reaches the kill point first.
func (h *killHook) claim() bool {
	f, err := os.OpenFile(h.token, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

// hold tells the benchmark where this worker is and waits to be killed.
func (h *killHook) hold(n killNotice) {
	n.Point, n.PID, n.Identity = h.p.name, os.Getpid(), workerIdentity(os.Getpid())
	b, _ := json.Marshal(n)
	_, _ = h.notify.Write(append(b, '\n'))
	time.Sleep(2 * time.Minute)
	fmt.Fprintln(os.Stderr, "worker process: not killed at", h.p.name)
	os.Exit(3)
}

func (h *killHook) matches(activityType string, args []any) bool {
	return activityType == h.p.activity && (h.p.match == nil || len(args) > 0 && h.p.match(args))
}

func (h *killHook) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	a := &killActivity{h: h}
	a.Next = next
	return a
}

type killActivity struct {
	interceptor.ActivityInboundInterceptorBase
	h *killHook
}

func (a *killActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	if a.h.p.workflowTask || !a.h.matches(info.ActivityType.Name, in.Args) || !a.h.claim() {
		return a.Next.ExecuteActivity(ctx, in)
	}
	n := killNotice{WorkflowID: info.WorkflowExecution.ID, Activity: info.ActivityType.Name, ActivityID: info.ActivityID, Attempt: info.Attempt}
	start := time.Now()
	if a.h.p.after > 0 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = a.Next.ExecuteActivity(ctx, in) // the result never reaches the server
		}()
		select {
		case <-time.After(a.h.p.after):
		case <-done:
			n.AtEnd = true
		}
	}
	n.Into = time.Since(start)
	a.h.hold(n)
	return nil, nil
}

func (h *killHook) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	w := &killWorkflowIn{h: h}
	w.Next = next
	return w
}

type killWorkflowIn struct {
	interceptor.WorkflowInboundInterceptorBase
	h *killHook
}

func (w *killWorkflowIn) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	o := &killWorkflowOut{h: w.h}
	o.Next = outbound
	return w.Next.Init(o)
}

type killWorkflowOut struct {
	interceptor.WorkflowOutboundInterceptorBase
	h *killHook
}

// ExecuteActivity holds the workflow task that schedules the kill point's activity (a new
// one, not a replay) until the worker is killed: the kill lands in a workflow task.
func (o *killWorkflowOut) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	info := workflow.GetInfo(ctx)
	if o.h.p.workflowTask && info.WorkflowType.Name == workflows.ReleaseWorkflowName && !workflow.IsReplaying(ctx) &&
		o.h.matches(activityType, args) && o.h.claim() {
		o.h.hold(killNotice{WorkflowID: info.WorkflowExecution.ID, Activity: activityType, WorkflowTask: true})
	}
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

func workerIdentity(pid int) string { return fmt.Sprintf("e2e-child-%d", pid) }

// killed is a kill the benchmark made: where, and when (just before the SIGKILL).
type killed struct {
	killNotice
	at time.Time
}

// startKillableWorker runs a worker process (as startWorkerProcess) with the kill point;
// when it reports reaching it, it is SIGKILLed at once and the kill is sent on kills. Its
// output goes to a log file in dir.
func (f *fixture) startKillableWorker(p killPoint, token, dir string, kills chan<- killed) *exec.Cmd {
	f.t.Helper()
	r, w, err := os.Pipe()
	require.NoError(f.t, err)
	log, err := os.CreateTemp(dir, "worker-*.log")
	require.NoError(f.t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envWorkerHostPort+"="+srv.HostPort(), envWorkerQueue+"="+f.queue,
		envKillPoint+"="+p.name, envKillToken+"="+token)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{w}
	require.NoError(f.t, cmd.Start())
	_ = w.Close()
	go func() {
		defer func() { _ = r.Close() }() // the read end of the pipe
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var n killNotice
			if json.Unmarshal(sc.Bytes(), &n) != nil || n.PID != cmd.Process.Pid {
				continue
			}
			at := time.Now()
			_ = cmd.Process.Signal(syscall.SIGKILL)
			kills <- killed{n, at}
		}
	}()
	f.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = log.Close()
	})
	return cmd
}

// waitPollers waits until every identity polls the fixture's task queue for workflow and
// activity tasks.
func (f *fixture) waitPollers(identities ...string) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		for _, tq := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			resp, err := srv.Client().DescribeTaskQueue(ctxT(f.t, 10*time.Second), f.queue, tq)
			if err != nil {
				return false
			}
			seen := map[string]bool{}
			for _, p := range resp.GetPollers() {
				seen[p.GetIdentity()] = true
			}
			for _, id := range identities {
				if !seen[id] {
					return false
				}
			}
		}
		return true
	}, time.Minute, 50*time.Millisecond)
}

// history is a run's whole history.
func (f *fixture) history(run client.WorkflowRun) []*historypb.HistoryEvent {
	f.t.Helper()
	var out []*historypb.HistoryEvent
	it := srv.Client().GetWorkflowHistory(ctxT(f.t, 30*time.Second), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(f.t, err)
		out = append(out, e)
	}
	return out
}

// resumed is how a release went on after a kill, read from its history.
type resumed struct {
	// after: from the kill to the survivor's pickup of the interrupted work: the start of
	// the killed activity's next attempt (its ActivityTaskStarted event), or the completion
	// of the workflow task that timed out (WorkflowTaskCompleted).
	after time.Duration
	by    string
	// attempt of the activity that the survivor started.
	attempt int32
	// sticky: time workflow tasks queued after the kill waited for the dead worker's sticky
	// queue before going to the survivor (WorkflowTaskTimedOut, schedule-to-start).
	sticky time.Duration
	// retry is where an activity's resume time went (from DescribeWorkflowExecution).
	retry retryTimes
}

// firstRetry is the first retry interval of every activity (workflows' retry policies).
const firstRetry = 500 * time.Millisecond

// retryTimes split an activity's resume: the last heartbeat the server had before the kill,
// when it failed the killed attempt (heartbeat timeout), and when the next attempt was due
// (failed + the retry interval).
type retryTimes struct {
	lastBeat, failed, next time.Time
}

// watchRetry polls the release's pending activity id (every 20 ms) until its attempt is
// past attempt, and returns when the server had its last heartbeat, failed the attempt, and
// scheduled the next one.
func (f *fixture) watchRetry(run client.WorkflowRun, id string, attempt int32) retryTimes {
	deadline := time.Now().Add(time.Minute)
	var rt retryTimes
	for time.Now().Before(deadline) {
		d, err := srv.Client().DescribeWorkflowExecution(context.Background(), run.GetID(), run.GetRunID())
		if err != nil {
			return rt
		}
		var pa *workflowpb.PendingActivityInfo
		for _, a := range d.GetPendingActivities() {
			if a.GetActivityId() == id {
				pa = a
			}
		}
		if pa == nil {
			return rt // done (or never seen)
		}
		if pa.GetAttempt() == attempt && pa.GetLastHeartbeatTime() != nil {
			rt.lastBeat = pa.GetLastHeartbeatTime().AsTime()
		}
		if pa.GetAttempt() > attempt {
			// The server sets neither LastAttemptCompleteTime nor a true CurrentRetryInterval
			// for a timeout: the attempt failed a first retry interval (500 ms, the retry
			// policy of every activity) before the next was due.
			if t := pa.GetNextAttemptScheduleTime(); t != nil {
				rt.next = t.AsTime()
				rt.failed = rt.next.Add(-firstRetry)
			}
			return rt
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rt
}

// resumeOf reads from the history how the release resumed after kill k.
func resumeOf(t testing.TB, hist []*historypb.HistoryEvent, k killed) resumed {
	t.Helper()
	byID := map[int64]*historypb.HistoryEvent{}
	for _, e := range hist {
		byID[e.GetEventId()] = e
	}
	var r resumed
	found := false
	if k.WorkflowTask {
		timedOut := false
		for _, e := range hist {
			if !e.GetEventTime().AsTime().After(k.at) {
				continue
			}
			if a := e.GetWorkflowTaskTimedOutEventAttributes(); a != nil && a.GetTimeoutType() == enumspb.TIMEOUT_TYPE_START_TO_CLOSE {
				timedOut = true
			}
			if a := e.GetWorkflowTaskCompletedEventAttributes(); a != nil && !found {
				require.True(t, timedOut, "the kill landed in a workflow task: it timed out before the next one completed")
				r.after, r.by, found = e.GetEventTime().AsTime().Sub(k.at), a.GetIdentity(), true
			}
		}
	} else {
		var scheduled int64
		for _, e := range hist {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityId() == k.ActivityID {
				scheduled = e.GetEventId()
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled != 0 && a.GetScheduledEventId() == scheduled {
				r.after, r.by, r.attempt, found = e.GetEventTime().AsTime().Sub(k.at), a.GetIdentity(), a.GetAttempt(), true
			}
		}
		require.NotZero(t, scheduled, "activity %s (%s) is in the history", k.ActivityID, k.Activity)
		require.Greater(t, r.attempt, k.Attempt, "the killed attempt was retried")
	}
	require.True(t, found, "the release resumed after the kill at %s", k.Point)
	for _, e := range hist {
		if a := e.GetWorkflowTaskTimedOutEventAttributes(); a != nil && a.GetTimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START && e.GetEventTime().AsTime().After(k.at) {
			if s := byID[a.GetScheduledEventId()]; s != nil {
				r.sticky += e.GetEventTime().AsTime().Sub(s.GetEventTime().AsTime())
			}
		}
	}
	return r
}

// BenchmarkWorkerDeath (BENCHMARKS.md, Worker death): how soon a release resumes after the worker running it
// is SIGKILLed, at six kill points: canary start, verification, batch start, traffic
// switch, rollback (killPoints), and a workflow task. Each run is a release of the demo
// service on one cluster (2 replicas, canary 1, batches of 1; 1.0.0 → 1.1.0, or → bad-errors
// for the rollback) with two worker processes polling its task queue from the start. The
// first worker to reach the kill point tells the benchmark and holds there; the benchmark
// SIGKILLs it at once (the kill time is taken just before the signal). After the release
// ends, its history says when the other worker picked the work up (resumed.after) and how
// long a workflow task then waited for the dead worker's sticky queue (resumed.sticky).
//
// SLIPWAY_BENCH_DEATH_RUNS (default 3) sets the runs per kill point. Results are printed as
// "worker-death:" lines: one per run, then per kill point the median and range, then the
// worst; the "worst" sub-benchmark reports it as metrics.
func BenchmarkWorkerDeath(b *testing.B) {
	runs := envInt("SLIPWAY_BENCH_DEATH_RUNS", 3)
	results := map[string][]resumed{}
	for _, p := range killPoints {
		for i := range runs {
			b.Run(fmt.Sprintf("%s-%d", p.name, i+1), func(b *testing.B) {
				r := deathRun(b, p)
				results[p.name] = append(results[p.name], r)
				b.ReportMetric(r.after.Seconds(), "s-to-resume")
				b.ReportMetric(r.sticky.Seconds(), "s-sticky-wait")
			})
		}
	}
	var worst, worstTotal time.Duration
	var worstAt, worstTotalAt string
	for _, p := range killPoints {
		rs := results[p.name]
		if len(rs) == 0 {
			continue
		}
		after := make([]time.Duration, len(rs))
		total := make([]time.Duration, len(rs))
		for i, r := range rs {
			after[i], total[i] = r.after, r.after+r.sticky
		}
		slices.Sort(after)
		slices.Sort(total)
		fmt.Printf("worker-death: %-14s resumed after %.2f s median (%.2f–%.2f s, %d runs); with the sticky wait %.2f s median (%.2f–%.2f s)\n",
			p.name, after[len(after)/2].Seconds(), after[0].Seconds(), after[len(after)-1].Seconds(), len(rs),
			total[len(total)/2].Seconds(), total[0].Seconds(), total[len(total)-1].Seconds())
		if a := after[len(after)-1]; a > worst {
			worst, worstAt = a, p.name
		}
		if a := total[len(total)-1]; a > worstTotal {
			worstTotal, worstTotalAt = a, p.name
		}
	}
	fmt.Printf("worker-death: worst resume %.2f s (%s); worst with the sticky wait %.2f s (%s); goal ≤ 5 s\n",
		worst.Seconds(), worstAt, worstTotal.Seconds(), worstTotalAt)
	b.Run("worst", func(b *testing.B) {
		b.ReportMetric(worst.Seconds(), "s-worst-resume")
		b.ReportMetric(worstTotal.Seconds(), "s-worst-with-sticky")
	})
}

// deathRun is one release killed at p.
func deathRun(b *testing.B, p killPoint) resumed {
	f := newFixture(b, 1)
	f.seed("1.0.0")
	dir := b.TempDir()
	token := filepath.Join(dir, "claimed")
	kills := make(chan killed, 2)
	w1 := f.startKillableWorker(p, token, dir, kills)
	w2 := f.startKillableWorker(p, token, dir, kills)
	ids := map[int]string{w1.Process.Pid: workerIdentity(w1.Process.Pid), w2.Process.Pid: workerIdentity(w2.Process.Pid)}
	f.waitPollers(ids[w1.Process.Pid], ids[w2.Process.Pid])

	version, want := "1.1.0", workflows.OutcomeSucceeded
	if p.bad {
		version, want = "bad-errors", workflows.OutcomeRolledBack
	}
	run := f.release("death", workflows.ReleaseInput{Spec: f.spec(version)})
	var k killed
	select {
	case k = <-kills:
	case <-time.After(3 * time.Minute):
		f.dumpHistory(run)
		b.Fatalf("%s: no worker reached the kill point", p.name)
	}
	var rt retryTimes
	if !k.WorkflowTask {
		rt = f.watchRetry(run, k.ActivityID, k.Attempt)
	}
	st := f.wait(run)
	require.Equal(b, want, st.Outcome, st.Reason)
	select {
	case k2 := <-kills:
		b.Fatalf("a second worker was killed: %+v", k2)
	default:
	}
	survivor := ids[w1.Process.Pid]
	if k.PID == w1.Process.Pid {
		survivor = ids[w2.Process.Pid]
	}
	r := resumeOf(b, f.history(run), k)
	r.retry = rt
	require.Equal(b, survivor, r.by, "the survivor resumed the release")
	where := "in the workflow task scheduling " + k.Activity
	if !k.WorkflowTask {
		where = fmt.Sprintf("%s attempt %d, %.2f s in", k.Activity, k.Attempt, k.Into.Seconds())
		if k.AtEnd {
			where += " (at its end)"
		}
	}
	how := "completed the timed-out workflow task"
	if r.attempt > 0 {
		how = fmt.Sprintf("started attempt %d", r.attempt)
	}
	split := ""
	if !rt.next.IsZero() {
		split = fmt.Sprintf(" (timed out %.2f s after the kill", rt.failed.Sub(k.at).Seconds())
		if !rt.lastBeat.IsZero() {
			split += fmt.Sprintf(", %.2f s after the last heartbeat", rt.failed.Sub(rt.lastBeat).Seconds())
		}
		split += fmt.Sprintf("; retry due %.2f s later, started %.2f s after that)", rt.next.Sub(rt.failed).Seconds(), k.at.Add(r.after).Sub(rt.next).Seconds())
	}
	fmt.Printf("worker-death: %-14s killed %s %s; %s %s after %.2f s%s; sticky wait %.2f s; %s\n",
		p.name, k.Identity, where, r.by, how, r.after.Seconds(), split, r.sticky.Seconds(), st.Outcome)
	return r
}
