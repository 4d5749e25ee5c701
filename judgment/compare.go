package judgment

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// side gathers one side's judged samples.
type side struct {
	n, errors int
	lat       []float64 // successful answers' latencies in ns, sorted
}

func (s *side) add(x Sample) {
	s.n++
	if x.Failed {
		s.errors++
		return
	}
	s.lat = append(s.lat, float64(x.Latency))
}

func (s *side) rate() float64 {
	if s.n == 0 {
		return 0
	}
	return float64(s.errors) / float64(s.n)
}

func (s *side) stats() SideStats {
	return SideStats{
		N: s.n, Errors: s.errors, ErrorRate: s.rate(),
		P50: dur(quantile(s.lat, 0.50)),
		P95: dur(quantile(s.lat, 0.95)),
		P99: dur(quantile(s.lat, 0.99)),
	}
}

// paired is the judged content of a window of pairs.
type paired struct {
	total, lost, valid int
	canary, stable     side
	// onlyCanary and onlyStable count the discordant error pairs.
	onlyCanary, onlyStable int
	// both holds the latencies of pairs where both sides answered well.
	both [][2]float64
}

func collect(pairs []Pair) paired {
	d := paired{total: len(pairs)}
	for _, pr := range pairs {
		if pr.Canary.Lost || pr.Stable.Lost {
			d.lost++
			continue
		}
		d.valid++
		d.canary.add(pr.Canary)
		d.stable.add(pr.Stable)
		switch {
		case pr.Canary.Failed && !pr.Stable.Failed:
			d.onlyCanary++
		case pr.Stable.Failed && !pr.Canary.Failed:
			d.onlyStable++
		case !pr.Canary.Failed && !pr.Stable.Failed:
			d.both = append(d.both, [2]float64{float64(pr.Canary.Latency), float64(pr.Stable.Latency)})
		}
	}
	slices.Sort(d.canary.lat)
	slices.Sort(d.stable.lat)
	return d
}

// check is a rule as run, with what it means for the verdict.
type check struct {
	test   Test
	reason string // the sentence for a human when this check decides
	// ceiling: an absolute ceiling, which fails the canary only when
	// stable keeps within the same ceiling (guard).
	ceiling bool
	guard   *Test
	// optional: when skipped, the rule does not keep the window from
	// passing (the p95 ratio on a sample too small to bound a p95).
	optional bool
}

// Compare judges canary against stable over the window's pairs (see the
// package documentation for the rules). Pairs with a lost half are
// counted, never judged.
//
// The verdict is failed when a comparison rule fails, or a ceiling fails
// while stable keeps within it; otherwise inconclusive when the policy is
// invalid, there is no valid pair, stable breaks a ceiling, more than
// MaxLostShare of the pairs were lost, fewer than MinPairs pairs are
// valid, or a rule could not run; otherwise passed.
func Compare(p Policy, pairs []Pair) Result {
	p = p.WithDefaults()
	res := Result{Baseline: true, Pairs: len(pairs)}
	if err := p.Validate(); err != nil {
		return undecided(res, "policy: "+err.Error(), "The verification policy is invalid: "+err.Error()+".")
	}
	d := collect(pairs)
	res.Lost = d.lost
	res.Canary, res.Stable = d.canary.stats(), d.stable.stats()
	if d.valid == 0 {
		return undecided(res, fmt.Sprintf("data: no valid pair (%d given, %d lost)", d.total, d.lost),
			"No valid comparison was made: no pair was measured on both sides.")
	}

	// The false-failure budget: half to the error comparison, the other
	// half shared by the other rules that can fail the canary.
	others := 4
	if p.MaxP95 > 0 {
		others++
	}
	errShare := p.Alpha / 2
	share := p.Alpha / 2 / float64(others)

	stableErr := errorCeiling(p, share, &d.stable, "stable")
	canaryErr := errorCeiling(p, share, &d.canary, "canary")
	canaryErr.ceiling, canaryErr.guard = true, &stableErr.test
	checks := []check{
		errorComparison(p, errShare, &d),
		canaryErr,
		slowTail(p, share, &d),
		slowdown(p, share, &d.canary, &d.stable),
		p95Ratio(p, share, &d),
	}
	guards := []check{stableErr}
	if p.MaxP95 > 0 {
		stableP95 := p95Ceiling(p, share, &d.stable, "stable")
		c := p95Ceiling(p, share, &d.canary, "canary")
		c.ceiling, c.guard = true, &stableP95.test
		checks = append(checks, c)
		guards = append(guards, stableP95)
	}
	for _, c := range checks {
		res.Tests = append(res.Tests, c.test)
	}
	for _, g := range guards {
		res.Tests = append(res.Tests, g.test)
	}
	return decide(p, res, d.total, d.lost, d.valid, checks, guards, "pairs")
}

