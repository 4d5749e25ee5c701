package activities_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// slowDialer takes `wait` to answer that the engine cannot be reached: an activity that
// dials it sits in its first engine call that long.
type slowDialer struct{ wait time.Duration }

func (d slowDialer) Dial(ctx context.Context, _ engine.Endpoint) (engine.Engine, error) {
	select {
	case <-time.After(d.wait):
	case <-ctx.Done():
	}
	return nil, &engine.Error{Kind: engine.KindUnavailable, Op: "dial", Err: context.DeadlineExceeded}
}

// slowClient is a Temporal client whose visibility list takes `wait`, then fails.
type slowClient struct {
	client.Client
	wait time.Duration
}

func (c slowClient) ListWorkflow(_ context.Context, _ *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	time.Sleep(c.wait)
	return nil, context.DeadlineExceeded
}

// registered records the names activities are registered under.
type registered struct {
	sdkworker.ActivityRegistry
	got []string
}

func (n *registered) RegisterActivityWithOptions(a any, o activity.RegisterOptions) {
	n.got = append(n.got, o.Name)
	n.ActivityRegistry.RegisterActivityWithOptions(a, o)
}

// TestEveryActivityHeartbeatsFromItsStart: every registered activity heartbeats while it
// waits on a slow engine (or Temporal), from its first call on, so a worker that dies there
// is noticed within the heartbeat timeout (workflows' options table); and the activities
// that resume from their heartbeat keep the previous attempt's details meanwhile.
func TestEveryActivityHeartbeatsFromItsStart(t *testing.T) {
	const every, wait = 50 * time.Millisecond, 500 * time.Millisecond
	tg := workflows.Target{Environment: "hb", Cluster: "a"}
	svc := spec.Service{Name: "web", Image: "slipway/demo", Version: "1.1.0", Port: 8080, Replicas: 1}
	verification := spec.Verification{Interval: spec.Duration(100 * time.Millisecond), Duration: spec.Duration(time.Second),
		Requests: []spec.Probe{{Path: "/"}}}
	inputs := map[string]any{
		workflows.ActivityInspect:        workflows.InspectInput{Environment: "hb", Targets: []workflows.Target{tg}},
		workflows.ActivityCheckImages:    workflows.CheckImagesInput{Checks: []workflows.ImageCheck{{Target: tg, Service: "web", Image: "slipway/demo:1.1.0"}}},
		workflows.ActivityEnsureNetwork:  workflows.EnsureNetworkInput{Target: tg},
		workflows.ActivityStartReplicas:  workflows.StartReplicasInput{Target: tg, Release: "r", Role: engine.RoleStable, Service: svc, Slots: []int{0}},
		workflows.ActivitySetTraffic:     workflows.SetTrafficInput{Target: tg, Service: "web", Detach: []string{"x"}},
		workflows.ActivityStopReplicas:   workflows.ContainersInput{Target: tg, Names: []string{"x"}},
		workflows.ActivityStartStopped:   workflows.ContainersInput{Target: tg, Names: []string{"x"}},
		workflows.ActivityRemoveReplicas: workflows.RemoveReplicasInput{Target: tg, Names: []string{"x"}},
		workflows.ActivityVerify:         workflows.VerifyInput{Target: tg, Service: "web", New: []string{"x"}, Verification: verification},
		workflows.ActivityWatchReplicas:  workflows.WatchInput{Target: tg, Service: "web", Version: "1.1.0", Slots: 1},

		workflows.ActivityLoadTestPrepare:  workflows.LoadTestPrepareInput{Environment: "hb", Service: "web", Targets: []workflows.Target{tg}, Rate: 10, Duration: time.Second},
		workflows.ActivityLoadTestPrevious: workflows.LoadTestPreviousInput{Environment: "hb", Test: "t", Service: "web"},
		workflows.ActivityLoadTestScaleOut: workflows.LoadTestScaleInput{Target: tg, RunID: "run", Service: svc, Factor: 2},
		workflows.ActivityLoadTestScaleIn:  workflows.LoadTestScaleInput{Target: tg, RunID: "run", Service: svc},
		workflows.ActivityLoadTestGenerate: workflows.LoadTestGenerateInput{Environment: "hb", Service: "web", Targets: []workflows.Target{tg}, Rate: 10, Duration: time.Second},
	}
	// what the activities that resume from their heartbeat find from a previous attempt
	previous := map[string]any{
		workflows.ActivityStartReplicas: map[string]any{"healthy": []int{3}},
		workflows.ActivityVerify:        map[string]any{"rounds": 7},
		workflows.ActivityWatchReplicas: map[string]any{"since": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
	}

	d := slowDialer{wait: wait}
	var reg testsuite.WorkflowTestSuite
	all := &registered{ActivityRegistry: reg.NewTestActivityEnvironment()}
	activities.Register(all, activities.New(d, activities.Options{}))
	activities.RegisterLoadTest(all, activities.NewLoadTest(d, activities.LoadTestOptions{}))
	require.Len(t, all.got, len(inputs), "every registered activity needs an input here: %v", all.got)

	for _, name := range all.got {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in, ok := inputs[name]
			require.True(t, ok, "no input for %s", name)
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			if p, ok := previous[name]; ok {
				env.SetHeartbeatDetails(p)
			}
			beats := &beatRecorder{}
			env.SetWorkerOptions(sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{beats}})
			activities.Register(env, activities.New(d, activities.Options{HeartbeatEvery: every}))
			activities.RegisterLoadTest(env, activities.NewLoadTest(d, activities.LoadTestOptions{HeartbeatEvery: every, Client: slowClient{wait: wait}}))
			start := time.Now()
			_, err := env.ExecuteActivity(name, in)
			require.Error(t, err, "the engine cannot be reached")
			require.GreaterOrEqual(t, time.Since(start), wait, "%s returned before it reached the engine: %v", name, err)
			got := beats.all()
			require.GreaterOrEqual(t, len(got), int(wait/every)/2, "%s: %d heartbeats in %s (every %s)", name, len(got), wait, every)
			if p, ok := previous[name]; ok {
				var first, want map[string]any
				require.Len(t, got[0], 1, "%s: heartbeat details", name)
				jsonRoundTrip(t, got[0][0], &first)
				jsonRoundTrip(t, p, &want)
				for k, v := range want {
					require.Equal(t, v, first[k], "%s: the first heartbeat keeps the previous attempt's %s", name, k)
				}
			}
		})
	}
}

