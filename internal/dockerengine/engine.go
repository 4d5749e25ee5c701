package dockerengine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/slipwayhq/slipway/engine"
)

// Labels the adapter adds beside engine.Label*: where the container takes traffic and how
// its health is judged, so WaitHealthy and List work from the name alone.
const (
	labelNetwork           = "io.slipway.network"
	labelAlias             = "io.slipway.alias"
	labelHealth            = "io.slipway.health" // "http", "image" or "none"
	labelHealthPath        = "io.slipway.health.path"
	labelHealthInterval    = "io.slipway.health.interval"
	labelHealthTimeout     = "io.slipway.health.timeout"
	labelHealthRetries     = "io.slipway.health.retries"
	labelHealthStartPeriod = "io.slipway.health.start-period"
)

// Health modes stored in labelHealth.
const (
	healthHTTP  = "http"
	healthImage = "image"
	healthNone  = "none"
)

// Engine is one Docker engine. It implements engine.Engine.
type Engine struct {
	cli    *client.Client
	opts   Options
	host   string
	shared bool // owned by a Dialer: Close does nothing
	direct bool // probes: direct (run from the worker, not in a probe container)

	netLocks sync.Map // network name -> *sync.Mutex serialising its creation

	agent      Agent       // the probe agent binary (engine-side probes)
	agentBin   *agentImage // its bytes and hash, shared by the engines of a Dialer
	probeMu    sync.Mutex  // guards probeImage and lastSweep; held while the image builds
	probeImage string      // the probe image known to be on this engine
	lastSweep  time.Time   // last sweep of stale probe containers
}

var _ engine.Engine = (*Engine)(nil)

// Close releases the client, unless the engine came from a Dialer (Dialer.Close does).
func (e *Engine) Close() error {
	if e.shared {
		return nil
	}
	return e.cli.Close()
}

// Host is the engine's address as given ("DOCKER_HOST" for the process environment).
func (e *Engine) Host() string { return e.host }

// call bounds one non-streaming API call.
func (e *Engine) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.opts.CallTimeout)
}

// Ping checks the engine answers within Options.PingTimeout.
func (e *Engine) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.PingTimeout)
	defer cancel()
	_, err := e.cli.Ping(ctx)
	return classify("ping "+e.host, err)
}

// EnsureNetwork creates the named bridge network when missing, with labels plus
// io.slipway.managed=true.
func (e *Engine) EnsureNetwork(ctx context.Context, name string, labels map[string]string) error {
	_, err := e.ensureNetwork(ctx, name, labels)
	return err
}

