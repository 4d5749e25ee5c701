package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// TestWatchCatchesALaterCrash: bad-crash-later passes its health checks and every
// verification, then its replicas exit 1 twenty seconds after they started, while the
// release bakes. The lifecycle watch sees the die through the engine's events (the engine
// is isolated: its API is all the worker has) and the release rolls back.
func TestWatchCatchesALaterCrash(t *testing.T) {
	f := newRemoteFixture(t)
	f.startWorker()
	f.seed("1.0.0")
	st := f.wait(f.release("crash-later", workflows.ReleaseInput{Spec: f.spec("bad-crash-later", func(s *spec.Service) {
		b := spec.Duration(time.Minute) // longer than the 20 s the replicas live
		s.Verification.Bake = &b
	})}))

	require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	last := lastVerdict(t, st)
	require.Equal(t, workflows.VerdictFailed, last.Result)
	require.Equal(t, workflows.StageWatch, last.Stage)
	ev := last.Evidence.Event
	require.NotNil(t, ev)
	require.Equal(t, engine.EventDie, ev.Action)
	require.Equal(t, 1, ev.ExitCode)
	require.Equal(t, "bad-crash-later", ev.Version)
	require.Contains(t, st.Reason, "exited with code 1")
	for _, v := range st.Verdicts[:len(st.Verdicts)-1] {
		require.Equal(t, workflows.VerdictPassed, v.Result, "it passed everything else: %s", v.Reason)
	}
	// the old version serves, nothing of the bad one is left
	require.Empty(t, f.requireServes("1.0.0"))
}
