package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// AgentEnv is the environment variable through which the Docker adapter finds the probe
// agent binary (dockerengine.AgentEnv; repeated here because testenv does not import the
// adapter).
const AgentEnv = "SLIPWAY_PROBE_AGENT"

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// ProbeAgent builds the probe agent (cmd/slipway-probe, static) once per test process into a
// temporary directory, points SLIPWAY_PROBE_AGENT at it so every Docker adapter of the
// process loads it into the engines it probes on, and returns its path. DemoImages calls it:
// every test that runs replicas can verify them.
func ProbeAgent(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		if p := os.Getenv(AgentEnv); p != "" {
			agentPath = p
			return
		}
		root, err := repoRoot()
		if err != nil {
			agentErr = err
			return
		}
		dir, err := os.MkdirTemp("", "slipway-probe-agent-")
		if err != nil {
			agentErr = err
			return
		}
		out := filepath.Join(dir, "slipway-probe")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/slipway-probe")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("go build ./cmd/slipway-probe: %w\n%s", err, b)
			return
		}
		agentPath = out
		agentErr = os.Setenv(AgentEnv, out)
	})
	if agentErr != nil {
		t.Fatalf("testenv: probe agent: %v", agentErr)
	}
	return agentPath
}
