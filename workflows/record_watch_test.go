//go:build record

package workflows

// Records the histories of the lifecycle watch's paths (changeWatchReplicas), replayed by
// replay_test.go and checked by TestWatchHistories:
//
//	go test -tags record ./workflows -run TestRecordWatchHistories -count=1

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

func TestRecordWatchHistories(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: -1, SearchAttributes: SearchAttributeTypes})
	require.NoError(t, err)
	defer srv.Stop()
	c := srv.Client()

	record := func(t *testing.T, name string, w *fakeWorld, in ReleaseInput) ReleaseStatus {
		t.Helper()
		queue := "record-" + name
		wk := sdkworker.New(c, queue, sdkworker.Options{})
		Register(wk)
		w.register(wk)
		require.NoError(t, wk.Start())
		defer wk.Stop()
		in.ID, in.TriggeredBy = name, "recorder"
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ReleaseWorkflowID(in.Spec.Environment, in.ID), TaskQueue: queue}, ReleaseWorkflowName, in)
		require.NoError(t, err)
		st, err := ReleaseResult(ctx, run)
		require.NoError(t, err)
		save(t, c, name, run.GetID(), run.GetRunID())
		return st
	}
	web := func(mods ...func(*spec.Service)) spec.Environment {
		return testSpec(svc("web", "1.1.0", append([]func(*spec.Service){func(s *spec.Service) {
			s.Canary = &spec.Canary{Soak: spec.Duration(time.Second)}
			s.Rollout.Pause = spec.Duration(2 * time.Second)
			b := spec.Duration(2 * time.Second)
			s.Verification.Bake = &b
		}}, mods...)...))
	}

	t.Run("bake", func(t *testing.T) {
		st := record(t, "release_watch_bake", twoClusters("web"), ReleaseInput{Spec: web()})
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		require.True(t, hasEvent(st, "bake passed"))
	})
	t.Run("oom during rollout", func(t *testing.T) {
		w := twoClusters("web")
		w.report("a", "web", "1.1.0", 3*time.Second, engine.EventOOM, 137)
		st := record(t, "release_watch_oom", w, ReleaseInput{Spec: web()})
		require.Equal(t, OutcomeRolledBack, st.Outcome, st.Reason)
		require.Equal(t, StageWatch, st.Verdicts[len(st.Verdicts)-1].Stage)
	})
}
