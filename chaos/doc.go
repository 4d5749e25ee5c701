// Package chaos holds Slipway's chaos test (chaos_test.go; BENCHMARKS.md, Chaos): releases of good and bad
// versions of two services on two clusters, triggered through the HTTP API, on split
// processes (the embedded Temporal server, two workers, two API replicas) while workers and
// API replicas are SIGKILLed at random and some releases are terminated by hand; after each
// release its outcome is checked against what the Docker engine runs.
//
// `go test ./chaos/` (CI) runs 10 releases; `make chaos` runs 100 and prints the figures of
// BENCHMARKS.md. Environment: SLIPWAY_CHAOS_RELEASES (how many), SLIPWAY_CHAOS_SEED (replay a
// run: every random choice comes from it), SLIPWAY_CHAOS_TERMINATES=0 (no terminates by hand),
// SLIPWAY_CHAOS_KILLS=0 (no SIGKILLs), SLIPWAY_CHAOS_BIN (a directory holding slipway and
// slipway-probe already built), SLIPWAY_CHAOS_KEEP=1 (keep the processes' logs).
package chaos
