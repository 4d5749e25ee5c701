package activities

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/probe"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// preTrafficRounds is how many times the pre-traffic check sends each request to each new
// replica (every preTrafficInterval): a fraction of a second.
const (
	preTrafficRounds   = 20
	preTrafficInterval = 10 * time.Millisecond
)

// preTraffic probes new, healthy replicas while they are still out of traffic (on the
// environment network without the service alias), with every request of the service's
// verification, from beside them on their engine. A replica that answers one request badly
// every time (a 5xx, a refused connection, a timeout, a broken answer, or not the request's
// expect_status) never takes traffic: the result is a non-retryable Unhealthy error naming
// the replica, the request and what it got, which the workflow judges as a failed verdict.
// A version that fails every request is so caught before any user sees it. Nothing is
// checked for a service that is not verified over HTTP (no port, or verification.skip).
func (a *Activities) preTraffic(ctx context.Context, e engine.Engine, t workflows.Target, s spec.Service, names []string) error {
	v := s.Verification
	if v == nil || v.Skip || s.Port == 0 || len(v.Requests) == 0 || len(names) == 0 {
		return nil
	}
	live, err := e.List(ctx, engine.Selector{Environment: t.Environment, Cluster: t.Cluster, Service: s.Name, Version: s.Version})
	if err != nil {
		return classify("list "+s.Name+" on cluster "+t.Cluster, err)
	}
	addr := map[string]string{}
	for _, c := range live {
		addr[c.Name] = c.Address
	}
	job := probe.Job{Interval: preTrafficInterval, Rounds: preTrafficRounds, DialTimeout: a.opts.DialTimeout}
	for _, n := range names {
		job.Targets = append(job.Targets, addr[n])
	}
	for ri, p := range v.Requests {
		r := probeRequest(p)
		r.KeepBody = 200
		job.Requests = append(job.Requests, r)
		for ti := range names {
			job.Streams = append(job.Streams, probe.Stream{Target: ti, Request: ri})
		}
	}
	type tally struct {
		answers, bad int
		last         probe.Result
		codes        map[string]int
	}
	tallies := make([]tally, len(job.Streams))
	err = e.Probe(ctx, engine.ProbeAt{Network: t.Network(), Beside: names}, job, func(r probe.Result) {
		ty := &tallies[r.S]
		if r.Lost() {
			return
		}
		ty.answers++
		if bad(&r, v.Requests[job.Streams[r.S].Request].ExpectStatus) {
			ty.bad++
			ty.last = r
			if ty.codes == nil {
				ty.codes = map[string]int{}
			}
			what := r.Err
			if what == "" {
				what = fmt.Sprint(r.Status)
			}
			ty.codes[what]++
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return classify("pre-traffic check of "+s.Name+" on cluster "+t.Cluster, err)
	}
	for si, ty := range tallies {
		if ty.answers == 0 || ty.bad < ty.answers {
			continue
		}
		st := job.Streams[si]
		p := v.Requests[st.Request]
		var got []string
		for _, k := range sortedKeys(ty.codes) {
			got = append(got, fmt.Sprintf("%s×%d", k, ty.codes[k]))
		}
		body := strings.TrimSpace(ty.last.Body)
		if body != "" {
			body = fmt.Sprintf("; last body: %q", body)
		}
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"pre-traffic check: %s answered every one of its %d requests %s %s badly (%s%s); it never took traffic",
			names[st.Target], ty.answers, orGET(p.Method), p.Path, strings.Join(got, " "), body), workflows.ErrUnhealthy, nil)
	}
	return nil
}

func orGET(m string) string {
	if m == "" {
		return "GET"
	}
	return m
}
