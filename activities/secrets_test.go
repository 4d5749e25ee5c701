package activities_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// secretsDir writes one secret file (mode 0600, trailing newline) with a fresh random value
// and returns the directory and the value.
func secretsDir(t *testing.T, name string) (string, string) {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	value := "s3cret-" + hex.EncodeToString(b)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(value+"\n"), 0o600))
	return dir, value
}

// containerEnv reads a container's environment with the docker CLI (the engine port has no
// way to read it back, on purpose).
func containerEnv(t *testing.T, name string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "inspect", "--format", "{{json .Config.Env}}", name).Output()
	require.NoError(t, err, "docker inspect %s", name)
	var env []string
	require.NoError(t, json.Unmarshal(out, &env))
	return env
}

// heartbeats records every heartbeat's details as JSON.
type heartbeats struct {
	mu  sync.Mutex
	all []string
}

func (h *heartbeats) listen(t *testing.T, ae *testsuite.TestActivityEnvironment) {
	ae.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var d any // Slipway's activities heartbeat one value
		if details.HasValues() {
			if err := details.Get(&d); err != nil {
				t.Errorf("heartbeat details: %v", err)
			}
		}
		j, err := json.Marshal(d)
		if err != nil {
			t.Errorf("heartbeat details: %v", err)
		}
		h.mu.Lock()
		h.all = append(h.all, string(j))
		h.mu.Unlock()
	})
}

// startListened runs StartReplicas with in and returns its result and every heartbeat it
// sent.
func (f *fixture) startListened(t *testing.T, in workflows.StartReplicasInput) (workflows.StartReplicasResult, *heartbeats) {
	t.Helper()
	ae := f.activityEnv()
	hb := &heartbeats{}
	hb.listen(t, ae)
	v, err := ae.ExecuteActivity(workflows.ActivityStartReplicas, in)
	require.NoError(t, err)
	var res workflows.StartReplicasResult
	require.NoError(t, v.Get(&res))
	return res, hb
}

func (h *heartbeats) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.all...)
}

// TestStartReplicasResolvesSecrets runs StartReplicas on the real engine for a service with
// a secret: the container's environment has the value (read back with docker inspect), the
// env of the spec beside it; the activity's input, result and every heartbeat carry the
// secret's name at most, never its value.
func TestStartReplicasResolvesSecrets(t *testing.T) {
	f := newFixture(t)
	dir, value := secretsDir(t, "web-db-password")
	f.acts = activities.New(f.dialer, activities.Options{HeartbeatEvery: 100 * time.Millisecond, Secrets: activities.DirSecrets(dir)})

	svc := demo("1.0.0", func(s *spec.Service) {
		s.Env = map[string]string{"LOG_LEVEL": "debug"}
		s.Secrets = map[string]string{"DB_PASSWORD": "web-db-password"}
	})
	in := workflows.StartReplicasInput{Target: f.target, Release: "r1", Role: engine.RoleStable, Service: svc, Slots: []int{0, 1}, Attach: true, HealthDeadline: 20 * time.Second}
	res, hb := f.startListened(t, in)
	require.Len(t, res.Containers, 2)

	for _, c := range res.Containers {
		env := containerEnv(t, c.Name)
		require.Contains(t, env, "DB_PASSWORD="+value, "the secret is not in %s's environment", c.Name)
		require.Contains(t, env, "LOG_LEVEL=debug")
	}

	input, err := json.Marshal(in)
	require.NoError(t, err)
	require.Contains(t, string(input), `"secrets":{"DB_PASSWORD":"web-db-password"}`)
	result, err := json.Marshal(res)
	require.NoError(t, err)
	beats := hb.get()
	require.NotEmpty(t, beats, "StartReplicas heartbeats when a slot is healthy: nothing was checked")
	for what, s := range map[string]string{"input": string(input), "result": string(result), "heartbeats": strings.Join(beats, "\n")} {
		require.NotContains(t, s, value, "the secret's value is in the activity's %s", what)
		require.NotContains(t, s, strings.TrimPrefix(value, "s3cret-"), "part of the secret's value is in the activity's %s", what)
	}
	// Idempotent: a second call finds the containers and changes nothing.
	res, _ = f.startListened(t, in)
	require.Equal(t, []string{"slipway." + f.env + ".a.web.1.0.0.0", "slipway." + f.env + ".a.web.1.0.0.1"}, names(res.Containers))
}

