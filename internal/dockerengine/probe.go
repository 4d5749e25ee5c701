package dockerengine

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/probe"
)

// Engine-side probing. A probe job runs in a short-lived container of the probe image on the
// network of the replicas it probes, on their own engine; its results come back over the
// attach stream of the Docker API. The worker thus needs nothing but the engine's API: it
// never routes to a container address (which, on another machine, may well be the address
// of some other container on the worker's own host).
//
// The probe image is built by the engine itself from the agent binary (FROM scratch, one
// file: no registry, nothing pulled), tagged by the binary's hash and labelled; it stays as
// a cache. Probe containers are labelled io.slipway.role=probe with an expiry; they remove
// themselves when their job ends (AutoRemove), the adapter removes them when it stops a job
// early, and every probe run sweeps the expired ones a killed worker left behind.

// Labels of probe containers and images.
const (
	roleProbe          = "probe"
	labelProbeExpires  = "io.slipway.probe.expires" // RFC 3339: the container is stale after it
	labelProbeAgentSum = "io.slipway.probe.agent-sha256"
	probeRepository    = "slipway/probe"
	// probeMemory caps a probe container (the agent needs a few MiB).
	probeMemory = 64 << 20
	// sweepEvery throttles the sweep of stale probe containers per engine.
	sweepEvery = 10 * time.Second
	// createdStale: a probe container stays created only for the moment between create and
	// start in one call; one older was left by a worker killed in that moment (never started,
	// so never auto-removed).
	createdStale = 15 * time.Second
)

// Agent says where the worker finds the probe agent binary it loads into engines.
type Agent struct {
	// Path of a static Linux binary that runs probe.Main. Empty: see ResolveAgent.
	Path string
	// Args come before "run <job>" (e.g. ["probe-agent"] when Path is the slipway binary).
	Args []string
}

// AgentEnv names the environment variable that points at the agent binary (tests set it).
const AgentEnv = "SLIPWAY_PROBE_AGENT"

// ResolveAgent finds the agent: opts.Path if set; else $SLIPWAY_PROBE_AGENT; else a
// slipway-probe binary beside this executable; else self (this executable with selfArgs)
// when selfArgs is not nil. An error says what was tried.
func ResolveAgent(a Agent, selfArgs []string) (Agent, error) {
	if a.Path != "" {
		return a, nil
	}
	if p := os.Getenv(AgentEnv); p != "" {
		return Agent{Path: p}, nil
	}
	exe, err := os.Executable()
	if err == nil {
		sibling := filepath.Join(filepath.Dir(exe), "slipway-probe")
		if st, serr := os.Stat(sibling); serr == nil && st.Mode().IsRegular() {
			return Agent{Path: sibling}, nil
		}
		if selfArgs != nil {
			return Agent{Path: exe, Args: selfArgs}, nil
		}
	}
	return Agent{}, fmt.Errorf("no probe agent: build it (make build puts slipway-probe beside slipway), or set %s", AgentEnv)
}

// agentImage is the loaded form of an Agent: its bytes' hash names the image.
type agentImage struct {
	once sync.Once
	data []byte
	sum  string
	err  error
}

func (a *agentImage) load(path string) ([]byte, string, error) {
	a.once.Do(func() {
		if path == "" {
			a.err = errors.New("no probe agent configured (see dockerengine.ResolveAgent)")
			return
		}
		a.data, a.err = os.ReadFile(path)
		if a.err == nil {
			h := sha256.Sum256(a.data)
			a.sum = hex.EncodeToString(h[:])
		}
	})
	return a.data, a.sum, a.err
}

// ProbeSite says where this engine's probes run, for verdict evidence.
func (e *Engine) ProbeSite(at engine.ProbeAt) string {
	if e.direct {
		return "worker (probes: direct)"
	}
	if len(at.Beside) > 0 {
		return fmt.Sprintf("engine %s (probe container beside the replicas on %s)", e.host, at.Network)
	}
	return fmt.Sprintf("engine %s (probe container on %s)", e.host, at.Network)
}

