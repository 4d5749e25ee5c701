package spec

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Built-in defaults, applied by ApplyDefaults after a service's own fields and the
// environment's defaults: block. docs/spec.md lists each with its field.
const (
	DefaultReplicas        = 1
	DefaultCanaryReplicas  = 1
	DefaultSoak            = 30 * time.Second
	DefaultApprovalTimeout = 30 * time.Minute
	DefaultOnTimeout       = OnTimeoutRollback
	DefaultHealthInterval  = 2 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
	DefaultHealthRetries   = 3
	DefaultHealthDeadline  = 60 * time.Second
	DefaultBatchSize       = 1
	// DefaultMaxParallelServices caps how many services one release changes at once when
	// the spec says nothing (rollout.max_parallel_services): controlled onboarding, "never too many
	// services at once". Uncapped, the 48 services of one depends_on layer of a 120-service
	// release started together, drove a 2-core machine's load to 30 and rolled the release
	// back on missed heartbeats (BENCHMARKS.md, the 120-service release); 40 uncapped
	// succeeded. Eight keeps a typical environment's release (a handful of services)
	// unchanged and a large one a steady stream.
	DefaultMaxParallelServices = 8
	// DefaultVerificationInterval: every replica gets each request 100 times a second, so a
	// 10 s window holds 1,000 pairs per canary replica: enough to tell 5 % errors from 0.5 %
	// at the default confidence (see docs/spec.md, "How a verdict is reached").
	DefaultVerificationInterval = 10 * time.Millisecond
	DefaultVerificationDuration = 10 * time.Second
	// DefaultMinSamples is the fewest valid canary/stable pairs (samples, without stable) a
	// verdict needs; below it the verdict is inconclusive.
	DefaultMinSamples      = 700
	DefaultMaxErrorRate    = 0.01
	DefaultConfidence      = 0.999
	DefaultMaxLatencyRatio = 1.5
	DefaultProbeMethod     = "GET"
	DefaultProbePath       = "/"
	// DefaultExpectStatus is what load tests expect of a request that names no status.
	// Verification requests have no default: without one, the canary must answer like
	// stable (same status class, no 5xx, no transport error).
	DefaultExpectStatus = 200
	DefaultProbeTimeout = 2 * time.Second
	DefaultScope        = ScopeRelease
	DefaultKeepPrevious = KeepRunning
	DefaultScaleFactor  = 1
)

// ApplyDefaults completes an Environment so the workflow sees every policy spelled out:
//
//   - rollout.max_parallel_services gets DefaultMaxParallelServices when it is 0 or unset;
//   - clusters get wave 1 when they have none; when no cluster says canary: true, the first
//     cluster (in file order) of the lowest wave becomes the canary cluster;
//   - a service with no clusters runs on every cluster (the list is filled in, file order);
//   - a service inherits the defaults: block field by field (a block the service lacks is
//     copied whole; a boolean is inherited only with its whole block, so a service can turn
//     a default skip/required off by writing the block), then the built-in defaults fill
//     what is still unset (see the Default* constants);
//   - health, canary (with approval), rollout, verification and rollback are never nil
//     afterwards; resources stays nil when neither service nor defaults limit anything;
//   - a service without a port is not verified over HTTP (verification.skip = true);
//   - load tests get their service's clusters, its verification requests and scale factor 1.
//
// ApplyDefaults is idempotent, also after a JSON round trip. Parse calls it.
func ApplyDefaults(env *Environment) {
	setIfZero(&env.Rollout.MaxParallelServices, DefaultMaxParallelServices)
	for i := range env.Clusters {
		if env.Clusters[i].Wave == 0 {
			env.Clusters[i].Wave = DefaultWave
		}
		setIfZero(&env.Clusters[i].Probes, ProbesEngine)
	}
	if len(env.Clusters) > 0 && !slices.ContainsFunc(env.Clusters, func(c Cluster) bool { return c.Canary }) {
		best := 0
		for i, c := range env.Clusters {
			if c.Wave < env.Clusters[best].Wave {
				best = i
			}
		}
		env.Clusters[best].Canary = true
	}
	for i := range env.Services {
		s := &env.Services[i]
		ownLoadTest := s.Canary != nil && s.Canary.LoadTest != ""
		inheritDefaults(s, &env.Defaults)
		// defaults.canary.load_test gates only the services its load test targets.
		if !ownLoadTest && s.Canary != nil && s.Canary.LoadTest != "" {
			if lt := env.loadTest(s.Canary.LoadTest); lt == nil || lt.Service != s.Name {
				s.Canary.LoadTest = ""
			}
		}
		builtinDefaults(env, s)
	}
	for i := range env.LoadTests {
		lt := &env.LoadTests[i]
		svc, ok := env.Service(lt.Service)
		if len(lt.Clusters) == 0 && ok {
			lt.Clusters = slices.Clone(svc.Clusters)
		}
		if len(lt.Requests) == 0 {
			lt.Requests = []Probe{{Path: DefaultProbePath}}
		}
		for j := range lt.Requests {
			probeDefaults(&lt.Requests[j])
		}
		if lt.ScaleFactor == 0 {
			lt.ScaleFactor = DefaultScaleFactor
		}
	}
}

