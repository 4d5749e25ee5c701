package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthcheck is `slipway healthcheck TARGET...`: the probe for HEALTHCHECK instructions and
// Compose health checks in FROM scratch images, which have no curl or nc. Every target must
// answer within the timeout, else the exit code is 1 and standard error says which one did not.
func newHealthcheckCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck TARGET...",
		Short: "Probe HTTP URLs, TCP ports or Unix sockets (for container health checks)",
		Long: `Probes each target and exits 0 when every one answers, 1 otherwise:
  http://host:port/path, https://...   a GET that ends (after redirects) in a 2xx status
  tcp://host:port                      a TCP connection opens
  unix:///path/to/socket               a connection to the Unix socket opens
Meant for HEALTHCHECK in images without curl, e.g.
  slipway healthcheck http://127.0.0.1:8080/readyz
  slipway healthcheck tcp://127.0.0.1:7233 unix:///var/run/docker.sock`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var failed []string
			for _, target := range args {
				if err := probe(cmd.Context(), target, timeout); err != nil {
					failed = append(failed, err.Error())
				}
			}
			if len(failed) > 0 {
				return &exitError{code: 1, err: errors.New("unhealthy: " + strings.Join(failed, "; "))}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "time each target has to answer")
	return cmd
}

// probe checks one target; the error names the target.
func probe(ctx context.Context, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("%s: not a URL: %w", target, err)
	}
	var d net.Dialer
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		// Probes go straight to the target: a proxy from the environment has no business here.
		hc := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("%s: HTTP %s", target, resp.Status)
		}
		return nil
	case "tcp":
		if u.Host == "" || u.Port() == "" {
			return fmt.Errorf("%s: want tcp://host:port", target)
		}
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		return c.Close()
	case "unix":
		path := u.Path
		if u.Host != "" { // unix://relative/path
			path = u.Host + u.Path
		}
		if path == "" {
			return fmt.Errorf("%s: want unix:///path/to/socket", target)
		}
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		return c.Close()
	}
	return fmt.Errorf("%s: unknown scheme %q (want http, https, tcp or unix)", target, u.Scheme)
}
