package workflows

import (
	"time"

	"github.com/slipwayhq/slipway/spec"
)

// DefaultMaxPause is how long a release may stay paused before it rolls back, when the input
// does not say (ReleaseInput.MaxPause).
const DefaultMaxPause = 24 * time.Hour

// policy is a service's resolved policies: every field usable as is.
type policy struct {
	Replicas       int
	Port           int
	HealthDeadline time.Duration
	CanarySkip     bool
	CanaryReplicas int
	Soak           time.Duration
	Approval       bool
	ApprovalWait   time.Duration
	OnTimeout      string
	BatchSize      int
	BatchPause     time.Duration
	Verify         spec.Verification
	Scope          string
	KeepPrevious   string
	// StopGrace is how long a replica gets between SIGTERM and SIGKILL when the release
	// stops it (services[].stop_grace).
	StopGrace time.Duration
}

// resolvePolicy reads a service's policies from the spec as spec.ApplyDefaults left it:
// ApplyDefaults owns every default (the environment's defaults block and the built-in ones),
// the starter applies it before anything starts, and a release refuses a spec that was not
// defaulted (spec.CheckDefaulted). Nothing here second-guesses it.
func resolvePolicy(s spec.Service) policy {
	p := policy{Replicas: s.Replicas, Port: s.Port, StopGrace: s.StopGrace.D()}
	if s.Health != nil {
		p.HealthDeadline = s.Health.Deadline.D()
	}
	if s.Verification != nil {
		p.Verify = *s.Verification
		p.Verify.Requests = append([]spec.Probe(nil), s.Verification.Requests...)
	}
	if c := s.Canary; c != nil {
		p.CanarySkip, p.CanaryReplicas, p.Soak = c.Skip, c.Replicas, c.Soak.D()
		if a := c.Approval; a != nil {
			p.Approval, p.ApprovalWait, p.OnTimeout = a.Required, a.Timeout.D(), a.OnTimeout
		}
	}
	if r := s.Rollout; r != nil {
		p.BatchSize, p.BatchPause = r.BatchSize, r.Pause.D()
	}
	if r := s.Rollback; r != nil {
		p.Scope, p.KeepPrevious = r.Scope, r.KeepPrevious
	}
	return p
}

// waveOf is a cluster's wave (default 1).
func waveOf(c spec.Cluster) int {
	if c.Wave <= 0 {
		return spec.DefaultWave
	}
	return c.Wave
}

// The spec package owns the topology rules (which clusters, which canary cluster, which
// order); these wrappers only adapt them to this package's call sites.

func serviceClusters(env spec.Environment, s spec.Service) []spec.Cluster {
	return env.ServiceClusters(s.Name)
}

func canaryCluster(env spec.Environment, s spec.Service) string {
	c, _ := env.ServiceCanaryCluster(s.Name)
	return c.Name
}

func serviceLayers(env spec.Environment, names []string) ([][]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	return env.ServiceOrder(names)
}

func findService(env spec.Environment, name string) (spec.Service, bool) { return env.Service(name) }

// replicasOn caps a service's replicas by the cluster's policy.
func replicasOn(c spec.Cluster, n int) int {
	if c.Policy.MaxReplicas > 0 && n > c.Policy.MaxReplicas {
		return c.Policy.MaxReplicas
	}
	return n
}
