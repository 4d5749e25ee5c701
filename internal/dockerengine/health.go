package dockerengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/probe"
)

// Defaults for HTTP health checks whose spec leaves a field zero (Docker's defaults but a
// shorter interval and timeout: a release waits on them).
const (
	defaultHealthInterval = time.Second
	defaultHealthTimeout  = 2 * time.Second
	defaultHealthRetries  = 3
	logLines              = 20
)

// healthSpec is a container's health check as stored in its labels.
type healthSpec struct {
	mode        string // healthHTTP, healthImage, healthNone
	path        string
	port        string
	interval    time.Duration
	timeout     time.Duration
	retries     int
	startPeriod time.Duration
}

// healthProbeSpan bounds one probe job of a health wait (see WaitHealthy).
const healthProbeSpan = 15 * time.Second

func healthFromLabels(labels map[string]string) healthSpec {
	h := healthSpec{
		mode:     labels[labelHealth],
		path:     labels[labelHealthPath],
		port:     labels[engine.LabelPort],
		interval: defaultHealthInterval,
		timeout:  defaultHealthTimeout,
		retries:  defaultHealthRetries,
	}
	if h.mode == "" {
		h.mode = healthImage // not created by this adapter: let Docker judge
	}
	if d, err := time.ParseDuration(labels[labelHealthInterval]); err == nil && d > 0 {
		h.interval = d
	}
	if d, err := time.ParseDuration(labels[labelHealthTimeout]); err == nil && d > 0 {
		h.timeout = d
	}
	if n, err := strconv.Atoi(labels[labelHealthRetries]); err == nil && n > 0 {
		h.retries = n
	}
	if d, err := time.ParseDuration(labels[labelHealthStartPeriod]); err == nil && d > 0 {
		h.startPeriod = d
	}
	if h.path != "" && !strings.HasPrefix(h.path, "/") {
		h.path = "/" + h.path
	}
	return h
}

// health reports a container's health now: Docker's status for image checks, unknown for
// HTTP checks (probed only by WaitHealthy and verification), healthy for a running
// container without a check.
func (e *Engine) health(c container.InspectResponse) engine.Health {
	if c.State == nil || c.Config == nil || !c.State.Running {
		if c.State != nil && c.State.Health != nil && c.State.Health.Status == container.Unhealthy {
			return engine.HealthUnhealthy
		}
		return engine.HealthUnknown
	}
	h := healthFromLabels(c.Config.Labels)
	switch h.mode {
	case healthHTTP:
		// Judged only while Slipway waits for it (WaitHealthy) or verifies it: a listing
		// runs no probe container.
		return engine.HealthUnknown
	case healthNone:
		return engine.HealthHealthy // running counts as healthy
	default:
		if c.State.Health == nil || c.State.Health.Status == container.NoHealthcheck {
			return engine.HealthHealthy
		}
		switch c.State.Health.Status {
		case container.Healthy:
			return engine.HealthHealthy
		case container.Unhealthy:
			return engine.HealthUnhealthy
		default:
			return engine.HealthStarting
		}
	}
}

// probeAddress is where a prober on the same network reaches the container's port, and
// that network: its address on the environment network, else on any network it is on.
func probeAddress(c container.InspectResponse, port string) (addr, networkName string) {
	if port == "" || c.NetworkSettings == nil {
		return "", ""
	}
	netName, _ := trafficNetwork(c.Config.Labels)
	if ep, ok := endpoint(c, netName); ok && ep.IPAddress != "" {
		return net.JoinHostPort(ep.IPAddress, port), netName
	}
	for _, n := range sortedNetworks(c) {
		if ep := c.NetworkSettings.Networks[n]; ep != nil && ep.IPAddress != "" {
			return net.JoinHostPort(ep.IPAddress, port), n
		}
	}
	return "", ""
}

