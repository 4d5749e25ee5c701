package judgment

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// steady returns n good pairs with latencies spread over 10–46 ms, the same
// on both sides of a pair (a deterministic, noise-free window).
func steady(n int) []Pair {
	ps := make([]Pair, n)
	for i := range ps {
		l := time.Duration(10+i%37) * time.Millisecond
		ps[i] = Pair{Canary: Sample{Latency: l}, Stable: Sample{Latency: l}}
	}
	return ps
}

// failCanary marks the canary of pairs [from, to) failed.
func failCanary(ps []Pair, from, to int) []Pair {
	for i := from; i < to; i++ {
		ps[i].Canary.Failed = true
	}
	return ps
}

func failStable(ps []Pair, from, to int) []Pair {
	for i := from; i < to; i++ {
		ps[i].Stable.Failed = true
	}
	return ps
}

func testNamed(r Result, name string) Test {
	for _, t := range r.Tests {
		if t.Name == name {
			return t
		}
	}
	return Test{}
}

func TestCompare(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name    string
		policy  Policy
		pairs   []Pair
		outcome Outcome
		rule    string // a piece of Result.Rule
		check   func(t *testing.T, r Result)
	}{
		{
			name: "good", pairs: steady(1000), outcome: Passed, rule: "no rule failed on 1000 valid pairs",
		},
		{
			// p = 0.5^10 = 0.00098 ≥ A/2 = 0.0005: not enough.
			name: "10 vs 0 canary-only failures", pairs: failCanary(steady(1000), 0, 10), outcome: Passed,
			check: func(t *testing.T, r Result) {
				near(t, "p", r.Tests[0].PValue, math.Pow(0.5, 10), 1e-12)
				if r.Tests[0].Alpha != 0.0005 {
					t.Errorf("error comparison alpha = %g, want 0.0005", r.Tests[0].Alpha)
				}
			},
		},
		{
			// p = 0.5^11 = 0.00049 < 0.0005, 1.1% ≥ 0% + 0.5 points.
			name: "11 vs 0 canary-only failures", pairs: failCanary(steady(1000), 0, 11), outcome: Failed,
			rule: "errors: McNemar exact test on discordant pairs (one-sided) with floors: canary-only failures 11 vs stable-only 0, p=0.00049 < 0.0005; rates 1.1% vs 0%",
		},
		{
			// Significant (p ≈ 3e-6) but 1.0% against 0.6% is under both
			// floors: a large sample does not fail a small difference.
			name:  "significant but under the floors",
			pairs: failStable(failCanary(steady(20000), 0, 200), 200, 320), outcome: Passed,
			check: func(t *testing.T, r Result) {
				e := r.Tests[0]
				if e.PValue >= e.Alpha || e.Failed || !strings.Contains(e.Detail, "not met") {
					t.Errorf("want significant, floors not met: %+v", e)
				}
			},
		},
		{
			name: "every canary request fails", pairs: failCanary(steady(1000), 0, 1000), outcome: Failed, rule: "errors: McNemar",
		},
		{
			// Failures stand on a short window: a fixed-size test is valid
			// at the size it has.
			name: "short window, every canary request fails", pairs: failCanary(steady(50), 0, 50), outcome: Failed, rule: "errors: McNemar",
		},
		{
			name: "short window", pairs: steady(100), outcome: Inconclusive, rule: "data: 100 valid pairs, fewer than the 700 needed",
		},
		{
			name: "no pairs", pairs: nil, outcome: Inconclusive, rule: "data: no valid pair",
		},
		{
			name: "too many lost", outcome: Inconclusive, rule: "data: 60 of 1000 pairs lost (6%), more than the 5% allowed",
			pairs: func() []Pair {
				ps := steady(1000)
				for i := 0; i < 60; i++ {
					ps[i*16].Stable.Lost = true
				}
				return ps
			}(),
			check: func(t *testing.T, r Result) {
				if r.Lost != 60 || r.Canary.N != 940 || r.Stable.N != 940 {
					t.Errorf("lost %d, n %d/%d; want 60 and 940", r.Lost, r.Canary.N, r.Stable.N)
				}
			},
		},
		{
			name: "lost within the allowance", outcome: Passed,
			pairs: func() []Pair {
				ps := steady(1000)
				for i := 0; i < 50; i++ {
					ps[i*20].Canary.Lost = true
				}
				return ps
			}(),
		},
		{
			// Both at 5%: stable breaks the ceiling too, so the canary's
			// ceiling failure is the environment's.
			name:  "stable failing as much as the canary",
			pairs: failStable(failCanary(steady(1000), 0, 50), 50, 100), outcome: Inconclusive,
			rule: "stable error ceiling",
			check: func(t *testing.T, r Result) {
				if !testNamed(r, "error-ceiling").Failed || !testNamed(r, "stable-error-ceiling").Failed {
					t.Errorf("want both ceilings broken: %+v", r.Tests)
				}
			},
		},
		{
			name:  "stable failing, canary much worse",
			pairs: failStable(failCanary(steady(1000), 0, 200), 200, 250), outcome: Failed, rule: "errors: McNemar",
		},
		{
			// Canary at 3% against 2.5%: the comparison does not fail, the
			// canary is over the ceiling but so is stable.
			name:  "stable over the ceiling, canary alike",
			pairs: failStable(failCanary(steady(1000), 0, 30), 30, 55), outcome: Inconclusive, rule: "stable error ceiling",
		},
		{
			// 2.5% against 0.2%: both the comparison (25 vs 2 discordant,
			// p ≈ 3e-6) and the ceiling fail; the comparison comes first.
			name:  "ceiling and comparison",
			pairs: failStable(failCanary(steady(1000), 0, 25), 25, 27), outcome: Failed, rule: "errors: McNemar",
		},
		{
			// Every canary answer 50 ms slower: the medians move by 50 ms.
			name: "general slowdown", outcome: Failed, rule: "general slowdown",
			pairs: func() []Pair {
				ps := steady(1000)
				for i := range ps {
					ps[i].Canary.Latency += 50 * ms
				}
				return ps
			}(),
		},
		{
			// 2 ms slower: Mann-Whitney is significant, the shift is not
			// 10 ms.
			name: "slower by less than the minimum shift", outcome: Passed,
			pairs: func() []Pair {
				ps := steady(1000)
				for i := range ps {
					ps[i].Canary.Latency += 2 * ms
				}
				return ps
			}(),
			check: func(t *testing.T, r Result) {
				s := testNamed(r, "slowdown")
				if s.PValue >= s.Alpha || s.Failed {
					t.Errorf("want significant without the shift: %+v", s)
				}
			},
		},
		{
			// 8% of the canary's answers take 800 ms longer.
			name: "slow tail", outcome: Failed, rule: "slow tail",
			pairs: func() []Pair {
				ps := steady(1000)
				for i := 0; i < 1000; i += 12 {
					ps[i].Canary.Latency += 800 * ms
				}
				return ps
			}(),
		},
		{
			// 10% of the canary's answers at 100 ms: p95 100 ms against
			// 45 ms for stable, above 1.5 × 45 + 25 = 92.5 ms; under the
			// tail threshold (pooled median + 250 ms) and no median shift.
			name: "p95 ratio", outcome: Failed, rule: "p95 ratio",
			pairs: func() []Pair {
				ps := steady(1000)
				for i := 0; i < 1000; i += 10 {
					ps[i].Canary.Latency = 100 * ms
				}
				return ps
			}(),
		},
		{
			// Timeouts are errors, judged once: 3 canary timeouts at 10 s
			// neither fail the errors rule nor count as slow answers.
			name: "a few timeouts are not slow answers", outcome: Passed,
			pairs: func() []Pair {
				ps := steady(1000)
				for i := 0; i < 3; i++ {
					ps[i*100].Canary = Sample{Failed: true, Latency: 10 * time.Second}
				}
				return ps
			}(),
			check: func(t *testing.T, r Result) {
				if r.Canary.P99 > 50*ms {
					t.Errorf("failed answers counted in latency: p99 %s", r.Canary.P99)
				}
			},
		},
		{
			name: "p95 ceiling", policy: Policy{MaxP95: 40 * ms}, outcome: Failed, rule: "canary p95 ceiling",
			pairs: func() []Pair {
				ps := steady(1000)
				for i := range ps {
					ps[i].Stable.Latency = 20 * ms
				}
				return ps
			}(),
		},
		{
			name: "p95 ceiling broken by stable too", policy: Policy{MaxP95: 40 * ms}, outcome: Inconclusive, rule: "stable p95 ceiling",
			pairs: steady(1000),
		},
		{
			name: "invalid policy", policy: Policy{Alpha: 2}, pairs: steady(1000), outcome: Inconclusive, rule: "alpha: 2 is not in (0, 0.5]",
		},
		{
			// A min_samples far below the default (Alpha as Verify passes it at
			// confidence 0.999): every second canary request fails and no rule is
			// significant on 10 pairs, but a canary seen at 50 % errors against a
			// 5 % ceiling is not "no worse than stable".
			name: "half the canary's requests fail on too few pairs", policy: Policy{Alpha: 0.0005, MinPairs: 5, MaxErrorRate: 0.05},
			outcome: Inconclusive, rule: "canary error rate 50.0%, over 2× the 5% ceiling, not significant on 10 valid pairs",
			pairs: func() []Pair {
				ps := steady(10)
				for i := 0; i < len(ps); i += 2 {
					ps[i].Canary.Failed = true
				}
				return ps
			}(),
		},
		{
			// 100 stable answers cannot bound a p95 at 1-0.0000625: the
			// rule is skipped, and says so, but does not block the pass.
			name: "smaller MinPairs", policy: Policy{MinPairs: 100}, pairs: steady(100), outcome: Passed,
			rule: "p95-ratio not run: 100 stable answers are too few to bound its p95",
			check: func(t *testing.T, r Result) {
				if !testNamed(r, "p95-ratio").Skipped {
					t.Errorf("p95 ratio not marked skipped")
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Compare(c.policy, c.pairs)
			if r.Outcome != c.outcome || !strings.Contains(r.Rule, c.rule) {
				t.Errorf("got %s by %q\nwant %s by %q\nreason: %s", r.Outcome, r.Rule, c.outcome, c.rule, r.Reason)
				for _, x := range r.Tests {
					t.Logf("  %+v", x)
				}
			}
			if !r.Baseline || r.Reason == "" || r.Pairs != len(c.pairs) {
				t.Errorf("baseline %v, reason %q, pairs %d", r.Baseline, r.Reason, r.Pairs)
			}
			if c.check != nil {
				c.check(t, r)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Errorf("result does not encode: %v", err)
			}
			if again := Compare(c.policy, c.pairs); !reflect.DeepEqual(r, again) {
				t.Errorf("not deterministic")
			}
		})
	}
}

