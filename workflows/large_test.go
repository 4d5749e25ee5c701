// Not under the race detector: this is the one test of the package that embeds the Temporal
// server (devserver), and `make test-race` would otherwise race-build the whole server (the
// longest step of a cold CI run, for code that is not ours). `make test` runs it.

//go:build !race

package workflows

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
)

// Temporal's limits on one workflow history (the server's defaults): it warns at 10,240
// events or 10 MB and terminates the run at 51,200 events or 50 MB; one payload (a workflow
// input, an activity result, a query answer) may not exceed 2 MB.
const (
	historyWarnEvents = 10240
	historyWarnBytes  = 10 << 20
	payloadLimitBytes = 2 << 20
)

// largeSpec is an environment of n small services (replicas each) on two clusters, half on
// each (both: every service on both), in three dependency layers: a fifth are bases, two
// fifths depend on a base, the rest on one of those.
func largeSpec(n, replicas int, both bool, bake time.Duration) spec.Environment {
	var services []spec.Service
	base, mid := n/5, n/5+2*n/5
	for i := 0; i < n; i++ {
		s := spec.Service{
			Name: fmt.Sprintf("svc-%03d", i), Image: "slipway/demo", Version: "1.1.0", Replicas: replicas, Port: 8080,
			Health:       &spec.Health{HTTPPath: "/healthz"},
			Clusters:     []string{[]string{"a", "b"}[i%2]},
			Verification: &spec.Verification{Interval: spec.Duration(time.Second), Duration: spec.Duration(time.Second), MinSamples: 1, MaxErrorRate: 0.05, Bake: durationPtr(bake)},
			Canary:       &spec.Canary{Soak: spec.Duration(time.Second)},
		}
		if both {
			s.Clusters = nil
		}
		switch {
		case i >= mid:
			s.DependsOn = []string{fmt.Sprintf("svc-%03d", base+(i-mid)%(mid-base))}
		case i >= base:
			s.DependsOn = []string{fmt.Sprintf("svc-%03d", (i-base)%base)}
		}
		services = append(services, s)
	}
	env := spec.Environment{
		Environment: "large",
		Clusters:    []spec.Cluster{{Name: "a", Wave: 1}, {Name: "b", Wave: 1}},
		Services:    services,
	}
	spec.ApplyDefaults(&env)
	return env
}

func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

func durationPtr(d time.Duration) *spec.Duration { v := spec.Duration(d); return &v }

// historyStats are the events and bytes of one workflow's history.
type historyStats struct {
	id      string
	events  int
	bytes   int
	history *historypb.History
}

func historyOf(ctx context.Context, t testing.TB, c client.Client, id, runID string) historyStats {
	t.Helper()
	it := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	st := historyStats{id: id, history: &historypb.History{}}
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		st.events++
		st.bytes += proto.Size(ev)
		st.history.Events = append(st.history.Events, ev)
	}
	return st
}

// TestLargeReleaseHistory runs a release of 120 small services (1 replica each, on two
// clusters, three dependency layers) on the embedded Temporal server with the fake world,
// and checks that every workflow it runs stays under Temporal's warning limits (events and
// bytes per history) and that its input and status answer stay far from the payload limit.
// SLIPWAY_LARGE_SERVICES=n, SLIPWAY_LARGE_REPLICAS=r and SLIPWAY_LARGE_BOTH=1 (every
// service on both clusters) measure other shapes (the limits may then fail it: that is the
// measurement).
func TestLargeReleaseHistory(t *testing.T) {
	testenv.RequireTemporal(t)
	n, replicas := envInt(t, "SLIPWAY_LARGE_SERVICES", 120), envInt(t, "SLIPWAY_LARGE_REPLICAS", 1)
	both := os.Getenv("SLIPWAY_LARGE_BOTH") == "1"
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: -1, SearchAttributes: SearchAttributeTypes})
	require.NoError(t, err)
	defer srv.Stop()
	c := srv.Client()

	env := largeSpec(n, replicas, both, 0)
	w := newWorld(env.Environment)
	for _, s := range env.Services {
		for _, c := range serviceClusters(env, s) {
			w.seed(c.Name, s.Name, "1.0.0", replicas)
		}
	}
	wk := sdkworker.New(c, "large", sdkworker.Options{})
	Register(wk)
	w.register(wk)
	require.NoError(t, wk.Start())
	defer wk.Stop()

	in := ReleaseInput{ID: "big", TriggeredBy: "test", Spec: env}
	inBytes, err := json.Marshal(in)
	require.NoError(t, err)
	start := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ReleaseWorkflowID(env.Environment, in.ID), TaskQueue: "large"}, ReleaseWorkflowName, in)
	require.NoError(t, err)

	// the status query while the release runs
	var lat []time.Duration
	var statusBytes int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			t0 := time.Now()
			v, err := c.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), QueryStatus)
			if err == nil {
				lat = append(lat, time.Since(t0))
				var raw json.RawMessage
				if v.Get(&raw) == nil {
					statusBytes = max(statusBytes, len(raw))
				}
				var st ReleaseStatus
				if v.Get(&st) == nil && st.Phase == PhaseDone {
					return
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	st, err := ReleaseResult(ctx, run)
	require.NoError(t, err)
	wall := time.Since(start)
	<-done
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)

	// every workflow the release ran: itself and its children (a lock per service)
	all := []historyStats{historyOf(ctx, t, c, run.GetID(), run.GetRunID())}
	// The release's history replays against the code from its first event, as on a worker
	// that lost the workflow from its cache mid-release: a command order that depended on
	// timing would fail here.
	replayer := sdkworker.NewWorkflowReplayer()
	RegisterAll(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, all[0].history), "replay of the release")
	for _, s := range env.Services {
		all = append(all, historyOf(ctx, t, c, LockWorkflowID(env.Environment, s.Name), ""))
	}
	sort.Slice(all, func(i, j int) bool { return all[i].events > all[j].events })
	var total, totalBytes int
	for _, h := range all {
		total += h.events
		totalBytes += h.bytes
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	t.Logf("%d services (%d replicas, both clusters %v): wall %s; %d workflows, %d events (%d bytes) in all; largest %s: %d events, %d bytes; input %d bytes; status answer %d bytes, %d events in its timeline; query p50 %s p99 %s (%d queries)",
		n, replicas, both, wall.Round(time.Millisecond), len(all), total, totalBytes, all[0].id, all[0].events, all[0].bytes, len(inBytes), statusBytes, len(st.Events), pct(0.5), pct(0.99), len(lat))
	for _, h := range all {
		require.Less(t, h.events, historyWarnEvents, "events of %s", h.id)
		require.Less(t, h.bytes, historyWarnBytes, "bytes of %s", h.id)
	}
	require.Less(t, len(inBytes), payloadLimitBytes/4, "the release's input")
	require.Less(t, statusBytes, payloadLimitBytes/4, "the status answer")
}
