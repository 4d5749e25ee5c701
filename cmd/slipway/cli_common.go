package main

// The CLI commands that talk to the Slipway API (release, status, list, approve, abort, pause,
// resume, rollback, plan, env). Each is built by a constructor so tests can build a fresh
// command tree; newRootCmd adds them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term" // TTY detection for the live progress view

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/workflows"
)

// Exit codes of the CLI (docs/api.md): a pipeline can tell every end of a release apart.
const (
	codeSucceeded  = 0
	codeError      = 1 // usage or API error (a refused release included)
	codeRolledBack = 2
	codeWaiting    = 3 // still paused or awaiting approval (or still running) when --wait ends
	codeFailed     = 4 // the rollback (or a repair) could not finish
	// codeSLOMissed: a load test ran and missed an SLO (not a release outcome: 4 means a
	// rollback that could not finish, which a pipeline must tell apart).
	codeSLOMissed = 5
)

// apiCommands builds every API client command afresh.
func apiCommands() []*cobra.Command {
	return []*cobra.Command{
		newReleaseCmd(), newStatusCmd(), newListCmd(),
		newDecisionCmd(apiclient.ActionApprove, "Approve a release waiting at its approval gate"),
		newDecisionCmd(apiclient.ActionAbort, "Abort a running release (it rolls back what it changed)"),
		newDecisionCmd(apiclient.ActionPause, "Pause a running release"),
		newDecisionCmd(apiclient.ActionResume, "Resume a paused release"),
		newRollbackCmd(), newResolveCmd(), newPlanCmd(), newEnvCmd(), newTokenCmd(),
	}
}

// clientFlags are the flags every API command has.
type clientFlags struct {
	url    string
	token  string
	output string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "url", "", "API base URL (default $SLIPWAY_URL, else "+apiclient.DefaultURL+")")
	cmd.Flags().StringVar(&f.token, "token", "", "API token (default $SLIPWAY_TOKEN; prefer the variable: flags show in ps)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
}

func (f *clientFlags) client() (*apiclient.Client, error) {
	if f.output != "text" && f.output != "json" {
		return nil, fmt.Errorf("--output: %q is neither text nor json", f.output)
	}
	u := f.url
	if u == "" {
		u = os.Getenv("SLIPWAY_URL")
	}
	tok := f.token
	if tok == "" {
		tok = os.Getenv("SLIPWAY_TOKEN")
	}
	if tok == "" {
		tok = localDevToken(u)
	}
	if tok == "" {
		return nil, errors.New("no API token: set $SLIPWAY_TOKEN (or --token)")
	}
	return apiclient.New(u, tok), nil
}

