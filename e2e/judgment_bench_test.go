package e2e

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkCanaryJudgment measures the built-in judgment the way a new user meets it: real
// releases of the demo service with a spec that sets no policy (defaultsSpec: one cluster on
// an engine the worker cannot route to, 2 replicas, the default 30 s canary soak and 10 s
// windows), two releases at a time on this 2-core machine.
//
//   - Misbehaviours: every bad tag of the demo, TRIALS times each (randomised knobs:
//     bad-intermittent and bad-tail) or once (deterministic ones); caught-share is the share
//     rolled back by a failed verdict of the canary stage (its verification or the lifecycle
//     watch of the canary) before any batch, s-to-verdict the median time from the canary's
//     start to that verdict.
//   - False positives: GOOD releases 1.0.0 → 1.1.0 and GOOD releases noisy-1.0.0 →
//     noisy-1.1.0 (both fail 0.5 % of requests at random): rolled-back-share must be 0.
//
// SLIPWAY_BENCH_TRIALS (default 5) and SLIPWAY_BENCH_GOOD (default 20) set the counts.
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
	var mu sync.Mutex
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b.Run(fmt.Sprintf("%02d-%s", i, j.group), func(b *testing.B) {
				f := newRemoteFixture(b)
				f.startWorker()
				f.seedSpec(f.defaultsSpec(j.from))
				st := f.wait(f.release("judge", workflows.ReleaseInput{Spec: f.defaultsSpec(j.to)}))
				r := result{outcome: st.Outcome, reason: st.Reason}
				var canaryAt time.Time
				for _, e := range st.Events {
					if e.Phase == workflows.PhaseCanary && strings.Contains(e.Message, "canary replica") && canaryAt.IsZero() {
						canaryAt = e.At
					}
				}
				r.atCanary = caughtAtCanary(st)
				for _, v := range st.Verdicts {
					if v.Result == workflows.VerdictFailed {
						r.toVerdict = v.At.Sub(canaryAt)
					}
				}
				mu.Lock()
				results[j.group] = append(results[j.group], r)
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
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
		if g == "good" || g == "noisy" {
			b.ReportMetric(float64(rolled)/float64(len(rs)), g+"-rolled-back-share")
			b.Logf("%-17s %d releases, %d rolled back", g, len(rs), rolled)
			for _, r := range rs {
				if r.outcome != workflows.OutcomeSucceeded {
					b.Logf("  %s: %s", r.outcome, r.reason)
				}
			}
			continue
		}
		b.ReportMetric(float64(caught)/float64(len(rs)), g+"-caught-share")
		med := time.Duration(0)
		if len(times) > 0 {
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			med = times[len(times)/2]
			b.ReportMetric(med.Seconds(), g+"-s-to-verdict")
		}
		b.Logf("%-17s caught at the canary %d/%d, canary start → failed verdict median %s (all: %v)", g, caught, len(rs), med.Round(100*time.Millisecond), times)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
