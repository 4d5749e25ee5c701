package activities

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkVerifyEngineVsDirect measures the time from a healthy canary to its verdict with
// the probes running next to the replicas (a probe container on the engine: the default)
// against probing from the worker (probes: direct), on the local engine, same window (3 s at
// the default 100 requests/s per replica, canary against two stable replicas), same run.
// The two modes alternate over 5 rounds; the medians are reported, and their ratio
// (engine/direct, goal ≤ 1.1). The first engine-side run of a process also builds the probe
// image on the engine: it is done once before the rounds, as a worker does it once per engine.
func BenchmarkVerifyEngineVsDirect(b *testing.B) {
	testenv.DemoImages(b)
	env := testenv.UniqueEnv(b)
	d := dockerengine.NewDialer(dockerengine.Options{})
	b.Cleanup(func() { _ = d.Close() })
	tgt, stableSvc := ltDeploy(b, d, env, "1.0.0", 2)
	a := New(d, Options{})
	canarySvc := stableSvc
	canarySvc.Version = "1.1.0"
	ctx := context.Background()
	if _, err := a.StartReplicas(ctx, workflows.StartReplicasInput{Target: tgt, Release: "r1", Role: engine.RoleCanary,
		Service: canarySvc, Slots: []int{0}, Attach: true, HealthDeadline: 30 * time.Second}); err != nil {
		b.Fatal(err)
	}
	name := func(v string, slot int) string {
		return engine.Key{Environment: env, Cluster: tgt.Cluster, Service: "web", Version: v, Slot: slot}.ContainerName()
	}
	v := spec.Verification{
		Requests: []spec.Probe{{Path: "/", Method: "GET", Timeout: spec.Duration(2 * time.Second)}},
		Interval: spec.Duration(spec.DefaultVerificationInterval), Duration: spec.Duration(3 * time.Second),
		MinSamples: 250, MaxErrorRate: spec.DefaultMaxErrorRate, Confidence: spec.DefaultConfidence, MaxLatencyRatio: spec.DefaultMaxLatencyRatio,
	}
	verify := func(mode string) time.Duration {
		t := tgt
		t.Probes = mode
		start := time.Now()
		verdict, err := a.Verify(ctx, workflows.VerifyInput{Target: t, Service: "web", Stage: "bench",
			New: []string{name("1.1.0", 0)}, Baseline: []string{name("1.0.0", 0), name("1.0.0", 1)}, Verification: v})
		took := time.Since(start)
		if err != nil || verdict.Result != workflows.VerdictPassed {
			b.Fatalf("%s: %v %s: %s", mode, err, verdict.Result, verdict.Reason)
		}
		return took
	}
	verify(spec.ProbesEngine) // the probe image is built once per engine
	var eng, dir []time.Duration
	b.ResetTimer()
	for i := range 5 {
		if i%2 == 0 {
			eng, dir = append(eng, verify(spec.ProbesEngine)), append(dir, verify(spec.ProbesDirect))
		} else {
			dir, eng = append(dir, verify(spec.ProbesDirect)), append(eng, verify(spec.ProbesEngine))
		}
	}
	b.StopTimer()
	me, md := median(eng), median(dir)
	b.ReportMetric(float64(me.Milliseconds()), "engine-ms")
	b.ReportMetric(float64(md.Milliseconds()), "direct-ms")
	b.ReportMetric(float64(me)/float64(md), "engine/direct")
	b.Logf("healthy → verdict, 3 s window: engine-side %v (runs %v), direct %v (runs %v)", me, eng, md, dir)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
