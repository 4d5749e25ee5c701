package workflows

import (
	"fmt"
	"sort"
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

// serviceClusters returns the clusters a service runs on, in spec order.
func serviceClusters(env spec.Environment, s spec.Service) []spec.Cluster {
	if len(s.Clusters) == 0 {
		return append([]spec.Cluster(nil), env.Clusters...)
	}
	want := map[string]bool{}
	for _, c := range s.Clusters {
		want[c] = true
	}
	var out []spec.Cluster
	for _, c := range env.Clusters {
		if want[c.Name] {
			out = append(out, c)
		}
	}
	return out
}

// canaryCluster is where a service's canaries are onboarded: the cluster the spec marks as
// canary when the service runs there, else the first cluster of the lowest wave.
func canaryCluster(env spec.Environment, s spec.Service) string {
	cs := serviceClusters(env, s)
	for _, c := range cs {
		if c.Canary {
			return c.Name
		}
	}
	best, bestWave := "", 0
	for _, c := range cs {
		if w := waveOf(c); best == "" || w < bestWave {
			best, bestWave = c.Name, w
		}
	}
	return best
}

// serviceLayers orders services by depends_on: layer 0 depends on nothing in the set, layer
// n only on services of earlier layers. Dependencies outside the set are ignored (they do
// not change). Names are sorted inside a layer. A cycle is an error naming its members.
func serviceLayers(env spec.Environment, names []string) ([][]string, error) {
	in := map[string]bool{}
	for _, n := range names {
		in[n] = true
	}
	deps := map[string][]string{}
	for _, s := range env.Services {
		if !in[s.Name] {
			continue
		}
		for _, d := range s.DependsOn {
			if in[d] && d != s.Name {
				deps[s.Name] = append(deps[s.Name], d)
			}
		}
	}
	done := map[string]bool{}
	var layers [][]string
	remaining := append([]string(nil), names...)
	sort.Strings(remaining)
	for len(remaining) > 0 {
		var layer, rest []string
		for _, n := range remaining {
			ready := true
			for _, d := range deps[n] {
				if !done[d] {
					ready = false
					break
				}
			}
			if ready {
				layer = append(layer, n)
			} else {
				rest = append(rest, n)
			}
		}
		if len(layer) == 0 {
			return nil, fmt.Errorf("depends_on cycle among services %v", rest)
		}
		for _, n := range layer {
			done[n] = true
		}
		layers = append(layers, layer)
		remaining = rest
	}
	return layers, nil
}

// findService returns the named service of the spec.
func findService(env spec.Environment, name string) (spec.Service, bool) {
	for _, s := range env.Services {
		if s.Name == name {
			return s, true
		}
	}
	return spec.Service{}, false
}

// findCluster returns the named cluster of the spec.
func findCluster(env spec.Environment, name string) (spec.Cluster, bool) {
	for _, c := range env.Clusters {
		if c.Name == name {
			return c, true
		}
	}
	return spec.Cluster{}, false
}

// replicasOn caps a service's replicas by the cluster's policy.
func replicasOn(c spec.Cluster, n int) int {
	if c.Policy.MaxReplicas > 0 && n > c.Policy.MaxReplicas {
		return c.Policy.MaxReplicas
	}
	return n
}