// Probe runs a probe job next to the replicas on networkName and calls emit for every
// result as it arrives (from one goroutine). With probes: direct it runs in the worker.
// It returns when the job is done, or when ctx ends (the probe container is then removed).
// An engine that cannot run the job is an *engine.Error (KindUnavailable when the engine
// does not answer); the error names the engine.
func (e *Engine) Probe(ctx context.Context, at engine.ProbeAt, job probe.Job, emit func(probe.Result)) error {
	if err := job.Validate(); err != nil {
		return &engine.Error{Kind: engine.KindInvalid, Op: "probe on " + at.Network, Err: err}
	}
	if e.direct {
		err := probe.Run(ctx, job, emit)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return e.probeInContainer(ctx, at, job, emit)
}

// netMode is where a probe container's network comes from: the namespace of the first
// running container of at.Beside, or at.Network; labels are the environment's and the
// cluster's (from that container or network), so a leftover is found like a replica.
func (e *Engine) netMode(ctx context.Context, op string, at engine.ProbeAt) (container.NetworkMode, map[string]string, error) {
	labels := map[string]string{}
	for _, name := range at.Beside {
		c, err := e.inspect(ctx, op, name)
		if err != nil || c.State == nil || !c.State.Running || c.Config == nil {
			continue
		}
		for _, k := range []string{engine.LabelEnvironment, engine.LabelCluster} {
			labels[k] = c.Config.Labels[k]
		}
		return container.NetworkMode("container:" + c.ID), labels, nil
	}
	nets, err := e.networksNamed(ctx, op, at.Network)
	if err != nil {
		return "", nil, err
	}
	if len(nets) == 0 {
		return "", nil, &engine.Error{Kind: engine.KindNotFound, Op: op, Err: fmt.Errorf("network %s does not exist", at.Network)}
	}
	for _, k := range []string{engine.LabelEnvironment, engine.LabelCluster} {
		labels[k] = nets[0].Labels[k]
	}
	return container.NetworkMode(nets[0].ID), labels, nil
}

// besideGone reports whether a probe container that was to share the network namespace of
// a replica (mode container:<id>) could not be created or started because that replica
// stopped meanwhile. The engine says so in words that depend on the moment: "non running
// container" when the create sees it stopped, a runc error about a namespace path that no
// longer exists (/proc/<pid>/ns/net) when it dies between the create and the start, as an
// OOM-killed replica does. So it asks the engine whether the replica still runs.
func (e *Engine) besideGone(ctx context.Context, op string, mode container.NetworkMode, err error) bool {
	if !mode.IsContainer() {
		return false
	}
	if strings.Contains(err.Error(), "non running container") {
		return true
	}
	c, ierr := e.inspect(ctx, op, mode.ConnectedContainer())
	if ierr != nil {
		var ee *engine.Error
		return errors.As(ierr, &ee) && ee.Kind == engine.KindNotFound
	}
	return c.State == nil || !c.State.Running
}

func (e *Engine) probeInContainer(ctx context.Context, at engine.ProbeAt, job probe.Job, emit func(probe.Result)) error {
	op := fmt.Sprintf("probe on %s of engine %s", at.Network, e.host)
	img, agentArgs, err := e.ensureProbeImage(ctx)
	if err != nil {
		return err
	}
	e.sweepProbes(ctx)
	mode, where, err := e.netMode(ctx, op, at)
	if err != nil {
		return err
	}
	arg, err := probe.EncodeJob(job)
	if err != nil {
		return &engine.Error{Kind: engine.KindInvalid, Op: op, Err: err}
	}
	lifetime := job.Duration + time.Duration(job.Rounds)*job.Interval + 2*time.Minute
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "slipway-probe." + hex.EncodeToString(suffix)
	labels := map[string]string{
		engine.LabelManaged: "true",
		engine.LabelRole:    roleProbe,
		labelProbeExpires:   time.Now().Add(lifetime).UTC().Format(time.RFC3339),
	}
	for k, v := range where {
		if v != "" {
			labels[k] = v
		}
	}
	cfg := &container.Config{
		Image:        img,
		Cmd:          append(append([]string(nil), agentArgs...), "run", arg),
		Labels:       labels,
		AttachStdout: true,
		AttachStderr: true,
		Healthcheck:  &container.HealthConfig{Test: []string{"NONE"}},
	}
	hostCfg := &container.HostConfig{
		AutoRemove:     true, // gone when its job ends, even if the worker died meanwhile
		NetworkMode:    mode,
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		Resources:      container.Resources{Memory: probeMemory},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}
	// The create is not cut short by ctx: a create abandoned when ctx ends (the activity
	// returned: its replica crashed, its deadline passed) may still be carried out by the
	// engine, leaving a container that was never started (so never auto-removed) for the
	// sweep to find a minute later. It runs to its answer on a budget of its own, and a
	// container it made is removed below whatever happens; one whose answer was lost (the
	// call timed out) is removed by name.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.CallTimeout)
	created, err := e.cli.ContainerCreate(cctx, cfg, hostCfg, nil, nil, name)
	cancel()
	if err != nil && e.besideGone(ctx, op, mode, err) {
		// The container it was to share a network with stopped meanwhile: on the network
		// (after removing one this create may have made, its answer lost, as below).
		e.removeProbe(ctx, name)
		return e.probeInContainer(ctx, engine.ProbeAt{Network: at.Network}, job, emit)
	}
	if err != nil {
		e.removeProbe(ctx, name)
		return classify(op, err)
	}
	if ctx.Err() != nil {
		e.removeProbe(ctx, created.ID)
		return ctx.Err()
	}
	// From here on the container goes, whatever happens: removing a container that removed
	// itself is success.
	defer e.removeProbe(ctx, created.ID)

	att, err := e.cli.ContainerAttach(ctx, created.ID, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return classify(op, err)
	}
	defer att.Close()
	waitC, waitErrC := e.cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	cctx, cancel = e.call(ctx)
	err = e.cli.ContainerStart(cctx, created.ID, container.StartOptions{})
	cancel()
	if err != nil && e.besideGone(ctx, op, mode, err) {
		e.removeProbe(ctx, created.ID)
		return e.probeInContainer(ctx, engine.ProbeAt{Network: at.Network}, job, emit)
	}
	if err != nil {
		return classify(op, err)
	}

	// stdout carries one JSON result per line; stderr is kept for the error message.
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	copyDone := make(chan error, 1)
	go func() {
		_, cerr := stdcopy.StdCopy(pw, &limitedBuffer{buf: &stderr, max: 8 << 10}, att.Reader)
		_ = pw.CloseWithError(cerr)
		copyDone <- cerr
	}()
	stop := context.AfterFunc(ctx, func() { att.Close() }) // unblock the stream when ctx ends
	defer stop()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var bad int
	for sc.Scan() {
		var r probe.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			bad++
			continue
		}
		emit(r)
	}
	_ = pr.Close()
	// Wait for the copy to end. Its error is dropped: closing pr above makes it fail, and a
	// job that did not run shows in the exit status read below.
	_ = <-copyDone
	if ctx.Err() != nil {
		return ctx.Err()
	}
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			msg := strings.TrimSpace(stderr.String())
			if w.Error != nil && w.Error.Message != "" {
				msg += " " + w.Error.Message
			}
			return &engine.Error{Kind: engine.KindInternal, Op: op, Err: fmt.Errorf("the probe container exited with code %d: %s", w.StatusCode, msg)}
		}
	case err := <-waitErrC:
		// AutoRemove may win the race with the wait: the job ended and its stream was read.
		if err != nil && kindOf(err) != engine.KindNotFound && ctx.Err() == nil {
			return classify(op, err)
		}
	case <-time.After(e.opts.CallTimeout):
		return &engine.Error{Kind: engine.KindUnavailable, Op: op, Err: errors.New("the probe container's stream ended but the engine did not report its exit")}
	}
	if bad > 0 {
		return &engine.Error{Kind: engine.KindInternal, Op: op, Err: fmt.Errorf("%d result lines could not be read", bad)}
	}
	return nil
}

