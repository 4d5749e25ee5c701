// Package engine is the port between Slipway's activities and a container engine. The
// activities speak only these types; internal/dockerengine implements them with the Docker
// Go client (the only package that imports it), so moving to another client or to Swarm
// services touches one adapter.
//
// Every operation is idempotent: calling it twice has the effect of calling it once, and
// removing what is already gone is success. Containers are found by their deterministic
// names and labels, never by state kept in memory.
package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/probe"
)

// Label keys put on every container and network Slipway creates.
const (
	LabelManaged     = "io.slipway.managed" // "true"
	LabelEnvironment = "io.slipway.environment"
	LabelCluster     = "io.slipway.cluster"
	LabelService     = "io.slipway.service"
	LabelVersion     = "io.slipway.version"
	LabelRelease     = "io.slipway.release"
	LabelRole        = "io.slipway.role"
	LabelSlot        = "io.slipway.slot"
	// LabelPort is the container port the service listens on (the adapter probes it and
	// reports Address with it).
	LabelPort = "io.slipway.port"
)

// Role says why a container was started.
type Role string

// Roles.
const (
	RoleStable Role = "stable" // started by a rollout batch
	RoleCanary Role = "canary" // started by canary onboarding
)

// Health of a container.
type Health string

// Health states.
const (
	HealthUnknown   Health = ""          // no health check, or not inspected
	HealthStarting  Health = "starting"  // inside its start period / not yet passing
	HealthHealthy   Health = "healthy"   // passing
	HealthUnhealthy Health = "unhealthy" // failing
)

