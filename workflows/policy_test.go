package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/spec"
)

// A spec that sets no policy at all, as a newcomer writes it.
const barePolicySpec = `environment: bare
clusters:
  - name: a
  - name: b
    wave: 2
services:
  - name: web
    image: shop/web
    version: 1.2.3
    port: 8080
  - name: worker
    image: shop/worker
    version: 2.0.0
`

// TestPolicyIsTheDefaultedSpec: the workflow's policies are exactly what spec.ApplyDefaults
// wrote into the spec (the one owner of defaults), field by field, for a spec that sets none.
func TestPolicyIsTheDefaultedSpec(t *testing.T) {
	env, err := spec.Parse("bare.yaml", []byte(barePolicySpec)) // parses and applies the defaults
	require.NoError(t, err)
	require.NoError(t, spec.CheckDefaulted(*env))
	for _, s := range env.Services {
		p := resolvePolicy(s)
		require.Equal(t, s.Replicas, p.Replicas)
		require.Equal(t, s.Port, p.Port)
		require.Equal(t, s.StopGrace.D(), p.StopGrace)
		require.Equal(t, s.Health.Deadline.D(), p.HealthDeadline)
		require.Equal(t, s.Canary.Skip, p.CanarySkip)
		require.Equal(t, s.Canary.Replicas, p.CanaryReplicas)
		require.Equal(t, s.Canary.Soak.D(), p.Soak)
		require.Equal(t, s.Canary.Approval.Required, p.Approval)
		require.Equal(t, s.Canary.Approval.Timeout.D(), p.ApprovalWait)
		require.Equal(t, s.Canary.Approval.OnTimeout, p.OnTimeout)
		require.Equal(t, s.Rollout.BatchSize, p.BatchSize)
		require.Equal(t, s.Rollout.Pause.D(), p.BatchPause)
		require.Equal(t, *s.Verification, p.Verify)
		require.Equal(t, s.Rollback.Scope, p.Scope)
		require.Equal(t, s.Rollback.KeepPrevious, p.KeepPrevious)
	}
	// And those are the documented built-in defaults.
	web := resolvePolicy(env.Services[0])
	require.Equal(t, spec.DefaultSoak, web.Soak)
	require.Equal(t, spec.DefaultVerificationDuration, web.Verify.Duration.D())
	require.Equal(t, spec.DefaultVerificationInterval, web.Verify.Interval.D())
	require.Equal(t, spec.DefaultMinSamples, web.Verify.MinSamples)
	require.Equal(t, spec.DefaultHealthDeadline, web.HealthDeadline)
	require.Equal(t, 10*time.Second, web.StopGrace)
	require.True(t, resolvePolicy(env.Services[1]).Verify.Skip, "no port: nothing to verify over HTTP")
}

// TestCheckDefaulted names what a spec that skipped ApplyDefaults lacks.
func TestCheckDefaulted(t *testing.T) {
	env, err := spec.Parse("bare.yaml", []byte(barePolicySpec))
	require.NoError(t, err)
	for name, mod := range map[string]func(*spec.Environment){
		"services[web].health.deadline is not set":            func(e *spec.Environment) { e.Services[0].Health = nil },
		"services[web].verification.interval is not set":      func(e *spec.Environment) { e.Services[0].Verification.Interval = 0 },
		"services[worker].canary.soak is not set":             func(e *spec.Environment) { e.Services[1].Canary.Soak = 0 },
		"no cluster is the canary cluster":                    func(e *spec.Environment) { e.Clusters[0].Canary = false },
		"services[web].rollback.scope is not set":             func(e *spec.Environment) { e.Services[0].Rollback = nil },
		"services[web].verification.requests is not set":      func(e *spec.Environment) { e.Services[0].Verification.Requests = nil },
		"services[worker].canary.approval.timeout is not set": func(e *spec.Environment) { e.Services[1].Canary.Approval = nil },
	} {
		bad := *env
		bad.Clusters = append([]spec.Cluster(nil), env.Clusters...)
		bad.Services = nil
		for _, s := range env.Services {
			c := s
			h, cn, v, rb := *s.Health, *s.Canary, *s.Verification, *s.Rollback
			ap := *s.Canary.Approval
			cn.Approval = &ap
			c.Health, c.Canary, c.Verification, c.Rollback = &h, &cn, &v, &rb
			bad.Services = append(bad.Services, c)
		}
		mod(&bad)
		require.EqualError(t, spec.CheckDefaulted(bad), name)
	}
}
