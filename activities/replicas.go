package activities

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// defaultHealthDeadline bounds a health wait when the input does not say.
const defaultHealthDeadline = 60 * time.Second

// startProgress is StartReplicas' heartbeat: the slots already healthy.
type startProgress struct {
	Healthy []int `json:"healthy"`
}

// ContainerSpec builds the engine spec of one replica slot of a service on a target. The
// replica joins the environment network without the service alias: it takes no traffic
// until SetTraffic (or StartReplicas with Attach) puts it in. Cluster policy is enforced
// here, whatever the spec validation said: privileged containers and host mounts are
// refused unless the cluster allows them.
//
// A service with secrets is refused (BadInput): their values are resolved only by the
// activities that create containers (StartReplicas, the load test's ScaleOut), on the
// worker, from its SecretSource.
func ContainerSpec(t workflows.Target, release string, role engine.Role, s spec.Service, slot int) (engine.ContainerSpec, error) {
	if len(s.Secrets) > 0 {
		return engine.ContainerSpec{}, badInput("service %s has secrets: its containers are specified by the activities, which resolve them on the worker", s.Name)
	}
	return containerSpec(t, release, role, s, slot, nil)
}

// SecretsDir is where a swarm puts a task's secret files: /run/secrets/<secret name>.
const SecretsDir = "/run/secrets"

