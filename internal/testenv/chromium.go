package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireChromium returns the path of a Chromium (or Chrome) binary for browser tests:
// $SLIPWAY_CHROMIUM, else chromium, chromium-browser, google-chrome on PATH. Without one it
// skips t, or fails it when CI or SLIPWAY_REQUIRE_DOCKER is set (scripts/ensure-test-tools.sh
// installs Debian's chromium). It skips t in short mode.
func RequireChromium(t testing.TB) string {
	t.Helper()
	integration(t, "a headless Chromium")
	if p := os.Getenv("SLIPWAY_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			unavailable(t, "$SLIPWAY_CHROMIUM: "+err.Error())
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	unavailable(t, "no chromium on PATH (apt-get install chromium, or set $SLIPWAY_CHROMIUM)")
	return ""
}
