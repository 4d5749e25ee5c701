package workflows

import (
	"sort"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

// Registered activity names. The activities package registers its methods under these names
// and the workflows call them by name, so neither package needs the other's functions. They
// are part of the durable contract: never rename.
const (
	ActivityInspect        = "Inspect"
	ActivityCheckImages    = "CheckImages"
	ActivityEnsureNetwork  = "EnsureNetwork"
	ActivityStartReplicas  = "StartReplicas"
	ActivitySetTraffic     = "SetTraffic"
	ActivityStopReplicas   = "StopReplicas"
	ActivityStartStopped   = "StartStopped"
	ActivityRemoveReplicas = "RemoveReplicas"
	ActivityVerify         = "Verify"
	ActivityWatchReplicas  = "WatchReplicas"
)

// Application error types raised by activities. Every one except ErrEngineUnavailable,
// ErrEngineInternal and ErrSecretUnavailable is permanent: retrying cannot help.
const (
	ErrImageMissing      = string(engine.KindImageMissing)
	ErrConflict          = string(engine.KindConflict)
	ErrInvalid           = string(engine.KindInvalid)
	ErrNotFound          = string(engine.KindNotFound)
	ErrUnhealthy         = string(engine.KindUnhealthy)
	ErrEngineUnavailable = string(engine.KindUnavailable)
	ErrEngineInternal    = string(engine.KindInternal)
	// ErrPolicyDenied: the service asks for something the cluster's policy forbids
	// (privileged, host mounts).
	ErrPolicyDenied = "PolicyDenied"
	// ErrBadInput: the activity input itself is wrong (a workflow bug, never retried).
	ErrBadInput = "BadInput"
	// ErrSecretMissing: a secret a service names (services[].secrets) is not on the worker,
	// or cannot be used as it is (permanent). The message names the secret and the service,
	// never a value.
	ErrSecretMissing = "SecretMissing"
	// ErrSecretUnavailable: the worker's secret source failed in a way a retry may fix.
	ErrSecretUnavailable = "SecretUnavailable"
)

// Target is one cluster as an activity sees it: where its engine is and what it allows. It
// travels in every activity input (built from spec.Cluster by TargetOf), so a worker needs
// no configuration of its own about clusters.
type Target struct {
	Environment string             `json:"environment"`
	Cluster     string             `json:"cluster"`
	Endpoint    string             `json:"endpoint,omitempty"`
	TLSCA       string             `json:"tls_ca,omitempty"`
	TLSCert     string             `json:"tls_cert,omitempty"`
	TLSKey      string             `json:"tls_key,omitempty"`
	TLSVerify   bool               `json:"tls_verify,omitempty"`
	Policy      spec.ClusterPolicy `json:"policy"`
	// Probes is the cluster's probe site (spec.ProbesEngine or spec.ProbesDirect).
	Probes string `json:"probes,omitempty"`
	// Kind is the cluster's kind (spec.KindSwarm for a Swarm manager; empty for a plain
	// engine).
	Kind string `json:"kind,omitempty"`
}

// EngineEndpoint is the engine endpoint of the target.
func (t Target) EngineEndpoint() engine.Endpoint {
	return engine.Endpoint{Cluster: t.Cluster, Host: t.Endpoint, TLSCA: t.TLSCA, TLSCert: t.TLSCert, TLSKey: t.TLSKey, TLSVerify: t.TLSVerify,
		DirectProbes: t.Probes == spec.ProbesDirect, Swarm: t.Kind == spec.KindSwarm}
}

// Network is the environment's network on the target cluster.
func (t Target) Network() string { return engine.NetworkName(t.Environment, t.Cluster) }

// TargetOf builds the activity target of a spec cluster.
func TargetOf(environment string, c spec.Cluster) Target {
	t := Target{Environment: environment, Cluster: c.Name, Endpoint: c.Endpoint, Policy: c.Policy, Probes: c.Probes}
	if c.Kind == spec.KindSwarm {
		t.Kind = spec.KindSwarm
	}
	if c.TLS != nil {
		t.TLSCA, t.TLSCert, t.TLSKey = c.TLS.CA, c.TLS.Cert, c.TLS.Key
		t.TLSVerify = c.TLS.Verify == nil || *c.TLS.Verify
	}
	return t
}

// InspectInput asks for the live state of an environment.
type InspectInput struct {
	Environment string   `json:"environment"`
	Targets     []Target `json:"targets"`
	// Services limits the answer to these services (empty: all).
	Services []string `json:"services,omitempty"`
	// AllowUnreachable reports an engine that does not answer in ClusterState.Error instead
	// of failing the activity (the Plan workflow and the rollback check use it).
	AllowUnreachable bool `json:"allow_unreachable,omitempty"`
}

// InspectResult is the live state of an environment, clusters in input order.
type InspectResult struct {
	Clusters []ClusterState `json:"clusters"`
	At       time.Time      `json:"at"`
}

// ClusterState is what runs on one cluster.
type ClusterState struct {
	Cluster string `json:"cluster"`
	// Error is set when the engine could not be inspected (AllowUnreachable only).
	Error    string         `json:"error,omitempty"`
	Services []ServiceState `json:"services,omitempty"`
}

// ServiceState is one service on one cluster, versions sorted.
type ServiceState struct {
	Service  string         `json:"service"`
	Versions []VersionState `json:"versions"`
}

// VersionState is one version of a service on one cluster.
type VersionState struct {
	Version    string             `json:"version"`
	Running    int                `json:"running"`
	InTraffic  int                `json:"in_traffic"`
	Healthy    int                `json:"healthy"`
	Containers []engine.Container `json:"containers"`
}

// Cluster returns the state of the named cluster (nil when absent).
func (r InspectResult) Cluster(name string) *ClusterState {
	for i := range r.Clusters {
		if r.Clusters[i].Cluster == name {
			return &r.Clusters[i]
		}
	}
	return nil
}

// Containers returns every container of service on the cluster (nil-safe), sorted by name.
func (c *ClusterState) Containers(service string) []engine.Container {
	if c == nil {
		return nil
	}
	var out []engine.Container
	for _, s := range c.Services {
		if s.Service != service {
			continue
		}
		for _, v := range s.Versions {
			out = append(out, v.Containers...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ImageCheck is one image that must be present on one cluster.
type ImageCheck struct {
	Target  Target `json:"target"`
	Service string `json:"service"`
	Image   string `json:"image"`
}

// CheckImagesInput lists every image a release needs, on every cluster that needs it.
type CheckImagesInput struct {
	Checks []ImageCheck `json:"checks"`
}

// MissingImage is an image absent from a cluster's engine.
type MissingImage struct {
	Cluster string `json:"cluster"`
	Service string `json:"service"`
	Image   string `json:"image"`
}

// CheckImagesResult names every missing image (empty: all present).
type CheckImagesResult struct {
	Missing []MissingImage `json:"missing,omitempty"`
}

// EnsureNetworkInput creates the environment network on a cluster when missing.
type EnsureNetworkInput struct {
	Target Target `json:"target"`
}

// StartReplicasInput ensures slots of service@version run on a cluster with a role, waits
// until they are healthy, and (Attach) puts them in traffic.
type StartReplicasInput struct {
	Target  Target       `json:"target"`
	Release string       `json:"release"`
	Role    engine.Role  `json:"role"`
	Service spec.Service `json:"service"`
	Slots   []int        `json:"slots"`
	// Attach puts the replicas in traffic once every one of them is healthy.
	Attach bool `json:"attach"`
	// HealthDeadline is how long a replica may take to become healthy.
	HealthDeadline time.Duration `json:"health_deadline"`
}

// StartReplicasResult is the replicas as the engine reports them after the start.
type StartReplicasResult struct {
	Containers []engine.Container `json:"containers"`
}

// SetTrafficInput attaches and detaches containers of one service on one cluster: the
// attach happens first, so a switch never leaves the service without replicas.
type SetTrafficInput struct {
	Target  Target   `json:"target"`
	Service string   `json:"service"`
	Attach  []string `json:"attach,omitempty"`
	Detach  []string `json:"detach,omitempty"`
}

// ContainersInput names containers of one cluster (stop, start, remove).
type ContainersInput struct {
	Target Target   `json:"target"`
	Names  []string `json:"names"`
	// StopTimeout is the grace period of a stop before the kill (StopReplicas): the
	// service's stop_grace.
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	// HealthDeadline bounds the wait for health after a start (StartStopped).
	HealthDeadline time.Duration `json:"health_deadline,omitempty"`
}

// StopReplicasResult says how a stop went. Histories from before it existed hold no result
// for StopReplicas: decoded, that is the zero value, Grace 0, which claims nothing.
type StopReplicasResult struct {
	// Stopped are the named containers that were running and are stopped now.
	Stopped []string `json:"stopped,omitempty"`
	// Killed are those of Stopped that had not exited when the grace ran out: they were
	// killed (SIGKILL, exit code 137).
	Killed []string `json:"killed,omitempty"`
	// Grace is the grace period the engine gave each container (whole seconds).
	Grace time.Duration `json:"grace,omitempty"`
}

// RemoveReplicasInput removes containers by name and, with Service and Version set, every
// container of that service version on the cluster (also slots a failed start left
// behind). Removing what is gone is success.
type RemoveReplicasInput struct {
	Target  Target   `json:"target"`
	Names   []string `json:"names,omitempty"`
	Service string   `json:"service,omitempty"`
	Version string   `json:"version,omitempty"`
	// Keep names containers never removed by the Service/Version sweep.
	Keep []string `json:"keep,omitempty"`
}

// VerifyInput asks for a verification of the New replicas of a service against its
// Baseline replicas (same requests, same moments).
type VerifyInput struct {
	Target  Target `json:"target"`
	Service string `json:"service"`
	Stage   string `json:"stage"`
	// New and Baseline are container names; their addresses are looked up when the
	// verification starts (a container that is gone or has no address is unreachable).
	New      []string `json:"new"`
	Baseline []string `json:"baseline,omitempty"`
	// Verification is the service's resolved policy (defaults applied).
	Verification spec.Verification `json:"verification"`
	// HealthPath, when set, is probed on the new replicas at every tick too: a replica whose
	// health fails HealthRetries times in a row fails the verification (a version that turns
	// unhealthy during the soak).
	HealthPath    string `json:"health_path,omitempty"`
	HealthRetries int    `json:"health_retries,omitempty"`
}
