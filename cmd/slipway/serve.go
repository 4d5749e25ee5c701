package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/metrics"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/worker"
	"github.com/slipwayhq/slipway/workflows"
)

// apiFlags configure the HTTP API (in `dev` and `api`).
type apiFlags struct {
	addr           string
	deploymentsDir string
	tokensFile     string
	uiURL          string
	checkEngines   bool
	replicas       int             // API processes behind one address: each enforces its share of rate limits
	tokens         *starter.Tokens // set by `dev` when it made its own token
	dashboard      dashboardFlags  // the dashboard at / (dashboard_flags.go)
	metricsOn      bool            // --metrics: serve /metrics on the API's address
	metrics        *metrics.Registry
}

// register adds the API flags; pingEngines is the default of --readyz-engines: on in `dev`
// (one process that also runs the worker), off in `api` (the API never needs an engine).
func (f *apiFlags) register(cmd *cobra.Command, defaultAddr string, pingEngines bool) {
	cmd.Flags().StringVar(&f.addr, "api-addr", defaultAddr, "address the HTTP API listens on")
	cmd.Flags().StringVar(&f.deploymentsDir, "deployments", "deployments", "directory of the checked-in deployment specs (<environment>.yaml)")
	cmd.Flags().StringVar(&f.tokensFile, "tokens-file", "", "API tokens file (default: $SLIPWAY_TOKENS_FILE; see README, API tokens)")
	cmd.Flags().BoolVar(&f.checkEngines, "readyz-engines", pingEngines, "make /readyz ping every Docker engine of the checked-in specs (the API itself never needs one)")
	f.dashboard.register(cmd)
	cmd.Flags().BoolVar(&f.metricsOn, "metrics", true, "serve Prometheus metrics at /metrics on the API's address, without a token (in dev also the worker's; docs/observability.md); --metrics=false turns it off")
}

// workerFlags tune the worker (in `dev` and `worker`).
type workerFlags struct {
	maxRate     int
	maxDuration time.Duration
	secretsDir  string
	probeAgent  string
	metricsAddr string // slipway worker --metrics-addr
}

func (f *workerFlags) register(cmd *cobra.Command, defaultSecretsDir string) {
	cmd.Flags().StringVar(&f.secretsDir, "secrets-dir", defaultSecretsDir, "directory of the secrets that services name under secrets (one file per secret, mode 0600; dev default: <data-dir>/secrets); empty: no secrets")
	cmd.Flags().IntVar(&f.maxRate, "loadtest-max-rate", activities.DefaultLoadTestMaxRate, "highest rate (requests/s) a load test may ask for")
	cmd.Flags().DurationVar(&f.maxDuration, "loadtest-max-duration", activities.DefaultLoadTestMaxDuration, "longest a load test may run (warm-up included)")
	cmd.Flags().StringVar(&f.probeAgent, "probe-agent", "", "the prober binary loaded into engines to probe replicas next to them (default: slipway-probe beside this binary, $SLIPWAY_PROBE_AGENT, or this binary itself)")
}

func (f *workerFlags) options(warn io.Writer) worker.Options {
	o := worker.Options{LoadTests: activities.LoadTestOptions{MaxRate: f.maxRate, MaxDuration: f.maxDuration}}
	if f.secretsDir != "" {
		if _, err := os.Stat(f.secretsDir); err != nil {
			fmt.Fprintf(warn, "note: secrets directory %s: %v (services with secrets: will fail until it exists)\n", f.secretsDir, err)
		}
		o.Activities.Secrets = activities.DirSecrets(f.secretsDir)
	}
	return o
}

