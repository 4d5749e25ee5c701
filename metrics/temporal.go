package metrics

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// TemporalHandler returns the SDK metrics handler writing into this registry: pass it as
// client.Options.MetricsHandler (or to client.NewClientFromExisting) of the client a worker
// runs on. The SDK's names become Prometheus names: counters get _total, timers become
// histograms in seconds with _seconds; tags become labels.
func (r *Registry) TemporalHandler() client.MetricsHandler {
	return &sdkHandler{s: r.sdk}
}

// Release and phase durations (slipway_*) last seconds to hours; the SDK's own timers
// (temporal_*) milliseconds to a long poll's minute.
var (
	slipwayBuckets = []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}
	sdkBuckets     = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
)

// sdkState holds the metric families the SDK (and the workflows) asked for, by Prometheus
// name. A family's label names are those of its first use: a later use with other tags
// gets "" for the missing ones and loses the extra ones (Prometheus wants one label set per
// name; the SDK keeps its tags consistent per metric, and so do Slipway's workflows).
type sdkState struct {
	reg  prometheus.Registerer
	mu   sync.Mutex
	fams map[string]*family
}

type family struct {
	keys      []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
}

func newSDKState(reg prometheus.Registerer) *sdkState {
	return &sdkState{reg: reg, fams: map[string]*family{}}
}

type kind int

const (
	kindCounter kind = iota
	kindGauge
	kindTimer
)

// family returns the family of name (already a Prometheus name), creating it with the
// tag keys; nil when the name is taken by another kind or cannot be registered.
func (s *sdkState) family(name string, k kind, tags map[string]string) *family {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.fams[name]; ok {
		if (k == kindCounter && f.counter == nil) || (k == kindGauge && f.gauge == nil) || (k == kindTimer && f.histogram == nil) {
			return nil
		}
		return f
	}
	keys := make([]string, 0, len(tags))
	for key := range tags {
		keys = append(keys, labelName(key))
	}
	sort.Strings(keys)
	keys = dedup(keys)
	help := "Temporal SDK metric " + name + "."
	if strings.HasPrefix(name, "slipway_") {
		help = "Slipway release metric " + name + " (emitted by the Release workflow, never during replay; docs/observability.md)."
	}
	f := &family{keys: keys}
	var c prometheus.Collector
	switch k {
	case kindCounter:
		f.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, keys)
		c = f.counter
	case kindGauge:
		f.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, keys)
		c = f.gauge
	default:
		b := sdkBuckets
		if strings.HasPrefix(name, "slipway_") {
			b = slipwayBuckets
		}
		f.histogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: b}, keys)
		c = f.histogram
	}
	if err := s.reg.Register(c); err != nil {
		s.fams[name] = &family{} // taken (another collector has the name): dropped from now on
		return nil
	}
	s.fams[name] = f
	return f
}

// labels maps tags onto the family's label names.
func (f *family) labels(tags map[string]string) prometheus.Labels {
	l := make(prometheus.Labels, len(f.keys))
	for _, k := range f.keys {
		l[k] = ""
	}
	for k, v := range tags {
		if n := labelName(k); hasKey(f.keys, n) {
			l[n] = v
		}
	}
	return l
}

type sdkHandler struct {
	s    *sdkState
	tags map[string]string
}

func (h *sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	return &sdkHandler{s: h.s, tags: merged}
}

func (h *sdkHandler) Counter(name string) client.MetricsCounter {
	f := h.s.family(withSuffix(metricName(name), "_total"), kindCounter, h.tags)
	if f == nil {
		return client.MetricsNopHandler.Counter(name)
	}
	c, err := f.counter.GetMetricWith(f.labels(h.tags))
	if err != nil {
		return client.MetricsNopHandler.Counter(name)
	}
	return counterFunc(func(d int64) {
		if d > 0 {
			c.Add(float64(d))
		}
	})
}

func (h *sdkHandler) Gauge(name string) client.MetricsGauge {
	f := h.s.family(metricName(name), kindGauge, h.tags)
	if f == nil {
		return client.MetricsNopHandler.Gauge(name)
	}
	g, err := f.gauge.GetMetricWith(f.labels(h.tags))
	if err != nil {
		return client.MetricsNopHandler.Gauge(name)
	}
	return gaugeFunc(g.Set)
}

func (h *sdkHandler) Timer(name string) client.MetricsTimer {
	n := strings.TrimSuffix(metricName(name), "_seconds")
	f := h.s.family(n+"_seconds", kindTimer, h.tags)
	if f == nil {
		return client.MetricsNopHandler.Timer(name)
	}
	o, err := f.histogram.GetMetricWith(f.labels(h.tags))
	if err != nil {
		return client.MetricsNopHandler.Timer(name)
	}
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

func withSuffix(name, suffix string) string {
	if strings.HasSuffix(name, suffix) {
		return name
	}
	return name + suffix
}

// metricName makes name a valid Prometheus metric name.
func metricName(name string) string {
	return sanitize(name, true)
}

// labelName makes name a valid Prometheus label name.
func labelName(name string) string {
	n := sanitize(name, false)
	if strings.HasPrefix(n, "__") {
		n = "x" + n
	}
	return n
}

func sanitize(name string, colon bool) string {
	var b strings.Builder
	for i, r := range name {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9') || (colon && r == ':')
		if ok {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

func dedup(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func hasKey(keys []string, k string) bool {
	i := sort.SearchStrings(keys, k)
	return i < len(keys) && keys[i] == k
}
