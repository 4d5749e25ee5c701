package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/starter"
)

// sessionKeyEnv holds the dashboard's session key when --session-key-file is not given.
const sessionKeyEnv = "SLIPWAY_SESSION_KEY"

// dashboardFlags configure the dashboard at / (docs/dashboard.md).
type dashboardFlags struct {
	anonymous      bool
	sessionKeyFile string
}

func (f *dashboardFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.anonymous, "dashboard-anonymous", false, "let anyone read the dashboard at / without logging in (read-only; for a trusted network only)")
	cmd.Flags().StringVar(&f.sessionKeyFile, "session-key-file", "", "file holding the key (at least 32 bytes) that signs dashboard sessions, the same on every API replica (default: $"+sessionKeyEnv+", else a key derived from the API tokens)")
}

// config reads the session key (file, then $SLIPWAY_SESSION_KEY; neither: derived from the
// tokens by the API).
func (f *dashboardFlags) config() (starter.DashboardConfig, error) {
	d := starter.DashboardConfig{Anonymous: f.anonymous}
	key := os.Getenv(sessionKeyEnv)
	if f.sessionKeyFile != "" {
		b, err := os.ReadFile(f.sessionKeyFile)
		if err != nil {
			return d, fmt.Errorf("session key: %w", err)
		}
		key = string(b)
	}
	key = strings.TrimSpace(key)
	if key != "" && len(key) < starter.MinSessionKeyBytes {
		return d, fmt.Errorf("session key: %d bytes, at least %d wanted (e.g. openssl rand -hex 32)", len(key), starter.MinSessionKeyBytes)
	}
	if key != "" {
		d.SessionKey = []byte(key)
	}
	return d, nil
}