// localDevToken is the token `slipway dev` keeps in .slipway/dev-token (its default data
// directory), used only when the API is on this machine, so a dev token never travels.
func localDevToken(apiURL string) string {
	if apiURL == "" {
		apiURL = apiclient.DefaultURL
	}
	u, err := url.Parse(apiURL)
	if err != nil {
		return ""
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(".slipway", devTokenFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (f *clientFlags) json() bool { return f.output == "json" }

// waitFlags are the flags of commands that can follow a release to its end.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "follow the release (live progress) until it ends or stops at a human gate; the exit code tells the outcome")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 0, "with --wait: stop waiting after this long (exit 3 if the release is still running); 0 waits as long as it takes")
}

// signalContext ends on Ctrl-C / SIGTERM.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// outcomeExit maps a release to the CLI's exit code (nil for success).
func outcomeExit(rel *apiclient.Release) error {
	switch rel.Outcome {
	case workflows.OutcomeSucceeded:
		return nil
	case workflows.OutcomeRolledBack:
		return &exitError{codeRolledBack, fmt.Errorf("release %s rolled back: %s", rel.ID, rel.Reason)}
	case workflows.OutcomeFailed:
		return &exitError{codeFailed, fmt.Errorf("release %s failed: %s", rel.ID, rel.Reason)}
	case workflows.OutcomeRefused:
		return &exitError{codeError, fmt.Errorf("release %s refused: %s", rel.ID, rel.Reason)}
	case workflows.OutcomeTerminated:
		// Closed from outside Slipway, then repaired: the exit code is the repair's. Rolled
		// back (or nothing was changed) is 2; a repair that could not finish is 4; a release
		// that had succeeded and only lost its cleanup was finished forward: 0.
		var rep *workflows.Repair
		if rel.Status != nil {
			rep = rel.Status.Repair
		}
		switch {
		case rep != nil && rep.Outcome == workflows.OutcomeSucceeded:
			return nil
		case rep != nil && rep.Outcome == workflows.OutcomeRolledBack:
			return &exitError{codeRolledBack, fmt.Errorf("release %s terminated from outside Slipway and rolled back: %s", rel.ID, rel.Reason)}
		default:
			return &exitError{codeFailed, fmt.Errorf("release %s terminated from outside Slipway; the repair could not finish: %s", rel.ID, rel.Reason)}
		}
	case workflows.OutcomeNone:
		if atGate(rel.Status) || rel.AwaitingHuman() {
			if rel.Status != nil && rel.Status.Paused || rel.Phase == workflows.PhasePaused {
				return &exitError{codeWaiting, fmt.Errorf("release %s is paused (resume: slipway resume %s)", rel.ID, rel.ID)}
			}
			return &exitError{codeWaiting, fmt.Errorf("release %s is awaiting approval (approve: %s)", rel.ID, approveHint(rel))}
		}
		return &exitError{codeWaiting, fmt.Errorf("release %s is still running (phase %s)", rel.ID, rel.Phase)}
	default: // refused, or an outcome this CLI does not know
		return &exitError{codeError, fmt.Errorf("release %s %s: %s", rel.ID, rel.Outcome, rel.Reason)}
	}
}

// approveHint is the command that approves a release's pending gates: one approve when that
// names them all (at most one per service), else one per gate naming its cluster.
func approveHint(rel *apiclient.Release) string {
	var gates []workflows.Gate
	if rel.Status != nil {
		gates = rel.Status.Gates
	}
	per := map[string]int{}
	for _, g := range gates {
		per[g.Service]++
	}
	var cmds []string
	for _, g := range gates {
		if per[g.Service] < 2 {
			continue
		}
		cmds = append(cmds, fmt.Sprintf("slipway approve %s --service %s --cluster %s", rel.ID, g.Service, g.Cluster))
	}
	if len(cmds) == 0 {
		return "slipway approve " + rel.ID
	}
	return strings.Join(cmds, "; ")
}

// atGate reports whether a release stands at a human gate: paused, or a service awaiting
// approval.
func atGate(st *workflows.ReleaseStatus) bool {
	if st == nil {
		return false
	}
	if st.Paused || st.Phase == workflows.PhasePaused || st.Phase == workflows.PhaseAwaitingApproval {
		return true
	}
	if st.Outcome != workflows.OutcomeNone {
		return false
	}
	for _, s := range st.Services {
		if s.Phase == workflows.PhaseAwaitingApproval {
			return true
		}
	}
	return false
}

var errAtGate = errors.New("the release stands at a human gate")

// follow streams a release until it ends, reaches a human gate, or the timeout runs out,
// drawing the progress view on stderr (unless JSON output), and returns the last view.
func follow(cmd *cobra.Command, c *apiclient.Client, id string, w waitFlags, quiet bool) (*apiclient.Release, error) {
	ctx, cancel := signalContext(cmd)
	defer cancel()
	fctx := ctx
	if w.timeout > 0 {
		var c2 context.CancelFunc
		fctx, c2 = context.WithTimeout(ctx, w.timeout)
		defer c2()
	}
	view := newProgress(cmd.ErrOrStderr(), quiet)
	var final *apiclient.Release
	err := c.Follow(fctx, id, 0, func(ev apiclient.StreamEvent) error {
		switch ev.Type {
		case apiclient.EventPhase:
			view.event(*ev.Event)
		case apiclient.EventStatus:
			view.status(id, ev.Status)
			if atGate(ev.Status) {
				return errAtGate
			}
		case apiclient.EventOutcome:
			final = ev.Release
			if final.Status != nil {
				view.status(id, final.Status)
			}
		}
		return nil
	})
	view.done()
	if final != nil {
		return final, nil
	}
	if err != nil && !errors.Is(err, errAtGate) && !errors.Is(err, context.DeadlineExceeded) {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted: release %s goes on (follow it: slipway status --wait %s)", id, id)
		}
		return nil, err
	}
	// At a gate or out of time: the current view decides the exit code.
	gctx, gcancel := context.WithTimeout(ctx, 30*time.Second)
	defer gcancel()
	return c.GetRelease(gctx, id, 0)
}

// printRelease prints a release view on stdout (text or JSON).
func printRelease(cmd *cobra.Command, f *clientFlags, rel *apiclient.Release) error {
	out := cmd.OutOrStdout()
	if f.json() {
		return printJSON(out, rel)
	}
	state := string(rel.Phase)
	if rel.Outcome != "" {
		state = string(rel.Outcome)
	} else if state == "" {
		state = "pending"
	}
	fmt.Fprintf(out, "release %s  %s  %s", rel.ID, rel.Environment, state)
	if rel.Existing {
		fmt.Fprint(out, "  (already started with this Idempotency-Key)")
	}
	fmt.Fprintln(out)
	if rel.Reason != "" {
		fmt.Fprintf(out, "  %s\n", rel.Reason)
	}
	if rel.Status != nil {
		for _, s := range rel.Status.Services {
			fmt.Fprintf(out, "  %-16s %s  %s\n", s.Service, versions(s.FromVersion, s.ToVersion), s.Phase)
		}
		for _, g := range rel.Status.Gates {
			where := g.Service
			if g.Cluster != "" {
				where += " on " + g.Cluster
			}
			fmt.Fprintf(out, "  awaiting approval: %s: %s (until %s, then %s)\n", where, g.Reason, g.Deadline.Local().Format("15:04:05"), g.OnTimeout)
		}
		if rel.Status.TriggeredBy != "" {
			fmt.Fprintf(out, "  triggered by %s", rel.Status.TriggeredBy)
			if rel.Status.ApprovedBy != "" {
				fmt.Fprintf(out, ", approved by %s", rel.Status.ApprovedBy)
			}
			if rel.Status.AbortedBy != "" {
				fmt.Fprintf(out, ", aborted by %s", rel.Status.AbortedBy)
			}
			fmt.Fprintln(out)
		}
		printTrace(out, rel.Status.Description, rel.Status.BuildURL, rel.Status.Commit)
	} else if rel.StatusError != "" {
		fmt.Fprintf(out, "  (%s)\n", rel.StatusError)
	}
	if rel.Links.WebUI != "" {
		fmt.Fprintf(out, "  web ui: %s\n", rel.Links.WebUI)
	}
	return nil
}

func versions(from, to string) string {
	if from == "" || from == to {
		return to
	}
	return from + " → " + to
}

// progress draws a release's progress on stderr: on a terminal a block redrawn in place
// every second (phase per service and cluster, replicas updated, elapsed time), elsewhere
// (CI logs) one line per event.
type progress struct {
	w      io.Writer
	tty    bool
	width  int
	quiet  bool
	start  time.Time
	mu     sync.Mutex
	lines  int
	id     string
	st     *workflows.ReleaseStatus
	lastEv string
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, start: time.Now(), stop: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		p.tty = true
		p.width = 120
		if wd, _, err := term.GetSize(int(f.Fd())); err == nil && wd > 20 {
			p.width = wd
		}
	}
	if p.tty && !quiet {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

func (p *progress) elapsed(st *workflows.ReleaseStatus) time.Duration {
	if st != nil && !st.StartedAt.IsZero() {
		end := time.Now()
		if !st.EndedAt.IsZero() {
			end = st.EndedAt
		}
		if d := end.Sub(st.StartedAt); d >= 0 {
			return d
		}
	}
	return time.Since(p.start)
}

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

func (p *progress) event(ev workflows.Event) {
	if p.quiet {
		return
	}
	where := ev.Service
	if ev.Cluster != "" {
		where += "@" + ev.Cluster
	}
	line := fmt.Sprintf("%-18s %-22s %s", ev.Phase, where, ev.Message)
	if p.tty {
		p.mu.Lock()
		p.lastEv = strings.Join(strings.Fields(line), " ")
		p.mu.Unlock()
		return
	}
	fmt.Fprintf(p.w, "[%6s] %s\n", clock(time.Since(p.start)), line)
}

func (p *progress) status(id string, st *workflows.ReleaseStatus) {
	if p.quiet || !p.tty || st == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.id, p.st = id, st
	p.draw()
}

// draw redraws the block (p.mu held). Every line is cut to the terminal's width, so the
// cursor moves back over exactly the lines drawn.
func (p *progress) draw() {
	st := p.st
	if st == nil {
		return
	}
	var lines []string
	phase := string(st.Phase)
	if st.Paused {
		phase += " (paused)"
	}
	if st.Outcome != "" {
		phase = string(st.Outcome)
	}
	lines = append(lines, fmt.Sprintf("%s  %s  %s  %s", p.id, st.Environment, phase, clock(p.elapsed(st))))
	services := append([]workflows.ServiceProgress(nil), st.Services...)
	sort.SliceStable(services, func(i, j int) bool { return services[i].Service < services[j].Service })
	for _, s := range services {
		lines = append(lines, fmt.Sprintf("  %-16s %-20s %s", s.Service, versions(s.FromVersion, s.ToVersion), s.Phase))
		for _, c := range s.Clusters {
			l := fmt.Sprintf("    %-14s wave %-2d %-18s %d/%d", c.Cluster, c.Wave, c.Phase, c.Updated, c.Replicas)
			if c.Message != "" {
				l += "  " + c.Message
			}
			lines = append(lines, l)
		}
	}
	if p.lastEv != "" {
		lines = append(lines, "  last: "+p.lastEv)
	}
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", p.lines)
	}
	for _, l := range lines {
		if r := []rune(l); len(r) > p.width-1 {
			l = string(r[:p.width-2]) + "…"
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	fmt.Fprint(p.w, b.String())
	p.lines = len(lines)
}

func (p *progress) done() {
	close(p.stop)
	p.wg.Wait()
}
