package activities

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// TestSecretsContainerSpecPerKind: on a plain engine a secret is an environment variable and
// placement and reservations are left out; on a swarm it is a file (Secrets, one per secret
// name) and <VAR>_FILE, never a variable with the value, with the cluster's placement
// before the service's and the reservations.
func TestSecretsContainerSpecPerKind(t *testing.T) {
	s := spec.Service{Name: "web", Image: "slipway/demo", Version: "1", Env: map[string]string{"LOG_LEVEL": "info"},
		Secrets:   map[string]string{"DB_PASSWORD": "db-pw", "DB_PASSWORD_COPY": "db-pw", "API_KEY": "api-key"},
		Resources: &spec.Resources{Memory: "64Mi", ReserveMemory: "16Mi", ReserveCPUs: 0.5},
		Placement: &spec.Placement{Constraints: []string{"node.labels.tier==frontend", "node.role==worker"}, Preferences: []spec.PlacementPreference{{Spread: "node.labels.zone"}}}}
	values := map[string]string{"DB_PASSWORD": "pw-value", "DB_PASSWORD_COPY": "pw-value", "API_KEY": "key-value"}
	policy := spec.ClusterPolicy{Placement: &spec.Placement{Constraints: []string{"node.role==worker"}}}

	plain, err := containerSpec(workflows.Target{Environment: "e", Cluster: "a", Policy: policy}, "r1", engine.RoleStable, s, 0, values)
	require.NoError(t, err)
	require.Equal(t, "pw-value", plain.Env["DB_PASSWORD"])
	require.Empty(t, plain.Secrets)
	require.Empty(t, plain.Placement.Constraints)
	require.Zero(t, plain.ReserveMemoryBytes)
	require.Zero(t, plain.ReserveNanoCPUs)

	sw, err := containerSpec(workflows.Target{Environment: "e", Cluster: "s", Kind: spec.KindSwarm, Policy: policy}, "r1", engine.RoleStable, s, 0, values)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"LOG_LEVEL":             "info",
		"DB_PASSWORD_FILE":      "/run/secrets/db-pw",
		"DB_PASSWORD_COPY_FILE": "/run/secrets/db-pw",
		"API_KEY_FILE":          "/run/secrets/api-key",
	}, sw.Env)
	require.Equal(t, []engine.SecretFile{{Name: "api-key", Value: "key-value"}, {Name: "db-pw", Value: "pw-value"}}, sw.Secrets)
	require.Equal(t, []string{"node.role==worker", "node.labels.tier==frontend"}, sw.Placement.Constraints)
	require.Equal(t, []string{"node.labels.zone"}, sw.Placement.Spread)
	require.Equal(t, int64(16<<20), sw.ReserveMemoryBytes)
	require.Equal(t, int64(5e8), sw.ReserveNanoCPUs)
	j, err := json.Marshal(sw)
	require.NoError(t, err)
	require.NotContains(t, string(j), "pw-value", "a container spec's JSON carries a secret's value")

	// A variable the _FILE of a secret would take is refused, naming no value.
	s.Env["API_KEY_FILE"] = "/elsewhere"
	_, err = containerSpec(workflows.Target{Environment: "e", Cluster: "s", Kind: spec.KindSwarm}, "r1", engine.RoleStable, s, 0, values)
	require.Error(t, err)
	require.Contains(t, err.Error(), "API_KEY_FILE")
	require.False(t, strings.Contains(err.Error(), "key-value"))
}