func jsonRoundTrip(t *testing.T, v, into any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, into))
}

// beatRecorder records every heartbeat an activity records (the SDK sends only some of them
// to the server, and the test environment's heartbeat listener sees only those).
type beatRecorder struct {
	interceptor.WorkerInterceptorBase
	mu    sync.Mutex
	beats [][]any
}

func (r *beatRecorder) all() [][]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]any(nil), r.beats...)
}

func (r *beatRecorder) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &beatIn{r: r}
	i.Next = next
	return i
}

type beatIn struct {
	interceptor.ActivityInboundInterceptorBase
	r *beatRecorder
}

func (i *beatIn) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	o := &beatOut{r: i.r}
	o.Next = outbound
	return i.Next.Init(o)
}

type beatOut struct {
	interceptor.ActivityOutboundInterceptorBase
	r *beatRecorder
}

func (o *beatOut) RecordHeartbeat(ctx context.Context, details ...any) {
	o.r.mu.Lock()
	o.r.beats = append(o.r.beats, details)
	o.r.mu.Unlock()
	o.Next.RecordHeartbeat(ctx, details...)
}

// TestHeartbeatFollowsTheTimeout: an activity heartbeats every HeartbeatEvery, or two fifths
// of its heartbeat timeout when that is longer (the watches that hold no step back run with
// 30 s: a heartbeat every 12 s, not every second). Here WatchReplicas waits 1.2 s on an
// engine that does not answer, heartbeating every 50 ms under a 100 ms timeout, every 400 ms
// under a 1 s one.
func TestHeartbeatFollowsTheTimeout(t *testing.T) {
	const every, wait = 50 * time.Millisecond, 1200 * time.Millisecond
	beatsUnder := func(timeout time.Duration) int {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		beats := &beatRecorder{}
		env.SetWorkerOptions(sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{beats}})
		activities.Register(env, activities.New(slowDialer{wait: wait}, activities.Options{HeartbeatEvery: every}))
		wf := func(ctx workflow.Context) error {
			ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, HeartbeatTimeout: timeout,
				RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}})
			return workflow.ExecuteActivity(ctx, workflows.ActivityWatchReplicas, workflows.WatchInput{
				Target: workflows.Target{Environment: "hb", Cluster: "a"}, Service: "web", Version: "1.1.0", Slots: 1, Window: time.Minute}).Get(ctx, nil)
		}
		env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "watch"})
		env.ExecuteWorkflow("watch")
		require.True(t, env.IsWorkflowCompleted())
		require.Error(t, env.GetWorkflowError(), "the engine cannot be reached")
		return len(beats.all())
	}
	fast, slow := beatsUnder(100*time.Millisecond), beatsUnder(time.Second)
	require.GreaterOrEqual(t, fast, int(wait/every)/2, "every %s under a 100ms timeout", every)
	require.LessOrEqual(t, slow, int(wait/(400*time.Millisecond))+1, "every 400ms under a 1s timeout")
	require.GreaterOrEqual(t, slow, 2, "still heartbeats under a 1s timeout")
}
