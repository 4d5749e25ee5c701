package testenv

import (
	"os/exec"
	"testing"
)

// RequirePromtool returns the path of Prometheus' promtool (Debian's prometheus package;
// scripts/ensure-test-tools.sh installs it). Without it the test is skipped, or fails when
// CI or SLIPWAY_REQUIRE_DOCKER is set.
func RequirePromtool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		unavailable(t, "no promtool on PATH (install Debian's prometheus package: scripts/ensure-test-tools.sh)")
	}
	return p
}