func TestCompareReportsSides(t *testing.T) {
	ps := failStable(failCanary(steady(1000), 0, 4), 500, 502)
	r := Compare(Policy{}, ps)
	if r.Canary.N != 1000 || r.Canary.Errors != 4 || r.Stable.Errors != 2 || r.Canary.ErrorRate != 0.004 {
		t.Errorf("sides: %+v %+v", r.Canary, r.Stable)
	}
	if r.Canary.P50 < 20*time.Millisecond || r.Canary.P50 > 35*time.Millisecond || r.Canary.P99 < 40*time.Millisecond {
		t.Errorf("percentiles: %+v", r.Canary)
	}
	want := []string{"errors-mcnemar", "error-ceiling", "slow-tail", "slowdown", "p95-ratio", "stable-error-ceiling"}
	var got []string
	sum := 0.0
	for _, x := range r.Tests {
		got = append(got, x.Name)
		if x.Skipped {
			t.Errorf("%s skipped: %s", x.Name, x.Detail)
		}
	}
	for _, x := range r.Tests[:5] {
		sum += x.Alpha
	}
	// The p95 rule reports the half of its share used by the count; the
	// other half went to stable's bound.
	sum += r.Tests[4].Alpha
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tests %v, want %v", got, want)
	}
	near(t, "false-failure budget", sum, DefaultAlpha, 1e-12)
}