// decide turns the checks into a verdict (shared by Compare and Absolute).
func decide(p Policy, res Result, total, lost, valid int, checks, guards []check, unit string) Result {
	for _, c := range checks {
		if !c.test.Failed || (c.ceiling && c.guard != nil && c.guard.Failed) {
			continue
		}
		res.Outcome = Failed
		res.Rule = c.test.Rule + ": " + c.test.Detail
		res.Reason = c.reason
		return res
	}
	for _, g := range guards {
		if g.test.Failed {
			return undecided(res, g.test.Rule+": "+g.test.Detail, g.reason)
		}
	}
	what := "comparison"
	if !res.Baseline {
		what = "verification"
	}
	if share := float64(lost) / float64(total); share > p.MaxLostShare {
		return undecided(res,
			fmt.Sprintf("data: %d of %d %s lost (%s), more than the %s allowed", lost, total, unit, pct(share), pct(p.MaxLostShare)),
			fmt.Sprintf("No valid %s was made: %s of the %s could not be measured.", what, pct(share), unit))
	}
	if valid < p.MinPairs {
		return undecided(res,
			fmt.Sprintf("data: %d valid %s, fewer than the %d needed", valid, unit, p.MinPairs),
			fmt.Sprintf("No valid %s was made: only %d valid %s were measured, %d are needed for a pass.", what, valid, unit, p.MinPairs))
	}
	// A canary seen failing more than twice the ceiling is not passed for want of
	// significance: with few pairs (a small min_samples) a canary failing half its requests
	// is not yet significantly bad, and "no rule failed" would call it no worse than stable.
	// A good canary at the default sample size is almost never seen there (0.5 % errors at
	// 700 pairs: P(> 2 %) ≈ 1e-5).
	if rate := res.Canary.ErrorRate; rate > suspectFactor*p.MaxErrorRate {
		return undecided(res,
			fmt.Sprintf("data: canary error rate %s, over %g× the %s ceiling, not significant on %d valid %s", pct(rate), suspectFactor, pct(p.MaxErrorRate), valid, unit),
			fmt.Sprintf("No valid %s was made: the canary failed %s of the requests, over %g× the %s ceiling, but %d valid %s are too few to tell; a verdict needs more.", what, pct(rate), suspectFactor, pct(p.MaxErrorRate), valid, unit))
	}
	var notRun []string
	for _, c := range checks {
		if c.test.Skipped && c.optional {
			notRun = append(notRun, c.test.Name+" not run: "+c.test.Detail)
			continue
		}
		if c.test.Skipped {
			return undecided(res, c.test.Rule+": not run: "+c.test.Detail,
				"No valid "+what+" was made: the rule "+c.test.Name+" could not run ("+c.test.Detail+").")
		}
	}
	res.Outcome = Passed
	names := make([]string, 0, len(checks))
	for _, c := range checks {
		names = append(names, c.test.Name)
	}
	res.Rule = fmt.Sprintf("no rule failed on %d valid %s (%s)", valid, unit, strings.Join(names, ", "))
	if len(notRun) > 0 {
		res.Rule += "; " + strings.Join(notRun, "; ")
	}
	if res.Baseline {
		res.Reason = fmt.Sprintf("The canary was no worse than stable on %d paired requests: errors %s against %s, p95 %s against %s.",
			valid, pct(res.Canary.ErrorRate), pct(res.Stable.ErrorRate), fmtDur(float64(res.Canary.P95)), fmtDur(float64(res.Stable.P95)))
	} else {
		res.Reason = absoluteReason(p, res)
	}
	return res
}

// suspectFactor: a canary whose observed error rate is over suspectFactor × MaxErrorRate
// is never passed (inconclusive unless a rule failed it).
const suspectFactor = 2.0

func undecided(res Result, rule, reason string) Result {
	res.Outcome = Inconclusive
	res.Rule = rule
	res.Reason = reason
	return res
}

