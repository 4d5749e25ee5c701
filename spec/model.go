// Package spec is the deployment-spec model: one YAML file per environment that says what
// should run where. Decode reads a file strictly (unknown keys, wrong types and bad values are
// errors naming file:line:column and the field path); Validate checks cross-field rules;
// ApplyDefaults fills every service's policies so the workflow sees a complete picture.
//
// The decoded, validated, defaulted Environment is the Release workflow's input: it must
// survive a JSON round trip unchanged (Temporal's data converter is JSON).
package spec

import "time"

// Environment is one deployment spec file: the clusters of an environment and every service
// with its version.
type Environment struct {
	// Environment is the environment's name (a DNS label: lower-case letters, digits, '-').
	Environment string `yaml:"environment" json:"environment"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Clusters are the Docker engines (later Swarm managers) of this environment.
	Clusters []Cluster `yaml:"clusters" json:"clusters"`
	// Rollout holds environment-wide limits of controlled onboarding.
	Rollout EnvironmentRollout `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	// Defaults apply to every service that does not set the field itself.
	Defaults ServiceDefaults `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	Services []Service       `yaml:"services" json:"services"`
	// LoadTests are scheduled load tests (issue 6).
	LoadTests []LoadTest `yaml:"load_tests,omitempty" json:"load_tests,omitempty"`
}

// Cluster is one Docker engine endpoint.
type Cluster struct {
	Name string `yaml:"name" json:"name"`
	// Endpoint is a DOCKER_HOST-style URL: unix:///var/run/docker.sock, tcp://host:2376.
	// Empty means the worker's own environment (DOCKER_HOST or the default socket).
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// TLS files for a tcp:// endpoint (paths on the worker's machine).
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Wave orders the rollout: clusters of wave 1 first, then wave 2 ...; the clusters of one
	// wave change in parallel. Default 1.
	Wave int `yaml:"wave,omitempty" json:"wave,omitempty"`
	// Canary marks the cluster where canaries are onboarded. Default: the first cluster of
	// the lowest wave.
	Canary bool              `yaml:"canary,omitempty" json:"canary,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Policy ClusterPolicy     `yaml:"policy,omitempty" json:"policy,omitempty"`
}

// TLS names the client certificate files for a tcp:// endpoint.
type TLS struct {
	CA     string `yaml:"ca,omitempty" json:"ca,omitempty"`
	Cert   string `yaml:"cert,omitempty" json:"cert,omitempty"`
	Key    string `yaml:"key,omitempty" json:"key,omitempty"`
	Verify *bool  `yaml:"verify,omitempty" json:"verify,omitempty"`
}

// ClusterPolicy says what containers may do on a cluster. Everything is denied by default.
type ClusterPolicy struct {
	AllowPrivileged  bool `yaml:"allow_privileged,omitempty" json:"allow_privileged,omitempty"`
	AllowHostMounts  bool `yaml:"allow_host_mounts,omitempty" json:"allow_host_mounts,omitempty"`
	AllowHostNetwork bool `yaml:"allow_host_network,omitempty" json:"allow_host_network,omitempty"`
	// MaxReplicas caps the replicas of one service on this cluster (0 = no cap).
	MaxReplicas int `yaml:"max_replicas,omitempty" json:"max_replicas,omitempty"`
}

// EnvironmentRollout holds the limits of controlled onboarding.
type EnvironmentRollout struct {
	// MaxParallelClusters caps how many clusters change at once (0 = a whole wave).
	MaxParallelClusters int `yaml:"max_parallel_clusters,omitempty" json:"max_parallel_clusters,omitempty"`
	// MaxParallelServices caps how many services of one release change at once (0 = no cap
	// beyond depends_on order).
	MaxParallelServices int `yaml:"max_parallel_services,omitempty" json:"max_parallel_services,omitempty"`
}

