package workflows

import (
	"fmt"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/spec"
)

// DefaultLoadTestMaxErrorRate is the only objective of a load test whose spec sets no SLO
// at all: a test with no objective would pass anything, which is never what a platform
// means by "it holds the load".
const DefaultLoadTestMaxErrorRate = 0.01

// EvaluateSLOs judges measured metrics against a test's SLOs. An objective left at zero is
// not checked (max_error_rate included: write 0.0001 for "practically none"); with no
// objective at all DefaultLoadTestMaxErrorRate applies. A measurement of zero requests
// fails every check: missing data is never a pass.
func EvaluateSLOs(slo spec.SLOs, m LoadTestMetrics) ([]SLOCheck, bool) {
	if slo.P50 == 0 && slo.P95 == 0 && slo.P99 == 0 && slo.MaxErrorRate == 0 && slo.MinThroughput == 0 {
		slo.MaxErrorRate = DefaultLoadTestMaxErrorRate
	}
	measured := m.Requests > 0
	var out []SLOCheck
	lat := func(name string, objective, actual spec.Duration) {
		if objective <= 0 {
			return
		}
		out = append(out, SLOCheck{Name: name, Objective: ltMillis(objective.D()), Actual: ltMillis(actual.D()), Unit: "ms",
			Passed: measured && actual <= objective})
	}
	lat("p50", slo.P50, m.P50)
	lat("p95", slo.P95, m.P95)
	lat("p99", slo.P99, m.P99)
	if slo.MaxErrorRate > 0 {
		out = append(out, SLOCheck{Name: "error_rate", Objective: slo.MaxErrorRate, Actual: ltRound(m.ErrorRate, 4), Unit: "ratio",
			Passed: measured && m.ErrorRate <= slo.MaxErrorRate})
	}
	if slo.MinThroughput > 0 {
		out = append(out, SLOCheck{Name: "min_throughput", Objective: slo.MinThroughput, Actual: ltRound(m.Throughput, 1), Unit: "req/s",
			Passed: measured && m.Throughput >= slo.MinThroughput})
	}
	passed := measured
	for _, c := range out {
		passed = passed && c.Passed
	}
	return out, passed
}

// describeSLOs is the one-line reason of a verdict: "p95 312.4ms > 50ms; error_rate 0.49 >
// 0.01" or "all 3 SLOs met (p95 4.1ms ≤ 50ms, …)".
func describeSLOs(checks []SLOCheck, m LoadTestMetrics) string {
	if m.Requests == 0 {
		return "no request was measured"
	}
	var failed, met []string
	for _, c := range checks {
		op := "≤"
		if c.Name == "min_throughput" {
			op = "≥"
		}
		if c.Passed {
			met = append(met, fmt.Sprintf("%s %s %s %s", c.Name, ltFormat(c.Actual, c.Unit), op, ltFormat(c.Objective, c.Unit)))
		} else {
			neg := ">"
			if c.Name == "min_throughput" {
				neg = "<"
			}
			failed = append(failed, fmt.Sprintf("%s %s %s %s", c.Name, ltFormat(c.Actual, c.Unit), neg, ltFormat(c.Objective, c.Unit)))
		}
	}
	if len(failed) > 0 {
		return fmt.Sprintf("%d of %d SLOs missed: %s", len(failed), len(checks), strings.Join(failed, "; "))
	}
	return fmt.Sprintf("all %d SLOs met (%s)", len(checks), strings.Join(met, ", "))
}

// CompareLoadTests compares a run with the previous run of the same test.
func CompareLoadTests(cur, prev LoadTestSummary) LoadTestComparison {
	c := LoadTestComparison{Previous: prev, ErrorRateDelta: ltRound(cur.ErrorRate-prev.ErrorRate, 4)}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return ltRound(a/b, 3)
	}
	c.P50Ratio = ratio(float64(cur.P50), float64(prev.P50))
	c.P95Ratio = ratio(float64(cur.P95), float64(prev.P95))
	c.P99Ratio = ratio(float64(cur.P99), float64(prev.P99))
	c.ThroughputRatio = ratio(cur.Throughput, prev.Throughput)
	change := func(r float64) string {
		if r == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%+.0f%%", (r-1)*100)
	}
	c.Summary = fmt.Sprintf("vs %s (%s): p95 %s (%s → %s), p99 %s, throughput %s (%.1f → %.1f req/s), error rate %+.2f pt",
		prev.WorkflowID, prev.EndedAt.UTC().Format(time.RFC3339),
		change(c.P95Ratio), prev.P95.D().Round(10*time.Microsecond), cur.P95.D().Round(10*time.Microsecond),
		change(c.P99Ratio), change(c.ThroughputRatio), prev.Throughput, cur.Throughput, c.ErrorRateDelta*100)
	return c
}

func ltMillis(d time.Duration) float64 { return ltRound(float64(d)/float64(time.Millisecond), 3) }

func ltRound(v float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

func ltFormat(v float64, unit string) string {
	switch unit {
	case "ms":
		return fmt.Sprintf("%gms", v)
	case "ratio":
		return fmt.Sprintf("%.2f%%", v*100)
	default:
		return fmt.Sprintf("%g %s", v, unit)
	}
}