// newDevCmd builds `slipway dev`: everything in one process.
func newDevCmd() *cobra.Command {
	var (
		wf        workerFlags
		dataDir   string
		ephemeral bool
		ip        string
		grpcPort  int
		uiPort    int
		uiWrite   bool
		logLevel  string
		tempOnly  bool
		api       apiFlags
	)
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: embedded Temporal (SQLite) + Web UI + worker + API",
		Long: `Runs an embedded Temporal server persisted in a SQLite file (or in memory with --ephemeral),
the Temporal Web UI, the Slipway worker and the Slipway HTTP API in one process, against the
Docker engines named in the deployment specs (an empty endpoint means this machine's engine).
Stop it with Ctrl-C; start it again on the same data directory and every release is still there,
unfinished ones carry on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			start := time.Now()

			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
			opts := devserver.Options{
				Ephemeral:        ephemeral,
				DBFile:           filepath.Join(dataDir, "temporal.db"),
				IP:               ip,
				GRPCPort:         grpcPort,
				UIPort:           uiPort,
				UIWriteActions:   uiWrite,
				SearchAttributes: workflows.SearchAttributeTypes,
				LogLevel:         logLevel,
				LogFile:          filepath.Join(dataDir, "temporal.log"),
			}
			srv, err := devserver.Start(ctx, opts)
			if err != nil {
				return err
			}
			defer srv.Stop()
			if api.uiURL == "" {
				api.uiURL = srv.UIURL()
			}
			if tempOnly {
				fmt.Fprintf(out, "Temporal is up in %s\n  Temporal     %s  (namespace %s)\n  Temporal UI  %s\nPress Ctrl-C to stop.\n",
					time.Since(start).Round(time.Millisecond), srv.HostPort(), srv.Namespace(), srv.UIURL())
				<-ctx.Done()
				return nil
			}
			if !cmd.Flags().Changed("secrets-dir") {
				wf.secretsDir = filepath.Join(dataDir, "secrets")
				if err := os.MkdirAll(wf.secretsDir, 0o700); err != nil {
					return fmt.Errorf("secrets directory: %w", err)
				}
			}
			tokenHint, err := devToken(dataDir, &api)
			if err != nil {
				return err
			}
			return runWorkerAndAPI(ctx, srv.Client(), srv.Namespace(), &api, &wf, func(apiURL string) {
				store := opts.DBFile
				if ephemeral {
					store = "in memory (--ephemeral: gone when this process ends)"
				}
				fmt.Fprintf(out, "Slipway %s is up in %s\n", buildVersion(), time.Since(start).Round(time.Millisecond))
				fmt.Fprintf(out, "  API          %s   (health: %s/readyz)\n", apiURL, apiURL)
				if srv.UIURL() != "" {
					fmt.Fprintf(out, "  Temporal UI  %s/namespaces/%s/workflows\n", srv.UIURL(), srv.Namespace())
				}
				fmt.Fprintf(out, "  Temporal     %s  (namespace %s)\n", srv.HostPort(), srv.Namespace())
				fmt.Fprintf(out, "  Store        %s\n", store)
				fmt.Fprintf(out, "  Token        %s\n", tokenHint)
				fmt.Fprintf(out, "Press Ctrl-C to stop.\n")
			})
		},
	}
	dev.Flags().StringVar(&dataDir, "data-dir", ".slipway", "directory of the SQLite file, the Temporal log and the dev API token")
	dev.Flags().BoolVar(&ephemeral, "ephemeral", false, "keep Temporal's data in memory only")
	dev.Flags().StringVar(&ip, "ip", "127.0.0.1", "address Temporal and its Web UI bind to")
	dev.Flags().IntVar(&grpcPort, "temporal-port", 7233, "Temporal gRPC port")
	dev.Flags().IntVar(&uiPort, "ui-port", 8233, "Temporal Web UI port (-1: no UI)")
	dev.Flags().BoolVar(&uiWrite, "ui-write-actions", false, "let the Web UI terminate, cancel, reset and signal workflows (it has no authentication; a release terminated there is repaired by Slipway: outcome terminated)")
	dev.Flags().StringVar(&logLevel, "temporal-log-level", "warn", "level of the embedded Temporal server's log (written to <data-dir>/temporal.log)")
	dev.Flags().BoolVar(&tempOnly, "temporal-only", false, "run only the embedded Temporal server and Web UI (run `slipway worker` and `slipway api` beside it)")
	api.register(dev, "127.0.0.1:8080", true)
	wf.register(dev, "")
	return dev
}

// newWorkerCmd builds `slipway worker`.
func newWorkerCmd() *cobra.Command {
	var (
		wt  temporalFlags
		wwf workerFlags
	)
	workerCmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the Slipway worker against a Temporal cluster",
		Long: `Runs the Slipway worker (release and load-test workflows and their activities) against the
Temporal cluster named by the SDK's environment configuration (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE) or the flags.
Run as many as you like.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, ns, err := wt.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := devserver.EnsureSearchAttributes(ctx, c, ns, workflows.SearchAttributeTypes); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: could not register Slipway's search attributes (ask an admin to add them): %v\n", err)
			}
			d, err := newDialer(wwf.probeAgent)
			if err != nil {
				return err
			}
			defer func() { _ = d.Close() }() // on the way out: only idle Docker connections to drop
			wc := c
			if wwf.metricsAddr != "" {
				reg := metrics.New()
				if wc, err = metricsClient(c, ns, reg); err != nil {
					return err
				}
				defer wc.Close()
				u, err := serveMetrics(ctx, wwf.metricsAddr, reg, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Slipway worker metrics on %s\n", u)
			}
			w, err := worker.New(wc, d, wwf.options(cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			if err := w.Start(); err != nil {
				return fmt.Errorf("start worker: %w", err)
			}
			defer w.Stop()
			fmt.Fprintf(cmd.OutOrStdout(), "Slipway worker %s polling task queue %q\n", buildVersion(), workflows.TaskQueue)
			<-ctx.Done()
			return nil
		},
	}
	wt.register(workerCmd)
	wwf.register(workerCmd, activities.DefaultWorkerSecretsDir)
	workerCmd.Flags().StringVar(&wwf.metricsAddr, "metrics-addr", "", "address to serve the worker's Prometheus metrics on, at /metrics without a token (e.g. 127.0.0.1:9090; empty: none)")
	return workerCmd
}