// inheritDefaults fills the service's unset fields from the environment's defaults block.
func inheritDefaults(s *Service, d *ServiceDefaults) {
	if s.Replicas == 0 {
		s.Replicas = d.Replicas
	}
	if d.Resources != nil {
		if s.Resources == nil {
			s.Resources = &Resources{}
		}
		setIfZero(&s.Resources.Memory, d.Resources.Memory)
		setIfZero(&s.Resources.CPUs, d.Resources.CPUs)
		setIfZero(&s.Resources.ReserveMemory, d.Resources.ReserveMemory)
		setIfZero(&s.Resources.ReserveCPUs, d.Resources.ReserveCPUs)
	}
	if d.Health != nil {
		if s.Health == nil {
			s.Health = cloneHealth(d.Health)
		} else {
			h, dh := s.Health, d.Health
			if !h.Image {
				setIfZero(&h.HTTPPath, dh.HTTPPath)
			}
			setIfZero(&h.Interval, dh.Interval)
			setIfZero(&h.Timeout, dh.Timeout)
			setIfZero(&h.Retries, dh.Retries)
			setIfZero(&h.StartPeriod, dh.StartPeriod)
			setIfZero(&h.Deadline, dh.Deadline)
		}
	}
	if d.Canary != nil {
		if s.Canary == nil {
			s.Canary = cloneCanary(d.Canary)
		} else {
			c, dc := s.Canary, d.Canary
			setIfZero(&c.Replicas, dc.Replicas)
			setIfZero(&c.Soak, dc.Soak)
			setIfZero(&c.LoadTest, dc.LoadTest)
			if dc.Approval != nil {
				if c.Approval == nil {
					a := *dc.Approval
					c.Approval = &a
				} else {
					setIfZero(&c.Approval.Timeout, dc.Approval.Timeout)
					setIfZero(&c.Approval.OnTimeout, dc.Approval.OnTimeout)
				}
			}
		}
	}
	if d.Rollout != nil {
		if s.Rollout == nil {
			r := *d.Rollout
			s.Rollout = &r
		} else {
			setIfZero(&s.Rollout.BatchSize, d.Rollout.BatchSize)
			setIfZero(&s.Rollout.Pause, d.Rollout.Pause)
		}
	}
	if d.Verification != nil {
		if s.Verification == nil {
			s.Verification = cloneVerification(d.Verification)
		} else {
			v, dv := s.Verification, d.Verification
			if len(v.Requests) == 0 {
				v.Requests = cloneProbes(dv.Requests)
			}
			setIfZero(&v.Interval, dv.Interval)
			setIfZero(&v.Duration, dv.Duration)
			setIfZero(&v.MinSamples, dv.MinSamples)
			setIfZero(&v.MaxErrorRate, dv.MaxErrorRate)
			setIfZero(&v.MaxP95Latency, dv.MaxP95Latency)
			setIfZero(&v.MaxLatencyRatio, dv.MaxLatencyRatio)
			setIfZero(&v.Confidence, dv.Confidence)
			if v.Bake == nil {
				v.Bake = cloneDuration(dv.Bake)
			}
		}
	}
	if d.Rollback != nil {
		if s.Rollback == nil {
			r := *d.Rollback
			s.Rollback = &r
		} else {
			setIfZero(&s.Rollback.Scope, d.Rollback.Scope)
			setIfZero(&s.Rollback.KeepPrevious, d.Rollback.KeepPrevious)
		}
	}
}

