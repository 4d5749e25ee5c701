package dockerengine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/probe"
)

// Labels of a Swarm service that say which replica slots it holds: up (running, counted in
// its scale) and known (up, or kept at scale 0 after a Stop or Detach). Comma-separated,
// sorted slot numbers.
const (
	labelSwarmUp    = "io.slipway.swarm.up"
	labelSwarmKnown = "io.slipway.swarm.known"
	// labelSwarmSlotRole and labelSwarmSlotRelease, followed by a slot number, are that
	// slot's role and release (slotIdentity).
	labelSwarmSlotRole    = "io.slipway.swarm.role."
	labelSwarmSlotRelease = "io.slipway.swarm.release."
)

// slotIdentity is the role and release of one slot of a service. They are kept per slot
// because one version's service holds slots of different roles at once: a load test's
// scale-out adds slots (role loadtest, release = its run) to the serving version's service,
// beside its stable slots, and its scale-in must find exactly those. (With the service's
// role and release only, the scale-out relabelled every slot of the service as the load
// test's, and its scale-in then removed the serving replicas too, and the service with them.)
// The service's own io.slipway.role and io.slipway.release are its first slot's, and the
// identity of a slot without labels of its own (a service made before slots had them).
func slotIdentity(l map[string]string, slot int) (engine.Role, string) {
	role, ok := l[labelSwarmSlotRole+strconv.Itoa(slot)]
	if !ok {
		role = l[engine.LabelRole]
	}
	release, ok := l[labelSwarmSlotRelease+strconv.Itoa(slot)]
	if !ok {
		release = l[engine.LabelRelease]
	}
	return engine.Role(role), release
}

// setSlotIdentity records a slot's role and release (nothing else of the service changes).
func setSlotIdentity(l map[string]string, slot int, role engine.Role, release string) {
	l[labelSwarmSlotRole+strconv.Itoa(slot)] = string(role)
	l[labelSwarmSlotRelease+strconv.Itoa(slot)] = release
}

// forgetSlotIdentity drops a removed slot's role and release.
func forgetSlotIdentity(l map[string]string, slot int) {
	delete(l, labelSwarmSlotRole+strconv.Itoa(slot))
	delete(l, labelSwarmSlotRelease+strconv.Itoa(slot))
}

// Swarm is a Swarm manager's API (a cluster of `kind: swarm`). It implements engine.Engine
// on top of Swarm services, so the activities and workflows do not change:
//
//   - One Swarm service per version of a service (SwarmServiceName), labelled like a plain
//     engine's containers (environment, cluster, service, version, role, release), on the
//     environment's attachable overlay network under the service's alias, in dnsrr endpoint
//     mode (no IPVS needed): the alias resolves to every running task of every version.
//   - A replica slot (engine.Key) is a unit of the service's scale. Ensure adds its slot
//     (creating the service at scale 1, or scaling it up); Stop and Detach take the slot
//     down (scale down, the slot stays known, reported as exited); Start and Attach bring a
//     known slot back up; Remove forgets it, and the service goes with its last slot. The
//     slots are kept in the service's labels, so nothing lives in memory.
//   - A replica's name is still engine.Key.ContainerName; List maps the up slots, in order,
//     onto the service's running tasks, in slot order.
//   - Secrets (ContainerSpec.Secrets) are Swarm secrets, one per value, mounted at
//     /run/secrets/<name>; placement and reservations go to the service's task template.
//   - Health: WaitHealthy waits for the slot's task and then judges its container as a plain
//     engine does (probe container beside it, image check or settle time); a task that fails
//     or is rejected meanwhile is unhealthy. Swarm's restart policy stays on (condition any),
//     but every die of a task's container is in Events, so the lifecycle watch counts a
//     restart by Swarm as a failure, not as healing.
//
// Differences from a plain engine (docs/swarm.md): a task takes traffic as soon as it runs
// (Swarm gives the alias to every task), so Attach and Detach move a slot in and out of the
// service's scale rather than a network alias, and a detached replica does not keep running;
// the stop grace is the service's (Docker's default 10 s), not Stop's timeout. Updates never
// query a registry (images must be on the nodes, as for plain engines). The container-level
// calls (health probes, logs, events) reach the tasks on the manager's own node: this adapter
// is tested on a single-node swarm.
type Swarm struct {
	*Engine

	svcLocks sync.Map // service name -> *sync.Mutex serialising its updates in this process
	// secretsMu: a service create with Swarm secrets holds it shared from the secrets'
	// creation to the service's, a prune of unused secrets exclusively, so this process
	// never removes a secret it is about to use.
	secretsMu sync.RWMutex
}

var _ engine.Engine = (*Swarm)(nil)

// NewSwarm opens a Swarm manager's API outside any Dialer; its Close closes the client.
func NewSwarm(ep engine.Endpoint, opts Options) (*Swarm, error) {
	e, err := New(ep, opts)
	if err != nil {
		return nil, err
	}
	return &Swarm{Engine: e}, nil
}

var swarmNameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// SwarmServiceName is the deterministic Swarm service name of a service version:
// slipway-<environment>-<cluster>-<service>-<version>, with every run of characters Swarm
// refuses in a name made a '-', at most 63 characters (a longer one is cut and ends with a
// hash of the whole, so two versions never share a name by the cut).
func SwarmServiceName(k engine.Key) string {
	full := fmt.Sprintf("slipway-%s-%s-%s-%s", k.Environment, k.Cluster, k.Service, k.Version)
	n := strings.Trim(swarmNameUnsafe.ReplaceAllString(full, "-"), "-")
	if len(n) > 63 || n != full {
		// Sanitised or long: a hash of the exact identity keeps names of distinct versions
		// ("1.0", "1-0") apart.
		sum := sha256.Sum256([]byte(full))
		h := hex.EncodeToString(sum[:])[:10]
		if len(n) > 52 {
			n = strings.TrimRight(n[:52], "-")
		}
		n += "-" + h
	}
	return n
}

// SwarmNetworkName is the name a network has on a swarm: Swarm wants DNS name components,
// so engine.NetworkName's dots become dashes (slipway-<environment>-<cluster>). The adapter
// takes the engine port's names and translates them.
func SwarmNetworkName(name string) string { return strings.ReplaceAll(name, ".", "-") }

// EnsureNetwork creates the environment's network on the swarm when missing: overlay,
// attachable (probe containers join it), labelled, named SwarmNetworkName(name).
func (s *Swarm) EnsureNetwork(ctx context.Context, name string, labels map[string]string) error {
	name = SwarmNetworkName(name)
	op := "ensure swarm network " + name
	if name == "" {
		return &engine.Error{Kind: engine.KindInvalid, Op: op, Err: errors.New("empty network name")}
	}
	mu, _ := s.netLocks.LoadOrStore(name, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	nets, err := s.networksNamed(ctx, op, name)
	if err != nil {
		return err
	}
	if len(nets) > 0 {
		// A swarm network not yet used on this node may be listed without its driver
		// (measured on 20.10): its scope says enough.
		if n := nets[0]; n.Scope != "swarm" || (n.Driver != "overlay" && n.Driver != "") || !n.Attachable {
			return &engine.Error{Kind: engine.KindConflict, Op: op, Err: fmt.Errorf("network %s exists with driver %q, scope %q (attachable %t), not an attachable overlay network", name, n.Driver, n.Scope, n.Attachable)}
		}
		return nil
	}
	all := map[string]string{engine.LabelManaged: "true"}
	for k, v := range labels {
		all[k] = v
	}
	cctx, cancel := s.call(ctx)
	_, err = s.cli.NetworkCreate(cctx, name, network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: true, Labels: all})
	cancel()
	if err != nil && kindOf(err) == engine.KindConflict {
		return nil // made meanwhile by another process
	}
	return classify(op, err)
}