// errorComparison is rule 1: McNemar's exact test on the discordant error
// pairs, one-sided, with the floors.
func errorComparison(p Policy, alpha float64, d *paired) check {
	b, c := d.onlyCanary, d.onlyStable
	pv := mcnemar(b, c)
	cr, sr := d.canary.rate(), d.stable.rate()
	floors := cr-sr >= p.ErrorMinDiff && cr >= p.ErrorMinRatio*sr
	t := Test{
		Name:      "errors-mcnemar",
		Rule:      "errors: McNemar exact test on discordant pairs (one-sided) with floors",
		Statistic: float64(b),
		PValue:    pv,
		Alpha:     alpha,
		Failed:    pv < alpha && floors,
		Detail: fmt.Sprintf("canary-only failures %d vs stable-only %d, p=%s %s %s; rates %s vs %s over %d pairs (floors: at least +%s points and %g× stable's rate: %s)",
			b, c, fmtP(pv), cmp(pv, alpha), fmtA(alpha), pct(cr), pct(sr), d.valid, pts(p.ErrorMinDiff), p.ErrorMinRatio, met(floors)),
	}
	return check{test: t, reason: fmt.Sprintf("The canary failed %s of the requests against %s for stable on the same %d requests.", pct(cr), pct(sr), d.valid)}
}

// errorCeiling is rule 2 for one side: its error rate significantly above
// MaxErrorRate (one-sided binomial test).
func errorCeiling(p Policy, alpha float64, s *side, who string) check {
	pv := binomialUpper(s.n, s.errors, p.MaxErrorRate)
	t := Test{
		Name:      "error-ceiling",
		Rule:      fmt.Sprintf("%s error ceiling: rate significantly above %s (one-sided binomial)", who, pct(p.MaxErrorRate)),
		Statistic: float64(s.errors),
		PValue:    pv,
		Alpha:     alpha,
		Failed:    pv < alpha,
		Detail: fmt.Sprintf("%d errors of %d (%s), p=P(Binomial(%d, %g) ≥ %d)=%s %s %s",
			s.errors, s.n, pct(s.rate()), s.n, p.MaxErrorRate, s.errors, fmtP(pv), cmp(pv, alpha), fmtA(alpha)),
	}
	if who == "stable" {
		t.Name = "stable-error-ceiling"
		return check{test: t, reason: fmt.Sprintf("No valid comparison was made: stable itself failed %s of the requests, significantly above the %s ceiling.", pct(s.rate()), pct(p.MaxErrorRate))}
	}
	return check{test: t, reason: fmt.Sprintf("The canary failed %s of the requests, significantly above the %s ceiling.", pct(s.rate()), pct(p.MaxErrorRate))}
}

// slowTail is rule 3: exceedances of the pooled median + TailMargin,
// compared pair by pair like McNemar's test, with the error floors.
func slowTail(p Policy, alpha float64, d *paired) check {
	t := Test{
		Name:   "slow-tail",
		Rule:   "slow tail: answers over pooled median + " + fmtDur(float64(p.TailMargin)) + ", McNemar exact test on discordant pairs (one-sided) with floors",
		PValue: 1,
		Alpha:  alpha,
	}
	if len(d.both) == 0 {
		t.Skipped, t.Detail = true, "no pair where both sides answered"
		return check{test: t}
	}
	pooled := make([]float64, 0, len(d.canary.lat)+len(d.stable.lat))
	pooled = append(append(pooled, d.canary.lat...), d.stable.lat...)
	slices.Sort(pooled)
	med := quantile(pooled, 0.5)
	thr := med + float64(p.TailMargin)
	var b, c, both int
	for _, x := range d.both {
		co, so := x[0] > thr, x[1] > thr
		switch {
		case co && so:
			both++
		case co:
			b++
		case so:
			c++
		}
	}
	n := float64(len(d.both))
	cs, ss := float64(b+both)/n, float64(c+both)/n
	floors := cs-ss >= p.ErrorMinDiff && cs >= p.ErrorMinRatio*ss
	pv := mcnemar(b, c)
	t.Statistic, t.PValue, t.Failed = float64(b), pv, pv < alpha && floors
	t.Detail = fmt.Sprintf("threshold %s (pooled median %s + %s); canary-only over it %d vs stable-only %d (both %d) of %d pairs, p=%s %s %s; shares %s vs %s (floors: %s)",
		fmtDur(thr), fmtDur(med), fmtDur(float64(p.TailMargin)), b, c, both, len(d.both), fmtP(pv), cmp(pv, alpha), fmtA(alpha), pct(cs), pct(ss), met(floors))
	return check{test: t, reason: fmt.Sprintf("%s of the canary's answers took longer than %s, against %s of stable's.", pct(cs), fmtDur(thr), pct(ss))}
}

