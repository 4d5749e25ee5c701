// Package judgment turns canary verification probes into a verdict:
// passed, failed or inconclusive, with the numbers behind it.
//
// It is pure logic: no I/O, no clock, no randomness. The same pairs and
// the same Policy always give the same Result.
//
// # What is measured
//
// Verification sends the same request to a canary replica and to a stable
// replica at the same moment: a Pair. A busy machine or a slow downstream
// slows both halves of a pair alike, so comparing within pairs cancels most
// of the noise that makes canary analysis slow. Each half is a Sample:
//
//   - Lost: the measurement could not be taken (the prober or the engine
//     failed). A pair with a lost half is never judged, only counted.
//   - Failed: the replica answered badly (wrong status, refused connection,
//     timeout, broken body). A failed answer is judged once, as an error.
//   - otherwise a successful answer, with its Latency.
//
// Latency rules look only at successful answers. A failed answer's latency
// is left out on purpose: a fast "500" would make a broken canary look fast,
// and a timeout is already an error; counting it again as a slow answer
// would judge the same request twice.
//
// # The rules (Compare)
//
// Every rule below is run; the first one that fails, in this order,
// decides (a ceiling only when stable keeps within it, see below). A is Policy.Alpha, the false-failure budget of one verdict
// (0.001 by default: a good canary is failed at most once in a thousand
// verdicts). It is split between the rules so that all of them together
// stay within A (Bonferroni): the error comparison gets A/2, the other
// rules share the other half equally (A/8 each with the defaults, A/10 when
// MaxP95 is set).
//
//  1. Errors, compared. Count the discordant pairs: canary failed and
//     stable did not (b), stable failed and canary did not (c). If the
//     canary is no worse, each discordant pair is a coin toss, so
//     p = P(Binomial(b+c, ½) ≥ b) (McNemar's exact test, one-sided).
//     Fails when p < A/2 and the canary's error rate is at least
//     ErrorMinDiff (0.5 points) above stable's and at least ErrorMinRatio
//     (2) times stable's. Example: b=10, c=0 gives p = 0.5^10 = 0.00098,
//     which fails at A=0.002 but not at the default 0.001 (needs 11 vs 0).
//  2. Errors, absolute ceiling. With canary errors x out of n pairs,
//     p = P(Binomial(n, MaxErrorRate) ≥ x). Fails when p is below its share:
//     the canary's rate is significantly above MaxErrorRate (1%), not just a
//     few unlucky errors above it. Example with 1000 pairs and the share
//     A/8 = 0.000125: 20 errors give p = 0.0033 (passes), 25 give
//     p = 0.000042 (fails); 24 is the first count that fails.
//  3. Slow tail. The threshold is the median of all successful answers of
//     both sides plus TailMargin (250 ms). Among pairs where both sides
//     answered, count canary-only answers over it against stable-only ones
//     and test them like rule 1, with the same floors on the shares of
//     answers over the threshold. This finds "8% of requests take 800 ms
//     longer" with far fewer pairs than a rank test.
//  4. General slowdown. A one-sided Mann-Whitney U test (canary slower) over
//     the successful answers, AND a gap between the medians of at least
//     MinShiftRatio (25%) of stable's median, and at least MinShift (10 ms).
//     With ~1000 pairs the test alone would flag a 1 ms change; the minimum
//     shift keeps the verdict about differences people care about.
//  5. p95 ratio (only with at least MinPairs valid pairs). The canary fails
//     when its p95 is above P95Ratio × stable's p95 + LatencySlack
//     (1.5 × p95 + 25 ms) beyond sampling noise: the threshold is taken
//     from an upper confidence bound of stable's p95 (an order statistic),
//     and more than 5% of the canary's answers must be over it with
//     p = P(Binomial(n, 0.05) ≥ over) below the rule's share, half of which
//     goes to the bound and half to the count. The slack keeps sub-millisecond
//     services from failing on noise. The bound needs about 290 stable
//     answers at the default A; with fewer (only when MinPairs is set lower)
//     the rule is skipped and the Result says so. (A bare comparison of the
//     two sample p95s fails 2.7% of good canaries at 200 pairs in this
//     package's simulation of a heavy-tailed service: 200 ms median, p95
//     ~1.2 s.)
//  6. p95 ceiling (when MaxP95 is set). More than 5% of the canary's
//     answers over MaxP95, with p = P(Binomial(n, 0.05) ≥ over) below the
//     rule's share.
//
// Rules 2 and 6 are ceilings on top of the comparison. When stable breaks
// the same ceiling with the same test, the environment is failing, not the
// canary: the verdict is inconclusive unless a comparison rule (1, 3, 4, 5)
// failed.
//
// # Verdicts
//
//   - failed: a comparison rule failed, or a ceiling failed while stable
//     kept within it. Failures found in the valid pairs stand even when
//     pairs were lost or the sample is short: a fixed-size test is valid at
//     the size it was given, and lost pairs can hide a failure but not make
//     one.
//   - inconclusive: no valid comparison was made: an invalid policy, no
//     valid pairs, stable itself failing a ceiling, more than MaxLostShare
//     (5%) of the pairs lost, fewer than MinPairs valid pairs, a rule
//     that could not run, or a canary whose observed error rate is over
//     twice MaxErrorRate without any rule failing it (too few pairs: a
//     MinPairs far below the default). Inconclusive never promotes; missing
//     data never counts as zero.
//   - passed: every rule ran (the p95 ratio may be skipped, see rule 5)
//     and none failed on at least MinPairs valid pairs. Not significant at
//     the planned sample is a pass.
//
// # Deciding early (Early)
//
// Checking a fixed-size test after every batch multiplies false failures.
// Early instead uses a mixture sequential probability ratio test on the
// discordant pairs: with b canary-only and c stable-only discordant pairs
// so far, and a uniform prior on the canary's share θ in [½, 1],
//
//	Λ = 2^(b+c+1) · B(b+1, c+1) · P(θ > ½ | Beta(b+1, c+1))
//
// is the evidence for "the canary is worse" against "each discordant pair is
// a coin toss". Under the latter, the chance that Λ ever reaches 1/a, however
// often it is looked at, is at most a (Ville's inequality). Early runs it on
// errors and on slow pairs (canary more than TailMargin slower than its own
// stable partner, against the reverse; a threshold fixed per pair, so it
// does not move as data arrive) with a = A/2 each, takes the largest Λ over
// every prefix of the pairs (as if checked after each pair), and fails only
// when Λ ≥ 1/a and the floors of rule 1 hold. It never passes early.
// Example: a canary failing every request against a healthy stable is
// caught after 14 discordant pairs: Λ(14, 0) = (2^15−1)/15 = 2184 ≥ 2000.
//
// Early and Compare each keep within A. A window that calls Early after every
// batch and Compare at its end can fail a good canary with probability at
// most 2A (0.2% by default); pass Alpha/2 to both to keep the window within
// Alpha.
//
// # No stable version (Absolute)
//
// A first release has nothing to compare with. Absolute applies the ceilings
// only: rule 2 (with the whole budget A, or A/2 each when MaxP95 is set) and
// rule 6. With MaxP95 unset there is no latency rule at all: slowness shows
// only as timeouts, which are errors. The Result says so (Baseline false).
//
// # Numbers
//
// Percentiles are computed over successful answers by go-moremath's
// Sample.Quantile (Hyndman and Fan's method 8, interpolating between the two
// nearest answers). Binomial tails come from go-moremath's BinomialDist,
// Mann-Whitney from its MannWhitneyUTest (normal approximation with tie and
// continuity correction above 50 answers a side), quantile bounds from its
// QuantileCI.
package judgment