// DefaultBake is verification.bake when unset: how long the new replicas stay watched
// after a service's last wave before the release may finish. MaxBake is the longest a spec
// may ask for.
const (
	DefaultBake = 30 * time.Second
	MaxBake     = 24 * time.Hour
)

// DefaultStopGrace is services[].stop_grace when unset: how long a replica that is stopped
// gets between SIGTERM and SIGKILL. MaxStopGrace is the longest a spec may ask for.
const (
	DefaultStopGrace = 10 * time.Second
	MaxStopGrace     = 5 * time.Minute
)

// builtinDefaults fills what neither the service nor the defaults block set.
func builtinDefaults(env *Environment, s *Service) {
	setIfZero(&s.Replicas, DefaultReplicas)
	setIfZero(&s.StopGrace, Duration(DefaultStopGrace))
	if len(s.Clusters) == 0 {
		for _, c := range env.Clusters {
			s.Clusters = append(s.Clusters, c.Name)
		}
	}
	if s.Health == nil {
		s.Health = &Health{}
	}
	setIfZero(&s.Health.Interval, Duration(DefaultHealthInterval))
	setIfZero(&s.Health.Timeout, Duration(DefaultHealthTimeout))
	setIfZero(&s.Health.Retries, DefaultHealthRetries)
	setIfZero(&s.Health.Deadline, Duration(DefaultHealthDeadline))

	if s.Canary == nil {
		s.Canary = &Canary{}
	}
	setIfZero(&s.Canary.Replicas, DefaultCanaryReplicas)
	setIfZero(&s.Canary.Soak, Duration(DefaultSoak))
	if s.Canary.Approval == nil {
		s.Canary.Approval = &Approval{}
	}
	setIfZero(&s.Canary.Approval.Timeout, Duration(DefaultApprovalTimeout))
	setIfZero(&s.Canary.Approval.OnTimeout, DefaultOnTimeout)

	if s.Rollout == nil {
		s.Rollout = &Rollout{}
	}
	setIfZero(&s.Rollout.BatchSize, DefaultBatchSize)

	if s.Verification == nil {
		s.Verification = &Verification{}
	}
	v := s.Verification
	if s.Port == 0 {
		v.Skip = true // nothing to send HTTP requests to; health checks still apply
	}
	// Real routes, never the health path alone: a version can pass its health check and
	// fail every request.
	if len(v.Requests) == 0 && s.Port != 0 {
		v.Requests = []Probe{{Path: DefaultProbePath}}
	}
	for j := range v.Requests {
		setIfZero(&v.Requests[j].Method, DefaultProbeMethod)
		setIfZero(&v.Requests[j].Timeout, Duration(DefaultProbeTimeout))
	}
	setIfZero(&v.Interval, Duration(DefaultVerificationInterval))
	setIfZero(&v.Duration, Duration(DefaultVerificationDuration))
	setIfZero(&v.MinSamples, DefaultMinSamples)
	setIfZero(&v.MaxErrorRate, DefaultMaxErrorRate)
	setIfZero(&v.Confidence, DefaultConfidence)
	setIfZero(&v.MaxLatencyRatio, DefaultMaxLatencyRatio)
	if v.Bake == nil { // a pointer: 0s (no bake) is a value of its own
		b := Duration(DefaultBake)
		v.Bake = &b
	}

	if s.Rollback == nil {
		s.Rollback = &Rollback{}
	}
	setIfZero(&s.Rollback.Scope, DefaultScope)
	setIfZero(&s.Rollback.KeepPrevious, DefaultKeepPrevious)
}

