package judgment

import (
	"errors"
	"fmt"
	"time"
)

// Outcome is the verdict of a verification window.
type Outcome string

// The three verdicts. Only Passed may promote a release.
const (
	// Passed: every rule ran on enough valid pairs and none failed.
	Passed Outcome = "passed"
	// Failed: the canary is worse than stable (or above a ceiling stable
	// keeps within), with the evidence in Result.Tests.
	Failed Outcome = "failed"
	// Inconclusive: no valid comparison was made (data lost, sample too
	// small, stable itself failing), or, from Early, no decision yet.
	Inconclusive Outcome = "inconclusive"
)

// Sample is one probe of one replica.
type Sample struct {
	// Lost: the measurement could not be taken (the prober or the engine
	// failed). A lost sample is counted, never judged.
	Lost bool
	// Failed: the replica answered badly: wrong status, refused
	// connection, timeout, broken body. It counts as an error.
	Failed bool
	// Latency is the time to the full answer. Only successful answers'
	// latencies are judged (see the package documentation).
	Latency time.Duration
}

// Pair is the same request sent to a canary replica and to a stable
// replica at the same moment.
type Pair struct {
	Canary, Stable Sample
}

// Policy holds the thresholds of a verdict. The zero value of a field
// means its default (see WithDefaults); MaxP95 is the only rule that can be
// switched off (zero).
type Policy struct {
	// Alpha is the false-failure budget of one verdict: the largest
	// chance that a canary no worse than stable is failed. It is split
	// between the rules (Bonferroni). Default 0.001 (confidence 0.999).
	Alpha float64

	// MaxErrorRate is the absolute ceiling on the canary's error rate,
	// tested one-sided (the rate must be significantly above it). It is
	// the only error rule when there is no stable version. Default 0.01.
	MaxErrorRate float64
	// ErrorMinDiff is the smallest difference of error rates (canary
	// minus stable) that can fail the comparison. Default 0.005. The
	// same floor applies to the shares of slow answers (rule 3).
	ErrorMinDiff float64
	// ErrorMinRatio is the smallest ratio of error rates (canary over
	// stable) that can fail the comparison. Default 2. The same floor
	// applies to the shares of slow answers (rule 3).
	ErrorMinRatio float64

	// MaxP95 is an absolute ceiling on the canary's p95 latency; zero
	// switches it off (the default: no latency is right for every
	// service).
	MaxP95 time.Duration
	// P95Ratio: the canary's p95 may be at most P95Ratio × stable's p95
	// plus LatencySlack. Default 1.5.
	P95Ratio float64
	// LatencySlack is the absolute slack added to P95Ratio × stable's p95,
	// so that sub-millisecond noise never fails a fast service. Default
	// 25ms.
	LatencySlack time.Duration
	// TailMargin sets the slow-answer threshold: the pooled median plus
	// TailMargin (Compare), or the stable partner's latency plus
	// TailMargin (Early). Default 250ms.
	TailMargin time.Duration
	// MinShiftRatio and MinShift: a general slowdown fails only when the
	// canary's median is at least max(MinShiftRatio × stable's median,
	// MinShift) above stable's. Defaults 0.25 and 10ms.
	MinShiftRatio float64
	// MinShift: see MinShiftRatio.
	MinShift time.Duration

	// MinPairs is the smallest number of valid pairs (samples for
	// Absolute) a pass needs; fewer is inconclusive. It also gates the p95
	// ratio rule. Default 700: at that size the reference bad canary (5%
	// errors against 0.5%) is caught with ≥ 99% power at the default Alpha
	// (JUDGMENT.md: ~670), and an 8% slow tail (+800 ms) from ~400 pairs.
	// 2% errors against 0% needs ~1000 pairs, 1% against 0% ~1900.
	MinPairs int
	// MaxLostShare is the largest share of lost pairs a pass allows;
	// more is inconclusive. Default 0.05.
	MaxLostShare float64
}

// Default values of Policy, used by WithDefaults for zero fields.
const (
	DefaultAlpha         = 0.001
	DefaultMaxErrorRate  = 0.01
	DefaultErrorMinDiff  = 0.005
	DefaultErrorMinRatio = 2.0
	DefaultP95Ratio      = 1.5
	DefaultLatencySlack  = 25 * time.Millisecond
	DefaultTailMargin    = 250 * time.Millisecond
	DefaultMinShiftRatio = 0.25
	DefaultMinShift      = 10 * time.Millisecond
	DefaultMinPairs      = 700
	DefaultMaxLostShare  = 0.05
)

