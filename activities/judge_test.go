package activities

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/probe"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// fakeMeasurement builds the measurement of rounds rounds of one request on newN new and
// baseN baseline replicas; answer says what each probe got.
func fakeMeasurement(newN, baseN, rounds int, req spec.Probe, answer func(kind streamKind, replica, round int) probe.Result) *measurement {
	m := &measurement{reqs: []spec.Probe{req}, newN: newN, baseN: baseN, status: map[int]int{}}
	for j := range newN {
		m.streams = append(m.streams, stream{kind: streamNew, replica: j})
	}
	for j := range baseN {
		m.streams = append(m.streams, stream{kind: streamBase, replica: j})
	}
	m.res = make([][]*probe.Result, len(m.streams))
	for round := range rounds {
		for si, st := range m.streams {
			r := answer(st.kind, st.replica, round)
			r.S, r.R = si, round
			m.add(r)
		}
	}
	return m
}

func ok(status int, ms float64) probe.Result {
	return probe.Result{Status: status, Latency: time.Duration(ms * float64(time.Millisecond))}
}

func TestSamplesPairCanaryWithStableOfTheSameRound(t *testing.T) {
	m := fakeMeasurement(2, 3, 4, spec.Probe{Path: "/"}, func(kind streamKind, replica, round int) probe.Result {
		if kind == streamNew {
			return ok(200, float64(100+round))
		}
		return ok(200, float64(10*(replica+1)+round)) // stable replica j answers 10(j+1)+round ms
	})
	pairs, solo := m.samples(m.rounds(false))
	require.Nil(t, solo)
	require.Len(t, pairs, 8, "2 new replicas × 4 rounds")
	// Round 1, new replica 1: paired with stable replica (1+1)%3 = 2 in the same round.
	p := pairs[1*2+1]
	require.Equal(t, 101*time.Millisecond, p.Canary.Latency)
	require.Equal(t, 31*time.Millisecond, p.Stable.Latency)
}

func TestSamplesAnswerLikeStable(t *testing.T) {
	for _, tc := range []struct {
		name           string
		expect         int
		canary, stable probe.Result
		canaryFailed   bool
		stableFailed   bool
		lost           bool
	}{
		{"same 404 on both sides is the same behaviour", 0, ok(404, 1), ok(404, 1), false, false, false},
		{"404 against stable's 200", 0, ok(404, 1), ok(200, 1), true, false, false},
		{"500 on the canary alone", 0, ok(500, 1), ok(200, 1), true, false, false},
		{"a refused connection is a failure", 0, probe.Result{Err: probe.ErrRefused}, ok(200, 1), true, false, false},
		{"a timeout is a failure", 0, probe.Result{Err: probe.ErrTimeout}, ok(200, 1), true, false, false},
		{"a redirect against a 200 differs", 0, ok(302, 1), ok(200, 1), true, false, false},
		{"expect_status decides when written", 200, ok(404, 1), ok(404, 1), true, true, false},
		{"no address: lost, not judged", 0, probe.Result{Err: probe.ErrNoAddress}, ok(200, 1), false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fakeMeasurement(1, 1, 1, spec.Probe{Path: "/", ExpectStatus: tc.expect}, func(kind streamKind, _, _ int) probe.Result {
				if kind == streamNew {
					return tc.canary
				}
				return tc.stable
			})
			pairs, _ := m.samples(1)
			require.Len(t, pairs, 1)
			require.Equal(t, tc.canaryFailed, pairs[0].Canary.Failed, "canary failed")
			require.Equal(t, tc.stableFailed, pairs[0].Stable.Failed, "stable failed")
			require.Equal(t, tc.lost, pairs[0].Canary.Lost, "lost")
		})
	}
}

func TestRoundsCompletePrefix(t *testing.T) {
	m := fakeMeasurement(1, 1, 5, spec.Probe{Path: "/"}, func(streamKind, int, int) probe.Result { return ok(200, 1) })
	m.res[1][2] = nil // the baseline's answer of round 2 has not arrived yet
	require.Equal(t, 2, m.rounds(true), "early checks only see rounds complete on both sides")
	require.Equal(t, 5, m.rounds(false))
}

func TestVerdictOfMeasurements(t *testing.T) {
	pol := policyOf(spec.Verification{MinSamples: 700, MaxErrorRate: 0.01, MaxLatencyRatio: 1.5, Confidence: 0.999}, 25*time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	lat := func() float64 { return 5 + rng.Float64()*5 }
	good := func(_ streamKind, _, _ int) probe.Result { return ok(200, lat()) }
	errorsOnCanary := func(rate float64) func(streamKind, int, int) probe.Result {
		return func(kind streamKind, _, _ int) probe.Result {
			if kind == streamNew && rng.Float64() < rate {
				return ok(500, lat())
			}
			return ok(200, lat())
		}
	}
	for _, tc := range []struct {
		name   string
		baseN  int
		rounds int
		answer func(streamKind, int, int) probe.Result
		fatal  string
		want   workflows.VerdictResult
		reason string
	}{
		{"good against stable", 2, 1000, good, "", workflows.VerdictPassed, ""},
		{"5% errors against stable", 2, 1000, errorsOnCanary(0.05), "", workflows.VerdictFailed, ""},
		{"first release, good", 0, 1000, good, "", workflows.VerdictPassed, ""},
		{"first release, every request failing", 0, 1000, errorsOnCanary(1), "", workflows.VerdictFailed, ""},
		{"too few pairs", 2, 50, good, "", workflows.VerdictInconclusive, ""},
		{"a replica died", 2, 1000, good, "new replica x is exited", workflows.VerdictFailed, "exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fakeMeasurement(1, tc.baseN, tc.rounds, spec.Probe{Path: "/"}, tc.answer)
			v := m.verdict(pol, tc.fatal, nil)
			require.Equal(t, tc.want, v.Result, v.Reason)
			require.Contains(t, v.Reason, tc.reason)
			require.NotNil(t, v.Evidence.Statistics)
			require.Equal(t, tc.baseN > 0, v.Evidence.Baseline, "judged against stable only when there is one")
			require.Equal(t, 1, v.Evidence.Targets)
			if tc.baseN == 0 {
				require.Contains(t, v.Reason, "no stable", "a first release says it was judged on absolute thresholds")
			}
		})
	}
}

func TestPolicyOfSharesTheBudget(t *testing.T) {
	p := policyOf(spec.Verification{Confidence: 0.99, MinSamples: 100, MaxLatencyRatio: 2}, 25*time.Millisecond)
	require.InDelta(t, 0.005, p.Alpha, 1e-12, "half of 1 − confidence: the other half is the early check's")
	require.Equal(t, 100, p.MinPairs)
	require.Equal(t, 2.0, p.P95Ratio)
}