// slowdown is rule 4: one-sided Mann-Whitney U test AND a minimum shift of
// the medians.
func slowdown(p Policy, alpha float64, canary, stable *side) check {
	t := Test{
		Name:   "slowdown",
		Rule:   "general slowdown: Mann-Whitney U test (one-sided, canary slower) and a minimum shift of the medians",
		PValue: 1,
		Alpha:  alpha,
	}
	if len(canary.lat) == 0 || len(stable.lat) == 0 {
		t.Skipped, t.Detail = true, "a side has no successful answer"
		return check{test: t}
	}
	u, pv := mannWhitneyGreater(canary.lat, stable.lat)
	cm, sm := quantile(canary.lat, 0.5), quantile(stable.lat, 0.5)
	need := math.Max(p.MinShiftRatio*sm, float64(p.MinShift))
	shift := cm - sm
	t.Statistic, t.PValue, t.Failed = u, pv, pv < alpha && shift >= need
	t.Detail = fmt.Sprintf("U=%.1f over %d×%d answers, p=%s %s %s; medians %s vs %s, shift %s (needs at least %s: %s)",
		u, len(canary.lat), len(stable.lat), fmtP(pv), cmp(pv, alpha), fmtA(alpha), fmtDur(cm), fmtDur(sm), fmtDur(shift), fmtDur(need), met(shift >= need))
	return check{test: t, reason: fmt.Sprintf("The canary is slower overall: median %s against %s for stable.", fmtDur(cm), fmtDur(sm))}
}

// p95Ratio is rule 5: the canary's p95 above P95Ratio × stable's p95 +
// LatencySlack beyond sampling noise. Half of alpha bounds stable's p95
// from above; the other half tests the canary's share of answers over the
// resulting threshold against 5%.
func p95Ratio(p Policy, alpha float64, d *paired) check {
	beta := alpha / 2
	t := Test{
		Name:   "p95-ratio",
		Rule:   fmt.Sprintf("p95 ratio: canary p95 at most %g × stable p95 + %s", p.P95Ratio, fmtDur(float64(p.LatencySlack))),
		PValue: 1,
		Alpha:  beta,
	}
	cl, sl := d.canary.lat, d.stable.lat
	switch {
	case d.valid < p.MinPairs:
		t.Skipped, t.Detail = true, fmt.Sprintf("%d valid pairs, fewer than the %d a p95 needs", d.valid, p.MinPairs)
		return check{test: t, optional: true}
	case len(cl) == 0 || len(sl) == 0:
		t.Skipped, t.Detail = true, "a side has no successful answer"
		return check{test: t}
	}
	ub, ok := upperBound(sl, 0.95, beta)
	if !ok {
		t.Skipped, t.Detail = true, fmt.Sprintf("%d stable answers are too few to bound its p95 at 1-%s", len(sl), fmtA(beta))
		return check{test: t, optional: true}
	}
	thr := p.P95Ratio*ub + float64(p.LatencySlack)
	over := countAbove(cl, thr)
	pv := binomialUpper(len(cl), over, 0.05)
	cp, sp := quantile(cl, 0.95), quantile(sl, 0.95)
	limit := p.P95Ratio*sp + float64(p.LatencySlack)
	t.Statistic, t.PValue, t.Failed = float64(over), pv, pv < beta && cp > limit
	t.Detail = fmt.Sprintf("p95 %s vs %s (limit %s); threshold %g × %s (stable p95 upper bound at 1-%s) + %s = %s; canary answers over it %d of %d (%s, 5%% allowed), p=P(Binomial(%d, 0.05) ≥ %d)=%s %s %s",
		fmtDur(cp), fmtDur(sp), fmtDur(limit), p.P95Ratio, fmtDur(ub), fmtA(beta), fmtDur(float64(p.LatencySlack)), fmtDur(thr),
		over, len(cl), pct(float64(over)/float64(len(cl))), len(cl), over, fmtP(pv), cmp(pv, beta), fmtA(beta))
	return check{test: t, reason: fmt.Sprintf("The canary's p95 latency %s is above %g × stable's %s + %s.", fmtDur(cp), p.P95Ratio, fmtDur(sp), fmtDur(float64(p.LatencySlack)))}
}

