// Package dockerengine implements Slipway's engine port (package engine) with the Docker Go
// client. It is the only package that imports github.com/docker/docker.
//
// Containers are found by their deterministic names (engine.Key.ContainerName) and labels,
// never by state kept in memory, so every operation is idempotent and survives a worker
// restart. Nothing is ever pulled: images must already be in each engine's store.
//
// Health: with engine.HealthCheck.UseImage the image's own HEALTHCHECK decides (Docker's
// health status); with HTTPPath the adapter itself probes http://<container IP>:<port><path>
// from the worker, because a FROM scratch image has no binary a Docker HEALTHCHECK could
// run; with neither, a container that keeps running counts as healthy. The image's
// HEALTHCHECK is switched off unless UseImage, so only one judge speaks. The health
// settings are stored in labels, so WaitHealthy and List need nothing but the name.
package dockerengine

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/docker/go-connections/tlsconfig"

	"github.com/slipwayhq/slipway/engine"
)

// Options tune the adapter. The zero value is ready to use.
type Options struct {
	// CallTimeout bounds every non-streaming API call (default 30s); Stop adds its own
	// graceful timeout on top.
	CallTimeout time.Duration
	// PingTimeout bounds Ping (default 5s).
	PingTimeout time.Duration
	// PollInterval is how often WaitHealthy inspects a container whose health is judged by
	// Docker or by "running" (default 250ms). HTTP probes run at the health check's own
	// interval.
	PollInterval time.Duration
	// SettleTime is how long a container without a health check must keep running before
	// it counts as healthy, unless its StartPeriod is longer (default 1s).
	SettleTime time.Duration
	// Agent is the probe agent binary loaded into engines for engine-side probes (see
	// ResolveAgent; the zero value resolves $SLIPWAY_PROBE_AGENT or a slipway-probe binary
	// beside the executable when the first probe runs).
	Agent Agent

	agentBin *agentImage // shared by every engine of one Dialer
}

func (o Options) withDefaults() Options {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 5 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.SettleTime <= 0 {
		o.SettleTime = time.Second
	}
	if o.agentBin == nil {
		o.agentBin = &agentImage{}
	}
	return o
}

// Dialer opens engines, caching one Docker client per endpoint (host and TLS files), so
// every activity talking to one cluster shares one connection pool. It is safe for
// concurrent use. Engines it returns share the cached client: their Close does nothing;
// Dialer.Close closes every client.
type Dialer struct {
	opts Options

	mu      sync.Mutex
	engines map[endpointKey]*Engine
	swarms  map[endpointKey]*Swarm // clusters of kind swarm (their own clients)
}

var _ engine.Dialer = (*Dialer)(nil)

// endpointKey identifies a client: the cluster name does not matter, two clusters on one
// engine share a client.
type endpointKey struct {
	host, ca, cert, key string
	verify, direct      bool
}

// NewDialer returns a Dialer with the given options.
func NewDialer(opts Options) *Dialer {
	return &Dialer{opts: opts.withDefaults(), engines: map[endpointKey]*Engine{}, swarms: map[endpointKey]*Swarm{}}
}

// Dial returns the engine of ep. It does not contact the engine (a cluster that is down
// yields KindUnavailable errors from the operations, which the caller retries); a host
// URL or TLS file that cannot be used is an error of kind KindInvalid.
func (d *Dialer) Dial(_ context.Context, ep engine.Endpoint) (engine.Engine, error) {
	if ep.Swarm {
		return d.dialSwarm(ep)
	}
	return d.dial(ep)
}

// dialSwarm returns the Swarm adapter of a `kind: swarm` endpoint (a manager's API).
func (d *Dialer) dialSwarm(ep engine.Endpoint) (*Swarm, error) {
	k := endpointKey{host: ep.Host, ca: ep.TLSCA, cert: ep.TLSCert, key: ep.TLSKey, verify: ep.TLSVerify, direct: ep.DirectProbes}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.swarms[k]; ok {
		return s, nil
	}
	s, err := NewSwarm(ep, d.opts)
	if err != nil {
		return nil, err
	}
	s.shared = true
	d.swarms[k] = s
	return s, nil
}

func (d *Dialer) dial(ep engine.Endpoint) (*Engine, error) {
	k := endpointKey{host: ep.Host, ca: ep.TLSCA, cert: ep.TLSCert, key: ep.TLSKey, verify: ep.TLSVerify, direct: ep.DirectProbes}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.engines[k]; ok {
		return e, nil
	}
	e, err := New(ep, d.opts)
	if err != nil {
		return nil, err
	}
	e.shared = true
	d.engines[k] = e
	return e, nil
}

// Close closes every cached client.
func (d *Dialer) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var first error
	for k, e := range d.engines {
		if err := e.cli.Close(); err != nil && first == nil {
			first = err
		}
		delete(d.engines, k)
	}
	for k, s := range d.swarms {
		if err := s.cli.Close(); err != nil && first == nil {
			first = err
		}
		delete(d.swarms, k)
	}
	return first
}

// New opens an engine for ep outside any Dialer; its Close closes the client.
func New(ep engine.Endpoint, opts Options) (*Engine, error) {
	op := "dial " + displayHost(ep.Host)
	clientOpts := []client.Opt{client.WithAPIVersionNegotiation()}
	if ep.Host == "" {
		clientOpts = append(clientOpts, client.FromEnv)
	}
	if ep.TLSCA != "" || ep.TLSCert != "" || ep.TLSKey != "" || ep.TLSVerify {
		tlsConf, err := tlsconfig.Client(tlsconfig.Options{
			CAFile:             ep.TLSCA,
			CertFile:           ep.TLSCert,
			KeyFile:            ep.TLSKey,
			InsecureSkipVerify: !ep.TLSVerify,
			ExclusiveRootPools: true,
		})
		if err != nil {
			return nil, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: fmt.Errorf("TLS files: %w", err)}
		}
		// A fresh transport with the TLS settings; WithHost (below, or FromEnv above)
		// then configures it for the host's protocol.
		clientOpts = append(clientOpts, client.WithHTTPClient(&http.Client{
			Transport:     &http.Transport{TLSClientConfig: tlsConf},
			CheckRedirect: client.CheckRedirect,
		}))
		if ep.Host == "" {
			clientOpts = append(clientOpts, client.WithHostFromEnv())
		}
	}
	if ep.Host != "" {
		clientOpts = append(clientOpts, client.WithHost(ep.Host))
	}
	cli, err := client.NewClientWithOpts(clientOpts...)
	if err != nil {
		return nil, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: err}
	}
	opts = opts.withDefaults()
	return &Engine{cli: cli, opts: opts, host: displayHost(ep.Host), direct: ep.DirectProbes, agent: opts.Agent, agentBin: opts.agentBin}, nil
}

func displayHost(h string) string {
	if h == "" {
		return "DOCKER_HOST"
	}
	return h
}
