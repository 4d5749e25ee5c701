package probe

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// AgentPath is where the agent binary sits in the probe image.
const AgentPath = "/slipway-probe"

// EncodeJob turns a job into the agent's command-line argument (base64 of its JSON: one
// word, no quoting issues).
func EncodeJob(j Job) (string, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// DecodeJob is EncodeJob's inverse.
func DecodeJob(arg string) (Job, error) {
	var j Job
	b, err := base64.RawURLEncoding.DecodeString(arg)
	if err != nil {
		return j, fmt.Errorf("probe job: not base64: %w", err)
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return j, fmt.Errorf("probe job: %w", err)
	}
	return j, j.Validate()
}

// Main is the agent: `run <job>` probes and writes one JSON Result per line on stdout until
// the job is done (exit 0), or until SIGTERM/SIGINT (exit 0 too: the caller stopped it). A
// bad job exits 2 with the reason on stderr. It is what cmd/slipway-probe runs, and what
// `slipway probe-agent` runs when the worker uses its own binary as the agent.
func Main(args []string, stdout, stderr io.Writer) int {
	// stderr is where the agent tells why it failed: a write that fails there has nowhere
	// else to go, and the exit code still says it.
	complain := func(a ...any) { _, _ = fmt.Fprintln(stderr, a...) }
	if len(args) != 2 || args[0] != "run" {
		complain("usage: slipway-probe run <job>   (Slipway's prober; the worker starts it)")
		return 2
	}
	j, err := DecodeJob(args[1])
	if err != nil {
		complain(err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// One write per result: the worker judges while the job runs (an early failure stops a
	// bad canary within seconds), so nothing may sit in a buffer.
	w := bufio.NewWriterSize(stdout, 4<<10)
	enc := json.NewEncoder(w)
	var werr error
	err = Run(ctx, j, func(r Result) {
		if werr == nil {
			if werr = enc.Encode(r); werr == nil {
				werr = w.Flush()
			}
		}
	})
	if werr != nil {
		complain("probe: writing results:", werr)
		return 1
	}
	if err != nil && ctx.Err() == nil {
		complain("probe:", err)
		return 1
	}
	return 0
}
