package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayHistories replays every committed history (testdata/*.json, recorded on the real
// embedded server by record_test.go: one per path of the Release workflow, the Plan
// workflow, and the LoadTest workflow's passed, SLO-missed and canary-gate runs) against
// today's code. A change to the order of commands without workflow.GetVersion fails here
// with a nondeterminism error.
func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	var release, loadTest int
	for _, f := range files {
		switch base := filepath.Base(f); {
		case strings.HasPrefix(base, "release_"):
			release++
		case strings.HasPrefix(base, "loadtest_"):
			loadTest++
		}
	}
	require.GreaterOrEqual(t, release, 10, "a history per path of the Release workflow")
	require.GreaterOrEqual(t, loadTest, 3, "the LoadTest workflow's histories: passed, an SLO missed, a canary gate")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			RegisterAll(r) // exactly what the worker registers

			id, ok := replayIDs[historyName(f)]
			if !ok {
				require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
				return
			}
			fh, err := os.Open(f)
			require.NoError(t, err)
			defer func() { _ = fh.Close() }() // opened read-only
			hist, err := client.HistoryFromJSON(fh, client.HistoryJSONOptions{})
			require.NoError(t, err)
			require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, hist, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: id, RunID: "replay"},
			}))
		})
	}
}

// replayIDs are the workflow IDs the histories were recorded under, for those whose commands
// depend on their own ID (a child workflow's ID derived from its parent's, such as the canary
// load test's, CanaryLoadTestWorkflowID): the replayer otherwise runs them as "ReplayId".
var replayIDs = map[string]string{
	"release_canary_load_test": ReleaseWorkflowID("staging", "release_canary_load_test"),
}

// historyName is a history file's path without its directory, copy number and ".json"
// (testdata/release_happy.2.json → release_happy).
func historyName(path string) string {
	name := strings.TrimSuffix(filepath.Base(path), ".json")
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		name = name[:i]
	}
	return name
}
