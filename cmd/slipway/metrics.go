package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/metrics"
)

// metricsPath is where Prometheus scrapes: the API's address (`dev`, `api`) and
// --metrics-addr of `slipway worker`.
const metricsPath = "/metrics"

// observe is the API's request hook: nil when metrics are off.
func (f *apiFlags) observe() func(route, method string, status int, d time.Duration) {
	if f.metrics == nil {
		return nil
	}
	return f.metrics.ObserveRequest
}

// withMetrics serves GET /metrics (no token: see docs/security.md) beside the API, when
// metrics are on.
func (f *apiFlags) withMetrics(api http.Handler) http.Handler {
	if f.metrics == nil {
		return api
	}
	return metricsMux(f.metrics, api)
}

func metricsMux(reg *metrics.Registry, next http.Handler) http.Handler {
	mh := reg.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == metricsPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			mh.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// metricsClient is c with the registry's Temporal SDK metrics handler: the worker runs on
// it, so the SDK's worker metrics and the Release workflow's metrics land in reg. It shares
// c's connection; close it before c.
func metricsClient(c client.Client, namespace string, reg *metrics.Registry) (client.Client, error) {
	wc, err := client.NewClientFromExisting(c, client.Options{Namespace: namespace, MetricsHandler: reg.TemporalHandler(), Logger: sdkLogger()})
	if err != nil {
		return nil, fmt.Errorf("temporal client with metrics: %w", err)
	}
	return wc, nil
}

// serveMetrics serves reg at addr/metrics until ctx ends (slipway worker --metrics-addr).
func serveMetrics(ctx context.Context, addr string, reg *metrics.Registry, warn io.Writer) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics address %s: %w", addr, err)
	}
	hs := &http.Server{Handler: metricsMux(reg, http.NotFoundHandler()), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(warn, "metrics server: %v\n", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx) // on the way out: a scrape in flight is all it can cut
	}()
	return "http://" + l.Addr().String() + metricsPath, nil
}