// removeProbe removes a probe container on a budget of its own (ctx may be over).
func (e *Engine) removeProbe(ctx context.Context, id string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.CallTimeout)
	defer cancel()
	_ = e.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true})
}

// sweepProbes removes probe containers past their expiry (left by a worker that died while
// one hung), at most every sweepEvery per engine. Failures are ignored: the next run tries.
func (e *Engine) sweepProbes(ctx context.Context) {
	e.probeMu.Lock()
	if time.Since(e.lastSweep) < sweepEvery {
		e.probeMu.Unlock()
		return
	}
	e.lastSweep = time.Now()
	e.probeMu.Unlock()
	n, _ := e.SweepProbes(ctx, false)
	_ = n
}

// SweepProbes removes probe containers on this engine: the expired ones, or every one with
// all. It returns how many it removed.
func (e *Engine) SweepProbes(ctx context.Context, all bool) (int, error) {
	cctx, cancel := e.call(ctx)
	list, err := e.cli.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", engine.LabelManaged+"=true"),
		filters.Arg("label", engine.LabelRole+"="+roleProbe),
	)})
	cancel()
	if err != nil {
		return 0, classify("sweep probe containers on "+e.host, err)
	}
	n := 0
	for _, c := range list {
		exp, perr := time.Parse(time.RFC3339, c.Labels[labelProbeExpires])
		if all || perr != nil || time.Now().After(exp) || c.State == container.StateExited || c.State == container.StateCreated && time.Unix(c.Created, 0).Before(time.Now().Add(-createdStale)) {
			e.removeProbe(ctx, c.ID)
			n++
		}
	}
	return n, nil
}