// containerSpec is ContainerSpec with the service's secrets already resolved (environment
// variable → value), merged into a fresh Env map (the input's map is never changed). On a
// swarm target the values become secret files instead (cs.Secrets, one per secret name) and
// the environment only says where each is: <VAR>_FILE=/run/secrets/<secret name>, the
// convention of official images; the value is never an environment variable there.
func containerSpec(t workflows.Target, release string, role engine.Role, s spec.Service, slot int, secrets map[string]string) (engine.ContainerSpec, error) {
	if s.Name == "" || s.Image == "" || s.Version == "" {
		return engine.ContainerSpec{}, badInput("service needs a name, an image and a version (got %q, %q, %q)", s.Name, s.Image, s.Version)
	}
	if s.Privileged && !t.Policy.AllowPrivileged {
		return engine.ContainerSpec{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("service %s asks for a privileged container, which cluster %s does not allow", s.Name, t.Cluster), workflows.ErrPolicyDenied, nil)
	}
	if len(s.Mounts) > 0 && !t.Policy.AllowHostMounts {
		return engine.ContainerSpec{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("service %s asks for host mounts, which cluster %s does not allow", s.Name, t.Cluster), workflows.ErrPolicyDenied, nil)
	}
	swarm := t.Kind == spec.KindSwarm
	if len(secrets) != len(s.Secrets) {
		return engine.ContainerSpec{}, badInput("service %s: %d of its %d secrets resolved", s.Name, len(secrets), len(s.Secrets))
	}
	var env map[string]string
	if len(s.Env)+len(secrets) > 0 {
		env = make(map[string]string, len(s.Env)+len(secrets))
		for k, v := range s.Env {
			env[k] = v
		}
		for k, v := range secrets {
			if _, both := env[k]; both {
				return engine.ContainerSpec{}, badInput("service %s: %s is set in both env and secrets", s.Name, k)
			}
			if !swarm {
				env[k] = v
			}
		}
	}
	var files []engine.SecretFile
	if swarm {
		vars := make([]string, 0, len(secrets))
		for k := range secrets {
			vars = append(vars, k)
		}
		sort.Strings(vars)
		seen := map[string]bool{}
		for _, k := range vars {
			name, fk := s.Secrets[k], k+"_FILE"
			if _, taken := env[fk]; taken {
				return engine.ContainerSpec{}, badInput("service %s: %s is set in env or secrets, but on swarm cluster %s it says where the file of secret %q is (secrets are files there, not variables)", s.Name, fk, t.Cluster, name)
			}
			env[fk] = SecretsDir + "/" + name
			if !seen[name] {
				seen[name] = true
				files = append(files, engine.SecretFile{Name: name, Value: secrets[k]})
			}
		}
		for _, k := range vars {
			if _, ok := secrets[k+"_FILE"]; ok {
				return engine.ContainerSpec{}, badInput("service %s: secrets %s and %s_FILE: on swarm cluster %s, %s_FILE says where the file of %s's secret is", s.Name, k, k, t.Cluster, k, k)
			}
		}
	}
	cs := engine.ContainerSpec{
		Key:     engine.Key{Environment: t.Environment, Cluster: t.Cluster, Service: s.Name, Version: s.Version, Slot: slot},
		Release: release,
		Role:    role,
		Image:   s.ImageRef(),
		Env:     env,
		Command: s.Command,
		Port:    s.Port,
		Network: t.Network(),
		Secrets: files,
	}
	if s.Resources != nil {
		if s.Resources.Memory != "" {
			m, err := spec.ParseMemory(s.Resources.Memory)
			if err != nil {
				return engine.ContainerSpec{}, badInput("service %s: resources.memory: %v", s.Name, err)
			}
			cs.MemoryBytes = m
		}
		cs.NanoCPUs = int64(s.Resources.CPUs * 1e9)
		// Reservations and placement are a swarm scheduler's: a plain engine ignores them
		// (docs/spec.md), so they are only passed to a swarm.
		if swarm && s.Resources.ReserveMemory != "" {
			m, err := spec.ParseMemory(s.Resources.ReserveMemory)
			if err != nil {
				return engine.ContainerSpec{}, badInput("service %s: resources.reserve_memory: %v", s.Name, err)
			}
			cs.ReserveMemoryBytes = m
		}
		if swarm {
			cs.ReserveNanoCPUs = int64(s.Resources.ReserveCPUs * 1e9)
		}
	}
	if swarm {
		cs.Placement = placement(t.Policy.Placement, s.Placement)
	}
	cs.Privileged = s.Privileged
	for _, m := range s.Mounts {
		cs.Mounts = append(cs.Mounts, engine.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	if h := s.Health; h != nil {
		cs.Health = engine.HealthCheck{
			HTTPPath: h.HTTPPath, UseImage: h.Image, Interval: h.Interval.D(), Timeout: h.Timeout.D(),
			Retries: h.Retries, StartPeriod: h.StartPeriod.D(),
		}
		if h.Image {
			cs.Health.HTTPPath = ""
		}
	}
	return cs, nil
}

// placement is a swarm service's placement: the cluster policy's constraints and
// preferences, then the service's own (a constraint written in both counts once).
func placement(pls ...*spec.Placement) engine.Placement {
	var out engine.Placement
	for _, pl := range pls {
		if pl == nil {
			continue
		}
		for _, c := range pl.Constraints {
			if !slices.Contains(out.Constraints, c) {
				out.Constraints = append(out.Constraints, c)
			}
		}
		for _, p := range pl.Preferences {
			if !slices.Contains(out.Spread, p.Spread) {
				out.Spread = append(out.Spread, p.Spread)
			}
		}
	}
	return out
}

// StartReplicas ensures the given slots of service@version run on the target with a role,
// waits until every one is healthy (within HealthDeadline), and with Attach puts them in
// traffic. Slots are started in parallel. A replica that exits or turns unhealthy is a
// non-retryable error of type Unhealthy carrying the engine's explanation (last log lines),
// which the workflow turns into a failed verdict. After a retry, slots the heartbeat says
// are healthy are not waited for again.
//
// The service's secrets are resolved here, on the worker (SecretSource), into the
// containers' environment only: the result and the heartbeats carry containers and slots,
// never a container spec, and an error that would quote a value is redacted. A secret the
// worker does not have is a non-retryable SecretMissing error naming it and the service.
func (a *Activities) StartReplicas(ctx context.Context, in workflows.StartReplicasInput) (_ workflows.StartReplicasResult, err error) {
	if len(in.Slots) == 0 {
		return workflows.StartReplicasResult{}, badInput("start replicas of %s: no slots", in.Service.Name)
	}
	// Heartbeats from the start (the secrets and the engine can be slow), with what a
	// previous attempt found healthy.
	var prog startProgress
	resume(ctx, &prog)
	healthy := map[int]bool{}
	for _, s := range prog.Healthy {
		healthy[s] = true
	}
	hb := startHeartbeat(ctx, a.opts.HeartbeatEvery, prog)
	defer hb.close()
	specs, secretValues, err := a.containerSpecs(ctx, in.Target, in.Release, in.Role, in.Service, in.Slots)
	if err != nil {
		return workflows.StartReplicasResult{}, err
	}
	defer func() { err = redact(err, secretValues) }()
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return workflows.StartReplicasResult{}, err
	}

	deadline := in.HealthDeadline
	if deadline <= 0 {
		deadline = defaultHealthDeadline
	}
	var mu sync.Mutex
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, cs := range specs {
		wasHealthy := healthy[cs.Slot]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = ensureHealthy(ctx, e, cs, deadline, wasHealthy); errs[i] != nil || wasHealthy {
				return
			}
			mu.Lock()
			healthy[cs.Slot] = true
			prog.Healthy = sortedInts(healthy)
			p := startProgress{Healthy: append([]int(nil), prog.Healthy...)}
			mu.Unlock()
			hb.set(ctx, p)
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return workflows.StartReplicasResult{}, err
	}
	if in.Attach {
		names := make([]string, len(specs))
		for i, cs := range specs {
			names[i] = cs.ContainerName()
		}
		// Out of traffic still: a version that fails every request stops here.
		if err := a.preTraffic(ctx, e, in.Target, in.Service, names); err != nil {
			return workflows.StartReplicasResult{}, err
		}
		if err := a.attach(ctx, e, in.Target, in.Service.Name, names); err != nil {
			return workflows.StartReplicasResult{}, err
		}
	}
	all, err := e.List(ctx, engine.Selector{Environment: in.Target.Environment, Cluster: in.Target.Cluster, Service: in.Service.Name, Version: in.Service.Version})
	if err != nil {
		return workflows.StartReplicasResult{}, classify("list "+in.Service.Name, err)
	}
	want := map[int]bool{}
	for _, s := range in.Slots {
		want[s] = true
	}
	var out workflows.StartReplicasResult
	for _, c := range all {
		if want[c.Slot] {
			out.Containers = append(out.Containers, c)
		}
	}
	logInfo(ctx, "replicas started", "service", in.Service.Name, "version", in.Service.Version, "cluster", in.Target.Cluster, "slots", in.Slots, "attached", in.Attach)
	return out, nil
}

// SetTraffic attaches containers to the service alias on the environment network, then
// detaches others: the attach goes first so a switch never leaves the service without
// replicas. Each side runs in parallel. Detaching a container that is gone is success;
// attaching one that is gone is a permanent NotFound error.
func (a *Activities) SetTraffic(ctx context.Context, in workflows.SetTrafficInput) error {
	if in.Service == "" {
		return badInput("set traffic: no service")
	}
	defer a.beat(ctx)()
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return err
	}
	if err := a.attach(ctx, e, in.Target, in.Service, in.Attach); err != nil {
		return err
	}
	return a.detach(ctx, e, in.Target, in.Detach)
}

