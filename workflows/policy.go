package workflows

import (
	"time"

	"github.com/slipwayhq/slipway/spec"
)

// Fallback policy values. The starter runs spec.ApplyDefaults before a release starts, so a
// workflow normally sees every policy filled in; these only keep a hand-built input (tests,
// an older spec) from producing zero timeouts or zero replicas.
const (
	fallbackReplicas        = 1
	fallbackPort            = 8080
	fallbackHealthDeadline  = 60 * time.Second
	fallbackCanaryReplicas  = 1
	fallbackApprovalTimeout = 30 * time.Minute
	fallbackBatchSize       = 1
	fallbackVerifyInterval  = time.Second
	fallbackVerifyDuration  = 30 * time.Second
	fallbackMinSamples      = 10
	fallbackProbeTimeout    = 2 * time.Second
	// DefaultMaxPause is how long a release may stay paused before it rolls back, when the
	// input does not say (ReleaseInput.MaxPause).
	DefaultMaxPause = 24 * time.Hour
)

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

// resolvePolicy merges a service's own policies over the environment defaults and the
// fallbacks above.
func resolvePolicy(env spec.Environment, s spec.Service) policy {
	d := env.Defaults
	p := policy{
		Replicas:       firstInt(s.Replicas, d.Replicas, fallbackReplicas),
		Port:           firstInt(s.Port, fallbackPort),
		HealthDeadline: fallbackHealthDeadline,
		CanaryReplicas: fallbackCanaryReplicas,
		ApprovalWait:   fallbackApprovalTimeout,
		OnTimeout:      spec.OnTimeoutRollback,
		BatchSize:      fallbackBatchSize,
		Scope:          spec.ScopeRelease,
		KeepPrevious:   spec.KeepRunning,
		StopGrace:      spec.DefaultStopGrace,
	}
	if s.StopGrace > 0 {
		p.StopGrace = s.StopGrace.D()
	}
	if h := pick(s.Health, d.Health); h != nil && h.Deadline > 0 {
		p.HealthDeadline = h.Deadline.D()
	}
	v := spec.Verification{}
	if pv := pick(s.Verification, d.Verification); pv != nil {
		v = *pv
	}
	if len(v.Requests) == 0 {
		v.Requests = []spec.Probe{{Path: "/"}}
	}
	v.Requests = append([]spec.Probe(nil), v.Requests...)
	for i := range v.Requests {
		if v.Requests[i].Method == "" {
			v.Requests[i].Method = "GET"
		}
		if v.Requests[i].Timeout <= 0 {
			v.Requests[i].Timeout = spec.Duration(fallbackProbeTimeout)
		}
	}
	if v.Interval <= 0 {
		v.Interval = spec.Duration(fallbackVerifyInterval)
	}
	if v.Duration <= 0 {
		v.Duration = spec.Duration(fallbackVerifyDuration)
	}
	if v.MinSamples <= 0 {
		v.MinSamples = fallbackMinSamples
	}
	p.Verify = v
	p.Soak = v.Duration.D()
	if c := pick(s.Canary, d.Canary); c != nil {
		p.CanarySkip = c.Skip
		if c.Replicas > 0 {
			p.CanaryReplicas = c.Replicas
		}
		if c.Soak > 0 {
			p.Soak = c.Soak.D()
		}
		if c.Approval != nil {
			p.Approval = c.Approval.Required
			if c.Approval.Timeout > 0 {
				p.ApprovalWait = c.Approval.Timeout.D()
			}
			if c.Approval.OnTimeout != "" {
				p.OnTimeout = c.Approval.OnTimeout
			}
		}
	}
	if r := pick(s.Rollout, d.Rollout); r != nil {
		if r.BatchSize > 0 {
			p.BatchSize = r.BatchSize
		}
		p.BatchPause = r.Pause.D()
	}
	if r := pick(s.Rollback, d.Rollback); r != nil {
		if r.Scope != "" {
			p.Scope = r.Scope
		}
		if r.KeepPrevious != "" {
			p.KeepPrevious = r.KeepPrevious
		}
	}
	return p
}

func pick[T any](own, def *T) *T {
	if own != nil {
		return own
	}
	return def
}

func firstInt(vs ...int) int {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
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
