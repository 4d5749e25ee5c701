package workflows

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

func twoClusters(services ...string) *fakeWorld {
	w := newWorld("staging")
	for _, c := range []string{"a", "b"} {
		for _, s := range services {
			w.seed(c, s, "1.0.0", 2)
		}
	}
	return w
}

// countCancels counts the WatchReplicas activities the workflow cancels.
func countCancels(n *int, mu *sync.Mutex) func(*testsuite.TestWorkflowEnvironment) {
	return func(env *testsuite.TestWorkflowEnvironment) {
		env.SetOnActivityCanceledListener(func(info *activity.Info) {
			if info.ActivityType.Name == ActivityWatchReplicas {
				mu.Lock()
				*n++
				mu.Unlock()
			}
		})
	}
}

func eventIndex(st ReleaseStatus, substr string) int {
	for i, e := range st.Events {
		if strings.Contains(e.Message, substr) {
			return i
		}
	}
	return -1
}

// TestWatchOOMDuringRollout: a new replica on a is killed for memory while the release rolls
// out on b: a failed verdict (stage watch, the event as evidence), and the release rolls
// back everything; every watch is cancelled before the rollback starts.
func TestWatchOOMDuringRollout(t *testing.T) {
	w := twoClusters("web")
	w.report("a", "web", "1.1.0", 90*time.Second, engine.EventOOM, 137)
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) { s.Rollout.Pause = spec.Duration(time.Minute) }))}
	var mu sync.Mutex
	cancels := 0
	st, _ := run(t, w, in, countCancels(&cancels, &mu))

	require.Equal(t, OutcomeRolledBack, st.Outcome, st.Reason)
	require.Contains(t, st.Reason, "web failed verification on a (watch)")
	require.Contains(t, st.Reason, "slipway.staging.a.web.1.1.0.0 was killed for memory (out of memory), exit code 137")
	v := st.Verdicts[len(st.Verdicts)-1]
	require.Equal(t, VerdictFailed, v.Result)
	require.Equal(t, StageWatch, v.Stage)
	require.Equal(t, "a", v.Cluster)
	require.NotNil(t, v.Evidence.Event)
	require.True(t, v.Evidence.Event.OOMKilled)
	require.Equal(t, 137, v.Evidence.Event.ExitCode)
	require.Equal(t, "slipway.staging.a.web.1.1.0.0", v.Evidence.Event.Name)
	require.False(t, v.Evidence.Event.At.IsZero())
	// during the rollout on b: b had started, not finished
	require.NotEmpty(t, w.Calls("StartReplicas b web 1.1.0 [0]"))
	require.Empty(t, w.Calls("StartReplicas b web 1.1.0 [1]"))
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"))
	}
	// one watch per cluster, started with the cluster's first new replica, slots of the plan
	require.Len(t, w.watch.returned, 1, "only the scripted event returned: %v", w.watch.returned)
	require.Equal(t, 1, cancels, "the watch still running (b) was cancelled")
	stopped := eventIndex(st, "stopped watching the new replicas")
	back := eventIndex(st, "previous version back in traffic")
	require.True(t, stopped >= 0 && back > stopped, "watches stopped (%d) before the rollback (%d)", stopped, back)
	require.True(t, hasEvent(st, "watching the new replicas of 1.1.0"))
}

// TestWatchBakeThenSucceed: a good release keeps watching for the bake time after the last
// wave (phase baking), then cleans up and succeeds.
func TestWatchBakeThenSucceed(t *testing.T) {
	w := twoClusters("web")
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		b := spec.Duration(5 * time.Minute)
		s.Verification.Bake = &b
	}))}
	var during ReleaseStatus
	var qerr error
	st, env := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(func() {
			v, err := env.QueryWorkflow(QueryStatus)
			if qerr = err; err == nil {
				qerr = v.Get(&during)
			}
		}, 3*time.Minute)
	})
	require.NoError(t, qerr)
	require.Equal(t, PhaseBaking, during.Phase)
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	done := st.Events[eventIndex(st, "web runs 1.1.0 everywhere")].At
	passed := eventIndex(st, "bake passed")
	require.True(t, passed > 0)
	require.GreaterOrEqual(t, st.Events[passed].At.Sub(done), 5*time.Minute, "baked for verification.bake after the last wave")
	require.Less(t, eventIndex(st, "stopped watching"), eventIndex(st, "removing older revisions"), "watches stopped before the cleanup")
	// no watch returned before the end (no bad event, no window over); the sweep looked at
	// each whole watch once more
	require.Equal(t, []string{"a web 1.1.0: swept", "b web 1.1.0: swept"}, sortedCalls(w.watch.returned))
	for _, in := range w.watch.inputs {
		require.Equal(t, sweepWindow, in.Window)
		require.False(t, in.Since.IsZero(), "a sweep replays from the watch's start")
		require.True(t, in.Since.Before(done.Add(time.Second)), "%s", in.Since)
	}
	require.False(t, env.Now().Before(st.EndedAt))
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.1.0", 2)
	}
}