// slots reads a comma-separated slot set from a label.
func slots(labels map[string]string, key string) []int {
	var out []int
	for _, f := range strings.Split(labels[key], ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n >= 0 && !containsInt(out, n) {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

func setSlots(labels map[string]string, key string, s []int) {
	sort.Ints(s)
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = strconv.Itoa(n)
	}
	labels[key] = strings.Join(parts, ",")
}

func containsInt(s []int, n int) bool {
	for _, x := range s {
		if x == n {
			return true
		}
	}
	return false
}

func withInt(s []int, n int) []int {
	if containsInt(s, n) {
		return s
	}
	return append(append([]int(nil), s...), n)
}

func withoutInt(s []int, n int) []int {
	var out []int
	for _, x := range s {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}

func (s *Swarm) lock(name string) func() {
	mu, _ := s.svcLocks.LoadOrStore(name, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

// services lists Slipway's Swarm services matching sel.
func (s *Swarm) services(ctx context.Context, op string, sel engine.Selector) ([]swarm.Service, error) {
	f := selectorFilters(sel)
	cctx, cancel := s.call(ctx)
	defer cancel()
	svcs, err := s.cli.ServiceList(cctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		return nil, classify(op, err)
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Spec.Name < svcs[j].Spec.Name })
	return svcs, nil
}

// service returns the service of a version, by its name; ok false when there is none.
func (s *Swarm) service(ctx context.Context, op string, k engine.Key) (swarm.Service, bool, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	svc, _, err := s.cli.ServiceInspectWithRaw(cctx, SwarmServiceName(k), swarm.ServiceInspectOptions{})
	if kindOf(err) == engine.KindNotFound {
		return swarm.Service{}, false, nil
	}
	if err != nil {
		return swarm.Service{}, false, classify(op, err)
	}
	l := svc.Spec.Labels
	if l[engine.LabelEnvironment] != k.Environment || l[engine.LabelCluster] != k.Cluster || l[engine.LabelService] != k.Service || l[engine.LabelVersion] != k.Version {
		return swarm.Service{}, false, &engine.Error{Kind: engine.KindConflict, Op: op, Err: fmt.Errorf("swarm service %s belongs to %s/%s/%s@%s", svc.Spec.Name, l[engine.LabelEnvironment], l[engine.LabelCluster], l[engine.LabelService], l[engine.LabelVersion])}
	}
	return svc, true, nil
}

// resolve finds the service and slot of a replica name (engine.Key.ContainerName).
func (s *Swarm) resolve(ctx context.Context, op, name string) (swarm.Service, int, error) {
	parts := strings.Split(name, ".")
	if len(parts) < 6 || parts[0] != "slipway" {
		return swarm.Service{}, 0, &engine.Error{Kind: engine.KindNotFound, Op: op, Err: fmt.Errorf("%s is not the name of a Slipway replica", name)}
	}
	svcs, err := s.services(ctx, op, engine.Selector{Environment: parts[1], Cluster: parts[2], Service: parts[3]})
	if err != nil {
		return swarm.Service{}, 0, err
	}
	for _, svc := range svcs {
		l := svc.Spec.Labels
		for _, slot := range slots(l, labelSwarmKnown) {
			k := engine.Key{Environment: l[engine.LabelEnvironment], Cluster: l[engine.LabelCluster], Service: l[engine.LabelService], Version: l[engine.LabelVersion], Slot: slot}
			if k.ContainerName() == name {
				return svc, slot, nil
			}
		}
	}
	return swarm.Service{}, 0, &engine.Error{Kind: engine.KindNotFound, Op: op, Err: fmt.Errorf("no swarm service holds replica %s", name)}
}

// update changes a service's labels (and scale, to the number of up slots) through fn,
// retrying when another writer updated it in between. It never touches the task template,
// so no task restarts, and never asks a registry. ok false from fn: nothing to change.
func (s *Swarm) update(ctx context.Context, op, name string, fn func(labels map[string]string) bool) (swarm.Service, error) {
	defer s.lock(name)()
	for attempt := 0; ; attempt++ {
		cctx, cancel := s.call(ctx)
		svc, _, err := s.cli.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
		cancel()
		if err != nil {
			return swarm.Service{}, classify(op, err)
		}
		spec := svc.Spec
		labels := map[string]string{}
		for k, v := range spec.Labels {
			labels[k] = v
		}
		if !fn(labels) {
			return svc, nil
		}
		spec.Labels = labels
		n := uint64(len(slots(labels, labelSwarmUp)))
		if spec.Mode.Replicated == nil {
			return swarm.Service{}, &engine.Error{Kind: engine.KindConflict, Op: op, Err: fmt.Errorf("swarm service %s is not replicated", name)}
		}
		spec.Mode.Replicated.Replicas = &n
		cctx, cancel = s.call(ctx)
		_, err = s.cli.ServiceUpdate(cctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{QueryRegistry: false})
		cancel()
		if err != nil && attempt < 8 && strings.Contains(err.Error(), "out of sequence") {
			continue
		}
		if err != nil {
			return swarm.Service{}, classify(op, err)
		}
		cctx, cancel = s.call(ctx)
		svc, _, err = s.cli.ServiceInspectWithRaw(cctx, svc.ID, swarm.ServiceInspectOptions{})
		cancel()
		return svc, classify(op, err)
	}
}

// serviceSpec builds the Swarm service of a version from the spec of its first slot.
func serviceSpec(cs engine.ContainerSpec, networkID string, secrets []*swarm.SecretReference) swarm.ServiceSpec {
	cfg, _, _ := containerConfig(cs, networkID) // the labels a plain engine puts on a replica
	taskLabels := map[string]string{}
	for k, v := range cfg.Labels {
		taskLabels[k] = v
	}
	delete(taskLabels, engine.LabelSlot) // one template for every slot
	svcLabels := map[string]string{}
	for k, v := range taskLabels {
		svcLabels[k] = v
	}
	setSlots(svcLabels, labelSwarmUp, []int{cs.Slot})
	setSlots(svcLabels, labelSwarmKnown, []int{cs.Slot})
	setSlotIdentity(svcLabels, cs.Slot, cs.Role, cs.Release)

	var env []string
	for k, v := range cs.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	c := &swarm.ContainerSpec{
		Image:       cs.Image,
		Labels:      taskLabels,
		Args:        cs.Command,
		Env:         env,
		Healthcheck: cfg.Healthcheck,
		Secrets:     secrets,
	}
	for _, m := range cs.Mounts {
		c.Mounts = append(c.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	one := uint64(1)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: SwarmServiceName(cs.Key), Labels: svcLabels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: c,
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: networkID, Aliases: []string{cs.Alias}}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
	if cs.MemoryBytes > 0 || cs.NanoCPUs > 0 || cs.ReserveMemoryBytes > 0 || cs.ReserveNanoCPUs > 0 {
		r := &swarm.ResourceRequirements{}
		if cs.MemoryBytes > 0 || cs.NanoCPUs > 0 {
			r.Limits = &swarm.Limit{NanoCPUs: cs.NanoCPUs, MemoryBytes: cs.MemoryBytes}
		}
		if cs.ReserveMemoryBytes > 0 || cs.ReserveNanoCPUs > 0 {
			r.Reservations = &swarm.Resources{NanoCPUs: cs.ReserveNanoCPUs, MemoryBytes: cs.ReserveMemoryBytes}
		}
		spec.TaskTemplate.Resources = r
	}
	if len(cs.Placement.Constraints) > 0 || len(cs.Placement.Spread) > 0 {
		pl := &swarm.Placement{Constraints: append([]string(nil), cs.Placement.Constraints...)}
		for _, l := range cs.Placement.Spread {
			pl.Preferences = append(pl.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: l}})
		}
		spec.TaskTemplate.Placement = pl
	}
	return spec
}

// Ensure adds the slot of spec to its version's Swarm service, creating the service (at
// scale 1) when missing. A service of that version with another image is KindConflict.
func (s *Swarm) Ensure(ctx context.Context, cs engine.ContainerSpec) (engine.Container, error) {
	name := cs.ContainerName()
	op := "ensure " + name
	if cs.Alias == "" {
		cs.Alias = cs.Service
	}
	cs.Network = SwarmNetworkName(cs.Network)
	if err := validateSpec(cs); err != nil {
		return engine.Container{}, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: err}
	}
	if cs.Privileged {
		return engine.Container{}, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: errors.New("a swarm service cannot be privileged")}
	}
	svcName := SwarmServiceName(cs.Key)
	unlock := s.lock(svcName)
	svc, ok, err := s.service(ctx, op, cs.Key)
	if err == nil && !ok {
		var nets []network.Summary
		nets, err = s.networksNamed(ctx, op, cs.Network)
		switch {
		case err != nil:
		case len(nets) == 0:
			err = &engine.Error{Kind: engine.KindNotFound, Op: op, Err: fmt.Errorf("network %s does not exist", cs.Network)}
		default:
			err = s.create(ctx, op, cs, nets[0].ID)
			if err == nil {
				unlock()
				return s.container(ctx, op, cs.Key)
			}
			if isKind(err, engine.KindConflict) {
				err = nil // made meanwhile: add the slot below
			}
		}
		if err == nil {
			svc, ok, err = s.service(ctx, op, cs.Key)
			if err == nil && !ok {
				err = &engine.Error{Kind: engine.KindInternal, Op: op, Err: errors.New("the service was neither created nor found")}
			}
		}
	}
	unlock()
	if err != nil {
		return engine.Container{}, err
	}
	if img := svc.Spec.TaskTemplate.ContainerSpec; img == nil || img.Image != cs.Image {
		have := ""
		if img != nil {
			have = img.Image
		}
		return engine.Container{}, &engine.Error{Kind: engine.KindConflict, Op: op, Err: fmt.Errorf("swarm service %s runs image %s, not %s", svc.Spec.Name, have, cs.Image)}
	}
	if _, err := s.update(ctx, op, svcName, func(l map[string]string) bool {
		up, known := slots(l, labelSwarmUp), slots(l, labelSwarmKnown)
		if role, release := slotIdentity(l, cs.Slot); containsInt(up, cs.Slot) && role == cs.Role && release == cs.Release {
			return false
		}
		setSlots(l, labelSwarmUp, withInt(up, cs.Slot))
		setSlots(l, labelSwarmKnown, withInt(known, cs.Slot))
		// This slot's role and release only: the service's other slots keep theirs.
		setSlotIdentity(l, cs.Slot, cs.Role, cs.Release)
		return true
	}); err != nil {
		return engine.Container{}, err
	}
	return s.container(ctx, op, cs.Key)
}

// create creates the Swarm service of cs's version at scale 1, with its secrets as Swarm
// secrets (made first when missing). Errors are classified; they never carry a secret's
// value (Docker's do not quote a secret's data, and no message here includes it).
func (s *Swarm) create(ctx context.Context, op string, cs engine.ContainerSpec, networkID string) error {
	s.secretsMu.RLock()
	defer s.secretsMu.RUnlock()
	for attempt := 0; ; attempt++ {
		refs, err := s.ensureSecrets(ctx, op, cs)
		if err != nil {
			return err
		}
		cctx, cancel := s.call(ctx)
		_, err = s.cli.ServiceCreate(cctx, serviceSpec(cs, networkID, refs), swarm.ServiceCreateOptions{QueryRegistry: false})
		cancel()
		if err != nil && len(refs) > 0 && attempt == 0 && kindOf(err) == engine.KindInvalid && strings.Contains(err.Error(), "secret") {
			// Another worker's prune removed a secret between its creation here and the
			// service's (the lock above only covers this process): make it again, once.
			continue
		}
		return classify(op, err)
	}
}

// Swarm secrets. A Swarm secret cannot change, so each value of a secret of an environment
// is a Swarm secret of its own, named after the secret and a hash of the value
// (SwarmSecretName): a changed value makes a new Swarm secret, which the next version's
// service gets, while the services of earlier versions keep theirs. A secret no service
// uses any more is removed when a service goes (pruneSecrets).
const (
	// labelSecret on a Swarm secret is the name of the secret it holds a value of.
	labelSecret = "io.slipway.secret"
	// secretFileMode: only the file's owner may read it.
	secretFileMode = 0o400
)

var swarmSecretUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// SwarmSecretName is the name of the Swarm secret that holds one value of secret name in
// environment env: slipway-<env>-<name>-<hash8>, hash8 the first 8 hex digits of a SHA-256
// of environment, name and value (so the same value has the same name on every worker, a
// changed one another). A name over Swarm's 64 characters keeps 46 and a hash of
// environment and name. The value itself is never part of anything but the hash.
func SwarmSecretName(env, name, value string) string {
	sum := sha256.Sum256([]byte("slipway swarm secret\x00" + env + "\x00" + name + "\x00" + value))
	base := swarmSecretUnsafe.ReplaceAllString("slipway-"+env+"-"+name, "-")
	if len(base) > 55 {
		id := sha256.Sum256([]byte(env + "\x00" + name))
		base = strings.TrimRight(base[:46], "-_.") + "-" + hex.EncodeToString(id[:])[:8]
	}
	return base + "-" + hex.EncodeToString(sum[:])[:8]
}

// secretOwner is the owner of secret files in the tasks of image: the image's numeric USER
// (uid[:gid]), so a mode of 0400 still lets its process read them; root when the USER is a
// name (it cannot be mapped without the image's /etc/passwd: such images read their _FILE
// variables as root, as official images' entrypoints do) or the image is not on the
// manager.
func (s *Swarm) secretOwner(ctx context.Context, image string) (uid, gid string) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	ii, err := s.cli.ImageInspect(cctx, image)
	if err != nil || ii.Config == nil {
		return "0", "0"
	}
	u, g, _ := strings.Cut(ii.Config.User, ":")
	if _, err := strconv.ParseUint(u, 10, 32); err != nil {
		return "0", "0"
	}
	if _, err := strconv.ParseUint(g, 10, 32); err != nil {
		g = u
	}
	return u, g
}

