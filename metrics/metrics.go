// Package metrics is Slipway's Prometheus instrumentation (client_golang): one registry per
// process holding the API's request metrics, the Temporal SDK's metrics (through Handler, an
// adapter of the SDK's client.MetricsHandler) and the release metrics the Release workflow
// emits through workflow.GetMetricsHandler (so through the same adapter, and never during
// replay). docs/observability.md lists every series.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is one process's metrics: serve Handler at /metrics.
type Registry struct {
	reg         *prometheus.Registry
	apiRequests *prometheus.CounterVec
	apiDuration *prometheus.HistogramVec
	sdk         *sdkState
}

// New returns a registry with the Go runtime and process collectors, the API request
// metrics and an empty Temporal SDK adapter.
func New() *Registry {
	reg := prometheus.NewRegistry()
	r := &Registry{
		reg: reg,
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_api_requests_total",
			Help: "HTTP API requests by route (the router's pattern, not the path), method and status code.",
		}, []string{"route", "method", "status"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slipway_api_request_duration_seconds",
			Help:    "HTTP API request durations by route and method (event streams and ?wait requests last as long as they wait).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.apiRequests, r.apiDuration,
	)
	r.sdk = newSDKState(reg)
	return r
}

// Handler serves the registry in the Prometheus text (or OpenMetrics) format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Gatherer is the registry, for tests and for other exporters.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// ObserveRequest records one API request. route is the router's pattern ("" for a request
// no route matched: "unmatched", so scanners cannot grow the label set).
func (r *Registry) ObserveRequest(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	r.apiRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	r.apiDuration.WithLabelValues(route, method).Observe(d.Seconds())
}
