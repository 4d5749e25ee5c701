package activities_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// dockerOn runs the docker CLI against host and returns its output.
func dockerOn(t *testing.T, host string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append([]string{"-H", host}, args...)...).Output()
	require.NoError(t, err, "docker %s", strings.Join(args, " "))
	return string(out)
}

// TestSwarmStartReplicasSecretsAsFiles runs StartReplicas onto a swarm (the test's own
// single-node swarm) for a service with a secret, a placement constraint and a reservation:
// the task containers have DB_PASSWORD_FILE=/run/secrets/<name> and no DB_PASSWORD; the
// value is in no docker inspect of the service or of a task container, nor in the
// activity's input, result or heartbeats; the Swarm service carries the cluster's and the
// service's constraints and the reservation.
func TestSwarmStartReplicasSecretsAsFiles(t *testing.T) {
	f := newFixture(t)
	host := testenv.SwarmDaemon(t)
	dir, value := secretsDir(t, "web-db-password")
	f.acts = activities.New(f.dialer, activities.Options{HeartbeatEvery: 100 * time.Millisecond, Secrets: activities.DirSecrets(dir)})
	target := workflows.Target{Environment: f.env, Cluster: "sw", Endpoint: host, Kind: spec.KindSwarm,
		Policy: spec.ClusterPolicy{Placement: &spec.Placement{Constraints: []string{"node.role==manager"}}}}
	t.Cleanup(func() { f.cleanup(target) })
	require.NoError(t, f.acts.EnsureNetwork(ctxT(t), workflows.EnsureNetworkInput{Target: target}))

	svc := demo("1.0.0", func(s *spec.Service) {
		s.Env = map[string]string{"LOG_LEVEL": "debug"}
		s.Secrets = map[string]string{"DB_PASSWORD": "web-db-password"}
		s.Resources = &spec.Resources{Memory: "64Mi", ReserveMemory: "16Mi", ReserveCPUs: 0.1}
		s.Placement = &spec.Placement{Constraints: []string{"node.platform.os==linux"}, Preferences: []spec.PlacementPreference{{Spread: "node.labels.zone"}}}
	})
	in := workflows.StartReplicasInput{Target: target, Release: "r1", Role: engine.RoleStable, Service: svc, Slots: []int{0, 1}, Attach: true, HealthDeadline: 30 * time.Second}
	res, hb := f.startListened(t, in)
	require.Len(t, res.Containers, 2)

	for _, c := range res.Containers {
		require.NotEmpty(t, c.ID, "replica %s has no task container", c.Name)
		inspect := dockerOn(t, host, "inspect", c.ID)
		require.NotContains(t, inspect, value, "docker inspect of %s's task container shows the secret's value", c.Name)
		require.Contains(t, inspect, `"DB_PASSWORD_FILE=/run/secrets/web-db-password"`)
		require.Contains(t, inspect, `"LOG_LEVEL=debug"`)
		require.NotContains(t, inspect, `"DB_PASSWORD=`)
	}
	name := dockerengine.SwarmServiceName(engine.Key{Environment: f.env, Cluster: "sw", Service: "web", Version: "1.0.0"})
	svcJSON := dockerOn(t, host, "service", "inspect", name)
	require.NotContains(t, svcJSON, value, "docker service inspect shows the secret's value")
	for _, want := range []string{`"node.role==manager"`, `"node.platform.os==linux"`, `"SpreadDescriptor": "node.labels.zone"`, `"Reservations": {`, `"MemoryBytes": 16777216`, `"NanoCPUs": 100000000`} {
		require.Contains(t, svcJSON, want, "the swarm service's spec")
	}
	require.Contains(t, svcJSON, `"Name": "web-db-password"`, "the secret's file")

	result, err := json.Marshal(res)
	require.NoError(t, err)
	input, err := json.Marshal(in)
	require.NoError(t, err)
	for what, s := range map[string]string{"input": string(input), "result": string(result), "heartbeats": strings.Join(hb.get(), "\n")} {
		require.NotContains(t, s, value, "the secret's value is in the activity's %s", what)
	}
}
