package judgment

import (
	"math"
	"slices"
	"time"

	"github.com/aclements/go-moremath/mathx"
	"github.com/aclements/go-moremath/stats"
)

// binomialUpper returns P(X ≥ k) for X ~ Binomial(n, p).
//
// It reads the lower tail of the mirrored distribution,
// P(X ≥ k) = P(Binomial(n, 1-p) ≤ n-k), so that small p-values keep their
// precision instead of coming out of 1 − CDF.
func binomialUpper(n, k int, p float64) float64 {
	if k <= 0 {
		return 1
	}
	if k > n {
		return 0
	}
	v := stats.BinomialDist{N: n, P: 1 - p}.CDF(float64(n - k))
	return clamp01(v)
}

// mcnemar is the one-sided exact McNemar test: with b pairs where only the
// canary was "bad" and c where only stable was, the p-value of "the canary
// is no worse" is P(Binomial(b+c, ½) ≥ b).
func mcnemar(b, c int) float64 {
	if b+c == 0 {
		return 1
	}
	return binomialUpper(b+c, b, 0.5)
}

// mixtureLogLR is the log of the mixture likelihood ratio of "the canary's
// share θ of discordant pairs is above ½" (uniform prior on [½, 1]) against
// "θ = ½", after b canary-only and c stable-only discordant pairs:
//
//	Λ = ∫_{½}^{1} θ^b (1-θ)^c dθ / (½ · ½^(b+c))
//	  = 2^(b+c+1) · B(b+1, c+1) · (1 − I_½(b+1, c+1)).
//
// Under θ ≤ ½ it is a nonnegative supermartingale with Λ₀ = 1, so the chance
// that it ever reaches 1/α is at most α (Ville's inequality).
func mixtureLogLR(b, c int) float64 {
	x, y := float64(b+1), float64(c+1)
	lx, _ := math.Lgamma(x)
	ly, _ := math.Lgamma(y)
	lxy, _ := math.Lgamma(x + y)
	// 1 − I_½(x, y) = I_½(y, x): the prior mass above ½, computed directly
	// so that it keeps its precision when small.
	above := mathx.BetaInc(0.5, y, x)
	if above <= 0 {
		return math.Inf(-1)
	}
	return float64(b+c+1)*math.Ln2 + lx + ly - lxy + math.Log(above)
}

// mannWhitneyGreater is the one-sided Mann-Whitney U test of "canary
// latencies tend to be larger than stable's". It returns the canary's U (the
// number of (canary, stable) pairs of answers where the canary's is slower,
// ties counting ½) and the p-value; p is 1 when the test cannot run (an empty
// side, or all values equal).
func mannWhitneyGreater(canary, stable []float64) (u, p float64) {
	r, err := stats.MannWhitneyUTest(canary, stable, stats.LocationGreater)
	if err != nil {
		return 0, 1
	}
	return r.U, clamp01(r.P)
}

// quantile returns the q-quantile of sorted (go-moremath's method R8), or 0
// for an empty slice.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return stats.Sample{Xs: sorted, Sorted: true}.Quantile(q)
}

// upperBound returns an upper confidence bound of the q-quantile of the
// population behind sorted, at one-sided level 1-beta: an order statistic
// that lies above the true quantile with probability at least 1-beta. ok is
// false when the sample is too small for such a bound.
func upperBound(sorted []float64, q, beta float64) (v float64, ok bool) {
	n := len(sorted)
	if n == 0 {
		return 0, false
	}
	ci := stats.QuantileCI(n, q, 1-2*beta)
	if ci.HiOrder < 1 || ci.HiOrder > n {
		return 0, false
	}
	return sorted[ci.HiOrder-1], true
}

// countAbove returns how many values of sorted are strictly above x.
func countAbove(sorted []float64, x float64) int {
	i, found := slices.BinarySearch(sorted, x)
	for found && i < len(sorted) && sorted[i] == x {
		i++
	}
	return len(sorted) - i
}

func clamp01(v float64) float64 {
	switch {
	case math.IsNaN(v):
		return 1
	case v < 0:
		return 0
	case v > 1:
		return 1
	}
	return v
}

// dur turns nanoseconds back into a Duration.
func dur(ns float64) time.Duration { return time.Duration(math.Round(ns)) }
