package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/apiclient"
)

// parseSets reads --set service=version flags.
func parseSets(sets []string) (map[string]string, error) {
	if len(sets) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(v) == "" {
			return nil, &exitError{codeError, fmt.Errorf("--set %q: want service=version", kv)}
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func newReleaseCmd() *cobra.Command {
	var (
		f                      clientFlags
		w                      waitFlags
		file, environment      string
		sets                   []string
		desc, buildURL, commit string
		key                    string
		queue                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "release (-f SPEC | --environment ENV --set svc=version...)",
		Short: "Start a release through the API (and follow it with --wait)",
		Long: `Starts a release: either a whole deployment spec (-f, with optional --set overrides), or
new versions of some services (--set) against the environment's checked-in spec
(--environment). With --wait it shows live progress (phase per service and cluster) and exits
with the outcome: 0 succeeded, 1 usage or API error or refused (nothing was changed: another
release of the service in flight, or an image missing from a cluster; the reason is printed),
2 rolled back, 3 still paused or awaiting approval (or still running at --timeout), 4 failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			overrides, err := parseSets(sets)
			if err != nil {
				return err
			}
			req := apiclient.StartRequest{IdempotencyKey: key, Queue: queue}
			switch {
			case file != "" && environment != "":
				return fmt.Errorf("give either -f SPEC or --environment, not both")
			case file != "":
				data, err := readSpec(file)
				if err != nil {
					return err
				}
				req.Spec, req.SpecName, req.Overrides = data, file, overrides
				req.Description, req.BuildURL, req.Commit = desc, buildURL, commit
			case environment != "":
				if len(overrides) == 0 {
					return fmt.Errorf("--environment needs at least one --set service=version")
				}
				req.Trigger = &apiclient.TriggerRequest{Environment: environment, Services: overrides,
					Description: desc, BuildURL: buildURL, Commit: commit}
			default:
				return fmt.Errorf("give -f SPEC, or --environment ENV with --set service=version")
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			rel, err := c.StartRelease(ctx, req)
			if err != nil {
				return err
			}
			if !w.wait {
				return printRelease(cmd, &f, rel)
			}
			if !f.json() {
				fmt.Fprintf(cmd.ErrOrStderr(), "release %s started", rel.ID)
				if rel.Links.WebUI != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "  (%s)", rel.Links.WebUI)
				}
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			return followAndExit(cmd, c, &f, rel.ID, w)
		},
	}
	f.register(cmd)
	w.register(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "deployment spec file (YAML or JSON; - for standard input)")
	cmd.Flags().StringVarP(&environment, "environment", "e", "", "release against this environment's checked-in spec (with --set)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "service=version (repeatable)")
	cmd.Flags().StringVar(&desc, "description", "", "what this release is about")
	cmd.Flags().StringVar(&buildURL, "build-url", os.Getenv("BUILD_URL"), "URL of the build that triggered the release (default $BUILD_URL)")
	cmd.Flags().StringVar(&commit, "commit", os.Getenv("GIT_COMMIT"), "commit being released (default $GIT_COMMIT)")
	cmd.Flags().DurationVar(&queue, "queue", 0, "if a release of the same service is in flight, wait up to this long for it instead of being refused")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "a retried command with the same key returns the same release (e.g. the build's tag)")
	return cmd
}

func readSpec(file string) ([]byte, error) {
	if file == "-" {
		data, err := readAllLimited(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read spec from standard input: %w", err)
		}
		return data, nil
	}
	fh, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	defer func() { _ = fh.Close() }() // opened read-only: a failed close loses nothing
	data, err := readAllLimited(fh)
	if err != nil {
		return nil, fmt.Errorf("spec %s: %w", file, err)
	}
	return data, nil
}

// followAndExit follows a release, prints its last view and returns the outcome's exit code.
func followAndExit(cmd *cobra.Command, c *apiclient.Client, f *clientFlags, id string, w waitFlags) error {
	rel, err := follow(cmd, c, id, w, f.json())
	if err != nil {
		return err
	}
	if err := printRelease(cmd, f, rel); err != nil {
		return err
	}
	return outcomeExit(rel)
}

func newStatusCmd() *cobra.Command {
	var (
		f clientFlags
		w waitFlags
	)
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a release's status (follow it with --wait)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if w.wait {
				return followAndExit(cmd, c, &f, args[0], w)
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			rel, err := c.GetRelease(ctx, args[0], 0)
			if err != nil {
				return err
			}
			// Like --wait, the exit code is the release's: 0 succeeded, 2 rolled back, 3 still
			// running or waiting for a human, 4 failed, 1 refused.
			if f.json() {
				if err := printJSON(cmd.OutOrStdout(), rel); err != nil {
					return err
				}
				return outcomeExit(rel)
			}
			if err := printRelease(cmd, &f, rel); err != nil {
				return err
			}
			if rel.Status != nil {
				out := cmd.OutOrStdout()
				for _, s := range rel.Status.Services {
					for _, cl := range s.Clusters {
						fmt.Fprintf(out, "    %s@%-14s wave %d  %-14s %d/%d %s\n", s.Service, cl.Cluster, cl.Wave, cl.Phase, cl.Updated, cl.Replicas, cl.Message)
					}
				}
				for _, v := range rel.Status.Verdicts {
					fmt.Fprintf(out, "  verdict %s %s@%s (%s): %s\n", v.Result, v.Service, v.Cluster, v.Stage, v.Reason)
				}
			}
			return outcomeExit(rel)
		},
	}
	f.register(cmd)
	w.register(cmd)
	return cmd
}

func newListCmd() *cobra.Command {
	var (
		f    clientFlags
		o    apiclient.ListOptions
		all  bool
		page string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List releases, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			o.PageToken = page
			var rows []apiclient.ReleaseSummary
			next := ""
			for {
				l, err := c.ListReleases(ctx, o)
				if err != nil {
					return err
				}
				rows = append(rows, l.Releases...)
				next = l.NextPageToken
				if !all || next == "" {
					break
				}
				o.PageToken = next
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), apiclient.ReleaseList{Releases: rows, NextPageToken: next})
			}
			return printList(cmd, rows, next)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&o.Environment, "environment", "e", "", "only this environment")
	cmd.Flags().StringVar(&o.Service, "service", "", "only releases of this service")
	cmd.Flags().StringVar(&o.Phase, "phase", "", "only releases in this phase")
	cmd.Flags().StringVar(&o.Outcome, "outcome", "", "only releases with this outcome (succeeded, rolled_back, failed, refused)")
	cmd.Flags().BoolVar(&o.Running, "running", false, "only releases in flight")
	cmd.Flags().IntVar(&o.PageSize, "limit", 20, "releases per page")
	cmd.Flags().StringVar(&page, "page-token", "", "page token printed by the previous page")
	cmd.Flags().BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

func printList(cmd *cobra.Command, rows []apiclient.ReleaseSummary, next string) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tENVIRONMENT\tPHASE\tOUTCOME\tVERSIONS\tBY\tSTARTED")
	for _, r := range rows {
		outcome := string(r.Outcome)
		if outcome == "" {
			outcome = "-"
			if r.ExecutionStatus != "Running" {
				outcome = strings.ToLower(r.ExecutionStatus)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Environment, orDash(string(r.Phase)), outcome,
			strings.Join(r.Versions, ","), orDash(r.TriggeredBy), r.StartedAt.Local().Format("2006-01-02 15:04:05"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "more: --page-token %s\n", next)
	}
	return nil
}

// printTrace prints a release's description, build and commit (Jenkins), those it has.
func printTrace(out io.Writer, description, buildURL, commit string) {
	if description != "" {
		fmt.Fprintf(out, "  description: %s\n", description)
	}
	if buildURL != "" {
		fmt.Fprintf(out, "  build: %s\n", buildURL)
	}
	if commit != "" {
		fmt.Fprintf(out, "  commit: %s\n", commit)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
