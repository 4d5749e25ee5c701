package e2e

// Benchmarks of this package (make bench; BENCHMARKS.md): releases in release_bench_test.go,
// rollbacks in rollback_bench_test.go, the canary judgment in judgment_bench_test.go, worker
// death in resume_bench_test.go. Each reports its figures beside a baseline measured in the
// same run; none asserts a wall-clock time. Run once each (-benchtime 1x): every iteration
// creates real containers.