// ensureProbeImage returns the probe image's reference, building it on the engine from the
// agent binary when missing (FROM scratch, nothing pulled).
func (e *Engine) ensureProbeImage(ctx context.Context) (ref string, args []string, err error) {
	op := "probe image on engine " + e.host
	e.probeMu.Lock()
	defer e.probeMu.Unlock() // one build at a time per engine
	agent, err := ResolveAgent(e.agent, nil)
	if err != nil {
		return "", nil, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: err}
	}
	e.agent = agent
	data, sum, err := e.agentBin.load(agent.Path)
	if err != nil {
		return "", nil, &engine.Error{Kind: engine.KindInvalid, Op: op, Err: err}
	}
	ref = probeRepository + ":" + sum[:16]
	args = agent.Args
	if e.probeImage == ref {
		return ref, args, nil
	}
	cctx, cancel := e.call(ctx)
	_, err = e.cli.ImageInspect(cctx, ref)
	cancel()
	if err == nil {
		e.probeImage = ref
		return ref, args, nil
	}
	if kindOf(err) != engine.KindNotFound {
		return "", nil, classify(op, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY agent %s\nUSER 65534:65534\nENTRYPOINT [%q]\n", probe.AgentPath, probe.AgentPath)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"agent", 0o755, data}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return "", nil, &engine.Error{Kind: engine.KindInternal, Op: op, Err: err}
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", nil, &engine.Error{Kind: engine.KindInternal, Op: op, Err: err}
		}
	}
	if err := tw.Close(); err != nil {
		return "", nil, &engine.Error{Kind: engine.KindInternal, Op: op, Err: err}
	}
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := e.cli.ImageBuild(bctx, &buf, build.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{engine.LabelManaged: "true", engine.LabelRole: roleProbe, labelProbeAgentSum: sum},
		Version:     build.BuilderV1, // the classic builder: every engine has it, no BuildKit session needed
	})
	if err != nil {
		return "", nil, classify(op, err)
	}
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil); err != nil {
		return "", nil, &engine.Error{Kind: engine.KindInternal, Op: op, Err: fmt.Errorf("building the probe image: %w", err)}
	}
	cctx, cancel = e.call(ctx)
	_, err = e.cli.ImageInspect(cctx, ref)
	cancel()
	if err != nil {
		return "", nil, classify(op+": after the build", err)
	}
	e.probeImage = ref
	return ref, args, nil
}

// RemoveProbeImages removes the probe images of this engine (tests and `make dev-clean`).
func (e *Engine) RemoveProbeImages(ctx context.Context) error {
	cctx, cancel := e.call(ctx)
	list, err := e.cli.ImageList(cctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", engine.LabelRole+"="+roleProbe))})
	cancel()
	if err != nil {
		return classify("list probe images on "+e.host, err)
	}
	var errs []error
	for _, im := range list {
		cctx, cancel := e.call(ctx)
		_, err := e.cli.ImageRemove(cctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		cancel()
		if err != nil && kindOf(err) != engine.KindNotFound {
			errs = append(errs, classify("remove probe image "+im.ID, err))
		}
	}
	e.probeMu.Lock()
	e.probeImage = ""
	e.probeMu.Unlock()
	return errors.Join(errs...)
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