// newAPICmd builds `slipway api`.
func newAPICmd() *cobra.Command {
	var (
		at   temporalFlags
		aapi apiFlags
	)
	apiCmd := &cobra.Command{
		Use:   "api",
		Short: "Run the Slipway HTTP API against a Temporal cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, ns, err := at.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			return runWorkerAndAPI(ctx, c, ns, &aapi, nil, func(apiURL string) {
				fmt.Fprintf(cmd.OutOrStdout(), "Slipway API %s on %s\n", buildVersion(), apiURL)
			})
		},
	}
	at.register(apiCmd)
	aapi.register(apiCmd, "0.0.0.0:8080", false)
	apiCmd.Flags().StringVar(&aapi.uiURL, "ui-url", "", "base URL of the Temporal Web UI, for links in API answers")
	apiCmd.Flags().IntVar(&aapi.replicas, "replicas", envInt(apiReplicasEnv, 1), "how many API replicas serve the same clients (default: $"+apiReplicasEnv+" or 1); each enforces that share of every token's rate limit")
	return apiCmd
}

// runWorkerAndAPI runs the worker (unless wf is nil) and the HTTP API until ctx ends, then
// stops both gracefully.
func runWorkerAndAPI(ctx context.Context, c client.Client, namespace string, f *apiFlags, wf *workerFlags, ready func(apiURL string)) error {
	agentPath := ""
	if wf != nil {
		agentPath = wf.probeAgent
	}
	d, err := newDialer(agentPath)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // on the way out: only idle Docker connections to drop
	if f.metricsOn {
		f.metrics = metrics.New()
	}
	var w sdkworker.Worker
	if wf != nil {
		wc := c
		if f.metrics != nil {
			// One process: the worker's metrics are served on the API's address too.
			if wc, err = metricsClient(c, namespace, f.metrics); err != nil {
				return err
			}
			defer wc.Close()
		}
		if w, err = worker.New(wc, d, wf.options(os.Stderr)); err != nil {
			return err
		}
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		defer w.Stop()
	}
	var check func(context.Context) map[string]error
	if f.checkEngines {
		check = engineCheck(d, f.deploymentsDir)
	}
	h, err := newAPIHandler(c, namespace, f, check)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("API address %s: %w", f.addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	ready("http://" + l.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("API server: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return nil
}

var _ engine.Dialer = (*dockerengine.Dialer)(nil)