// ServiceDefaults are the fields a service inherits when it does not set them.
type ServiceDefaults struct {
	Replicas     int           `yaml:"replicas,omitempty" json:"replicas,omitempty"`
	Resources    *Resources    `yaml:"resources,omitempty" json:"resources,omitempty"`
	Health       *Health       `yaml:"health,omitempty" json:"health,omitempty"`
	Canary       *Canary       `yaml:"canary,omitempty" json:"canary,omitempty"`
	Rollout      *Rollout      `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	Verification *Verification `yaml:"verification,omitempty" json:"verification,omitempty"`
	Rollback     *Rollback     `yaml:"rollback,omitempty" json:"rollback,omitempty"`
}

// Service is one service of the environment at one version.
type Service struct {
	Name string `yaml:"name" json:"name"`
	// Image is the repository without tag, e.g. registry.example.com/shop/cart.
	Image string `yaml:"image" json:"image"`
	// Version is a tag ("1.4.2") or a digest ("sha256:…").
	Version string `yaml:"version" json:"version"`
	// Clusters this service runs on; empty means every cluster.
	Clusters  []string          `yaml:"clusters,omitempty" json:"clusters,omitempty"`
	Replicas  int               `yaml:"replicas,omitempty" json:"replicas,omitempty"`
	Port      int               `yaml:"port,omitempty" json:"port,omitempty"`
	Env       map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Command   []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Resources *Resources        `yaml:"resources,omitempty" json:"resources,omitempty"`
	// Privileged and Mounts are refused unless the cluster's policy allows them.
	Privileged   bool          `yaml:"privileged,omitempty" json:"privileged,omitempty"`
	Mounts       []Mount       `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	Health       *Health       `yaml:"health,omitempty" json:"health,omitempty"`
	DependsOn    []string      `yaml:"depends_on,omitempty" json:"depends_on,omitempty"`
	Canary       *Canary       `yaml:"canary,omitempty" json:"canary,omitempty"`
	Rollout      *Rollout      `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	Verification *Verification `yaml:"verification,omitempty" json:"verification,omitempty"`
	Rollback     *Rollback     `yaml:"rollback,omitempty" json:"rollback,omitempty"`
}

// ImageRef is the full image reference of the service's version: repo:tag or repo@sha256:….
func (s Service) ImageRef() string { return ImageRef(s.Image, s.Version) }

// ImageRef joins a repository and a version (tag or digest) into an image reference.
func ImageRef(image, version string) string {
	if len(version) > 7 && version[:7] == "sha256:" {
		return image + "@" + version
	}
	return image + ":" + version
}

// Mount is a host bind mount (only where the cluster's policy allows host mounts).
type Mount struct {
	Source   string `yaml:"source" json:"source"`
	Target   string `yaml:"target" json:"target"`
	ReadOnly bool   `yaml:"read_only,omitempty" json:"read_only,omitempty"`
}

// Resources are per-container limits. Memory takes units: 64Mi, 1Gi, 512M.
type Resources struct {
	Memory string  `yaml:"memory,omitempty" json:"memory,omitempty"`
	CPUs   float64 `yaml:"cpus,omitempty" json:"cpus,omitempty"`
}

// Health is a container's health check: an HTTP GET on the container port, or the image's
// own HEALTHCHECK (image: true).
type Health struct {
	// HTTPPath is probed on the container port; 2xx/3xx is healthy.
	HTTPPath string `yaml:"http_path,omitempty" json:"http_path,omitempty"`
	// Image uses the image's HEALTHCHECK instead of an HTTP probe.
	Image       bool     `yaml:"image,omitempty" json:"image,omitempty"`
	Interval    Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	Timeout     Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Retries     int      `yaml:"retries,omitempty" json:"retries,omitempty"`
	StartPeriod Duration `yaml:"start_period,omitempty" json:"start_period,omitempty"`
	// Deadline is how long a new replica may take to become healthy before it counts as failed.
	Deadline Duration `yaml:"deadline,omitempty" json:"deadline,omitempty"`
}

// Canary is the canary onboarding policy.
type Canary struct {
	// Replicas of the new version started beside the stable ones in the canary cluster.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty"`
	// Soak is how long the canary is verified against stable before the rollout goes on.
	Soak     Duration  `yaml:"soak,omitempty" json:"soak,omitempty"`
	Approval *Approval `yaml:"approval,omitempty" json:"approval,omitempty"`
	// Skip turns canary onboarding off for this service.
	Skip bool `yaml:"skip,omitempty" json:"skip,omitempty"`
	// LoadTest names a load test (load_tests[].name) run against the canary as a gate.
	LoadTest string `yaml:"load_test,omitempty" json:"load_test,omitempty"`
}

// Approval is a human gate after the canary. With no decision within Timeout the release
// takes OnTimeout (default rollback).
type Approval struct {
	Required  bool     `yaml:"required,omitempty" json:"required,omitempty"`
	Timeout   Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	OnTimeout string   `yaml:"on_timeout,omitempty" json:"on_timeout,omitempty"` // rollback | proceed
}

