package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/probe"
)

// checkEngine compares what the engine runs for one service on one cluster with what the
// release's outcome says must run there, and returns every violation:
//
//   - exactly `replicas` containers of the expected version, slots 0..replicas-1, each
//     running, in traffic, with the expected image, and answering GET / with that version;
//   - of any other version, at most one (the previous revision kept for a fast manual
//     rollback), and none of its containers running or in traffic;
//   - no container that the release itself started outside that set (the label
//     io.slipway.release carries the release's short id).
//
// Probe containers (role probe) are not replicas: engine.List leaves them out.
func (h *harness) checkEngine(ctx context.Context, cluster, service, want, releaseShort string, keepRelease bool) []string {
	var v []string
	where := fmt.Sprintf("%s on %s", service, cluster)
	cs, err := h.eng.List(ctx, engine.Selector{Environment: h.env, Cluster: cluster, Service: service})
	if err != nil {
		return []string{fmt.Sprintf("%s: list containers: %v", where, err)}
	}
	var cur []engine.Container
	others := map[string][]engine.Container{}
	for _, c := range cs {
		if c.Version == want {
			cur = append(cur, c)
		} else {
			others[c.Version] = append(others[c.Version], c)
		}
		if c.Release == releaseShort && (!keepRelease || c.Version != want) {
			v = append(v, fmt.Sprintf("%s: %s (%s, version %s) was started by this release and is still there", where, c.Name, c.State, c.Version))
		}
	}
	if len(cur) != h.replicas {
		v = append(v, fmt.Sprintf("%s: %d containers of %s, want exactly %d (%s)", where, len(cur), want, h.replicas, names(cur)))
	}
	slots := map[int]bool{}
	for _, c := range cur {
		switch {
		case !c.Running():
			v = append(v, fmt.Sprintf("%s: %s is %s, want running", where, c.Name, c.State))
		case !c.InTraffic:
			v = append(v, fmt.Sprintf("%s: %s is out of traffic", where, c.Name))
		}
		if c.Image != "slipway/demo:"+want {
			v = append(v, fmt.Sprintf("%s: %s runs image %s, want slipway/demo:%s", where, c.Name, c.Image, want))
		}
		if c.Slot < 0 || c.Slot >= h.replicas || slots[c.Slot] {
			v = append(v, fmt.Sprintf("%s: %s is in slot %d (slots 0..%d, once each)", where, c.Name, c.Slot, h.replicas-1))
		}
		slots[c.Slot] = true
		if c.Running() {
			if got, err := h.answer(ctx, cluster, c.Address); err != nil {
				v = append(v, fmt.Sprintf("%s: %s does not answer: %v", where, c.Name, err))
			} else if got != want {
				v = append(v, fmt.Sprintf("%s: %s answers version %q, want %q", where, c.Name, got, want))
			}
		}
	}
	if len(others) > 1 {
		var vs []string
		for ver, list := range others {
			vs = append(vs, fmt.Sprintf("%s (%s)", ver, names(list)))
		}
		sort.Strings(vs)
		v = append(v, fmt.Sprintf("%s: %d other versions kept, at most one previous revision: %s", where, len(others), strings.Join(vs, ", ")))
	}
	for _, list := range others {
		for _, c := range list {
			if c.Running() || c.InTraffic {
				v = append(v, fmt.Sprintf("%s: %s (version %s, not %s) is %s, in traffic %v: want stopped, out of traffic", where, c.Name, c.Version, want, c.State, c.InTraffic))
			}
		}
	}
	return v
}

func names(cs []engine.Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+":"+c.State)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// answer GETs / on a replica and returns the version it reports: straight from the test
// process (the clusters are the local engine), else from a probe container on the
// replica's network, through the engine's API.
func (h *harness) answer(ctx context.Context, cluster, addr string) (string, error) {
	if addr == "" {
		return "", fmt.Errorf("no address")
	}
	var body []byte
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET /: %s", resp.Status)
		}
	}
	if err != nil {
		var got []probe.Result
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		perr := h.eng.Probe(pctx, engine.ProbeAt{Network: engine.NetworkName(h.env, cluster)}, probe.Job{
			Targets: []string{addr}, Requests: []probe.Request{{Path: "/", KeepBody: 1024}}, Streams: []probe.Stream{{}},
			Interval: 10 * time.Millisecond, Rounds: 1,
		}, func(r probe.Result) { got = append(got, r) })
		switch {
		case perr != nil:
			return "", fmt.Errorf("direct: %v; from a probe container: %v", err, perr)
		case len(got) != 1 || got[0].Status != http.StatusOK:
			return "", fmt.Errorf("direct: %v; from a probe container: %+v", err, got)
		}
		body = []byte(got[0].Body)
	}
	var r struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("GET /: %q: %v", body, err)
	}
	return r.Version, nil
}