// ensureSecrets makes the Swarm secret of every secret of cs (when missing) and returns
// the references that put each at /run/secrets/<secret name>, mode 0400.
func (s *Swarm) ensureSecrets(ctx context.Context, op string, cs engine.ContainerSpec) ([]*swarm.SecretReference, error) {
	if len(cs.Secrets) == 0 {
		return nil, nil
	}
	uid, gid := s.secretOwner(ctx, cs.Image)
	var refs []*swarm.SecretReference
	for _, f := range cs.Secrets {
		if f.Name == "" || f.Value == "" {
			return nil, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: fmt.Errorf("secret %q without a name or a value", f.Name)}
		}
		name := SwarmSecretName(cs.Environment, f.Name, f.Value)
		id, err := s.secretID(ctx, op, name)
		if err == nil && id == "" {
			cctx, cancel := s.call(ctx)
			var created swarm.SecretCreateResponse
			created, err = s.cli.SecretCreate(cctx, swarm.SecretSpec{
				Annotations: swarm.Annotations{Name: name, Labels: map[string]string{
					engine.LabelManaged: "true", engine.LabelEnvironment: cs.Environment, engine.LabelCluster: cs.Cluster, labelSecret: f.Name,
				}},
				Data: []byte(f.Value),
			})
			cancel()
			id = created.ID
			if kindOf(err) == engine.KindConflict {
				id, err = s.secretID(ctx, op, name) // made meanwhile by another process
			}
			if err == nil && id == "" {
				err = fmt.Errorf("swarm secret %s was neither created nor found", name)
			}
		}
		if err != nil {
			return nil, classify(op+": swarm secret of "+f.Name, err)
		}
		refs = append(refs, &swarm.SecretReference{
			File:       &swarm.SecretReferenceFileTarget{Name: f.Name, UID: uid, GID: gid, Mode: secretFileMode},
			SecretID:   id,
			SecretName: name,
		})
	}
	return refs, nil
}