func (a *Activities) attach(ctx context.Context, e engine.Engine, t workflows.Target, service string, names []string) error {
	return each(names, func(n string) error {
		return classify("attach "+n+" to "+t.Network(), e.Attach(ctx, n, t.Network(), service))
	})
}

func (a *Activities) detach(ctx context.Context, e engine.Engine, t workflows.Target, names []string) error {
	return each(names, func(n string) error {
		err := e.Detach(ctx, n, t.Network())
		if engine.KindOf(err) == engine.KindNotFound {
			return nil
		}
		return classify("detach "+n+" from "+t.Network(), err)
	})
}

// StopReplicas stops containers (SIGTERM, then SIGKILL after StopTimeout), in parallel. A
// container that is gone is success. The result names the containers that were running
// and those that were killed: a stop that took the whole grace period ended with SIGKILL
// (the engine port reports no exit code, so the time the engine took is the evidence).
func (a *Activities) StopReplicas(ctx context.Context, in workflows.ContainersInput) (workflows.StopReplicasResult, error) {
	var res workflows.StopReplicasResult
	defer a.beat(ctx)()
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return res, err
	}
	timeout := in.StopTimeout
	if timeout <= 0 {
		timeout = spec.DefaultStopGrace
	}
	// The engine API counts the grace in whole seconds.
	res.Grace = time.Duration(math.Ceil(timeout.Seconds())) * time.Second
	live, err := e.List(ctx, engine.Selector{Environment: in.Target.Environment, Cluster: in.Target.Cluster})
	if err != nil {
		return res, classify("list containers on cluster "+in.Target.Cluster, err)
	}
	running := map[string]bool{}
	for _, c := range live {
		running[c.Name] = c.Running()
	}
	var mu sync.Mutex
	err = each(in.Names, func(n string) error {
		start := time.Now()
		err := e.Stop(ctx, n, timeout)
		took := time.Since(start)
		if engine.KindOf(err) == engine.KindNotFound {
			return nil
		}
		if err != nil {
			return classify("stop "+n, err)
		}
		if running[n] {
			mu.Lock()
			res.Stopped = append(res.Stopped, n)
			if took >= res.Grace {
				res.Killed = append(res.Killed, n)
			}
			mu.Unlock()
		}
		return nil
	})
	sort.Strings(res.Stopped)
	sort.Strings(res.Killed)
	return res, err
}

// StartStopped starts stopped containers (the previous version kept stopped), connects them
// to the environment network without the service alias, and waits until they are healthy,
// in parallel; it does not put them in traffic (SetTraffic does).
func (a *Activities) StartStopped(ctx context.Context, in workflows.ContainersInput) error {
	defer a.beat(ctx)()
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return err
	}
	deadline := in.HealthDeadline
	if deadline <= 0 {
		deadline = defaultHealthDeadline
	}
	return each(in.Names, func(n string) error {
		if err := e.Start(ctx, n); err != nil {
			return classify("start "+n, err)
		}
		// A replica kept stopped was detached first: put it back on the environment network
		// without the service alias, so its health can be checked before it takes traffic.
		if err := e.Attach(ctx, n, in.Target.Network(), ""); err != nil {
			return classify("connect "+n+" to "+in.Target.Network(), err)
		}
		wctx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		if _, err := e.WaitHealthy(wctx, n); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if engine.KindOf(err) == engine.KindUnhealthy || errors.Is(err, context.DeadlineExceeded) {
				return temporal.NewNonRetryableApplicationError(notHealthy(n, deadline, err), workflows.ErrUnhealthy, nil)
			}
			return classify("wait for "+n+" to be healthy", err)
		}
		return nil
	})
}