// TestWatchDuringBake: a replica that exits during the bake fails the release like one
// during the rollout.
func TestWatchDuringBake(t *testing.T) {
	w := twoClusters("web")
	w.report("b", "web", "1.1.0", 20*time.Second, engine.EventDie, 2) // bake: 30s (default)
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})
	require.Equal(t, OutcomeRolledBack, st.Outcome, st.Reason)
	require.Contains(t, st.Reason, "exited with code 2")
	require.True(t, hasEvent(st, "baking"))
	require.False(t, hasEvent(st, "bake passed"))
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
	}
}

// TestWatchNoBake: bake 0s and fast-track releases end at the last wave; the replicas are
// still watched until then.
func TestWatchNoBake(t *testing.T) {
	t.Run("bake 0s", func(t *testing.T) {
		w := twoClusters("web")
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
			zero := spec.Duration(0)
			s.Verification.Bake = &zero
		}))}
		st, _ := run(t, w, in)
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		require.False(t, hasEvent(st, "baking"))
		require.True(t, hasEvent(st, "watching the new replicas"))
	})
	t.Run("fast track", func(t *testing.T) {
		w := twoClusters("web")
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0")), FastTrack: true})
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		require.False(t, hasEvent(st, "baking"))
	})
}

// TestWatchHeldForAStartingReplica: a replica that dies while its StartReplicas still waits
// for it is that step's failure (with its own explanation), not the watch's.
func TestWatchHeldForAStartingReplica(t *testing.T) {
	w := twoClusters("web")
	w.unhealthy["bad-crash"] = true
	w.report("a", "web", "bad-crash", 0, engine.EventDie, 1)
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "bad-crash"))})
	require.Equal(t, OutcomeRolledBack, st.Outcome)
	require.Contains(t, st.Reason, "did not come up")
	require.Len(t, st.Verdicts, 1)
	require.Equal(t, "canary", st.Verdicts[0].Stage)
}

// TestWatchWindows: a watch whose window ends without an event is followed by the next one,
// resuming from the time the previous one returned; a long approval wait spans several.
func TestWatchWindows(t *testing.T) {
	w := twoClusters("web")
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		s.Canary = &spec.Canary{Approval: &spec.Approval{Required: true, Timeout: spec.Duration(150 * time.Minute), OnTimeout: spec.OnTimeoutProceed}}
	}))}
	st, _ := run(t, w, in)
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	var windows []int // returns of cluster a's long watch
	for i, r := range w.watch.returned {
		if strings.HasPrefix(r, "a ") && strings.HasSuffix(r, ": window") {
			windows = append(windows, i)
		}
	}
	require.GreaterOrEqual(t, len(windows), 2, "%v", w.watch.returned)
	first := w.watch.inputs[windows[0]]
	require.True(t, first.Since.IsZero(), "the first watch starts from now")
	require.Equal(t, watchWindow, first.Window)
	require.Equal(t, 2, first.Slots)
	require.Equal(t, "1.1.0", first.Version)
	require.Equal(t, "r1", first.Release)
	// the next watch resumed where the previous one returned
	require.True(t, w.watch.results[windows[0]].Since.Equal(w.watch.inputs[windows[1]].Since))
	require.True(t, hasEvent(st, "bake passed"))
}