// secretID is the ID of the Swarm secret of that exact name, "" when there is none.
func (s *Swarm) secretID(ctx context.Context, op, name string) (string, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	list, err := s.cli.SecretList(cctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", classify(op, err)
	}
	for _, sec := range list {
		if sec.Spec.Name == name { // the filter also matches prefixes
			return sec.ID, nil
		}
	}
	return "", nil
}

// pruneSecrets removes the environment's Swarm secrets that no service of the swarm
// uses. Swarm refuses to remove a secret a service uses: one taken meanwhile (by another
// worker) stays, and so does one in use by a service that is not Slipway's.
func (s *Swarm) pruneSecrets(ctx context.Context, op, env string) error {
	s.secretsMu.Lock()
	defer s.secretsMu.Unlock()
	cctx, cancel := s.call(ctx)
	secrets, err := s.cli.SecretList(cctx, swarm.SecretListOptions{Filters: filters.NewArgs(
		filters.Arg("label", engine.LabelManaged+"=true"), filters.Arg("label", engine.LabelEnvironment+"="+env))})
	cancel()
	if err != nil || len(secrets) == 0 {
		return classify(op, err)
	}
	cctx, cancel = s.call(ctx)
	svcs, err := s.cli.ServiceList(cctx, swarm.ServiceListOptions{})
	cancel()
	if err != nil {
		return classify(op, err)
	}
	used := map[string]bool{}
	for _, svc := range svcs {
		if c := svc.Spec.TaskTemplate.ContainerSpec; c != nil {
			for _, r := range c.Secrets {
				used[r.SecretID] = true
			}
		}
	}
	for _, sec := range secrets {
		if used[sec.ID] {
			continue
		}
		cctx, cancel := s.call(ctx)
		err := s.cli.SecretRemove(cctx, sec.ID)
		cancel()
		switch kindOf(err) {
		case "", engine.KindNotFound, engine.KindInvalid:
			// Removed, gone already, or in use after all (Swarm says InvalidArgument).
		default:
			return classify(op+": remove swarm secret "+sec.Spec.Name, err)
		}
	}
	return nil
}

