package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	sdklog "go.temporal.io/sdk/log"
)

// temporalFlags select the Temporal cluster for `slipway worker` and `slipway api`. Without
// flags the SDK's environment configuration applies: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the TOML config file
// (TEMPORAL_CONFIG_FILE); flags override them.
type temporalFlags struct {
	address   string
	namespace string
}

func (f *temporalFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.address, "temporal-address", "", "Temporal frontend host:port (default: $TEMPORAL_ADDRESS, else 127.0.0.1:7233)")
	cmd.Flags().StringVar(&f.namespace, "temporal-namespace", "", "Temporal namespace (default: $TEMPORAL_NAMESPACE, else default)")
}

// dial connects and returns the client with its namespace.
func (f *temporalFlags) dial(ctx context.Context) (client.Client, string, error) {
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{})
	if err != nil {
		return nil, "", fmt.Errorf("temporal client configuration: %w", err)
	}
	if f.address != "" {
		opts.HostPort = f.address
	}
	if f.namespace != "" {
		opts.Namespace = f.namespace
	}
	if opts.HostPort == "" {
		opts.HostPort = client.DefaultHostPort
	}
	if opts.Namespace == "" {
		opts.Namespace = client.DefaultNamespace
	}
	opts.Logger = sdkLogger()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		return nil, "", fmt.Errorf("connect to Temporal at %s (namespace %s): %w", opts.HostPort, opts.Namespace, err)
	}
	return c, opts.Namespace, nil
}

// sdkLogger keeps the SDK's own log to warnings and errors on standard error.
func sdkLogger() sdklog.Logger {
	return sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}