func sortedNetworks(c container.InspectResponse) []string {
	var out []string
	for n := range c.NetworkSettings.Networks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// WaitHealthy waits until the container is healthy: Docker says so (image check), an HTTP
// probe succeeds (HTTP check), or it has kept running for the settle time (no check). It
// fails with KindUnhealthy when the container is not running or exits, when Docker's check
// turns unhealthy, or when ctx ends first; the error says which and carries the
// container's last log lines. Engine errors keep their own kind (KindNotFound,
// KindUnavailable...).
//
// HTTP checks run next to the container (Engine.Probe: a probe container on its network,
// or from the worker with probes: direct), every health interval. They are fair to slow
// starters: a failed probe before the first success only means "not yet", so a replica
// fails for its health only when ctx's deadline (the spec's health deadline) passes; the
// first success makes it healthy. (After that, verification counts consecutive failures.)
func (e *Engine) WaitHealthy(ctx context.Context, name string) (engine.Container, error) {
	op := "wait healthy " + name
	c, err := e.inspect(ctx, op, name)
	if err != nil {
		return engine.Container{}, err
	}
	if c.Config == nil || c.State == nil {
		return engine.Container{}, &engine.Error{Kind: engine.KindInternal, Op: op, Err: errors.New("engine returned an incomplete inspect")}
	}
	h := healthFromLabels(c.Config.Labels)
	startedAt := c.State.StartedAt
	var runningSince time.Time // first seen running (with this StartedAt)
	var lastProbe, probeFailed error
	probes := 0

	// HTTP checks: one probe job for the whole wait, started once the container has an
	// address; its answers arrive on results.
	results := make(chan probe.Result, 64)
	probeErr := make(chan error, 1)
	pctx, stopProbe := context.WithCancel(ctx)
	probing := false
	defer func() {
		// Nothing of the wait outlives it: the probe container is gone when it returns.
		stopProbe()
		if probing {
			_ = <-probeErr // stopped just above: its error is that stop
		}
	}()
	startProbe := func(c container.InspectResponse) {
		addr, netName := probeAddress(c, h.port)
		if probing || addr == "" {
			return
		}
		probing = true
		job := probe.Job{
			Targets:  []string{addr},
			Requests: []probe.Request{{Path: h.path, Timeout: h.timeout}},
			Streams:  []probe.Stream{{}},
			Interval: h.interval,
			// A job of its own lasts healthProbeSpan at most and the wait starts the next one
			// when it ends: the probe container of a worker that died mid-wait ends (and is
			// auto-removed) that soon, not at the activity's deadline minutes later.
			Duration: healthProbeSpan,
		}
		if dl, ok := ctx.Deadline(); ok {
			job.Duration = min(healthProbeSpan, max(time.Until(dl), h.interval))
		}
		go func() {
			probeErr <- e.Probe(pctx, engine.ProbeAt{Network: netName, Beside: []string{name}}, job, func(r probe.Result) {
				select {
				case results <- r:
				case <-pctx.Done():
				}
			})
		}()
	}

	poll := e.opts.PollInterval
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			why := fmt.Sprintf("not healthy before the deadline (state %s", c.State.Status)
			if lastProbe != nil {
				why += fmt.Sprintf(", %d probes, last: %v", probes, lastProbe)
			} else if h.mode == healthHTTP && probes == 0 {
				why += ", no probe answered"
			}
			why += ")"
			return e.toContainer(c), e.unhealthy(ctx, op, c.ID, fmt.Errorf("%s: %w", why, ctx.Err()))
		case r := <-results:
			probes++
			if ok, why := healthy(r); ok {
				out := e.toContainer(c)
				out.Health = engine.HealthHealthy
				return out, nil
			} else {
				lastProbe = errors.New(why)
			}
			continue
		case err := <-probeErr:
			probing = false // the job ended: another starts at the next poll
			if ctx.Err() != nil {
				continue // report the deadline
			}
			if err != nil {
				// Judged after a fresh look: a container that exited meanwhile is reported
				// as such (its prober could not start beside it), not as a probe error.
				probeFailed = err
				timer.Reset(0)
			}
			continue
		case <-timer.C:
		}

		// A failed inspect leaves c as it was: the deadline's report still reads its state.
		nc, err := e.inspect(ctx, op, name)
		if err != nil {
			if ctx.Err() != nil {
				continue // report the deadline, not the interrupted call
			}
			return engine.Container{}, err
		}
		c = nc
		st := c.State
		if !st.Running || st.Restarting || st.Paused {
			why := fmt.Sprintf("container is %s", st.Status)
			if st.Status == container.StateExited || st.Status == container.StateDead {
				why = fmt.Sprintf("container exited with code %d", st.ExitCode)
				if st.OOMKilled {
					why += " (out of memory)"
				}
				if st.Error != "" {
					why += ": " + st.Error
				}
			}
			if st.Status == container.StateCreated {
				why = "container was created but never started"
			}
			return e.toContainer(c), e.unhealthy(ctx, op, c.ID, errors.New(why))
		}
		if probeFailed != nil {
			return engine.Container{}, probeFailed
		}
		if st.StartedAt != startedAt || runningSince.IsZero() {
			// First sight of this run (or it was restarted behind our back).
			startedAt, runningSince = st.StartedAt, time.Now()
		}

		switch h.mode {
		case healthHTTP:
			startProbe(c)
			if !probing {
				lastProbe = errors.New("the container is on no network to probe it on")
			}
		case healthNone:
			settle := max(e.opts.SettleTime, h.startPeriod)
			if time.Since(runningSince) >= settle {
				out := e.toContainer(c)
				out.Health = engine.HealthHealthy
				return out, nil
			}
			poll = min(e.opts.PollInterval, settle-time.Since(runningSince))
		default: // Docker's health status
			if st.Health == nil || st.Health.Status == container.NoHealthcheck {
				// UseImage, but the image has no HEALTHCHECK: running counts, as without one.
				h.mode = healthNone
				timer.Reset(0)
				continue
			}
			switch st.Health.Status {
			case container.Healthy:
				out := e.toContainer(c)
				out.Health = engine.HealthHealthy
				return out, nil
			case container.Unhealthy:
				why := fmt.Sprintf("the image's health check failed %d times in a row", st.Health.FailingStreak)
				if n := len(st.Health.Log); n > 0 && st.Health.Log[n-1] != nil {
					last := st.Health.Log[n-1]
					why += fmt.Sprintf(" (last: exit %d, %q)", last.ExitCode, strings.TrimSpace(last.Output))
				}
				return e.toContainer(c), e.unhealthy(ctx, op, c.ID, errors.New(why))
			}
		}
		timer.Reset(poll)
	}
}