// Rollout is the in-cluster rollout policy.
type Rollout struct {
	// BatchSize is how many replicas are replaced at a time inside a cluster.
	BatchSize int `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
	// Pause between batches.
	Pause Duration `yaml:"pause,omitempty" json:"pause,omitempty"`
}

// Verification is how a new version is judged: probes on every new replica (and on the
// stable ones for comparison) for Duration, at Interval.
type Verification struct {
	Requests []Probe  `yaml:"requests,omitempty" json:"requests,omitempty"`
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	Duration Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// MinSamples below which the verdict is inconclusive, never passed.
	MinSamples int `yaml:"min_samples,omitempty" json:"min_samples,omitempty"`
	// MaxErrorRate is the highest tolerated share of failed probes, 0..1.
	MaxErrorRate float64 `yaml:"max_error_rate,omitempty" json:"max_error_rate,omitempty"`
	// MaxP95Latency is an absolute latency ceiling for the new version.
	MaxP95Latency Duration `yaml:"max_p95_latency,omitempty" json:"max_p95_latency,omitempty"`
	// MaxLatencyRatio compares new p95 against stable p95 on the same requests (e.g. 1.5).
	MaxLatencyRatio float64 `yaml:"max_latency_ratio,omitempty" json:"max_latency_ratio,omitempty"`
	// Skip turns verification off (health checks still apply).
	Skip bool `yaml:"skip,omitempty" json:"skip,omitempty"`
}

// Probe is one HTTP request of a verification.
type Probe struct {
	Path         string            `yaml:"path" json:"path"`
	Method       string            `yaml:"method,omitempty" json:"method,omitempty"`
	Headers      map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	ExpectStatus int               `yaml:"expect_status,omitempty" json:"expect_status,omitempty"`
	Timeout      Duration          `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Rollback is the rollback policy.
type Rollback struct {
	// Scope: "release" (default: every service of the release goes back, so no mixed
	// versions survive) or "service" (only the failing service goes back).
	Scope string `yaml:"scope,omitempty" json:"scope,omitempty"`
	// KeepPrevious: "running" (default: replaced containers keep running out of traffic, so a
	// rollback only re-attaches them) or "stopped" (less memory, slower rollback).
	KeepPrevious string `yaml:"keep_previous,omitempty" json:"keep_previous,omitempty"`
}

// Rollback scopes and keep modes.
const (
	ScopeRelease        = "release"
	ScopeService        = "service"
	KeepRunning         = "running"
	KeepStopped         = "stopped"
	OnTimeoutRollback   = "rollback"
	OnTimeoutProceed    = "proceed"
	DefaultWave         = 1
	MaxSpecBytes        = 1 << 20
	DefaultTemporalPort = 7233
)

// LoadTest is a load test of one service, optionally on a schedule (issue 6).
type LoadTest struct {
	Name     string   `yaml:"name" json:"name"`
	Service  string   `yaml:"service" json:"service"`
	Clusters []string `yaml:"clusters,omitempty" json:"clusters,omitempty"`
	Requests []Probe  `yaml:"requests,omitempty" json:"requests,omitempty"`
	// Rate in requests per second.
	Rate     int      `yaml:"rate" json:"rate"`
	Duration Duration `yaml:"duration" json:"duration"`
	WarmUp   Duration `yaml:"warm_up,omitempty" json:"warm_up,omitempty"`
	// ScaleFactor scales the service's replicas before the test (e.g. 4) and back after.
	ScaleFactor int  `yaml:"scale_factor,omitempty" json:"scale_factor,omitempty"`
	SLO         SLOs `yaml:"slo,omitempty" json:"slo,omitempty"`
	// Schedule: a cron expression ("0 3 * * *") or an interval ("@every 6h").
	Schedule string `yaml:"schedule,omitempty" json:"schedule,omitempty"`
}

// SLOs a load test must meet.
type SLOs struct {
	P50           Duration `yaml:"p50,omitempty" json:"p50,omitempty"`
	P95           Duration `yaml:"p95,omitempty" json:"p95,omitempty"`
	P99           Duration `yaml:"p99,omitempty" json:"p99,omitempty"`
	MaxErrorRate  float64  `yaml:"max_error_rate,omitempty" json:"max_error_rate,omitempty"`
	MinThroughput float64  `yaml:"min_throughput,omitempty" json:"min_throughput,omitempty"`
}

// Duration is a time.Duration written as "1m30s" in YAML and JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads "1m30s" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' {
		v, err := time.ParseDuration(s[1 : len(s)-1])
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return &time.ParseError{Layout: "duration", Value: s, Message: ": not a duration"}
		}
		n = n*10 + int64(c-'0')
	}
	*d = Duration(n)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