func TestAbsolute(t *testing.T) {
	good := func(n int) []Sample {
		ss := make([]Sample, n)
		for i := range ss {
			ss[i] = Sample{Latency: time.Duration(10+i%37) * time.Millisecond}
		}
		return ss
	}
	withErrors := func(ss []Sample, k int) []Sample {
		for i := 0; i < k; i++ {
			ss[i*len(ss)/k].Failed = true
		}
		return ss
	}
	cases := []struct {
		name    string
		policy  Policy
		samples []Sample
		outcome Outcome
		rule    string
	}{
		{"0 errors in 1000", Policy{}, good(1000), Passed, "no rule failed on 1000 valid samples"},
		{"5% errors", Policy{}, withErrors(good(1000), 50), Failed, "canary error ceiling"},
		// P(Binomial(50, 0.01) ≥ 1) = 0.39: one error is no evidence.
		{"1 error in 50", Policy{MinPairs: 50}, withErrors(good(50), 1), Passed, "no rule failed on 50 valid samples"},
		{"1 error in 50, default sample size", Policy{}, withErrors(good(50), 1), Inconclusive, "data: 50 valid samples, fewer than the 700 needed"},
		{"2% errors in 1000 (above the ceiling, not significantly)", Policy{}, withErrors(good(1000), 20), Passed, "no rule failed"},
		{"3 errors in 50 (6%, over twice the ceiling, not significantly)", Policy{MinPairs: 50}, withErrors(good(50), 3), Inconclusive, "canary error rate 6%, over 2× the 1% ceiling, not significant on 50 valid samples"},
		{"p95 ceiling", Policy{MaxP95: 30 * time.Millisecond}, good(1000), Failed, "canary p95 ceiling"},
		{"p95 within the ceiling", Policy{MaxP95: 50 * time.Millisecond}, good(1000), Passed, "no rule failed"},
		{"all lost", Policy{}, []Sample{{Lost: true}, {Lost: true}}, Inconclusive, "data: no valid sample"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Absolute(c.policy, c.samples)
			if r.Outcome != c.outcome || !strings.Contains(r.Rule, c.rule) {
				t.Errorf("got %s by %q\nwant %s by %q\nreason: %s", r.Outcome, r.Rule, c.outcome, c.rule, r.Reason)
			}
			if r.Baseline || !strings.Contains(r.Reason, "no stable version") {
				t.Errorf("reason does not say there is no stable version: %q", r.Reason)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Errorf("result does not encode: %v", err)
			}
		})
	}
	r := Absolute(Policy{}, good(1000))
	if !strings.Contains(r.Reason, "no latency rule") {
		t.Errorf("a pass without MaxP95 must say there is no latency rule: %q", r.Reason)
	}
}