// healthy judges one health probe: 2xx and 3xx are healthy.
func healthy(r probe.Result) (bool, string) {
	switch {
	case r.Err != "":
		return false, "probe " + r.Err
	case r.Status < 200 || r.Status >= 400:
		return false, fmt.Sprintf("answered %d", r.Status)
	}
	return true, ""
}

// unhealthy builds the KindUnhealthy error with the container's last log lines.
func (e *Engine) unhealthy(ctx context.Context, op, id string, cause error) error {
	// ctx may be over (deadline): read the logs on a short budget of their own.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	logs, err := e.tail(lctx, id, logLines)
	switch {
	case err != nil:
		cause = fmt.Errorf("%w\n(logs unavailable: %v)", cause, err)
	case logs == "":
		cause = fmt.Errorf("%w\n(no log output)", cause)
	default:
		cause = fmt.Errorf("%w\nlast log lines:\n%s", cause, logs)
	}
	return &engine.Error{Kind: engine.KindUnhealthy, Op: op, Err: cause}
}

// tail returns the last n log lines of a container, stdout and stderr merged in order.
func (e *Engine) tail(ctx context.Context, id string, n int) (string, error) {
	rc, err := e.cli.ContainerLogs(ctx, id, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n),
	})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var buf bytes.Buffer
	// Non-TTY containers' logs are multiplexed; one buffer keeps their order.
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 1<<20)); err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	for i, l := range lines {
		if len(l) > 500 {
			lines[i] = l[:500] + "…"
		}
	}
	return strings.TrimSpace(strings.Join(lines, "\n")), nil
}