// container is the replica of k as List reports it (State "created" while its task has not
// been scheduled yet).
func (s *Swarm) container(ctx context.Context, op string, k engine.Key) (engine.Container, error) {
	all, err := s.List(ctx, engine.Selector{Environment: k.Environment, Cluster: k.Cluster, Service: k.Service, Version: k.Version})
	if err != nil {
		return engine.Container{}, err
	}
	for _, c := range all {
		if c.Name == k.ContainerName() {
			return c, nil
		}
	}
	return engine.Container{}, &engine.Error{Kind: engine.KindNotFound, Op: op, Err: fmt.Errorf("replica %s is not on the swarm", k.ContainerName())}
}

// tasks returns the service's tasks.
func (s *Swarm) tasks(ctx context.Context, op, serviceID string) ([]swarm.Task, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	ts, err := s.cli.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
	return ts, classify(op, err)
}

// liveTasks are the tasks Swarm wants running, one per task slot (the newest), in slot
// order: the up slots map onto them in order.
func liveTasks(ts []swarm.Task) []swarm.Task {
	bySlot := map[int]swarm.Task{}
	for _, t := range ts {
		if t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		if o, ok := bySlot[t.Slot]; !ok || t.CreatedAt.After(o.CreatedAt) {
			bySlot[t.Slot] = t
		}
	}
	out := make([]swarm.Task, 0, len(bySlot))
	for _, t := range bySlot {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out
}

// runningTasks counts the tasks whose containers may still run (not yet ended).
func runningTasks(ts []swarm.Task) int {
	n := 0
	for _, t := range ts {
		switch t.Status.State {
		case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateOrphaned, swarm.TaskStateRemove:
		default:
			if t.Status.State != swarm.TaskStateNew && t.Status.State != swarm.TaskStatePending {
				n++
			}
		}
	}
	return n
}

func taskContainerID(t swarm.Task) string {
	if t.Status.ContainerStatus == nil {
		return ""
	}
	return t.Status.ContainerStatus.ContainerID
}

// List returns the replicas of Slipway's Swarm services matching sel, sorted by name: every
// up slot (mapped onto the running tasks in order), and the known slots that are down (as
// exited containers without an ID).
func (s *Swarm) List(ctx context.Context, sel engine.Selector) ([]engine.Container, error) {
	op := "list " + sel.Environment
	if sel.Environment == "" {
		return nil, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: errors.New("selector without environment")}
	}
	svcs, err := s.services(ctx, op, sel)
	if err != nil {
		return nil, err
	}
	var out []engine.Container
	for _, svc := range svcs {
		ts, err := s.tasks(ctx, op, svc.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, replicas(svc, liveTasks(ts))...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// replicas maps a service's slots onto its live tasks.
func replicas(svc swarm.Service, live []swarm.Task) []engine.Container {
	l := svc.Spec.Labels
	netName, alias := trafficNetwork(l)
	h := healthFromLabels(l)
	image := ""
	if c := svc.Spec.TaskTemplate.ContainerSpec; c != nil {
		image = c.Image
	}
	up := slots(l, labelSwarmUp)
	var out []engine.Container
	for _, slot := range slots(l, labelSwarmKnown) {
		k := engine.Key{Environment: l[engine.LabelEnvironment], Cluster: l[engine.LabelCluster], Service: l[engine.LabelService], Version: l[engine.LabelVersion], Slot: slot}
		role, release := slotIdentity(l, slot)
		c := engine.Container{Key: k, Name: k.ContainerName(), Release: release, Role: role, Image: image, State: "exited"}
		i := indexInt(up, slot)
		switch {
		case i < 0:
		case i >= len(live):
			c.State = "created"
		default:
			t := live[i]
			c.ID = taskContainerID(t)
			c.State = taskState(t.Status.State)
			if c.Running() {
				c.InTraffic = alias != ""
				if h.mode == healthNone || h.mode == healthImage {
					// Swarm reports a task running once its image's check passed.
					c.Health = engine.HealthHealthy
				}
				c.Address = taskAddress(t, netName, l[engine.LabelPort])
			}
		}
		out = append(out, c)
	}
	return out
}

func indexInt(s []int, n int) int {
	for i, x := range s {
		if x == n {
			return i
		}
	}
	return -1
}

// taskState is Docker's container state for a task's state.
func taskState(st swarm.TaskState) string {
	switch st {
	case swarm.TaskStateRunning:
		return "running"
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateOrphaned, swarm.TaskStateRemove:
		return "exited"
	default:
		return "created"
	}
}

// taskAddress is the task's address on the network with port, empty when it has none.
func taskAddress(t swarm.Task, networkName, port string) string {
	if port == "" {
		return ""
	}
	for _, a := range t.NetworksAttachments {
		if a.Network.Spec.Name != networkName {
			continue
		}
		for _, cidr := range a.Addresses {
			if ip, _, err := net.ParseCIDR(cidr); err == nil {
				return net.JoinHostPort(ip.String(), port)
			}
		}
	}
	return ""
}

// WaitHealthy waits for the slot's task to run and then judges its container like a plain
// engine (Engine.WaitHealthy: exit, image check, HTTP probe beside it, settle time). A task
// of the service that fails or is rejected while it waits makes the replica unhealthy; so
// does a slot that is not up. The container reported is the replica's (its name, not the
// task's).
func (s *Swarm) WaitHealthy(ctx context.Context, name string) (engine.Container, error) {
	op := "wait healthy " + name
	start := time.Now()
	lastWhy := "its task was not looked at yet"
	deadline := func() error {
		return &engine.Error{Kind: engine.KindUnhealthy, Op: op, Err: fmt.Errorf("not running before the deadline (%s): %w", lastWhy, ctx.Err())}
	}
	for {
		svc, slot, err := s.resolve(ctx, op, name)
		if err != nil && ctx.Err() != nil {
			return engine.Container{}, deadline() // the deadline ended the call
		}
		if err != nil {
			return engine.Container{}, err
		}
		i := indexInt(slots(svc.Spec.Labels, labelSwarmUp), slot)
		if i < 0 {
			return engine.Container{}, &engine.Error{Kind: engine.KindUnhealthy, Op: op, Err: errors.New("the replica is stopped (its slot is not in the swarm service's scale)")}
		}
		ts, err := s.tasks(ctx, op, svc.ID)
		if err != nil && ctx.Err() != nil {
			return engine.Container{}, deadline()
		}
		if err != nil {
			return engine.Container{}, err
		}
		for _, t := range ts {
			if (t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected) && !t.Status.Timestamp.Before(start) {
				why := fmt.Errorf("a task of swarm service %s %s: %s", svc.Spec.Name, t.Status.State, t.Status.Err)
				if id := taskContainerID(t); id != "" {
					return engine.Container{}, s.unhealthy(ctx, op, id, why)
				}
				return engine.Container{}, &engine.Error{Kind: engine.KindUnhealthy, Op: op, Err: why}
			}
		}
		live := liveTasks(ts)
		if i < len(live) {
			t := live[i]
			if id := taskContainerID(t); id != "" && t.Status.State == swarm.TaskStateRunning {
				c, err := s.Engine.WaitHealthy(ctx, id)
				out := s.replica(svc, slot, live, c)
				if err != nil {
					return out, err
				}
				return out, nil
			}
			lastWhy = fmt.Sprintf("its task is %s", t.Status.State)
			if t.Status.Err != "" {
				lastWhy += ": " + t.Status.Err
			}
			if t.Status.State == swarm.TaskStatePending && strings.Contains(t.Status.Err, "no suitable node") {
				// Swarm keeps such a task pending (a node may yet join or get the label):
				// the wait ends at its deadline, saying why.
				lastWhy = "no node of the swarm can take its task, " + placementSummary(svc.Spec.TaskTemplate) + " (swarm: " + t.Status.Err + ")"
			}
		} else {
			lastWhy = "swarm has not scheduled its task"
		}
		select {
		case <-ctx.Done():
			return engine.Container{}, deadline()
		case <-time.After(s.opts.PollInterval):
		}
	}
}

// placementSummary names what limits where a service's tasks may run, for the error of a
// task no node can take.
func placementSummary(ts swarm.TaskSpec) string {
	var parts []string
	if p := ts.Placement; p != nil && len(p.Constraints) > 0 {
		parts = append(parts, "placement constraints "+strings.Join(p.Constraints, ", "))
	}
	if r := ts.Resources; r != nil && r.Reservations != nil && (r.Reservations.MemoryBytes > 0 || r.Reservations.NanoCPUs > 0) {
		parts = append(parts, fmt.Sprintf("reservations of %d bytes of memory and %g CPUs", r.Reservations.MemoryBytes, float64(r.Reservations.NanoCPUs)/1e9))
	}
	if len(parts) == 0 {
		return "with no placement constraints or reservations"
	}
	return "for its " + strings.Join(parts, " and ")
}

// replica is the replica of slot as List reports it, with the health WaitHealthy found.
func (s *Swarm) replica(svc swarm.Service, slot int, live []swarm.Task, c engine.Container) engine.Container {
	for _, r := range replicas(svc, live) {
		if r.Slot == slot {
			if c.Health != engine.HealthUnknown {
				r.Health = c.Health
			}
			return r
		}
	}
	return engine.Container{}
}

// scale sets a slot up or down (Start and Attach; Stop and Detach) and, when it went down,
// waits (up to wait) until the service has no more tasks running than its scale, so the
// replica takes no traffic when it returns. A missing replica is KindNotFound.
func (s *Swarm) scale(ctx context.Context, op, name string, up bool, wait time.Duration) (changed bool, err error) {
	svc, slot, err := s.resolve(ctx, op, name)
	if err != nil {
		return false, err
	}
	svc, err = s.update(ctx, op, svc.Spec.Name, func(l map[string]string) bool {
		u := slots(l, labelSwarmUp)
		if containsInt(u, slot) == up {
			return false
		}
		changed = true
		if up {
			setSlots(l, labelSwarmUp, withInt(u, slot))
		} else {
			setSlots(l, labelSwarmUp, withoutInt(u, slot))
		}
		return true
	})
	if err != nil || up || !changed {
		return changed, err
	}
	return true, s.settle(ctx, op, svc, wait)
}

// settle waits until no more tasks of svc run than its scale (up to wait).
func (s *Swarm) settle(ctx context.Context, op string, svc swarm.Service, wait time.Duration) error {
	want := 0
	if svc.Spec.Mode.Replicated != nil && svc.Spec.Mode.Replicated.Replicas != nil {
		want = int(*svc.Spec.Mode.Replicated.Replicas)
	}
	deadline := time.Now().Add(wait)
	for {
		ts, err := s.tasks(ctx, op, svc.ID)
		if err != nil {
			return err
		}
		n := runningTasks(ts)
		if n <= want {
			return nil
		}
		if time.Now().After(deadline) {
			return &engine.Error{Kind: engine.KindUnavailable, Op: op, Err: fmt.Errorf("swarm service %s still runs %d tasks for a scale of %d", svc.Spec.Name, n, want)}
		}
		select {
		case <-ctx.Done():
			return classify(op, ctx.Err())
		case <-time.After(s.opts.PollInterval):
		}
	}
}

// stopWait bounds how long a scale-down waits for the tasks to end: Docker's default stop
// grace (the service's) and some.
const stopWait = 30 * time.Second

// Attach brings a stopped or detached replica back into the service's scale (a swarm task
// takes traffic as soon as it runs: there is no alias to add) and waits until it is healthy;
// a replica already up is left as it is.
func (s *Swarm) Attach(ctx context.Context, name, _, _ string) error {
	op := "attach " + name
	changed, err := s.scale(ctx, op, name, true, 0)
	if err != nil || !changed {
		return err
	}
	_, err = s.WaitHealthy(ctx, name)
	return err
}

// Detach takes a replica out of traffic: out of the service's scale (kept known at scale 0,
// so Attach or Start brings it back). It returns once its task has ended.
func (s *Swarm) Detach(ctx context.Context, name, _ string) error {
	_, err := s.scale(ctx, "detach "+name, name, false, stopWait)
	return err
}

// Stop takes a replica out of the service's scale, like Detach; a missing one is success.
func (s *Swarm) Stop(ctx context.Context, name string, timeout time.Duration) error {
	_, err := s.scale(ctx, "stop "+name, name, false, max(stopWait, timeout+10*time.Second))
	if kindOf(err) == engine.KindNotFound || isKind(err, engine.KindNotFound) {
		return nil
	}
	return err
}

// Start brings a stopped replica back into the service's scale (not waiting for health).
func (s *Swarm) Start(ctx context.Context, name string) error {
	_, err := s.scale(ctx, "start "+name, name, true, 0)
	return err
}

// Remove forgets a replica: out of the scale and of the known slots; the service is removed
// with its last slot. A missing replica is success.
func (s *Swarm) Remove(ctx context.Context, name string) error {
	op := "remove " + name
	svc, slot, err := s.resolve(ctx, op, name)
	if isKind(err, engine.KindNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	last := false
	svc, err = s.update(ctx, op, svc.Spec.Name, func(l map[string]string) bool {
		setSlots(l, labelSwarmUp, withoutInt(slots(l, labelSwarmUp), slot))
		known := withoutInt(slots(l, labelSwarmKnown), slot)
		setSlots(l, labelSwarmKnown, known)
		forgetSlotIdentity(l, slot)
		last = len(known) == 0
		return true
	})
	if isKind(err, engine.KindNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !last {
		return s.settle(ctx, op, svc, stopWait)
	}
	unlock := s.lock(svc.Spec.Name)
	cctx, cancel := s.call(ctx)
	err = s.cli.ServiceRemove(cctx, svc.ID)
	cancel()
	unlock()
	if err != nil && kindOf(err) != engine.KindNotFound {
		return classify(op, err)
	}
	// Its Swarm secrets go with the last service that uses them.
	return s.pruneSecrets(ctx, op, svc.Spec.Labels[engine.LabelEnvironment])
}

// Probe runs a probe job on the swarm's manager, in a probe container beside the first
// running task of at.Beside (replica names) or on at.Network (attachable).
func (s *Swarm) Probe(ctx context.Context, at engine.ProbeAt, job probe.Job, emit func(probe.Result)) error {
	at.Network = SwarmNetworkName(at.Network)
	if len(at.Beside) > 0 {
		ids, err := s.containerIDs(ctx, at.Beside)
		if err != nil {
			return err
		}
		at.Beside = ids
	}
	return s.Engine.Probe(ctx, at, job, emit)
}

// ProbeSite says where this swarm's probes run.
func (s *Swarm) ProbeSite(at engine.ProbeAt) string {
	at.Network = SwarmNetworkName(at.Network)
	return "swarm manager " + s.Engine.ProbeSite(at)
}

// containerIDs maps replica names onto the containers of their running tasks (those that
// have one).
func (s *Swarm) containerIDs(ctx context.Context, names []string) ([]string, error) {
	var ids []string
	for _, n := range names {
		svc, slot, err := s.resolve(ctx, "probe beside "+n, n)
		if isKind(err, engine.KindNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ts, err := s.tasks(ctx, "probe beside "+n, svc.ID)
		if err != nil {
			return nil, err
		}
		for _, r := range replicas(svc, liveTasks(ts)) {
			if r.Slot == slot && r.ID != "" && r.Running() {
				ids = append(ids, r.ID)
			}
		}
	}
	return ids, nil
}
