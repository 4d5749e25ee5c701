package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

func sideOf(n, errs, unreachable int, latency time.Duration) side {
	s := side{}
	for i := 0; i < n; i++ {
		s.record(outcome{status: 200, failed: i < errs, latency: latency})
	}
	for i := 0; i < unreachable; i++ {
		s.record(outcome{unreachable: true})
	}
	return s
}

func TestJudge(t *testing.T) {
	v := spec.Verification{MinSamples: 10, MaxErrorRate: 0.05, MaxP95Latency: spec.Duration(200 * time.Millisecond), MaxLatencyRatio: 1.5}
	ms := time.Millisecond
	for _, tc := range []struct {
		name       string
		p          verifyProgress
		base       int
		want       workflows.VerdictResult
		reasonPart string
	}{
		{"good", verifyProgress{New: sideOf(20, 0, 0, 2*ms), Base: sideOf(40, 0, 0, 2*ms)}, 2, workflows.VerdictPassed, "20 samples"},
		{"no data is never a pass", verifyProgress{}, 0, workflows.VerdictInconclusive, "only 0 samples"},
		{"too few samples", verifyProgress{New: sideOf(9, 0, 0, ms), Base: sideOf(40, 0, 0, ms)}, 2, workflows.VerdictInconclusive, "only 9 samples"},
		{"errors", verifyProgress{New: sideOf(20, 2, 0, ms)}, 0, workflows.VerdictFailed, "error rate 10.0%"},
		{"errors beat unreachable", verifyProgress{New: sideOf(20, 10, 5, ms)}, 0, workflows.VerdictFailed, "error rate"},
		{"absolute p95", verifyProgress{New: sideOf(20, 0, 0, 300*ms)}, 0, workflows.VerdictFailed, "above the 200ms allowed"},
		{"ratio", verifyProgress{New: sideOf(20, 0, 0, 150*ms), Base: sideOf(20, 0, 0, 50*ms)}, 2, workflows.VerdictFailed, "× the stable p95"},
		{"ratio under the noise floor", verifyProgress{New: sideOf(20, 0, 0, 3*ms), Base: sideOf(20, 0, 0, ms)}, 2, workflows.VerdictPassed, ""},
		{"some probes could not run", verifyProgress{New: sideOf(20, 0, 1, ms)}, 0, workflows.VerdictInconclusive, "1 of 21 probes of the new version could not run"},
		{"stable could not be measured", verifyProgress{New: sideOf(20, 0, 0, ms), Base: sideOf(3, 0, 10, ms)}, 2, workflows.VerdictInconclusive, "stable version to compare"},
		{"replica died", verifyProgress{New: sideOf(20, 0, 0, ms), Fatal: "new replica x is exited"}, 0, workflows.VerdictFailed, "exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets := 1
			got := judge(v, tc.p, targets, tc.base, 25*ms)
			require.Equal(t, tc.want, got.Result, got.Reason)
			require.Contains(t, got.Reason, tc.reasonPart)
			require.Equal(t, tc.p.New.Responses, got.Evidence.Samples)
		})
	}
	require.Equal(t, workflows.VerdictInconclusive, judge(v, verifyProgress{New: sideOf(20, 0, 0, ms)}, 0, 0, ms).Result, "no new replica")
}

func TestHistogramPercentile(t *testing.T) {
	h := histogram{}
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	p95 := h.percentile(95)
	require.InDelta(t, float64(95*time.Millisecond), float64(p95), float64(5*time.Millisecond))
	p50 := h.percentile(50)
	require.InDelta(t, float64(50*time.Millisecond), float64(p50), float64(3*time.Millisecond))
	require.Zero(t, histogram{}.percentile(95))
	require.Equal(t, bucketUpper(0), histogram{0: 3}.percentile(50))
}
