package workflows

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
)

// TestReplayHistories replays every committed history (testdata/*.json, recorded on the real
// embedded server by record_test.go: one per path of the Release workflow, and the Plan
// workflow) against today's code. A change to the order of commands without
// workflow.GetVersion fails here with a nondeterminism error.
func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	var release int
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "release_") {
			release++
		}
	}
	require.GreaterOrEqual(t, release, 10, "a history per path of the Release workflow")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			RegisterAll(r) // exactly what the worker registers

			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