// ensureNetwork returns the ID of the network named name, creating it when missing.
//
// Docker does not make network names unique: its duplicate check races with concurrent
// creates (measured on 20.10: four concurrent creates, four networks). So creates are
// serialised per name within this process, and a create that still loses a race with
// another process (more than one network of that name afterwards) removes its own network
// and uses the oldest one, which every racer picks alike.
func (e *Engine) ensureNetwork(ctx context.Context, name string, labels map[string]string) (string, error) {
	op := "ensure network " + name
	if name == "" {
		return "", &engine.Error{Kind: engine.KindInvalid, Op: op, Err: errors.New("empty network name")}
	}
	mu, _ := e.netLocks.LoadOrStore(name, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	nets, err := e.networksNamed(ctx, op, name)
	if err != nil || len(nets) > 0 {
		return firstID(nets), err
	}
	all := map[string]string{engine.LabelManaged: "true"}
	for k, v := range labels {
		all[k] = v
	}
	cctx, cancel := e.call(ctx)
	created, err := e.cli.NetworkCreate(cctx, name, network.CreateOptions{Driver: "bridge", Labels: all})
	cancel()
	if err != nil && kindOf(err) != engine.KindConflict {
		return "", classify(op, err)
	}
	nets, err = e.networksNamed(ctx, op, name)
	if err != nil {
		return "", err
	}
	if len(nets) == 0 {
		return "", &engine.Error{Kind: engine.KindInternal, Op: op, Err: errors.New("network created but not listed")}
	}
	if created.ID != "" && nets[0].ID != created.ID {
		// Lost a race with another process: ours goes, theirs stays.
		cctx, cancel := e.call(ctx)
		rmErr := e.cli.NetworkRemove(cctx, created.ID)
		cancel()
		if rmErr != nil && kindOf(rmErr) != engine.KindNotFound {
			return "", classify(op+": removing a duplicate", rmErr)
		}
	}
	return nets[0].ID, nil
}

// networksNamed lists the networks named exactly name, oldest first.
func (e *Engine) networksNamed(ctx context.Context, op, name string) ([]network.Summary, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	list, err := e.cli.NetworkList(cctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return nil, classify(op, err)
	}
	var out []network.Summary
	for _, n := range list {
		if n.Name == name { // the filter matches substrings
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func firstID(nets []network.Summary) string {
	if len(nets) == 0 {
		return ""
	}
	return nets[0].ID
}

// RemoveNetwork removes the network(s) named name; none is success. It is not part of the
// port: tests and sweeps use it. A network in use is KindConflict.
func (e *Engine) RemoveNetwork(ctx context.Context, name string) error {
	op := "remove network " + name
	nets, err := e.networksNamed(ctx, op, name)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nets {
		cctx, cancel := e.call(ctx)
		err := e.cli.NetworkRemove(cctx, n.ID)
		cancel()
		if err != nil && kindOf(err) != engine.KindNotFound {
			errs = append(errs, classify(op, err))
		}
	}
	return errors.Join(errs...)
}

// ImagePresent returns nil when image is in the engine's store, KindImageMissing when not.
// Nothing is pulled.
func (e *Engine) ImagePresent(ctx context.Context, image string) error {
	op := "image " + image
	if image == "" {
		return &engine.Error{Kind: engine.KindInvalid, Op: op, Err: errors.New("empty image reference")}
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	_, err := e.cli.ImageInspect(cctx, image)
	if err != nil && kindOf(err) == engine.KindNotFound {
		return &engine.Error{Kind: engine.KindImageMissing, Op: op,
			Err: fmt.Errorf("image %s is not in the store of engine %s (Slipway never pulls: build or load it there): %w", image, e.host, err)}
	}
	return classify(op, err)
}

// inspect returns the container named name.
func (e *Engine) inspect(ctx context.Context, op, name string) (container.InspectResponse, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	c, err := e.cli.ContainerInspect(cctx, name)
	return c, classify(op, err)
}

// Ensure creates (when missing) and starts (when not running) the container of spec. A
// container of that name with another image, or not made by Slipway, is KindConflict; a
// missing image is KindImageMissing.
func (e *Engine) Ensure(ctx context.Context, spec engine.ContainerSpec) (engine.Container, error) {
	name := spec.ContainerName()
	op := "ensure " + name
	if err := validateSpec(spec); err != nil {
		return engine.Container{}, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: err}
	}

	c, err := e.inspect(ctx, op, name)
	if isKind(err, engine.KindNotFound) {
		c, err = e.create(ctx, op, spec)
	}
	if err != nil {
		return engine.Container{}, err
	}
	if c.Config == nil || c.State == nil {
		return engine.Container{}, &engine.Error{Kind: engine.KindInternal, Op: op, Err: errors.New("engine returned an incomplete inspect")}
	}
	if c.Config.Labels[engine.LabelManaged] != "true" {
		return engine.Container{}, &engine.Error{Kind: engine.KindConflict, Op: op,
			Err: fmt.Errorf("a container named %s exists that Slipway did not create", name)}
	}
	if c.Config.Image != spec.Image {
		return engine.Container{}, &engine.Error{Kind: engine.KindConflict, Op: op,
			Err: fmt.Errorf("container %s runs image %s, not %s", name, c.Config.Image, spec.Image)}
	}

	switch c.State.Status {
	case container.StateRunning, container.StateRestarting:
	case container.StatePaused:
		cctx, cancel := e.call(ctx)
		err = e.cli.ContainerUnpause(cctx, c.ID)
		cancel()
	case container.StateDead:
		// A dead container cannot be started: replace it.
		if err = e.Remove(ctx, name); err == nil {
			if _, err = e.create(ctx, op, spec); err == nil {
				err = e.start(ctx, op, name)
			}
		}
	default: // created, exited
		err = e.start(ctx, op, name)
	}
	if err != nil {
		return engine.Container{}, classify(op, err)
	}
	c, err = e.inspect(ctx, op, name)
	if err != nil {
		return engine.Container{}, err
	}
	// A kept replica that was taken out of traffic (Detach) and stopped is on no network:
	// put it back on the spec's network (with the spec's alias, if any) so it can be probed
	// and attached again.
	if spec.Network != "" {
		if _, ok := endpoint(c, spec.Network); !ok {
			if err := e.Attach(ctx, name, spec.Network, spec.Alias); err != nil {
				return engine.Container{}, err
			}
			if c, err = e.inspect(ctx, op, name); err != nil {
				return engine.Container{}, err
			}
		}
	}
	// No probe: a container that has just started is not worth one; WaitHealthy judges.
	return e.toContainer(c), nil
}

func validateSpec(s engine.ContainerSpec) error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"environment", s.Environment}, {"cluster", s.Cluster}, {"service", s.Service},
		{"version", s.Version}, {"image", s.Image},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("container spec without %s", strings.Join(missing, ", "))
	}
	if s.Slot < 0 {
		return fmt.Errorf("negative slot %d", s.Slot)
	}
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("port %d out of range", s.Port)
	}
	if s.Health.HTTPPath != "" && s.Port == 0 {
		return errors.New("an HTTP health check needs the container port")
	}
	if s.Health.HTTPPath != "" && s.Health.UseImage {
		return errors.New("health check: HTTP path and the image's HEALTHCHECK are exclusive")
	}
	return nil
}