// Key identifies one replica slot of one service version in one cluster of one environment.
type Key struct {
	Environment string `json:"environment"`
	Cluster     string `json:"cluster"`
	Service     string `json:"service"`
	Version     string `json:"version"`
	Slot        int    `json:"slot"`
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// ContainerName is the deterministic container name of a replica slot:
// slipway.<environment>.<cluster>.<service>.<version>.<slot>. Environment, cluster and
// service names are DNS labels (no dots), so the name is unambiguous; a digest version
// "sha256:abc…" becomes "sha256-abc…" cut to 24 characters.
func (k Key) ContainerName() string {
	v := unsafeName.ReplaceAllString(k.Version, "-")
	if strings.HasPrefix(k.Version, "sha256:") && len(v) > 24 {
		v = v[:24]
	}
	return fmt.Sprintf("slipway.%s.%s.%s.%s.%d", k.Environment, k.Cluster, k.Service, v, k.Slot)
}

// NetworkName is the environment's network on one cluster. Every replica of a service joins
// it with the service name as alias while it takes traffic, so Docker's DNS balances over
// every replica (canaries included). Two clusters on one engine get two networks.
func NetworkName(environment, cluster string) string {
	return fmt.Sprintf("slipway.%s.%s", environment, cluster)
}

// HealthCheck is how the engine judges a container healthy.
type HealthCheck struct {
	// HTTPPath is probed on Port inside the container's network namespace by the adapter
	// (from outside, on the container's address); empty with UseImage means the image's own
	// HEALTHCHECK; both empty means "running" counts as healthy.
	HTTPPath    string        `json:"http_path,omitempty"`
	UseImage    bool          `json:"use_image,omitempty"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	Retries     int           `json:"retries,omitempty"`
	StartPeriod time.Duration `json:"start_period,omitempty"`
}

// ContainerSpec is everything needed to create one replica.
type ContainerSpec struct {
	Key
	Release     string            `json:"release"`
	Role        Role              `json:"role"`
	Image       string            `json:"image"` // full reference: repo:tag or repo@digest
	Env         map[string]string `json:"env,omitempty"`
	Command     []string          `json:"command,omitempty"`
	Port        int               `json:"port,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	NanoCPUs    int64             `json:"nano_cpus,omitempty"`
	Privileged  bool              `json:"privileged,omitempty"`
	Mounts      []Mount           `json:"mounts,omitempty"`
	Health      HealthCheck       `json:"health"`
	// Secrets are given to the container as files, /run/secrets/<Name>, by an adapter of a
	// Swarm (Swarm secrets; docs/swarm.md), never as environment variables. A plain engine
	// has no secret store: the activities put a plain engine's secrets in Env and fill
	// Secrets for a swarm only (with <VAR>_FILE in Env saying where each file is).
	Secrets []SecretFile `json:"secrets,omitempty"`
	// ReserveMemoryBytes and ReserveNanoCPUs are what a swarm sets aside for each task (its
	// scheduler places a task only where they are free); a plain engine ignores them.
	ReserveMemoryBytes int64 `json:"reserve_memory_bytes,omitempty"`
	ReserveNanoCPUs    int64 `json:"reserve_nano_cpus,omitempty"`
	// Placement is where a swarm may run the tasks; a plain engine (one node) ignores it.
	Placement Placement `json:"placement,omitempty"`
	// Network and Alias: the container joins Network with Alias (the service name) when it
	// is created, i.e. it takes traffic as soon as it runs. Use Detach to take it out.
	Network string `json:"network"`
	Alias   string `json:"alias"`
}

// SecretFile is one secret given as a file. Value is never serialised: a ContainerSpec
// lives in the worker's memory only, and Value must not reach a log, an error or a label.
type SecretFile struct {
	// Name is the secret's name (services[].secrets): the file is /run/secrets/<Name>.
	Name  string `json:"name"`
	Value string `json:"-"`
}

// Placement is a swarm's placement of a service's tasks: Constraints in Docker's syntax
// (node.labels.tier==frontend), Spread the node labels to spread tasks over, in order.
type Placement struct {
	Constraints []string `json:"constraints,omitempty"`
	Spread      []string `json:"spread,omitempty"`
}

// Mount is a host bind mount.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Container is what runs: one replica as the engine reports it.
type Container struct {
	Key
	ID      string `json:"id"`
	Name    string `json:"name"`
	Release string `json:"release,omitempty"`
	Role    Role   `json:"role,omitempty"`
	Image   string `json:"image"`
	// State is Docker's state: created, running, exited, restarting, paused, dead.
	State  string `json:"state"`
	Health Health `json:"health,omitempty"`
	// InTraffic is true when the container is on the environment network under the
	// service alias.
	InTraffic bool `json:"in_traffic"`
	// Address is host:port where the worker can reach the service port of this replica
	// (the container's IP on the environment network), empty when not reachable.
	Address string `json:"address,omitempty"`
}

// Running reports whether the container is running.
func (c Container) Running() bool { return c.State == "running" }

// Selector narrows List. Empty fields match everything; Environment is required.
type Selector struct {
	Environment string
	Cluster     string
	Service     string
	Version     string
}

// Engine is one cluster's container engine.
type Engine interface {
	// Ping checks the engine answers (with a short timeout of its own).
	Ping(ctx context.Context) error
	// EnsureNetwork creates the named bridge network when missing.
	EnsureNetwork(ctx context.Context, name string, labels map[string]string) error
	// ImagePresent returns nil when the image is in the engine's store, an *Error of kind
	// KindImageMissing when not. Nothing is ever pulled.
	ImagePresent(ctx context.Context, image string) error
	// List returns Slipway's containers matching the selector, sorted by name.
	List(ctx context.Context, sel Selector) ([]Container, error)
	// Ensure creates (when missing) and starts (when not running) the container of spec.
	// A container of that name with another image is an error of kind KindConflict.
	Ensure(ctx context.Context, spec ContainerSpec) (Container, error)
	// WaitHealthy waits until the container is healthy (or running, without a health
	// check). It fails with KindUnhealthy when the container exits, turns unhealthy, or
	// ctx ends first; the error says which and carries the last log lines.
	WaitHealthy(ctx context.Context, name string) (Container, error)
	// Attach puts the container on network under alias (takes traffic); Detach takes it out
	// of traffic (it loses the alias but stays on network, running, with its address, so
	// it can still be probed). Both are no-ops when already so.
	Attach(ctx context.Context, name, network, alias string) error
	Detach(ctx context.Context, name, network string) error
	// Stop stops a container (graceful, then killed after timeout); Start starts a stopped
	// one; Remove removes it (force). A missing container is success for Stop and Remove.
	Stop(ctx context.Context, name string, timeout time.Duration) error
	Start(ctx context.Context, name string) error
	Remove(ctx context.Context, name string) error
	// Probe runs a probe job next to the replicas, on this engine (or from the worker with
	// Endpoint.DirectProbes), and calls emit for every result as it arrives. It returns when
	// the job is done or ctx ends; nothing of it stays behind.
	Probe(ctx context.Context, at ProbeAt, job probe.Job, emit func(probe.Result)) error
	// ProbeSite says where Probe runs (for verdict evidence).
	ProbeSite(at ProbeAt) string
	// Events streams what happens to the replicas matching sel (Environment required): every
	// die, oom, restart and unhealthy (image health check) of one of Slipway's containers,
	// probe containers excluded, calling fn in order. since replays the events from that
	// engine time on (zero: only new ones). It returns ctx's error when ctx ends, and an error
	// of kind KindUnavailable when the stream breaks or the engine stops answering.
	Events(ctx context.Context, sel Selector, since time.Time, fn func(Event)) error
	// Close releases the client.
	Close() error
}

// ProbeAt says where on an engine a probe job runs: in a probe container that shares the
// network namespace of the first running container of Beside (no network of its own to
// set up: it starts faster, and it reaches what that replica reaches), or else in one of
// its own on Network.
type ProbeAt struct {
	Network string
	Beside  []string
}

// Kind classifies engine errors so activities can tell permanent from transient.
type Kind string

// Error kinds.
const (
	KindUnavailable  Kind = "EngineUnavailable" // engine does not answer: transient
	KindImageMissing Kind = "ImageMissing"      // permanent
	KindConflict     Kind = "ContainerConflict" // permanent
	KindUnhealthy    Kind = "Unhealthy"         // the new version does not come up
	KindInvalid      Kind = "InvalidRequest"    // permanent: engine refused the spec
	KindNotFound     Kind = "NotFound"
	KindInternal     Kind = "EngineError" // anything else: transient
)

// Error is an engine error with a kind.
type Error struct {
	Kind Kind
	Op   string // e.g. "ensure slipway.local.a.web.1.0.0"
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %v", e.Op, e.Kind, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of an engine error, KindInternal for any other non-nil error.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Endpoint says how to reach one cluster's engine.
type Endpoint struct {
	Cluster string
	// Host is a DOCKER_HOST-style URL; empty means the process environment.
	Host                   string
	TLSCA, TLSCert, TLSKey string
	TLSVerify              bool
	// DirectProbes: probes and health checks go from the worker straight to container
	// addresses (the cluster's `probes: direct`), instead of running in a probe container on
	// the engine (the default, which needs nothing but the engine's API).
	DirectProbes bool
	// Swarm: Host is a Swarm manager's API (the cluster's `kind: swarm`); the adapter runs
	// each service version as one Swarm service and maps the replica operations onto its
	// scale (docs/swarm.md).
	Swarm bool
}

// Display is the endpoint as error messages name it.
func (ep Endpoint) Display() string {
	if ep.Host == "" {
		return "DOCKER_HOST"
	}
	return ep.Host
}

// Dialer opens an Engine for an endpoint. The worker holds one, caching one client per
// endpoint.
type Dialer interface {
	Dial(ctx context.Context, ep Endpoint) (Engine, error)
}
