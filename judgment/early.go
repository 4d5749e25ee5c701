package judgment

import (
	"fmt"
	"math"
)

// Early checks the pairs measured so far, in the order they were sent, with
// anytime-valid sequential tests: a mixture sequential probability ratio
// test on the discordant error pairs, and one on slow pairs (the canary more
// than TailMargin slower than its own stable partner, against the reverse).
// It returns failed=true only when the evidence already reaches 1/a, with
// a = Alpha/2 per test, and the floors of the error rule hold.
//
// The chance that a canary no worse than stable is ever failed by Early,
// however often it is called on a growing window, is at most Alpha; it is
// safe to call after every batch of pairs. It never passes: when it does not
// fail, the Result is inconclusive ("no early decision") and the window must
// be judged by Compare at its end. The pairs must be in the order they were
// sent. Result.Canary and Result.Stable carry percentiles only when Early
// fails (counts and error rates always).
func Early(p Policy, pairs []Pair) (Result, bool) {
	p = p.WithDefaults()
	res := Result{Baseline: true, Pairs: len(pairs)}
	if err := p.Validate(); err != nil {
		return undecided(res, "policy: "+err.Error(), "The verification policy is invalid: "+err.Error()+"."), false
	}
	a := p.Alpha / 2
	// The two event streams, in the order of the pairs: true for a
	// canary-only event, false for a stable-only one.
	var errs, slow []bool
	var valid, slowPairs, canaryErrors, stableErrors int
	margin := float64(p.TailMargin)
	for _, pr := range pairs {
		c, s := pr.Canary, pr.Stable
		if c.Lost || s.Lost {
			res.Lost++
			continue
		}
		valid++
		if c.Failed {
			canaryErrors++
		}
		if s.Failed {
			stableErrors++
		}
		switch {
		case c.Failed && !s.Failed:
			errs = append(errs, true)
		case s.Failed && !c.Failed:
			errs = append(errs, false)
		case !c.Failed && !s.Failed:
			slowPairs++
			diff := float64(c.Latency - s.Latency)
			if diff > margin {
				slow = append(slow, true)
			} else if -diff > margin {
				slow = append(slow, false)
			}
		}
	}

	var cr, sr float64
	if valid > 0 {
		cr, sr = float64(canaryErrors)/float64(valid), float64(stableErrors)/float64(valid)
	}
	// Percentiles cost a sort: only a failure, which is evidence kept,
	// carries them.
	res.Canary = SideStats{N: valid, Errors: canaryErrors, ErrorRate: cr}
	res.Stable = SideStats{N: valid, Errors: stableErrors, ErrorRate: sr}
	errTest, errFail := sequential("early-errors",
		"errors, early: mixture SPRT on discordant error pairs",
		p, a, errs, cr, sr, fmt.Sprintf("rates %s vs %s over %d pairs", pct(cr), pct(sr), valid))
	var cs, ss float64
	if slowPairs > 0 {
		b, c := count(slow)
		cs, ss = float64(b)/float64(slowPairs), float64(c)/float64(slowPairs)
	}
	slowTest, slowFail := sequential("early-slow",
		"slow answers, early: mixture SPRT on pairs where one side was more than "+fmtDur(margin)+" slower than the other",
		p, a, slow, cs, ss, fmt.Sprintf("canary slower in %s of %d answered pairs, stable slower in %s", pct(cs), slowPairs, pct(ss)))
	res.Tests = []Test{errTest, slowTest}

	if errFail || slowFail {
		d := collect(pairs)
		res.Canary, res.Stable = d.canary.stats(), d.stable.stats()
	}
	switch {
	case errFail:
		res.Outcome = Failed
		res.Rule = errTest.Rule + ": " + errTest.Detail
		res.Reason = fmt.Sprintf("Stopped early: the canary failed %s of the requests against %s for stable on the same %d requests.", pct(cr), pct(sr), valid)
		return res, true
	case slowFail:
		res.Outcome = Failed
		res.Rule = slowTest.Rule + ": " + slowTest.Detail
		res.Reason = fmt.Sprintf("Stopped early: the canary was more than %s slower than stable on %s of the paired requests, stable slower than the canary on %s.", fmtDur(margin), pct(cs), pct(ss))
		return res, true
	}
	res.Outcome = Inconclusive
	res.Rule = fmt.Sprintf("early: no decision after %d valid pairs (largest likelihood ratios %s and %s, below %s)",
		valid, fmtLR(errTest.Statistic), fmtLR(slowTest.Statistic), fmtLR(1/a))
	res.Reason = "No early decision: the evidence so far does not show the canary worse; the full window decides."
	return res, false
}

// sequential runs the mixture SPRT over a stream of discordant events
// (true: canary-only) and reports the largest likelihood ratio over every
// prefix. It fails when that ratio reaches 1/a and the floors hold for the
// current shares cs (canary) and ss (stable).
func sequential(name, rule string, p Policy, a float64, events []bool, cs, ss float64, shares string) (Test, bool) {
	var b, c int
	best := 0.0 // log of the largest ratio; Λ₀ = 1
	for _, canary := range events {
		if canary {
			b++
			// Λ only grows on a canary-only event.
			best = math.Max(best, mixtureLogLR(b, c))
		} else {
			c++
		}
	}
	limit := math.Log(1 / a)
	floors := cs-ss >= p.ErrorMinDiff && cs >= p.ErrorMinRatio*ss
	failed := best >= limit && floors
	lr := math.Exp(math.Min(best, 690)) // stays finite (JSON-safe)
	reached := "<"
	if best >= limit {
		reached = "≥"
	}
	t := Test{
		Name:      name,
		Rule:      rule,
		Statistic: lr,
		PValue:    math.Min(1, 1/lr),
		Alpha:     a,
		Failed:    failed,
		Detail: fmt.Sprintf("canary-only %d vs stable-only %d; largest likelihood ratio %s %s 1/%s = %s; %s (floors: at least +%s points and %g×: %s)",
			b, c, fmtLR(lr), reached, fmtA(a), fmtLR(1/a), shares, pts(p.ErrorMinDiff), p.ErrorMinRatio, met(floors)),
	}
	return t, failed
}

func count(events []bool) (b, c int) {
	for _, e := range events {
		if e {
			b++
		} else {
			c++
		}
	}
	return b, c
}

func fmtLR(x float64) string {
	if x >= 1e6 {
		return fmt.Sprintf("%.3g", x)
	}
	return fmt.Sprintf("%.0f", x)
}
