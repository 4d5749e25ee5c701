// Package spec is the deployment-spec model: one YAML file per environment that says what
// should run where. Decode reads a file strictly (unknown keys, wrong types and bad values are
// errors naming file:line:column and the field path); Validate checks cross-field rules;
// ApplyDefaults fills every service's policies so the workflow sees a complete picture.
//
// The decoded, validated, defaulted Environment is the Release workflow's input: it must
// survive a JSON round trip unchanged (Temporal's data converter is JSON).
package spec

import (
	"fmt"
	"strconv"
	"time"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// Environment is one deployment spec file: the clusters of an environment and every service
// with its version.
type Environment struct {
	// Environment is the environment's name (a DNS label: lower-case letters, digits, '-').
	Environment string `yaml:"environment" json:"environment"`
	// Description is free text for people reading the file.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Clusters are the Docker engines (later Swarm managers) of this environment.
	Clusters []Cluster `yaml:"clusters" json:"clusters"`
	// Rollout holds environment-wide limits of controlled onboarding.
	Rollout EnvironmentRollout `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	// Defaults apply to every service that does not set the field itself.
	Defaults ServiceDefaults `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	// Services are the services of the environment, each at one version.
	Services []Service `yaml:"services" json:"services"`
	// LoadTests are load tests of single services, on demand, on a schedule or as a canary gate.
	LoadTests []LoadTest `yaml:"load_tests,omitempty" json:"load_tests,omitempty"`
	// Notifications are the webhooks told of this environment's release events.
	Notifications *Notifications `yaml:"notifications,omitempty" json:"notifications,omitempty"`
}

// Cluster is one Docker engine endpoint.
type Cluster struct {
	// Name is the cluster's name (a DNS label, unique in the environment).
	Name string `yaml:"name" json:"name"`
	// Endpoint is a DOCKER_HOST-style URL: unix:///var/run/docker.sock, tcp://host:2376.
	// Empty means the worker's own environment (DOCKER_HOST or the default socket).
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// TLS files for a tcp:// endpoint (paths on the worker's machine).
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Wave orders the rollout: clusters of wave 1 first, then wave 2 ...; the clusters of one
	// wave change in parallel. Default 1.
	Wave int `yaml:"wave,omitempty" json:"wave,omitempty" jsonschema:"minimum=1"`
	// Canary marks the cluster where canaries are onboarded. Default: the first cluster of
	// the lowest wave.
	Canary bool `yaml:"canary,omitempty" json:"canary,omitempty"`
	// Labels are free key/value metadata of the cluster (region, team ...).
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Policy says what containers may do on this cluster; everything is denied by default.
	Policy ClusterPolicy `yaml:"policy,omitempty" json:"policy,omitempty"`
	// Probes says where verification probes and HTTP health checks run: "engine" (default:
	// in a short-lived probe container on the replicas' network of this engine, so the
	// worker needs nothing but the engine's API) or "direct" (from the worker straight to the
	// containers' addresses: only where the worker shares the engine's host network).
	Probes string `yaml:"probes,omitempty" json:"probes,omitempty" jsonschema:"enum=engine,enum=direct"`
	// Kind is what the endpoint is: "engine" (default: a plain Docker engine, one container
	// per replica) or "swarm" (a Swarm manager's API: one Swarm service per version, scaled;
	// docs/swarm.md).
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty" jsonschema:"enum=engine,enum=swarm"`
}

// TLS names the client certificate files for a tcp:// endpoint.
type TLS struct {
	// CA is the CA certificate file that signed the engine's certificate.
	CA string `yaml:"ca,omitempty" json:"ca,omitempty"`
	// Cert is the client certificate file (set together with key).
	Cert string `yaml:"cert,omitempty" json:"cert,omitempty"`
	// Key is the client key file (set together with cert).
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
	// Verify checks the engine's certificate against ca; default true.
	Verify *bool `yaml:"verify,omitempty" json:"verify,omitempty"`
}

// ClusterPolicy says what containers may do on a cluster. Everything is denied by default.
type ClusterPolicy struct {
	// AllowPrivileged lets services run privileged containers here.
	AllowPrivileged bool `yaml:"allow_privileged,omitempty" json:"allow_privileged,omitempty"`
	// AllowHostMounts lets services bind-mount host paths here.
	AllowHostMounts bool `yaml:"allow_host_mounts,omitempty" json:"allow_host_mounts,omitempty"`
	// AllowHostNetwork lets containers use the host's network (reserved: no service field asks for it yet).
	AllowHostNetwork bool `yaml:"allow_host_network,omitempty" json:"allow_host_network,omitempty"`
	// MaxReplicas caps the replicas (and canary replicas) of one service on this cluster (0 = no cap).
	MaxReplicas int `yaml:"max_replicas,omitempty" json:"max_replicas,omitempty" jsonschema:"minimum=0"`
	// Placement applies to every service on this cluster, added to the service's own
	// placement: the nodes of the swarm Slipway's tasks may run on (e.g. constraints:
	// [node.role==worker]). Only on a cluster of kind swarm.
	Placement *Placement `yaml:"placement,omitempty" json:"placement,omitempty"`
}

// EnvironmentRollout holds the limits of controlled onboarding.
type EnvironmentRollout struct {
	// MaxParallelClusters caps how many clusters change at once (0 = a whole wave).
	MaxParallelClusters int `yaml:"max_parallel_clusters,omitempty" json:"max_parallel_clusters,omitempty" jsonschema:"minimum=0"`
	// MaxParallelServices caps how many services of one release change at once, within
	// depends_on order; the rollback and the clean-up of the old versions keep to it too (the
	// final look at the new replicas to four times it). Unset or 0: 8 (a larger number lifts
	// the cap).
	MaxParallelServices int `yaml:"max_parallel_services,omitempty" json:"max_parallel_services,omitempty" jsonschema:"minimum=0"`
}

// ServiceDefaults are the fields a service inherits when it does not set them.
// Blocks merge field by field; a boolean is inherited only with its whole block.
type ServiceDefaults struct {
	// Replicas per cluster for services that do not set replicas.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty" jsonschema:"minimum=1"`
	// Resources are default container limits.
	Resources *Resources `yaml:"resources,omitempty" json:"resources,omitempty"`
	// Health is the default health check.
	Health *Health `yaml:"health,omitempty" json:"health,omitempty"`
	// Canary is the default canary policy.
	Canary *Canary `yaml:"canary,omitempty" json:"canary,omitempty"`
	// Rollout is the default in-cluster rollout policy.
	Rollout *Rollout `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	// Verification is the default verification.
	Verification *Verification `yaml:"verification,omitempty" json:"verification,omitempty"`
	// Rollback is the default rollback policy.
	Rollback *Rollback `yaml:"rollback,omitempty" json:"rollback,omitempty"`
}

// Service is one service of the environment at one version.
type Service struct {
	// Name is the service's name (a DNS label, unique in the environment). It is the DNS
	// alias other containers reach the service by.
	Name string `yaml:"name" json:"name"`
	// Image is the repository without tag, e.g. registry.example.com/shop/cart.
	Image string `yaml:"image" json:"image"`
	// Version is a tag ("1.4.2") or a digest ("sha256:…").
	Version string `yaml:"version" json:"version"`
	// Clusters this service runs on; empty means every cluster.
	Clusters []string `yaml:"clusters,omitempty" json:"clusters,omitempty"`
	// Replicas of the service on each of its clusters. Default: defaults.replicas, then 1.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty" jsonschema:"minimum=1"`
	// Port is the container port the service listens on (health and verification probes
	// use it). A service without a port is not verified over HTTP.
	Port int `yaml:"port,omitempty" json:"port,omitempty" jsonschema:"minimum=1,maximum=65535"`
	// Env are environment variables of the containers. Their values travel in the Release
	// workflow's input and so end up in Temporal's history: never put secrets here (names
	// that look like secrets, such as DB_PASSWORD or API_TOKEN, are refused: use secrets).
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Secrets are environment variables whose values are secrets. Each maps a variable name
	// to a secret name (not a value), e.g. DB_PASSWORD: cart-db-password. Only the names
	// travel through the API and the workflow history; the worker reads each value from its
	// secrets directory (one file per secret) when it creates a container.
	Secrets map[string]string `yaml:"secrets,omitempty" json:"secrets,omitempty"`
	// Command replaces the image's CMD (arguments to its ENTRYPOINT).
	Command []string `yaml:"command,omitempty" json:"command,omitempty"`
	// Resources are per-container limits (and, on a swarm, reservations); none by default.
	Resources *Resources `yaml:"resources,omitempty" json:"resources,omitempty"`
	// Placement says which nodes of a swarm the service's tasks may run on (constraints) and
	// how they spread over them (preferences). Ignored on a plain engine, which is one node.
	Placement *Placement `yaml:"placement,omitempty" json:"placement,omitempty"`
	// Privileged runs the containers privileged: refused unless the policy of every cluster
	// of the service sets allow_privileged.
	Privileged bool `yaml:"privileged,omitempty" json:"privileged,omitempty"`
	// Mounts are host bind mounts: refused unless the policy of every cluster of the service
	// sets allow_host_mounts.
	Mounts []Mount `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	// Health is the container health check.
	Health *Health `yaml:"health,omitempty" json:"health,omitempty"`
	// DependsOn names services that are released before this one in the same release.
	DependsOn []string `yaml:"depends_on,omitempty" json:"depends_on,omitempty"`
	// Canary is the canary onboarding policy.
	Canary *Canary `yaml:"canary,omitempty" json:"canary,omitempty"`
	// Rollout is the in-cluster rollout policy.
	Rollout *Rollout `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	// Verification is how a new version is judged.
	Verification *Verification `yaml:"verification,omitempty" json:"verification,omitempty"`
	// Rollback is the rollback policy.
	Rollback *Rollback `yaml:"rollback,omitempty" json:"rollback,omitempty"`
	// StopGrace is how long a replica gets to exit after SIGTERM whenever a release stops
	// it (the previous version after a good release, replicas retired with keep_previous:
	// stopped, new-version replicas a rollback stops); one still running then is killed
	// (SIGKILL). Default 10s, at most 5m.
	StopGrace Duration `yaml:"stop_grace,omitempty" json:"stop_grace,omitempty"`
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
	// Source is an absolute path on the cluster's host.
	Source string `yaml:"source" json:"source"`
	// Target is an absolute path in the container.
	Target string `yaml:"target" json:"target"`
	// ReadOnly mounts the path read-only.
	ReadOnly bool `yaml:"read_only,omitempty" json:"read_only,omitempty"`
}

// Resources are per-container limits and, on a swarm, reservations. Memory takes units:
// 64Mi, 1Gi, 512M.
type Resources struct {
	// Memory limit: bytes or a number with a unit, binary (Ki, Mi, Gi, Ti) or decimal (k, M,
	// G, T), e.g. 64Mi, 1Gi, 512M. At least 6Mi.
	Memory string `yaml:"memory,omitempty" json:"memory,omitempty" jsonschema:"pattern=^[0-9]+(\\.[0-9]+)?(k|K|M|G|T|Ki|Mi|Gi|Ti)?$"`
	// CPUs is the number of CPUs a container may use (e.g. 0.5).
	CPUs float64 `yaml:"cpus,omitempty" json:"cpus,omitempty" jsonschema:"exclusiveMinimum=0,maximum=1024"`
	// ReserveMemory is memory a swarm sets aside for each task: it places a task only on a
	// node with that much not yet reserved (units as memory; at most memory). Ignored on a
	// plain engine.
	ReserveMemory string `yaml:"reserve_memory,omitempty" json:"reserve_memory,omitempty" jsonschema:"pattern=^[0-9]+(\\.[0-9]+)?(k|K|M|G|T|Ki|Mi|Gi|Ti)?$"`
	// ReserveCPUs is the CPUs a swarm sets aside for each task (at most cpus). Ignored on a
	// plain engine.
	ReserveCPUs float64 `yaml:"reserve_cpus,omitempty" json:"reserve_cpus,omitempty" jsonschema:"exclusiveMinimum=0,maximum=1024"`
}

// Placement is where a swarm runs a service's tasks (Docker's service placement; on a plain
// engine, which is one node, it is ignored).
type Placement struct {
	// Constraints every node of a task must satisfy: <attribute>==<value> or
	// <attribute>!=<value>, the attribute one of node.id, node.hostname, node.role
	// (manager or worker), node.platform.os, node.platform.arch, node.labels.<label>,
	// engine.labels.<label>. E.g. node.labels.tier==frontend.
	Constraints []string `yaml:"constraints,omitempty" json:"constraints,omitempty"`
	// Preferences spread the tasks evenly over the values of a node label, in order.
	Preferences []PlacementPreference `yaml:"preferences,omitempty" json:"preferences,omitempty"`
}

// PlacementPreference is one placement preference of a swarm.
type PlacementPreference struct {
	// Spread spreads the tasks evenly over the values of this label: node.labels.<label>
	// or engine.labels.<label>, e.g. node.labels.zone.
	Spread string `yaml:"spread" json:"spread"`
}

// Health is a container's health check: an HTTP GET on the container port, or the image's
// own HEALTHCHECK (image: true).
type Health struct {
	// HTTPPath is probed on the container port; 2xx/3xx is healthy.
	HTTPPath string `yaml:"http_path,omitempty" json:"http_path,omitempty"`
	// Image uses the image's HEALTHCHECK instead of an HTTP probe.
	Image bool `yaml:"image,omitempty" json:"image,omitempty"`
	// Interval between checks.
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Timeout of one check.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Retries is how many consecutive failed checks make a replica unhealthy.
	Retries int `yaml:"retries,omitempty" json:"retries,omitempty" jsonschema:"minimum=1"`
	// StartPeriod is a grace period after start during which failed checks do not count.
	StartPeriod Duration `yaml:"start_period,omitempty" json:"start_period,omitempty"`
	// Deadline is how long a new replica may take to become healthy before it counts as failed.
	Deadline Duration `yaml:"deadline,omitempty" json:"deadline,omitempty"`
}

// Canary is the canary onboarding policy.
type Canary struct {
	// Replicas of the new version started beside the stable ones in the canary cluster.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty" jsonschema:"minimum=1"`
	// Soak is how long the canary is verified against stable before the rollout goes on.
	Soak Duration `yaml:"soak,omitempty" json:"soak,omitempty"`
	// Approval is an optional human gate after the canary passed.
	Approval *Approval `yaml:"approval,omitempty" json:"approval,omitempty"`
	// Skip turns canary onboarding off for this service.
	Skip bool `yaml:"skip,omitempty" json:"skip,omitempty"`
	// LoadTest names a load test (load_tests[].name) run against the canary as a gate.
	LoadTest string `yaml:"load_test,omitempty" json:"load_test,omitempty"`
}

// Approval is a human gate after the canary. With no decision within Timeout the release
// takes OnTimeout (default rollback).
type Approval struct {
	// Required turns the gate on: the release waits for an approve (or abort) after the canary.
	Required bool `yaml:"required,omitempty" json:"required,omitempty"`
	// Timeout is how long the release waits for a decision.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// OnTimeout is what happens without a decision: rollback or proceed.
	OnTimeout string `yaml:"on_timeout,omitempty" json:"on_timeout,omitempty" jsonschema:"enum=rollback,enum=proceed"`
}

// Rollout is the in-cluster rollout policy.
type Rollout struct {
	// BatchSize is how many replicas are replaced at a time inside a cluster.
	BatchSize int `yaml:"batch_size,omitempty" json:"batch_size,omitempty" jsonschema:"minimum=1"`
	// Pause between batches.
	Pause Duration `yaml:"pause,omitempty" json:"pause,omitempty"`
}

// Verification is how a new version is judged: every request sent to every new replica and
// to the stable ones at the same moments, every Interval for Duration, and the two sides
// compared with statistical tests (docs/spec.md, "How a verdict is reached").
type Verification struct {
	// Requests are the HTTP probes; default one GET of /. Without expect_status, the new
	// version must answer like stable on the same request.
	Requests []Probe `yaml:"requests,omitempty" json:"requests,omitempty"`
	// Interval between two rounds of probes: each replica gets each request once per
	// interval (default 10ms: 100 requests/s per replica).
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Duration of one verification after a batch (the canary's is canary.soak).
	Duration Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// MinSamples is the fewest valid canary/stable pairs (samples, without a stable
	// version) a verdict needs; below it the verdict is inconclusive, never passed.
	MinSamples int `yaml:"min_samples,omitempty" json:"min_samples,omitempty" jsonschema:"minimum=1"`
	// MaxErrorRate is a ceiling on the new version's error rate, 0..1, tested (the rate must
	// be significantly above it), on top of the comparison with stable (0 itself cannot be
	// written: it means unset).
	MaxErrorRate float64 `yaml:"max_error_rate,omitempty" json:"max_error_rate,omitempty" jsonschema:"exclusiveMinimum=0,maximum=1"`
	// MaxP95Latency is an absolute latency ceiling for the new version (default none).
	MaxP95Latency Duration `yaml:"max_p95_latency,omitempty" json:"max_p95_latency,omitempty"`
	// MaxLatencyRatio: the new p95 may be at most this × the stable p95 (plus 25ms) on the
	// same requests (default 1.5).
	MaxLatencyRatio float64 `yaml:"max_latency_ratio,omitempty" json:"max_latency_ratio,omitempty" jsonschema:"minimum=1"`
	// Confidence of a failed verdict: the chance that a version no worse than stable is
	// failed is at most 1 − confidence (default 0.999).
	Confidence float64 `yaml:"confidence,omitempty" json:"confidence,omitempty" jsonschema:"exclusiveMinimum=0.5,exclusiveMaximum=1"`
	// Bake is how long the new replicas stay watched after the service's last wave before
	// the release may finish. From its first new replica until the release ends, a replica
	// that exits, is killed for memory, is restarted or turns unhealthy (its image's health
	// check) fails the release, which rolls back. Default 30s; 0s ends the release at the
	// last wave (the replicas are watched until then). At most 24h. Applies with skip too.
	Bake *Duration `yaml:"bake,omitempty" json:"bake,omitempty"`
	// Skip turns verification off (health checks still apply).
	Skip bool `yaml:"skip,omitempty" json:"skip,omitempty"`
}

// Probe is one HTTP request of a verification.
type Probe struct {
	// Path is the request path (and query), starting with '/'.
	Path string `yaml:"path" json:"path"`
	// Method is the HTTP method.
	Method string `yaml:"method,omitempty" json:"method,omitempty" jsonschema:"enum=GET,enum=HEAD,enum=POST,enum=PUT,enum=PATCH,enum=DELETE,enum=OPTIONS"`
	// Headers are sent with the request.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// ExpectStatus is the status a good answer has; any other status counts as an error.
	// Unset in verification: the new version must answer like stable (same status class,
	// never a 5xx stable does not give); unset in a load test: 200.
	ExpectStatus int `yaml:"expect_status,omitempty" json:"expect_status,omitempty" jsonschema:"minimum=100,maximum=599"`
	// Timeout of one request; a timeout counts as an error.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Rollback is the rollback policy.
type Rollback struct {
	// Scope: "release" (default: every service of the release goes back, so no mixed
	// versions survive) or "service" (only the failing service goes back).
	Scope string `yaml:"scope,omitempty" json:"scope,omitempty" jsonschema:"enum=release,enum=service"`
	// KeepPrevious: "running" (default: replaced containers keep running out of traffic, so a
	// rollback only re-attaches them) or "stopped" (less memory, slower rollback).
	KeepPrevious string `yaml:"keep_previous,omitempty" json:"keep_previous,omitempty" jsonschema:"enum=running,enum=stopped"`
}

// Rollback scopes and keep modes.
const (
	ScopeRelease        = "release"
	ScopeService        = "service"
	KeepRunning         = "running"
	KeepStopped         = "stopped"
	OnTimeoutRollback   = "rollback"
	OnTimeoutProceed    = "proceed"
	ProbesEngine        = "engine"
	ProbesDirect        = "direct"
	KindEngine          = "engine"
	KindSwarm           = "swarm"
	DefaultWave         = 1
	MaxSpecBytes        = 1 << 20
	DefaultTemporalPort = 7233
)

// LoadTest is a load test of one service, optionally on a schedule (docs/loadtests.md).
type LoadTest struct {
	// Name of the load test (a DNS label, unique in the environment).
	Name string `yaml:"name" json:"name"`
	// Service under test.
	Service string `yaml:"service" json:"service"`
	// Clusters to load; default every cluster of the service.
	Clusters []string `yaml:"clusters,omitempty" json:"clusters,omitempty"`
	// Requests to send, in turn; default the service's verification requests.
	Requests []Probe `yaml:"requests,omitempty" json:"requests,omitempty"`
	// Rate in requests per second.
	Rate int `yaml:"rate" json:"rate" jsonschema:"minimum=1"`
	// Duration of the measured part of the test.
	Duration Duration `yaml:"duration" json:"duration"`
	// WarmUp is sent before the measured part and not counted.
	WarmUp Duration `yaml:"warm_up,omitempty" json:"warm_up,omitempty"`
	// ScaleFactor scales the service's replicas before the test (e.g. 4) and back after.
	ScaleFactor int `yaml:"scale_factor,omitempty" json:"scale_factor,omitempty" jsonschema:"minimum=1"`
	// SLO are the objectives the test must meet.
	SLO SLOs `yaml:"slo,omitempty" json:"slo,omitempty"`
	// Schedule: a cron expression ("0 3 * * *") or an interval ("@every 6h").
	Schedule string `yaml:"schedule,omitempty" json:"schedule,omitempty"`
}

// SLOs a load test must meet.
type SLOs struct {
	// P50 is the highest allowed median latency.
	P50 Duration `yaml:"p50,omitempty" json:"p50,omitempty"`
	// P95 is the highest allowed 95th-percentile latency.
	P95 Duration `yaml:"p95,omitempty" json:"p95,omitempty"`
	// P99 is the highest allowed 99th-percentile latency.
	P99 Duration `yaml:"p99,omitempty" json:"p99,omitempty"`
	// MaxErrorRate is the highest tolerated share of failed requests, 0..1.
	MaxErrorRate float64 `yaml:"max_error_rate,omitempty" json:"max_error_rate,omitempty" jsonschema:"exclusiveMinimum=0,maximum=1"`
	// MinThroughput is the least number of successful requests per second.
	MinThroughput float64 `yaml:"min_throughput,omitempty" json:"min_throughput,omitempty" jsonschema:"minimum=0"`
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

// UnmarshalJSON reads "1m30s" (or an integer number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		v, err := time.ParseDuration(s[1 : len(s)-1])
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid duration %s: want a string such as \"1m30s\"", s)
	}
	*d = Duration(n)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads a duration string such as "1m30s" (for code that decodes spec parts
// with yaml.v3 directly; Parse has its own stricter decoder).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// JSONSchema describes a duration for the generated JSON Schema: a string in Go's duration
// syntax.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Pattern:     DurationPattern,
		Description: "A duration: a number with a unit (ns, us, ms, s, m, h), e.g. 250ms, 30s, 1m30s.",
		Examples:    []any{"30s", "1m30s", "250ms"},
	}
}
