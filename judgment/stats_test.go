package judgment

import (
	"math"
	"testing"
)

func near(t *testing.T, name string, got, want, relTol float64) {
	t.Helper()
	if want == 0 {
		if got != 0 {
			t.Errorf("%s = %g, want 0", name, got)
		}
		return
	}
	if math.Abs(got-want)/math.Abs(want) > relTol {
		t.Errorf("%s = %.12g, want %.12g", name, got, want)
	}
}

// binomialUpperByHand sums the binomial probabilities term by term.
func binomialUpperByHand(n, k int, p float64) float64 {
	sum := 0.0
	for i := max(k, 0); i <= n; i++ {
		lc, _ := math.Lgamma(float64(n + 1))
		li, _ := math.Lgamma(float64(i + 1))
		lr, _ := math.Lgamma(float64(n - i + 1))
		sum += math.Exp(lc - li - lr + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return sum
}

func TestKnownAnswers(t *testing.T) {
	// McNemar exact, one-sided: P(Binomial(b+c, ½) ≥ b).
	near(t, "mcnemar(10,0)", mcnemar(10, 0), math.Pow(0.5, 10), 1e-12)
	near(t, "mcnemar(11,0)", mcnemar(11, 0), math.Pow(0.5, 11), 1e-12)
	near(t, "mcnemar(14,1)", mcnemar(14, 1), 16.0/32768, 1e-12) // (1 + 15) / 2^15
	near(t, "mcnemar(0,0)", mcnemar(0, 0), 1, 0)
	near(t, "mcnemar(0,5)", mcnemar(0, 5), 1, 1e-12)
	near(t, "mcnemar(1,1)", mcnemar(1, 1), 0.75, 1e-12)

	// Binomial upper tails.
	near(t, "P(Bin(50,0.01) ≥ 1)", binomialUpper(50, 1, 0.01), 1-math.Pow(0.99, 50), 1e-12)
	near(t, "P(Bin(1000,0.01) ≥ 0)", binomialUpper(1000, 0, 0.01), 1, 0)
	near(t, "P(Bin(10,0.5) ≥ 11)", binomialUpper(10, 11, 0.5), 0, 0)
	near(t, "P(Bin(100,0) ≥ 1)", binomialUpper(100, 1, 0), 0, 0)
	for _, c := range []struct {
		n, k int
		p    float64
	}{{20, 5, 0.1}, {1000, 50, 0.01}, {1000, 11, 0.01}, {700, 60, 0.05}, {3000, 3000, 0.5}} {
		near(t, "binomialUpper", binomialUpper(c.n, c.k, c.p), binomialUpperByHand(c.n, c.k, c.p), 1e-9)
	}

	// Mixture likelihood ratio, uniform prior on [½, 1]:
	// Λ(b, 0) = (2^(b+1) − 1) / (b + 1); Λ(0, 1) = ½.
	near(t, "Λ(0,0)", math.Exp(mixtureLogLR(0, 0)), 1, 1e-12)
	near(t, "Λ(1,0)", math.Exp(mixtureLogLR(1, 0)), 1.5, 1e-12)
	near(t, "Λ(0,1)", math.Exp(mixtureLogLR(0, 1)), 0.5, 1e-12)
	near(t, "Λ(13,0)", math.Exp(mixtureLogLR(13, 0)), 16383.0/14, 1e-12)
	near(t, "Λ(14,0)", math.Exp(mixtureLogLR(14, 0)), 32767.0/15, 1e-12)
	// Λ(2, 1) = ∫_{½}^{1} θ²(1−θ) dθ / (½ · ⅛) = (11/192) · 16 = 11/12.
	near(t, "Λ(2,1)", math.Exp(mixtureLogLR(2, 1)), 11.0/12, 1e-12)

	// Mann-Whitney, exact: canary {4,5,6} all slower than stable {1,2,3}:
	// U = 9, p = 1 / C(6,3) = 0.05.
	u, p := mannWhitneyGreater([]float64{4, 5, 6}, []float64{1, 2, 3})
	near(t, "U", u, 9, 0)
	near(t, "p(U ≥ 9)", p, 0.05, 1e-12)
	if _, p := mannWhitneyGreater(nil, []float64{1}); p != 1 {
		t.Errorf("empty side: p = %g, want 1", p)
	}

	if got := countAbove([]float64{1, 2, 2, 3, 4}, 2); got != 2 {
		t.Errorf("countAbove = %d, want 2", got)
	}
	if got := countAbove([]float64{1, 2, 3}, 0); got != 3 {
		t.Errorf("countAbove = %d, want 3", got)
	}

	// The upper bound of a p95 is an order statistic above the 95th.
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	ub, ok := upperBound(xs, 0.95, 0.0001)
	if !ok || ub <= 951 || ub > 980 {
		t.Errorf("upper bound of p95 over 1..1000 = %g (%v), want a little above 950", ub, ok)
	}
	if _, ok := upperBound(xs[:20], 0.95, 0.0001); ok {
		t.Errorf("20 values cannot bound a p95 at 1-0.0001")
	}
}