// WithDefaults returns p with every zero field set to its default.
// MaxP95 stays zero (off) when unset.
func (p Policy) WithDefaults() Policy {
	setF := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setF(&p.Alpha, DefaultAlpha)
	setF(&p.MaxErrorRate, DefaultMaxErrorRate)
	setF(&p.ErrorMinDiff, DefaultErrorMinDiff)
	setF(&p.ErrorMinRatio, DefaultErrorMinRatio)
	setF(&p.P95Ratio, DefaultP95Ratio)
	setD(&p.LatencySlack, DefaultLatencySlack)
	setD(&p.TailMargin, DefaultTailMargin)
	setF(&p.MinShiftRatio, DefaultMinShiftRatio)
	setD(&p.MinShift, DefaultMinShift)
	if p.MinPairs == 0 {
		p.MinPairs = DefaultMinPairs
	}
	setF(&p.MaxLostShare, DefaultMaxLostShare)
	return p
}

// Validate reports the fields of p (after WithDefaults) that are out of
// range. Compare, Absolute and Early apply WithDefaults themselves and
// answer inconclusive for a policy that does not validate.
func (p Policy) Validate() error { return p.WithDefaults().validate() }

// validate reports the fields of p, defaults applied, that are out of range.
func (p Policy) validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !(p.Alpha > 0 && p.Alpha <= 0.5) {
		bad("alpha", "%g is not in (0, 0.5]", p.Alpha)
	}
	if !(p.MaxErrorRate > 0 && p.MaxErrorRate < 1) {
		bad("maxErrorRate", "%g is not in (0, 1)", p.MaxErrorRate)
	}
	if !(p.ErrorMinDiff > 0 && p.ErrorMinDiff < 1) {
		bad("errorMinDiff", "%g is not in (0, 1)", p.ErrorMinDiff)
	}
	if !(p.ErrorMinRatio >= 1) {
		bad("errorMinRatio", "%g is below 1", p.ErrorMinRatio)
	}
	if p.MaxP95 < 0 {
		bad("maxP95", "%s is negative", p.MaxP95)
	}
	if !(p.P95Ratio >= 1) {
		bad("p95Ratio", "%g is below 1", p.P95Ratio)
	}
	if p.LatencySlack < 0 {
		bad("latencySlack", "%s is negative", p.LatencySlack)
	}
	if p.TailMargin < 0 {
		bad("tailMargin", "%s is negative", p.TailMargin)
	}
	if !(p.MinShiftRatio >= 0) {
		bad("minShiftRatio", "%g is negative", p.MinShiftRatio)
	}
	if p.MinShift < 0 {
		bad("minShift", "%s is negative", p.MinShift)
	}
	if p.MinPairs < 1 {
		bad("minPairs", "%d is below 1", p.MinPairs)
	}
	if !(p.MaxLostShare >= 0 && p.MaxLostShare < 1) {
		bad("maxLostShare", "%g is not in [0, 1)", p.MaxLostShare)
	}
	return errors.Join(errs...)
}

// SideStats summarises one side (canary or stable) over the valid pairs
// (valid samples for Absolute).
type SideStats struct {
	// N is the number of judged samples; Errors of them failed.
	N, Errors int
	// ErrorRate is Errors / N (0 when N is 0).
	ErrorRate float64
	// P50, P95 and P99 are percentiles of the successful answers'
	// latencies (zero when there is none).
	P50, P95, P99 time.Duration
}

// Test is one statistical rule as it was run.
type Test struct {
	// Name is a short stable identifier, e.g. "errors-mcnemar".
	Name string
	// Rule says what the test checks, in words.
	Rule string
	// Statistic is the test's statistic (a count, U, or a likelihood
	// ratio; Detail says which).
	Statistic float64
	// PValue is the test's p-value (for Early: the anytime-valid p-value,
	// one over the largest likelihood ratio seen).
	PValue float64
	// Alpha is the share of the false-failure budget this test was given:
	// it fails only when PValue < Alpha (and its floors hold).
	Alpha float64
	// Failed reports whether the rule failed.
	Failed bool
	// Skipped: the rule could not run (Detail says why); it neither
	// failed nor passed.
	Skipped bool
	// Detail holds the numbers behind the test, in words.
	Detail string
}

// Result is a verdict with its evidence.
type Result struct {
	Outcome Outcome
	// Rule is the rule that decided, with its numbers.
	Rule string
	// Reason is one sentence for a human.
	Reason string
	// Canary and Stable summarise each side over the valid pairs.
	Canary, Stable SideStats
	// Pairs is the number of pairs (samples for Absolute) given; Lost of
	// them were not judged because a half was lost.
	Pairs, Lost int
	// Tests lists every rule, in the order they are checked.
	Tests []Test
	// Baseline is false when there was no stable version and only
	// absolute ceilings were applied.
	Baseline bool
}