// TestWatchHeartbeat: the long watches heartbeat with watchHeartbeat (changeWatchHeartbeat),
// the sweep's short ones and the release's other activities with the engine activities'
// heartbeatTimeout (a release waits for them: a lost worker must be noticed fast).
func TestWatchHeartbeat(t *testing.T) {
	w := twoClusters("web")
	var mu sync.Mutex
	beats := map[string]time.Duration{} // "long" / "sweep" / activity type → heartbeat timeout
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))}, func(env *testsuite.TestWorkflowEnvironment) {
		env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
			key := info.ActivityType.Name
			if key == ActivityWatchReplicas {
				var in WatchInput
				require.NoError(t, args.Get(&in))
				key = map[bool]string{true: "long", false: "sweep"}[in.Window == watchWindow]
			}
			mu.Lock()
			defer mu.Unlock()
			if old, ok := beats[key]; ok && old != info.HeartbeatTimeout {
				t.Errorf("%s: heartbeat timeouts %s and %s", key, old, info.HeartbeatTimeout)
			}
			beats[key] = info.HeartbeatTimeout
		})
	})
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.Equal(t, watchHeartbeat, beats["long"])
	require.Equal(t, heartbeatTimeout, beats["sweep"])
	for _, a := range []string{ActivityStartReplicas, ActivityVerify, ActivitySetTraffic} {
		require.Equal(t, heartbeatTimeout, beats[a], a)
	}
}

// TestWatchCannotBeTaken: an engine whose events cannot be read, attempt after attempt,
// fails the release like any step on that engine.
func TestWatchCannotBeTaken(t *testing.T) {
	w := twoClusters("web")
	w.report("b", "web", "1.1.0", 0, "", 0)
	w.watch.script[0].err = temporal.NewApplicationError("events of cluster b: the engine does not answer", ErrEngineUnavailable)
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})
	require.Equal(t, OutcomeRolledBack, st.Outcome, "%s %v", st.Reason, w.watch.returned)
	require.Contains(t, st.Reason, "watching the new replicas on cluster b failed")
	require.GreaterOrEqual(t, len(w.Calls("WatchReplicas b web 1.1.0: error")), 10, "retried up to the policy's attempts")
}

// TestWatchHistories checks the recorded histories of the watch (record_watch_test.go, on
// the real server) for the order of commands that matters: the watch is scheduled before
// the first StartReplicas of its cluster, and every watch is closed (completed or its
// cancellation requested) before the release stops or removes a replica, and in the OOM
// path before the rollback's first step.
func TestWatchHistories(t *testing.T) {
	for _, tc := range []struct {
		file   string
		failed bool
	}{{"release_watch_bake.json", false}, {"release_watch_oom.json", true}} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			var h historypb.History
			require.NoError(t, temporalproto.CustomJSONUnmarshalOptions{}.Unmarshal(b, &h))
			kind := map[int64]string{}
			open := map[int64]bool{}
			marker, watches, starts, failedAt := false, 0, 0, false
			for _, e := range h.Events {
				switch e.EventType {
				case enumspb.EVENT_TYPE_MARKER_RECORDED:
					for _, p := range e.GetMarkerRecordedEventAttributes().GetDetails() {
						for _, pl := range p.GetPayloads() {
							marker = marker || strings.Contains(string(pl.GetData()), changeWatchReplicas)
						}
					}
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
					name := e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
					kind[e.EventId] = name
					switch name {
					case ActivityWatchReplicas:
						open[e.EventId] = true
						watches++
					case ActivityStartReplicas:
						require.Positive(t, watches, "a StartReplicas before any watch (event %d)", e.EventId)
						starts++
					case ActivityStopReplicas, ActivityRemoveReplicas:
						require.Empty(t, open, "%s scheduled (event %d) while watches are open", name, e.EventId)
					}
					if failedAt {
						require.Empty(t, open, "the rollback's %s (event %d) while watches are open", name, e.EventId)
					}
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
					a := e.GetActivityTaskCompletedEventAttributes()
					delete(open, a.GetScheduledEventId())
					if kind[a.GetScheduledEventId()] == ActivityWatchReplicas {
						for _, pl := range a.GetResult().GetPayloads() {
							failedAt = failedAt || strings.Contains(string(pl.GetData()), `"action":"oom"`)
						}
					}
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
					delete(open, e.GetActivityTaskCancelRequestedEventAttributes().GetScheduledEventId())
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
					delete(open, e.GetActivityTaskFailedEventAttributes().GetScheduledEventId())
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
					delete(open, e.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId())
				}
			}
			require.True(t, marker, "no %s marker", changeWatchReplicas)
			require.Positive(t, starts)
			require.Equal(t, tc.failed, failedAt, "an OOM result in the history")
		})
	}
}