func TestEarly(t *testing.T) {
	// A canary failing every request against a healthy stable: Λ(13, 0) =
	// 1170 < 2000 = 1/(A/2) ≤ Λ(14, 0) = 2184.
	ps := failCanary(steady(100), 0, 100)
	if r, failed := Early(Policy{}, ps[:13]); failed {
		t.Errorf("failed after 13 pairs: %s", r.Rule)
	}
	r, failed := Early(Policy{}, ps[:14])
	if !failed || r.Outcome != Failed || !strings.Contains(r.Rule, "errors, early") {
		t.Errorf("not failed after 14 pairs: %s %s", r.Outcome, r.Rule)
	}
	near(t, "Λ", r.Tests[0].Statistic, 32767.0/15, 1e-9)

	// The largest ratio over every prefix counts: 14 canary-only failures
	// then 5 stable-only ones still fail (as a check after pair 14 would
	// have).
	ps = failStable(failCanary(steady(1000), 0, 14), 14, 19)
	if _, failed := Early(Policy{}, ps[:600]); !failed {
		t.Errorf("the evidence of an earlier prefix was lost")
	}

	// Good pairs: no decision, and never a pass.
	r, failed = Early(Policy{}, steady(1000))
	if failed || r.Outcome != Inconclusive {
		t.Errorf("good pairs: %s %s", r.Outcome, r.Rule)
	}

	// Slow pairs: every canary answer 300 ms slower than its partner.
	ps = steady(100)
	for i := range ps {
		ps[i].Canary.Latency += 300 * time.Millisecond
	}
	r, failed = Early(Policy{}, ps[:20])
	if !failed || !strings.Contains(r.Rule, "slow answers, early") {
		t.Errorf("slow canary not failed after 20 pairs: %s %s", r.Outcome, r.Rule)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("result does not encode: %v", err)
	}
	// A huge ratio stays finite.
	r, _ = Early(Policy{}, failCanary(steady(5000), 0, 5000))
	if _, err := json.Marshal(r); err != nil || math.IsInf(r.Tests[0].Statistic, 0) {
		t.Errorf("huge ratio: %v %g", err, r.Tests[0].Statistic)
	}
}

func TestPolicy(t *testing.T) {
	p := Policy{}.WithDefaults()
	want := Policy{
		Alpha: 0.001, MaxErrorRate: 0.01, ErrorMinDiff: 0.005, ErrorMinRatio: 2,
		P95Ratio: 1.5, LatencySlack: 25 * time.Millisecond, TailMargin: 250 * time.Millisecond,
		MinShiftRatio: 0.25, MinShift: 10 * time.Millisecond, MinPairs: 700, MaxLostShare: 0.05,
	}
	if p != want {
		t.Errorf("defaults %+v\nwant %+v", p, want)
	}
	if err := (Policy{}).Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if err := (Policy{Alpha: -1, MinPairs: -3, P95Ratio: 0.5}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "alpha") || !strings.Contains(err.Error(), "minPairs") || !strings.Contains(err.Error(), "p95Ratio") {
		t.Errorf("Validate = %v", err)
	}
	if q := (Policy{Alpha: 0.01, MaxP95: time.Second}).WithDefaults(); q.Alpha != 0.01 || q.MaxP95 != time.Second {
		t.Errorf("set fields overwritten: %+v", q)
	}
}
