package workflows

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/slipwayhq/slipway/spec"
)

// secretSpec is a parsed spec whose service web names the secret web-db-password.
func secretSpec(t *testing.T, version string) spec.Environment {
	t.Helper()
	env, err := spec.Parse("staging.yaml", []byte(`
environment: staging
clusters: [{name: a, wave: 1}, {name: b, wave: 2}]
services:
  - name: web
    image: slipway/demo
    version: "`+version+`"
    replicas: 2
    port: 8080
    env: {LOG_LEVEL: info}
    secrets: {DB_PASSWORD: web-db-password}
    health: {http_path: /healthz}
    rollout: {batch_size: 1}
    verification: {interval: 1s, duration: 5s, min_samples: 5, max_error_rate: 0.05}
`))
	require.NoError(t, err)
	return *env
}

// TestReleaseInputCarriesSecretNames documents the contract of secrets through the
// workflow: the Release input (what Temporal stores in the history and shows in the Web UI)
// holds the secret's name, which the spec is the only source of, and every StartReplicas
// input the workflow schedules carries the names on to the worker, which resolves them.
// A workflow that dropped them would start containers without their secrets.
func TestReleaseInputCarriesSecretNames(t *testing.T) {
	in := ReleaseInput{Spec: secretSpec(t, "1.1.0")}
	j, err := json.Marshal(in)
	require.NoError(t, err)
	require.Contains(t, string(j), `"secrets":{"DB_PASSWORD":"web-db-password"}`)
	require.Contains(t, string(j), `"env":{"LOG_LEVEL":"info"}`)

	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	var mu sync.Mutex
	var starts []StartReplicasInput
	st, _ := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
			if info.ActivityType.Name != ActivityStartReplicas {
				return
			}
			var s StartReplicasInput
			require.NoError(t, args.Get(&s))
			mu.Lock()
			starts = append(starts, s)
			mu.Unlock()
		})
	})
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.Len(t, starts, 5, "canary + 2 batches on each of 2 clusters")
	for _, s := range starts {
		require.Equal(t, map[string]string{"DB_PASSWORD": "web-db-password"}, s.Service.Secrets, "StartReplicas %v on %s", s.Slots, s.Target.Cluster)
		require.Equal(t, map[string]string{"LOG_LEVEL": "info"}, s.Service.Env)
	}
}

// TestReleaseSecretMissingIsNotRetried: a SecretMissing error from StartReplicas (the
// worker lacks the secret) is permanent: even if an activity forgot to mark it
// non-retryable, the retry policy does not try again, and the release rolls back with a
// reason naming the secret.
func TestReleaseSecretMissingIsNotRetried(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	attempts := 0
	st, _ := run(t, w, ReleaseInput{Spec: secretSpec(t, "1.1.0")}, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(ActivityStartReplicas, mock.Anything, mock.Anything).Return(
			func(context.Context, StartReplicasInput) (StartReplicasResult, error) {
				attempts++
				// Retryable on purpose: the policy's NonRetryableErrorTypes must stop it.
				return StartReplicasResult{}, temporal.NewApplicationError(
					`service web: secret "web-db-password" (for DB_PASSWORD) is missing on this worker: no file /etc/slipway/secrets/web-db-password`, ErrSecretMissing)
			})
	})
	require.Equal(t, 1, attempts, "SecretMissing was retried")
	require.Equal(t, OutcomeRolledBack, st.Outcome, st.Reason)
	require.True(t, strings.Contains(st.Reason, "web-db-password") || hasEvent(st, "web-db-password"),
		"neither the reason nor an event names the missing secret: %s", st.Reason)
	requireServing(t, w, "a", "web", "1.0.0", 2)
	requireServing(t, w, "b", "web", "1.0.0", 2)
}