// p95Ceiling is rule 6 for one side: significantly more than 5% of the
// successful answers over MaxP95.
func p95Ceiling(p Policy, alpha float64, s *side, who string) check {
	t := Test{
		Name:   "p95-ceiling",
		Rule:   fmt.Sprintf("%s p95 ceiling: p95 at most %s (one-sided binomial on answers over it)", who, fmtDur(float64(p.MaxP95))),
		PValue: 1,
		Alpha:  alpha,
	}
	if who == "stable" {
		t.Name = "stable-p95-ceiling"
	}
	if len(s.lat) == 0 {
		t.Skipped, t.Detail = true, "no successful answer"
		return check{test: t}
	}
	over := countAbove(s.lat, float64(p.MaxP95))
	pv := binomialUpper(len(s.lat), over, 0.05)
	p95 := quantile(s.lat, 0.95)
	t.Statistic, t.PValue, t.Failed = float64(over), pv, pv < alpha && p95 > float64(p.MaxP95)
	t.Detail = fmt.Sprintf("p95 %s; answers over %s: %d of %d (%s, 5%% allowed), p=P(Binomial(%d, 0.05) ≥ %d)=%s %s %s",
		fmtDur(p95), fmtDur(float64(p.MaxP95)), over, len(s.lat), pct(float64(over)/float64(len(s.lat))), len(s.lat), over, fmtP(pv), cmp(pv, alpha), fmtA(alpha))
	if who == "stable" {
		return check{test: t, reason: fmt.Sprintf("No valid comparison was made: stable itself is above the p95 ceiling (%s against %s).", fmtDur(p95), fmtDur(float64(p.MaxP95)))}
	}
	return check{test: t, reason: fmt.Sprintf("The canary's p95 latency %s is above the %s ceiling.", fmtDur(p95), fmtDur(float64(p.MaxP95)))}
}

// Absolute judges a first release, which has no stable version to compare
// with, on absolute ceilings only: the error rate significantly above
// MaxErrorRate (one-sided binomial, so a few unlucky errors on a small
// sample do not fail it) and, when MaxP95 is set, the p95 ceiling. With
// MaxP95 unset there is no latency rule: slowness shows only as timeouts,
// which are errors. Result.Baseline is false and Reason says so.
func Absolute(p Policy, samples []Sample) Result {
	p = p.WithDefaults()
	res := Result{Pairs: len(samples)}
	if err := p.Validate(); err != nil {
		return noBaseline(undecided(res, "policy: "+err.Error(), "The verification policy is invalid: "+err.Error()+"."))
	}
	var s side
	for _, x := range samples {
		if x.Lost {
			res.Lost++
			continue
		}
		s.add(x)
	}
	slices.Sort(s.lat)
	res.Canary = s.stats()
	if s.n == 0 {
		return noBaseline(undecided(res, fmt.Sprintf("data: no valid sample (%d given, %d lost)", len(samples), res.Lost),
			"No valid verification was made: no sample was measured."))
	}
	share := p.Alpha
	if p.MaxP95 > 0 {
		share = p.Alpha / 2
	}
	checks := []check{errorCeiling(p, share, &s, "canary")}
	if p.MaxP95 > 0 {
		checks = append(checks, p95Ceiling(p, share, &s, "canary"))
	}
	for _, c := range checks {
		res.Tests = append(res.Tests, c.test)
	}
	return noBaseline(decide(p, res, len(samples), res.Lost, s.n, checks, nil, "samples"))
}

// noBaseline makes sure a verdict without a stable version says so.
func noBaseline(res Result) Result {
	if res.Outcome != Passed {
		res.Reason += " There is no stable version: only absolute ceilings were applied."
	}
	return res
}

func absoluteReason(p Policy, res Result) string {
	lat := fmt.Sprintf(" and p95 %s within the %s ceiling", fmtDur(float64(res.Canary.P95)), fmtDur(float64(p.MaxP95)))
	if p.MaxP95 == 0 {
		lat = "; there is no latency rule (no MaxP95 set), slowness shows only as timeouts"
	}
	return fmt.Sprintf("There is no stable version to compare with, so only absolute ceilings were applied: errors %s not significantly above the %s ceiling on %d samples%s.",
		pct(res.Canary.ErrorRate), pct(p.MaxErrorRate), res.Canary.N, lat)
}

// Formatting helpers: numbers as a person would write them.

func pct(x float64) string {
	switch {
	case x == 0:
		return "0%"
	case x < 0.001:
		return fmt.Sprintf("%.3f%%", 100*x)
	case x < 0.1:
		return fmt.Sprintf("%.2g%%", 100*x)
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

func pts(x float64) string { return fmt.Sprintf("%.2g", 100*x) }

func fmtP(p float64) string {
	if p == 0 {
		return "0"
	}
	return fmt.Sprintf("%.2g", p)
}

// fmtA prints a threshold with the digits needed to check it by hand.
func fmtA(a float64) string { return fmt.Sprintf("%.3g", a) }

func cmp(p, alpha float64) string {
	if p < alpha {
		return "<"
	}
	return "≥"
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func fmtDur(ns float64) string {
	d := dur(ns)
	neg := d < 0
	if neg {
		d = -d
	}
	switch {
	case d >= 10*time.Millisecond:
		d = d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		d = d.Round(10 * time.Microsecond)
	default:
		d = d.Round(time.Microsecond)
	}
	if neg {
		return "-" + d.String()
	}
	return d.String()
}