// RemoveReplicas removes containers by name and, with Service and Version, every container
// of that service version on the cluster except Keep. A container in traffic is detached
// first, so no request is routed to it while it dies. Removing what is gone is success.
func (a *Activities) RemoveReplicas(ctx context.Context, in workflows.RemoveReplicasInput) error {
	defer a.beat(ctx)()
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return err
	}
	sel := engine.Selector{Environment: in.Target.Environment, Cluster: in.Target.Cluster, Service: in.Service}
	if in.Service != "" {
		sel.Version = in.Version
	}
	live, err := e.List(ctx, sel)
	if err != nil {
		return classify("list containers on cluster "+in.Target.Cluster, err)
	}
	keep := map[string]bool{}
	for _, n := range in.Keep {
		keep[n] = true
	}
	byName := map[string]engine.Container{}
	targets := map[string]bool{}
	for _, c := range live {
		byName[c.Name] = c
		if in.Service != "" && in.Version != "" && c.Service == in.Service && c.Version == in.Version && !keep[c.Name] {
			targets[c.Name] = true
		}
	}
	for _, n := range in.Names {
		targets[n] = true
	}
	names := sortedKeys(targets)
	var inTraffic []string
	for _, n := range names {
		if c, ok := byName[n]; ok && c.InTraffic {
			inTraffic = append(inTraffic, n)
		}
	}
	if err := a.detach(ctx, e, in.Target, inTraffic); err != nil {
		return err
	}
	return each(names, func(n string) error {
		err := e.Remove(ctx, n)
		if engine.KindOf(err) == engine.KindNotFound {
			return nil
		}
		return classify("remove "+n, err)
	})
}

// each runs fn on every name in parallel and joins the errors (the first permanent one
// decides the type; see firstError).
func each(names []string, fn func(string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(n)
		}()
	}
	wg.Wait()
	return firstError(errs)
}

// firstError returns the most telling error: a non-retryable one first (retrying the
// whole activity would not help), then any other, with the count of the others.
func firstError(errs []error) error {
	var first, permanent error
	n := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		n++
		if first == nil {
			first = err
		}
		var ae *temporal.ApplicationError
		if permanent == nil && errors.As(err, &ae) && ae.NonRetryable() {
			permanent = err
		}
	}
	if permanent != nil {
		first = permanent
	}
	if n > 1 {
		var ae *temporal.ApplicationError
		if errors.As(first, &ae) {
			msg := fmt.Sprintf("%s (and %d more)", ae.Error(), n-1)
			if ae.NonRetryable() {
				return temporal.NewNonRetryableApplicationError(msg, ae.Type(), nil)
			}
			return temporal.NewApplicationError(msg, ae.Type())
		}
	}
	return first
}

func sortedInts(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// notHealthy says why a replica did not come up: the deadline only when it passed (a
// replica that exited or turned unhealthy before it is not blamed on the deadline).
func notHealthy(name string, deadline time.Duration, err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s did not become healthy within its health deadline of %s: %s", name, deadline, trimLines(err.Error(), 12))
	}
	return fmt.Sprintf("%s did not come up: %s", name, trimLines(err.Error(), 12))
}

// trimLines keeps the last n lines of s (log tails in error messages stay short).
func trimLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ensureHealthy ensures one replica (idempotent) and, unless it was already seen healthy,
// waits up to deadline for it to be healthy. A replica that does not come up is a
// non-retryable ErrUnhealthy (the new version is bad, a retry would not help); a context
// that ended is returned as is; anything else is classified.
func ensureHealthy(ctx context.Context, e engine.Engine, cs engine.ContainerSpec, deadline time.Duration, wasHealthy bool) error {
	name := cs.ContainerName()
	if _, err := e.Ensure(ctx, cs); err != nil {
		return classify("start "+name, err)
	}
	if wasHealthy {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	if _, err := e.WaitHealthy(wctx, name); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if engine.KindOf(err) == engine.KindUnhealthy || errors.Is(err, context.DeadlineExceeded) {
			return temporal.NewNonRetryableApplicationError(
				notHealthy(name, deadline, err), workflows.ErrUnhealthy, nil)
		}
		return classify("wait for "+name+" to be healthy", err)
	}
	return nil
}