// TestStartReplicasSecretMissing: a secret the worker does not have (or no secrets at all
// on the worker) fails StartReplicas with a non-retryable SecretMissing error that names
// the secret and the service, before any container is created.
func TestStartReplicasSecretMissing(t *testing.T) {
	f := newFixture(t)
	dir, value := secretsDir(t, "other-secret")
	svc := demo("1.0.0", func(s *spec.Service) { s.Secrets = map[string]string{"DB_PASSWORD": "web-db-password"} })
	for name, opts := range map[string]activities.Options{
		"not in the directory":  {Secrets: activities.DirSecrets(dir)},
		"no secrets configured": {},
	} {
		t.Run(name, func(t *testing.T) {
			f.acts = activities.New(f.dialer, opts)
			_, err := f.start(svc, engine.RoleStable, 0)
			require.Error(t, err)
			ae := appErr(t, err)
			require.Equal(t, workflows.ErrSecretMissing, ae.Type())
			require.True(t, ae.NonRetryable())
			require.Contains(t, ae.Message(), `secret "web-db-password" (for DB_PASSWORD)`)
			require.Contains(t, ae.Message(), "service web")
			require.NotContains(t, err.Error(), value)
			require.Empty(t, f.inspect().Clusters[0].Services, "a container was created without its secret")
		})
	}

	// A secret file others can read is refused the same way, with the fix in the message.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web-db-password"), []byte(value), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(dir, "web-db-password"), 0o644))
	f.acts = activities.New(f.dialer, activities.Options{Secrets: activities.DirSecrets(dir)})
	_, err := f.start(svc, engine.RoleStable, 0)
	ae := appErr(t, err)
	require.Equal(t, workflows.ErrSecretMissing, ae.Type())
	require.Contains(t, ae.Message(), "chmod 600")
	require.NotContains(t, err.Error(), value)
	require.Empty(t, f.inspect().Clusters[0].Services)
}

// TestScaleOutResolvesSecrets: the load test's scale-out starts its extra replicas through
// the same path, so they get the service's secrets too; its result and heartbeats carry no
// value.
func TestScaleOutResolvesSecrets(t *testing.T) {
	f := newFixture(t)
	dir, value := secretsDir(t, "web-db-password")
	secrets := activities.DirSecrets(dir)
	f.acts = activities.New(f.dialer, activities.Options{HeartbeatEvery: 100 * time.Millisecond, Secrets: secrets})
	svc := demo("1.0.0", func(s *spec.Service) { s.Secrets = map[string]string{"DB_PASSWORD": "web-db-password"} })
	_, err := f.activityEnv().ExecuteActivity(workflows.ActivityStartReplicas, workflows.StartReplicasInput{
		Target: f.target, Release: "r1", Role: engine.RoleStable, Service: svc, Slots: []int{0}, Attach: true, HealthDeadline: 20 * time.Second})
	require.NoError(t, err)

	var s testsuite.WorkflowTestSuite
	ae := s.NewTestActivityEnvironment()
	lt := activities.NewLoadTest(f.dialer, activities.LoadTestOptions{HeartbeatEvery: 100 * time.Millisecond, Secrets: secrets})
	activities.RegisterLoadTest(ae, lt)
	var hb heartbeats
	hb.listen(t, ae)
	in := workflows.LoadTestScaleInput{Target: f.target, RunID: "loadtest-" + f.env + "-1", Service: svc, Factor: 2, HealthDeadline: 20 * time.Second}
	v, err := ae.ExecuteActivity(workflows.ActivityLoadTestScaleOut, in)
	require.NoError(t, err)
	var out workflows.LoadTestScaleResult
	require.NoError(t, v.Get(&out))
	require.Len(t, out.Containers, 1)
	require.Contains(t, containerEnv(t, out.Containers[0]), "DB_PASSWORD="+value)
	result, err := json.Marshal(out)
	require.NoError(t, err)
	require.NotContains(t, string(result), value)
	beats := hb.get()
	require.NotEmpty(t, beats)
	require.NotContains(t, strings.Join(beats, "\n"), value)

	// Without the secret source the scale-out refuses, like StartReplicas.
	ae2 := s.NewTestActivityEnvironment()
	activities.RegisterLoadTest(ae2, activities.NewLoadTest(f.dialer, activities.LoadTestOptions{}))
	in.RunID = "loadtest-" + f.env + "-2"
	_, err = ae2.ExecuteActivity(workflows.ActivityLoadTestScaleOut, in)
	require.Equal(t, workflows.ErrSecretMissing, appErr(t, err).Type())
}