// create checks the image, ensures the network and creates the container. A concurrent
// create of the same name is not an error: the container it made is returned.
func (e *Engine) create(ctx context.Context, op string, spec engine.ContainerSpec) (container.InspectResponse, error) {
	name := spec.ContainerName()
	if err := e.ImagePresent(ctx, spec.Image); err != nil {
		return container.InspectResponse{}, err
	}
	networkID := ""
	if spec.Network != "" {
		id, err := e.ensureNetwork(ctx, spec.Network, map[string]string{
			engine.LabelEnvironment: spec.Environment,
			engine.LabelCluster:     spec.Cluster,
		})
		if err != nil {
			return container.InspectResponse{}, err
		}
		networkID = id
	}
	cfg, hostCfg, netCfg := containerConfig(spec, networkID)
	err := e.whileAmbiguous(ctx, func() error {
		cctx, cancel := e.call(ctx)
		defer cancel()
		_, err := e.cli.ContainerCreate(cctx, cfg, hostCfg, netCfg, nil, name)
		return err
	})
	if err == nil {
		return e.inspect(ctx, op, name)
	}
	if kindOf(err) != engine.KindConflict {
		// NotFound here: the image or network went away between the check and the create.
		return container.InspectResponse{}, classify(op, err)
	}
	// Name in use: a concurrent Ensure created it. Its container can be briefly invisible
	// to inspect while the engine registers it.
	for range 25 {
		c, ierr := e.inspect(ctx, op, name)
		if !isKind(ierr, engine.KindNotFound) {
			return c, ierr
		}
		select {
		case <-ctx.Done():
			return container.InspectResponse{}, classify(op, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return container.InspectResponse{}, classify(op, err)
}

// containerConfig translates a spec into Docker's create request; the container joins the
// network by ID (a name could be ambiguous, see ensureNetwork).
func containerConfig(spec engine.ContainerSpec, networkID string) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	labels := map[string]string{
		engine.LabelManaged:     "true",
		engine.LabelEnvironment: spec.Environment,
		engine.LabelCluster:     spec.Cluster,
		engine.LabelService:     spec.Service,
		engine.LabelVersion:     spec.Version,
		engine.LabelRelease:     spec.Release,
		engine.LabelRole:        string(spec.Role),
		engine.LabelSlot:        strconv.Itoa(spec.Slot),
	}
	if spec.Port > 0 {
		labels[engine.LabelPort] = strconv.Itoa(spec.Port)
	}
	if spec.Network != "" {
		labels[labelNetwork] = spec.Network
	}
	if spec.Alias != "" {
		labels[labelAlias] = spec.Alias
	}
	h := spec.Health
	// Docker's own health check only for UseImage; the adapter judges the others.
	healthCfg := &container.HealthConfig{Test: []string{"NONE"}}
	switch {
	case h.HTTPPath != "":
		labels[labelHealth] = healthHTTP
		labels[labelHealthPath] = h.HTTPPath
	case h.UseImage:
		labels[labelHealth] = healthImage
		// Test left empty inherits the image's command; the timings override its own.
		healthCfg = &container.HealthConfig{Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
	default:
		labels[labelHealth] = healthNone
	}
	if h.Interval > 0 {
		labels[labelHealthInterval] = h.Interval.String()
	}
	if h.Timeout > 0 {
		labels[labelHealthTimeout] = h.Timeout.String()
	}
	if h.Retries > 0 {
		labels[labelHealthRetries] = strconv.Itoa(h.Retries)
	}
	if h.StartPeriod > 0 {
		labels[labelHealthStartPeriod] = h.StartPeriod.String()
	}

	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)

	cfg := &container.Config{
		Image:       spec.Image,
		Env:         env,
		Labels:      labels,
		Healthcheck: healthCfg,
	}
	if len(spec.Command) > 0 {
		cfg.Cmd = append([]string(nil), spec.Command...)
	}
	if spec.Port > 0 {
		cfg.ExposedPorts = nat.PortSet{nat.Port(strconv.Itoa(spec.Port) + "/tcp"): struct{}{}}
	}

	hostCfg := &container.HostConfig{
		// Slipway manages the lifecycle: a crashed replica stays down and is reported.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources:     container.Resources{Memory: spec.MemoryBytes, NanoCPUs: spec.NanoCPUs},
		// Whether privileged containers and host mounts are allowed is the cluster
		// policy's decision, checked before a spec gets here.
		Privileged: spec.Privileged,
	}
	for _, m := range spec.Mounts {
		hostCfg.Mounts = append(hostCfg.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	var netCfg *network.NetworkingConfig
	if networkID != "" {
		hostCfg.NetworkMode = container.NetworkMode(networkID)
		ep := &network.EndpointSettings{}
		if spec.Alias != "" {
			ep.Aliases = []string{spec.Alias}
		}
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{networkID: ep}}
	}
	return cfg, hostCfg, netCfg
}

func (e *Engine) start(ctx context.Context, op, name string) error {
	return classify(op, e.whileAmbiguous(ctx, func() error {
		cctx, cancel := e.call(ctx)
		defer cancel()
		return e.cli.ContainerStart(cctx, name, container.StartOptions{})
	}))
}

// whileAmbiguous runs fn again (for up to 5 s) while the engine says a network name is
// ambiguous: another process lost a create race (see ensureNetwork) and is about to remove
// its duplicate.
func (e *Engine) whileAmbiguous(ctx context.Context, fn func() error) error {
	for range 20 {
		err := fn()
		if err == nil || !strings.Contains(err.Error(), "is ambiguous") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fn()
}

// Start starts a stopped container; a running one is left alone. A missing one is
// KindNotFound.
func (e *Engine) Start(ctx context.Context, name string) error {
	return e.start(ctx, "start "+name, name)
}

// Stop stops a container: SIGTERM (or the image's stop signal), then SIGKILL after
// timeout (0: at once; negative: the engine's default). Missing or stopped is success.
func (e *Engine) Stop(ctx context.Context, name string, timeout time.Duration) error {
	var secs *int
	if timeout >= 0 {
		s := int(math.Ceil(timeout.Seconds()))
		secs = &s
		timeout = time.Duration(s) * time.Second
	} else {
		timeout = 10 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, e.opts.CallTimeout+timeout)
	defer cancel()
	err := e.cli.ContainerStop(cctx, name, container.StopOptions{Timeout: secs})
	if err != nil && kindOf(err) == engine.KindNotFound {
		return nil
	}
	return classify("stop "+name, err)
}

// Remove removes a container (force: a running one is killed) and its anonymous volumes.
// Missing is success, and so is a removal already in progress that completes.
func (e *Engine) Remove(ctx context.Context, name string) error {
	op := "remove " + name
	cctx, cancel := e.call(ctx)
	err := e.cli.ContainerRemove(cctx, name, container.RemoveOptions{Force: true, RemoveVolumes: true})
	cancel()
	switch kindOf(err) {
	case "":
		return nil
	case engine.KindNotFound:
		return nil
	case engine.KindConflict: // "removal already in progress": wait for it
		for range 50 {
			if _, ierr := e.inspect(ctx, op, name); isKind(ierr, engine.KindNotFound) {
				return nil
			}
			select {
			case <-ctx.Done():
				return classify(op, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return classify(op, err)
}

// Attach puts the container on network under alias; a no-op when it already is.
func (e *Engine) Attach(ctx context.Context, name, networkName, alias string) error {
	op := fmt.Sprintf("attach %s to %s as %s", name, networkName, alias)
	c, err := e.inspect(ctx, op, name)
	if err != nil {
		return err
	}
	if ep, ok := endpoint(c, networkName); ok {
		if alias == "" || hasAlias(ep, alias) {
			return nil
		}
		// On the network without the alias: reconnect with it.
		if err := e.disconnect(ctx, op, c.ID, networkName); err != nil {
			return err
		}
	}
	settings := &network.EndpointSettings{}
	if alias != "" {
		settings.Aliases = []string{alias}
	}
	err = e.whileAmbiguous(ctx, func() error {
		cctx, cancel := e.call(ctx)
		defer cancel()
		return e.cli.NetworkConnect(cctx, networkName, c.ID, settings)
	})
	if err != nil {
		// A concurrent Attach may have won: success if the container is there now.
		if c, ierr := e.inspect(ctx, op, name); ierr == nil {
			if ep, ok := endpoint(c, networkName); ok && (alias == "" || hasAlias(ep, alias)) {
				return nil
			}
		}
		return classify(op, err)
	}
	return nil
}

// Detach takes the container out of traffic: it stays on network, running, with its
// address, but without any alias, so Docker's DNS no longer answers the service name with
// it while it can still be probed (as the baseline of a verification, or before it takes
// traffic again). A no-op when it is already so, or when the container, the network or its
// endpoint is gone.
func (e *Engine) Detach(ctx context.Context, name, networkName string) error {
	op := fmt.Sprintf("detach %s from traffic on %s", name, networkName)
	c, err := e.inspect(ctx, op, name)
	if isKind(err, engine.KindNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ep, ok := endpoint(c, networkName)
	if !ok || len(ep.Aliases) == 0 || onlyOwnAliases(c, ep) {
		return nil
	}
	if err := e.disconnect(ctx, op, c.ID, networkName); err != nil {
		return err
	}
	err = e.whileAmbiguous(ctx, func() error {
		cctx, cancel := e.call(ctx)
		defer cancel()
		return e.cli.NetworkConnect(cctx, networkName, c.ID, &network.EndpointSettings{})
	})
	if err != nil && kindOf(err) != engine.KindNotFound {
		// A concurrent Detach may have reconnected it already.
		if c, ierr := e.inspect(ctx, op, name); ierr == nil {
			if _, ok := endpoint(c, networkName); ok {
				return nil
			}
		}
		return classify(op, err)
	}
	return nil
}

// onlyOwnAliases: the endpoint's aliases are only the ones Docker adds by itself (the
// container's short ID), not a service name.
func onlyOwnAliases(c container.InspectResponse, ep *network.EndpointSettings) bool {
	for _, a := range ep.Aliases {
		if c.ID == "" || !strings.HasPrefix(c.ID, a) {
			return false
		}
	}
	return true
}

func (e *Engine) disconnect(ctx context.Context, op, id, networkName string) error {
	err := e.whileAmbiguous(ctx, func() error {
		cctx, cancel := e.call(ctx)
		defer cancel()
		return e.cli.NetworkDisconnect(cctx, networkName, id, false)
	})
	if err != nil && kindOf(err) == engine.KindNotFound {
		return nil
	}
	return classify(op, err)
}

func endpoint(c container.InspectResponse, networkName string) (*network.EndpointSettings, bool) {
	if c.NetworkSettings == nil {
		return nil, false
	}
	ep, ok := c.NetworkSettings.Networks[networkName]
	return ep, ok && ep != nil
}

func hasAlias(ep *network.EndpointSettings, alias string) bool {
	for _, a := range ep.Aliases {
		if a == alias {
			return true
		}
	}
	return false
}

// selectorFilters are the label filters of sel: Slipway's own objects of the environment,
// narrowed to the cluster, service and version sel names (containers and Swarm services alike).
func selectorFilters(sel engine.Selector) filters.Args {
	f := filters.NewArgs(
		filters.Arg("label", engine.LabelManaged+"=true"),
		filters.Arg("label", engine.LabelEnvironment+"="+sel.Environment),
	)
	for _, l := range []struct{ key, value string }{
		{engine.LabelCluster, sel.Cluster}, {engine.LabelService, sel.Service}, {engine.LabelVersion, sel.Version},
	} {
		if l.value != "" {
			f.Add("label", l.key+"="+l.value)
		}
	}
	return f
}

// List returns Slipway's containers matching sel, sorted by name, with their health (for
// HTTP-checked containers: one probe now), whether they take traffic and their address.
func (e *Engine) List(ctx context.Context, sel engine.Selector) ([]engine.Container, error) {
	op := "list " + sel.Environment
	if sel.Environment == "" {
		return nil, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: errors.New("selector without environment")}
	}
	f := selectorFilters(sel)
	cctx, cancel := e.call(ctx)
	summaries, err := e.cli.ContainerList(cctx, container.ListOptions{All: true, Filters: f})
	cancel()
	if err != nil {
		return nil, classify(op, err)
	}

	// Probe containers carry the environment's labels too; they are not replicas.
	summaries = slices.DeleteFunc(summaries, func(s container.Summary) bool { return s.Labels[engine.LabelRole] == roleProbe })
	out := make([]engine.Container, len(summaries))
	found := make([]bool, len(summaries))
	errs := make([]error, len(summaries))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, s := range summaries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := e.inspect(ctx, op, s.ID)
			if isKind(err, engine.KindNotFound) {
				return // removed meanwhile
			}
			if err != nil {
				errs[i] = err
				return
			}
			out[i], found[i] = e.toContainer(c), true
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	list := out[:0]
	for i, c := range out {
		if found[i] {
			list = append(list, c)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list, nil
}

// toContainer converts an inspect result.
func (e *Engine) toContainer(c container.InspectResponse) engine.Container {
	var labels map[string]string
	if c.Config != nil {
		labels = c.Config.Labels
	}
	slot, _ := strconv.Atoi(labels[engine.LabelSlot])
	out := engine.Container{
		Key: engine.Key{
			Environment: labels[engine.LabelEnvironment],
			Cluster:     labels[engine.LabelCluster],
			Service:     labels[engine.LabelService],
			Version:     labels[engine.LabelVersion],
			Slot:        slot,
		},
		Release: labels[engine.LabelRelease],
		Role:    engine.Role(labels[engine.LabelRole]),
	}
	if c.ContainerJSONBase != nil {
		out.ID = c.ID
		out.Name = strings.TrimPrefix(c.Name, "/")
		if c.State != nil {
			out.State = string(c.State.Status)
		}
	}
	if c.Config != nil {
		out.Image = c.Config.Image
	}
	netName, alias := trafficNetwork(labels)
	if ep, ok := endpoint(c, netName); ok {
		out.InTraffic = alias != "" && hasAlias(ep, alias)
		if port := labels[engine.LabelPort]; port != "" && ep.IPAddress != "" && out.Running() {
			out.Address = net.JoinHostPort(ep.IPAddress, port)
		}
	}
	out.Health = e.health(c)
	return out
}

// trafficNetwork returns the network and alias under which the container takes traffic.
func trafficNetwork(labels map[string]string) (networkName, alias string) {
	networkName, alias = labels[labelNetwork], labels[labelAlias]
	if networkName == "" {
		networkName = engine.NetworkName(labels[engine.LabelEnvironment], labels[engine.LabelCluster])
	}
	if alias == "" {
		alias = labels[engine.LabelService]
	}
	return networkName, alias
}
