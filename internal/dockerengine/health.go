package dockerengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/slipwayhq/slipway/engine"
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

// health reports a container's health now. Docker's status for image checks; for HTTP
// checks one probe when probe is set (a failure inside the start period, or before the
// retries could have run, is "starting"); "running" for containers without a check.
func (e *Engine) health(ctx context.Context, c container.InspectResponse, probe bool) engine.Health {
	if c.State == nil || c.Config == nil || !c.State.Running {
		if c.State != nil && c.State.Health != nil && c.State.Health.Status == container.Unhealthy {
			return engine.HealthUnhealthy
		}
		return engine.HealthUnknown
	}
	h := healthFromLabels(c.Config.Labels)
	switch h.mode {
	case healthHTTP:
		if !probe {
			return engine.HealthUnknown
		}
		addr := probeAddress(c, h.port)
		if addr == "" {
			return engine.HealthUnknown // not on any network: cannot be reached
		}
		if err := httpProbe(ctx, addr, h.path, h.timeout); err == nil {
			return engine.HealthHealthy
		}
		started, err := time.Parse(time.RFC3339Nano, c.State.StartedAt)
		grace := max(h.startPeriod, time.Duration(h.retries)*h.interval)
		if err == nil && time.Since(started) < grace {
			return engine.HealthStarting
		}
		return engine.HealthUnhealthy
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

// probeAddress is where the worker reaches the container's port: its address on the
// environment network, else on any network it is on.
func probeAddress(c container.InspectResponse, port string) string {
	if port == "" || c.NetworkSettings == nil {
		return ""
	}
	netName, _ := trafficNetwork(c.Config.Labels)
	if ep, ok := endpoint(c, netName); ok && ep.IPAddress != "" {
		return net.JoinHostPort(ep.IPAddress, port)
	}
	for _, ep := range c.NetworkSettings.Networks {
		if ep != nil && ep.IPAddress != "" {
			return net.JoinHostPort(ep.IPAddress, port)
		}
	}
	return ""
}

// probeClient makes health probes: no keep-alive (one probe per interval per container),
// redirects not followed (3xx counts as healthy, like the spec says).
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// httpProbe GETs http://addr+path; 2xx and 3xx are healthy.
func httpProbe(ctx context.Context, addr, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s answered %s", path, resp.Status)
	}
	return nil
}

// WaitHealthy waits until the container is healthy: Docker says so (image check), an HTTP
// probe succeeds (HTTP check), or it has kept running for the settle time (no check). It
// fails with KindUnhealthy when the container is not running or exits, when the check
// fails (Docker's verdict, or Retries probe failures in a row after the start period), or
// when ctx ends first; the error says which and carries the container's last log lines.
// Engine errors keep their own kind (KindNotFound, KindUnavailable...).
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
	failures := 0
	var lastProbe error

	poll := e.opts.PollInterval
	if h.mode == healthHTTP {
		poll = h.interval
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			why := fmt.Sprintf("not healthy before the deadline (state %s", c.State.Status)
			if lastProbe != nil {
				why += ", last probe: " + lastProbe.Error()
			}
			why += ")"
			return e.toContainer(ctx, c, false), e.unhealthy(ctx, op, c.ID, fmt.Errorf("%s: %w", why, ctx.Err()))
		case <-timer.C:
		}

		c, err = e.inspect(ctx, op, name)
		if err != nil {
			if ctx.Err() != nil {
				continue // report the deadline, not the interrupted call
			}
			return engine.Container{}, err
		}
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
			return e.toContainer(ctx, c, false), e.unhealthy(ctx, op, c.ID, errors.New(why))
		}
		if st.StartedAt != startedAt || runningSince.IsZero() {
			// First sight of this run (or it was restarted behind our back).
			startedAt, runningSince, failures = st.StartedAt, time.Now(), 0
		}

		switch h.mode {
		case healthHTTP:
			addr := probeAddress(c, h.port)
			if addr == "" {
				lastProbe = errors.New("the container is on no network the worker can reach")
			} else {
				lastProbe = httpProbe(ctx, addr, h.path, h.timeout)
			}
			if lastProbe == nil {
				out := e.toContainer(ctx, c, false)
				out.Health = engine.HealthHealthy
				return out, nil
			}
			if ctx.Err() != nil {
				continue
			}
			if time.Since(runningSince) >= h.startPeriod {
				failures++
			}
			if failures >= h.retries {
				return e.toContainer(ctx, c, false), e.unhealthy(ctx, op, c.ID,
					fmt.Errorf("health check failed %d times in a row: %w", failures, lastProbe))
			}
		case healthNone:
			settle := max(e.opts.SettleTime, h.startPeriod)
			if time.Since(runningSince) >= settle {
				out := e.toContainer(ctx, c, false)
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
				out := e.toContainer(ctx, c, false)
				out.Health = engine.HealthHealthy
				return out, nil
			case container.Unhealthy:
				why := fmt.Sprintf("the image's health check failed %d times in a row", st.Health.FailingStreak)
				if n := len(st.Health.Log); n > 0 && st.Health.Log[n-1] != nil {
					last := st.Health.Log[n-1]
					why += fmt.Sprintf(" (last: exit %d, %q)", last.ExitCode, strings.TrimSpace(last.Output))
				}
				return e.toContainer(ctx, c, false), e.unhealthy(ctx, op, c.ID, errors.New(why))
			}
		}
		timer.Reset(poll)
	}
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
