package e2e

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkCanaryJudgment measures the built-in judgment the way a new user meets it: real
// releases of the demo service with a spec that sets no policy (defaultsSpec: one cluster on
// an engine the worker cannot route to, 2 replicas, the default 30 s canary soak and 10 s
// windows), three releases at a time on this 2-core machine.
//
//   - Misbehaviours: every bad tag of the demo, TRIALS times each (randomised knobs:
//     bad-intermittent and bad-tail) or once (deterministic ones); caught-share is the share
//     rolled back by a failed verdict of the canary stage (its verification or the lifecycle
//     watch of the canary) before any batch, s-to-verdict the median time from the canary's
//     start to that verdict.
//   - False positives: GOOD releases 1.0.0 → 1.1.0 and GOOD releases noisy-1.0.0 →
//     noisy-1.1.0 (both fail 0.5 % of requests at random): rolled-back-share must be 0.
//
// SLIPWAY_BENCH_TRIALS (default 5) and SLIPWAY_BENCH_GOOD (default 20) set the counts,
// SLIPWAY_BENCH_PARALLEL (default 3) how many releases run at once. Results are printed as
// "judgment:" lines (one per release, then a summary per group).
func BenchmarkCanaryJudgment(b *testing.B) {
	trials := envInt("SLIPWAY_BENCH_TRIALS", 5)
	goods := envInt("SLIPWAY_BENCH_GOOD", 20)
	type job struct{ group, from, to string }
	var jobs []job
	for _, tag := range []string{"bad-crash", "bad-crash-later", "bad-oom", "bad-health", "bad-port", "bad-routes",
		"bad-errors", "bad-intermittent", "bad-latency", "bad-tail"} {
		n := 1
		if tag == "bad-intermittent" || tag == "bad-tail" {
			n = trials
		}
		for range n {
			jobs = append(jobs, job{tag, "1.0.0", tag})
		}
	}
	for range goods {
		jobs = append(jobs, job{"good", "1.0.0", "1.1.0"}, job{"noisy", "noisy-1.0.0", "noisy-1.1.0"})
	}
	type result struct {
		outcome   workflows.Outcome
		atCanary  bool
		toVerdict time.Duration
		reason    string
	}
	results := map[string][]result{}
	countOutcome := func(rs []result, o workflows.Outcome) int {
		n := 0
		for _, r := range rs {
			if r.outcome == o {
				n++
			}
		}
		return n
	}
	par := envInt("SLIPWAY_BENCH_PARALLEL", 3)
	b.ResetTimer()
	// Sub-benchmarks run one after another (testing.B.Run is not for concurrent use); each
	// starts `par` releases at once, each in an environment and with a worker of its own.
	for k := 0; k < len(jobs); k += par {
		batch := jobs[k:min(k+par, len(jobs))]
		b.Run(fmt.Sprintf("batch-%02d", k/par), func(b *testing.B) {
			type started struct {
				f   *fixture
				j   job
				run client.WorkflowRun
			}
			var runs []started
			for _, j := range batch {
				f := newRemoteFixture(b)
				f.startWorker()
				f.seedSpec(f.defaultsSpec(j.from))
				runs = append(runs, started{f: f, j: j})
			}
			for i := range runs {
				runs[i].run = runs[i].f.release("judge", workflows.ReleaseInput{Spec: runs[i].f.defaultsSpec(runs[i].j.to)})
			}
			for _, s := range runs {
				st := s.f.wait(s.run)
				r := result{outcome: st.Outcome, reason: st.Reason, atCanary: caughtAtCanary(st)}
				var canaryAt time.Time
				for _, e := range st.Events {
					if e.Phase == workflows.PhaseCanary && strings.Contains(e.Message, "canary replica") && canaryAt.IsZero() {
						canaryAt = e.At
					}
				}
				for _, v := range st.Verdicts {
					if v.Result == workflows.VerdictFailed {
						r.toVerdict = v.At.Sub(canaryAt)
					}
				}
				results[s.j.group] = append(results[s.j.group], r)
				// One line per release on standard output (a benchmark's own log is cut
				// after ten lines): the raw data of the summary below.
				fmt.Printf("judgment: release %-17s %s → %s: %s, caught at the canary %t, canary start → failed verdict %s; %s\n",
					s.j.group, s.j.from, s.j.to, r.outcome, r.atCanary, r.toVerdict.Round(100*time.Millisecond), r.reason)
			}
		})
	}
	b.StopTimer()
	groups := make([]string, 0, len(results))
	for g := range results {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		rs := results[g]
		caught, rolled := 0, 0
		var times []time.Duration
		for _, r := range rs {
			if r.outcome == workflows.OutcomeRolledBack {
				rolled++
			}
			if r.atCanary && r.outcome == workflows.OutcomeRolledBack {
				caught++
				times = append(times, r.toVerdict)
			}
		}
		// A benchmark with sub-benchmarks reports no metrics of its own: the summary goes to
		// standard output.
		if g == "good" || g == "noisy" {
			fmt.Printf("judgment: summary %-17s %d releases, %d rolled back, %d not succeeded\n", g, len(rs), rolled, len(rs)-countOutcome(rs, workflows.OutcomeSucceeded))
			continue
		}
		med := time.Duration(0)
		if len(times) > 0 {
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			med = times[len(times)/2]
		}
		fmt.Printf("judgment: summary %-17s caught at the canary %d/%d, canary start → failed verdict median %s (all: %v)\n", g, caught, len(rs), med.Round(100*time.Millisecond), times)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
