//go:build record

package workflows

// Records the histories replayed by replay_test.go: every path of the Release workflow, the
// Plan workflow and the LoadTest workflow (passed, an SLO missed, a release's canary gate)
// run on the real embedded Temporal server, with the fake world (and the fake load-test
// activities, ltFake) for activities (the histories only need the workflow's commands, not
// real containers).
//
//	go test -tags record ./workflows -run TestRecordHistories -count=1
//
// Run it after a deliberate change to the order of commands (behind workflow.GetVersion):
// it never overwrites a history, it writes <name>.2.json, <name>.3.json… beside the old
// ones, and every file keeps being replayed.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/spec"
)

func TestRecordHistories(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: -1, SearchAttributes: SearchAttributeTypes})
	require.NoError(t, err)
	defer srv.Stop()
	c := srv.Client()

	short := func(s *spec.Service) {
		s.Canary = &spec.Canary{Soak: spec.Duration(time.Second)}
	}
	// startWorker runs a worker of every workflow (RegisterAll, like the real worker) with the
	// fake world's activities and the fake load-test activities on its own queue.
	startWorker := func(t *testing.T, queue string, w *fakeWorld, lt *ltFake) (stop func()) {
		t.Helper()
		wk := sdkworker.New(c, queue, sdkworker.Options{})
		RegisterAll(wk)
		// Webhook deliveries succeed at once (the histories need the commands, not a receiver).
		wk.RegisterActivityWithOptions(func(context.Context, WebhookInput) error { return nil }, activity.RegisterOptions{Name: ActivitySendWebhook})
		w.register(wk)
		lt.registerActivities(wk)
		require.NoError(t, wk.Start())
		return wk.Stop
	}
	record := func(t *testing.T, name string, w *fakeWorld, in ReleaseInput, during func(run client.WorkflowRun)) ReleaseStatus {
		t.Helper()
		queue := "record-" + name
		defer startWorker(t, queue, w, newLTFake())()
		if in.ID == "" {
			in.ID = name
		}
		in.TriggeredBy = "recorder"
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ReleaseWorkflowID(in.Spec.Environment, in.ID), TaskQueue: queue}, ReleaseWorkflowName, in)
		require.NoError(t, err)
		if during != nil {
			during(run)
		}
		st, err := ReleaseResult(ctx, run)
		require.NoError(t, err)
		save(t, c, name, run.GetID(), run.GetRunID())
		return st
	}
	waitPhase := func(t *testing.T, run client.WorkflowRun, p Phase) {
		require.Eventually(t, func() bool {
			v, err := c.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), QueryStatus)
			if err != nil {
				return false
			}
			var st ReleaseStatus
			return v.Get(&st) == nil && st.Phase == p
		}, time.Minute, 20*time.Millisecond)
	}
	update := func(t *testing.T, run client.WorkflowRun, name string, d Decision) {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: run.GetID(), RunID: run.GetRunID(),
			UpdateName: name, Args: []any{d}, WaitForStage: client.WorkflowUpdateStageCompleted})
		require.NoError(t, err)
		require.NoError(t, h.Get(ctx, nil))
	}
	seeded := func(services ...string) *fakeWorld {
		w := newWorld("staging")
		for _, c := range []string{"a", "b"} {
			for _, s := range services {
				w.seed(c, s, "1.0.0", 2)
			}
		}
		return w
	}

	t.Run("happy", func(t *testing.T) {
		st := record(t, "release_happy", seeded("web"), ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short))}, nil)
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	})
	t.Run("canary failed", func(t *testing.T) {
		w := seeded("web")
		w.verdict = failOn("canary", "a", "error rate 50.0% above the 5.0% allowed")
		st := record(t, "release_canary_failed", w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short))}, nil)
		require.Equal(t, OutcomeRolledBack, st.Outcome)
	})
	t.Run("canary unhealthy", func(t *testing.T) {
		w := seeded("web")
		w.unhealthy["bad-crash"] = true
		st := record(t, "release_canary_unhealthy", w, ReleaseInput{Spec: testSpec(svc("web", "bad-crash", short))}, nil)
		require.Equal(t, OutcomeRolledBack, st.Outcome)
	})
	t.Run("wave failed", func(t *testing.T) {
		w := seeded("web")
		w.verdict = failOn("batch 2/2", "b", "p95 latency 310ms above the 200ms allowed")
		st := record(t, "release_wave_failed", w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short))}, nil)
		require.Equal(t, OutcomeRolledBack, st.Outcome)
	})
	t.Run("engine down", func(t *testing.T) {
		w := seeded("web")
		w.hook = func(call string) {
			if strings.HasPrefix(call, "Verify a web wave 1") {
				w.down["b"] = true
			}
		}
		st := record(t, "release_engine_down", w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short))}, nil)
		require.Equal(t, OutcomeFailed, st.Outcome)
	})
	t.Run("abort", func(t *testing.T) {
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short, func(s *spec.Service) { s.Rollout.Pause = spec.Duration(30 * time.Second) }))}
		st := record(t, "release_abort", seeded("web"), in, func(run client.WorkflowRun) {
			waitPhase(t, run, PhaseRollingOut)
			update(t, run, UpdateAbort, Decision{Actor: "alice", Reason: "wrong build"})
		})
		require.Equal(t, OutcomeRolledBack, st.Outcome)
	})
	t.Run("webhooks", func(t *testing.T) {
		// Notifications on a release whose canary fails: the webhook activities, and the
		// workflow ending Failed (since changeFailedResult) after the rollback.
		w := seeded("web")
		w.verdict = failOn("canary", "a", "error rate 50.0% above the 5.0% allowed")
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short))}
		in.Spec.Notifications = &spec.Notifications{Webhooks: []spec.Webhook{{URL: "https://hooks.example.com/release"}}}
		st := record(t, "release_webhooks", w, in, nil)
		require.Equal(t, OutcomeRolledBack, st.Outcome)
	})
	t.Run("approval timeout", func(t *testing.T) {
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
			s.Canary = &spec.Canary{Soak: spec.Duration(time.Second), Approval: &spec.Approval{Required: true, Timeout: spec.Duration(2 * time.Second)}}
		}))}
		st := record(t, "release_approval_timeout", seeded("web"), in, nil)
		require.Equal(t, OutcomeRolledBack, st.Outcome)
	})
	t.Run("inconclusive approved", func(t *testing.T) {
		w := seeded("web")
		w.verdict = func(in VerifyInput) Verdict {
			if in.Stage == "canary" {
				return Verdict{Result: VerdictInconclusive, Reason: "only 3 samples"}
			}
			return Verdict{}
		}
		st := record(t, "release_inconclusive_approved", w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short))}, func(run client.WorkflowRun) {
			waitPhase(t, run, PhaseAwaitingApproval)
			update(t, run, UpdateApprove, Decision{Actor: "frank"})
		})
		require.Equal(t, OutcomeSucceeded, st.Outcome)
	})
	t.Run("pause resume", func(t *testing.T) {
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short, func(s *spec.Service) { s.Rollout.Pause = spec.Duration(2 * time.Second) }))}
		st := record(t, "release_pause_resume", seeded("web"), in, func(run client.WorkflowRun) {
			waitPhase(t, run, PhaseRollingOut)
			update(t, run, UpdatePause, Decision{Actor: "gina"})
			waitPhase(t, run, PhasePaused)
			update(t, run, UpdateResume, Decision{Actor: "gina"})
		})
		require.Equal(t, OutcomeSucceeded, st.Outcome)
	})
	t.Run("multi service rollback", func(t *testing.T) {
		w := seeded("db", "web")
		w.verdict = func(in VerifyInput) Verdict {
			if in.Service == "web" && in.Stage == "canary" {
				return Verdict{Result: VerdictFailed, Reason: "error rate 50.0% above the 5.0% allowed"}
			}
			return Verdict{}
		}
		in := ReleaseInput{Spec: testSpec(svc("db", "2.0.0", short), svc("web", "1.1.0", short, func(s *spec.Service) { s.DependsOn = []string{"db"} }))}
		st := record(t, "release_multi_service_rollback", w, in, nil)
		require.Equal(t, OutcomeRolledBack, st.Outcome)
	})
	t.Run("refused", func(t *testing.T) {
		w := seeded("web")
		gate := ReleaseInput{ID: "holder", Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
			s.Canary = &spec.Canary{Soak: spec.Duration(time.Second), Approval: &spec.Approval{Required: true, Timeout: spec.Duration(3 * time.Second)}}
		}))}
		var second ReleaseStatus
		st := record(t, "release_lock_holder", w, gate, func(run client.WorkflowRun) {
			waitPhase(t, run, PhaseAwaitingApproval)
			in := ReleaseInput{ID: "refused", Spec: testSpec(svc("web", "1.2.0", short))}
			second = record(t, "release_refused", w, in, nil)
		})
		require.Equal(t, OutcomeRolledBack, st.Outcome)
		require.Equal(t, OutcomeRefused, second.Outcome)
	})
	t.Run("gates per cluster", func(t *testing.T) {
		// two clusters of one wave both inconclusive: two gates of one service, approved
		// one by one by naming the cluster (changeGatePerCluster)
		w := seeded("web")
		w.verdict = inconclusiveOn("wave 1")
		in := ReleaseInput{Spec: oneWave(svc("web", "1.1.0", short))}
		st := record(t, "release_gates_per_cluster", w, in, func(run client.WorkflowRun) {
			require.Eventually(t, func() bool {
				v, err := c.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), QueryStatus)
				var st ReleaseStatus
				return err == nil && v.Get(&st) == nil && len(st.Gates) == 2
			}, time.Minute, 20*time.Millisecond)
			update(t, run, UpdateApprove, Decision{Actor: "hana", Service: "web", Cluster: "a"})
			update(t, run, UpdateApprove, Decision{Actor: "ivan", Cluster: "b"})
		})
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	})
	t.Run("image missing", func(t *testing.T) {
		// a version whose image is on no engine is refused before anything changes
		// (changeRefuseMissingImage)
		w := seeded("web")
		w.missing["slipway/demo:9.9.9"] = true
		st := record(t, "release_image_missing", w, ReleaseInput{Spec: testSpec(svc("web", "9.9.9", short))}, nil)
		require.Equal(t, OutcomeRefused, st.Outcome, st.Reason)
	})
	t.Run("stop grace", func(t *testing.T) {
		// keep_previous stopped with a previous version that ignores SIGTERM: StopReplicas
		// with the service's stop_grace, and its result (killed replicas)
		w := seeded("web")
		w.stubborn["1.0.0"] = true
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", short, func(s *spec.Service) {
			s.StopGrace = spec.Duration(30 * time.Second)
			s.Rollback = &spec.Rollback{KeepPrevious: spec.KeepStopped}
		}))}
		st := record(t, "release_stop_grace", w, in, nil)
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	})
	t.Run("plan", func(t *testing.T) {
		queue := "record-plan"
		defer startWorker(t, queue, seeded("web"), newLTFake())()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "plan-staging", TaskQueue: queue}, PlanWorkflowName, testSpec(svc("web", "1.1.0")))
		require.NoError(t, err)
		var res PlanResult
		require.NoError(t, run.Get(ctx, &res))
		require.Equal(t, []string{"web"}, res.Plan.Changed())
		save(t, c, "plan", run.GetID(), run.GetRunID())
	})

	// The LoadTest workflow: ltInput's test (two clusters, scale factor 2) against the fake
	// load-test activities.
	recordLoadTest := func(t *testing.T, name string, f *ltFake) LoadTestResult {
		t.Helper()
		queue := "record-" + name
		defer startWorker(t, queue, seeded("web"), f)()
		in := ltInput()
		in.ID, in.TriggeredBy = name, "recorder"
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: LoadTestWorkflowID(in.Environment, in.Test.Name, in.ID), TaskQueue: queue}, LoadTestWorkflowName, in)
		require.NoError(t, err)
		var res LoadTestResult
		require.NoError(t, run.Get(ctx, &res))
		save(t, c, name, run.GetID(), run.GetRunID())
		return res
	}
	t.Run("load test passed", func(t *testing.T) {
		f := newLTFake()
		f.previous = &LoadTestSummary{WorkflowID: LoadTestWorkflowID("staging", "peak", "1"), Test: "staging/peak", Mode: LoadTestScheduled,
			Outcome: LoadTestPassed, Requests: 900, P95: spec.Duration(4 * time.Millisecond), Throughput: 100}
		res := recordLoadTest(t, "loadtest_passed", f)
		require.Equal(t, LoadTestPassed, res.Outcome, res.Reason)
	})
	t.Run("load test slo missed", func(t *testing.T) {
		f := newLTFake()
		f.metrics.P95 = spec.Duration(310 * time.Millisecond)
		res := recordLoadTest(t, "loadtest_slo_missed", f)
		require.Equal(t, LoadTestFailed, res.Outcome, res.Reason)
	})
	t.Run("canary load test", func(t *testing.T) {
		// a release whose canary gate is a load test: the release's history (the child
		// started and awaited) and the LoadTest child's (canary mode: no lock, no scale-out)
		env := testSpec(svc("web", "1.1.0", func(s *spec.Service) {
			s.Canary = &spec.Canary{Soak: spec.Duration(time.Second), LoadTest: "smoke"}
		}))
		env.LoadTests = []spec.LoadTest{{Name: "smoke", Service: "web", Rate: 20, Duration: spec.Duration(10 * time.Second),
			SLO: spec.SLOs{P95: spec.Duration(50 * time.Millisecond)}}}
		spec.ApplyDefaults(&env)
		st := record(t, "release_canary_load_test", seeded("web"), ReleaseInput{Spec: env}, nil)
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		child := CanaryLoadTestWorkflowID(ReleaseWorkflowID("staging", "release_canary_load_test"), "web", "smoke")
		save(t, c, "loadtest_canary", child, "")
	})
}

func save(t *testing.T, c client.Client, name, id, runID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hist := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, e)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll("testdata", 0o755))
	// never overwrite: older histories must keep replaying (GetVersion branches)
	path := filepath.Join("testdata", name+".json")
	for n := 2; ; n++ {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			break
		}
		path = filepath.Join("testdata", fmt.Sprintf("%s.%d.json", name, n))
	}
	require.NoError(t, os.WriteFile(path, append(b, '\n'), 0o644))
	t.Logf("recorded %s: %d events", name, len(hist.Events))
}