func probeDefaults(p *Probe) {
	setIfZero(&p.Method, DefaultProbeMethod)
	setIfZero(&p.ExpectStatus, DefaultExpectStatus)
	setIfZero(&p.Timeout, Duration(DefaultProbeTimeout))
}

func setIfZero[T comparable](dst *T, v T) {
	var zero T
	if *dst == zero {
		*dst = v
	}
}

func cloneHealth(h *Health) *Health {
	c := *h
	return &c
}

func cloneCanary(c *Canary) *Canary {
	out := *c
	if c.Approval != nil {
		a := *c.Approval
		out.Approval = &a
	}
	return &out
}

func cloneVerification(v *Verification) *Verification {
	out := *v
	out.Requests = cloneProbes(v.Requests)
	out.Bake = cloneDuration(v.Bake)
	return &out
}

func cloneDuration(d *Duration) *Duration {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}

func cloneProbes(ps []Probe) []Probe {
	if ps == nil {
		return nil
	}
	out := make([]Probe, len(ps))
	for i, p := range ps {
		out[i] = p
		out[i].Headers = maps.Clone(p.Headers)
	}
	return out
}

// loadTest returns the load test of that name, nil when there is none.
func (env *Environment) loadTest(name string) *LoadTest {
	for i := range env.LoadTests {
		if env.LoadTests[i].Name == name {
			return &env.LoadTests[i]
		}
	}
	return nil
}

// CheckDefaulted reports the first policy ApplyDefaults would have filled in and the
// environment lacks. The workflows read policies only from the spec (ApplyDefaults is the one
// owner of every default), so a release refuses a spec that was not defaulted rather than
// guess. The list is fixed on purpose: a default added later must not make an older,
// already-defaulted spec fail this check.
func CheckDefaulted(env Environment) error {
	canary := 0
	for _, c := range env.Clusters {
		if c.Wave <= 0 {
			return fmt.Errorf("clusters[%s].wave is not set", c.Name)
		}
		if c.Canary {
			canary++
		}
	}
	if len(env.Clusters) > 0 && canary == 0 {
		return fmt.Errorf("no cluster is the canary cluster")
	}
	for _, s := range env.Services {
		missing := func(field string) error { return fmt.Errorf("services[%s].%s is not set", s.Name, field) }
		switch {
		case s.Replicas <= 0:
			return missing("replicas")
		case s.StopGrace <= 0:
			return missing("stop_grace")
		case len(s.Clusters) == 0:
			return missing("clusters")
		case s.Health == nil || s.Health.Deadline <= 0 || s.Health.Interval <= 0:
			return missing("health.deadline")
		case s.Canary == nil || s.Canary.Replicas <= 0 || s.Canary.Soak <= 0:
			return missing("canary.soak")
		case s.Canary.Approval == nil || s.Canary.Approval.Timeout <= 0 || s.Canary.Approval.OnTimeout == "":
			return missing("canary.approval.timeout")
		case s.Rollout == nil || s.Rollout.BatchSize <= 0:
			return missing("rollout.batch_size")
		case s.Rollback == nil || s.Rollback.Scope == "" || s.Rollback.KeepPrevious == "":
			return missing("rollback.scope")
		case s.Verification == nil:
			return missing("verification")
		}
		if v := s.Verification; !v.Skip {
			switch {
			case v.Interval <= 0 || v.Duration <= 0 || v.MinSamples <= 0:
				return missing("verification.interval")
			case len(v.Requests) == 0:
				return missing("verification.requests")
			}
			for i, p := range v.Requests {
				if p.Method == "" || p.Timeout <= 0 {
					return missing(fmt.Sprintf("verification.requests[%d].timeout", i))
				}
			}
		}
	}
	return nil
}
