package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestTemporalHandlerNamesAndLabels checks the SDK adapter's mapping: counters get _total,
// timers become _seconds histograms, tags become labels; a later use of a name with other
// tags keeps the first label set (missing ones empty, extra ones dropped) instead of
// breaking the scrape.
func TestTemporalHandlerNamesAndLabels(t *testing.T) {
	r := New()
	h := r.TemporalHandler().WithTags(map[string]string{"namespace": "default"})
	h.WithTags(map[string]string{"workflow_type": "Release"}).Counter("temporal_workflow_completed").Inc(2)
	h.WithTags(map[string]string{"workflow_type": "Release", "extra-tag": "x"}).Counter("temporal_workflow_completed").Inc(1)
	h.Counter("temporal_workflow_completed").Inc(1)  // no workflow_type: ""
	h.Counter("temporal_workflow_completed").Inc(-5) // ignored: counters only go up
	h.WithTags(map[string]string{"activity_type": "Verify"}).Timer("temporal_activity_execution_latency").Record(1500 * time.Millisecond)
	h.Gauge("temporal_worker_task_slots_available").Update(7)
	r.ObserveRequest("", "BREW", 404, time.Millisecond)

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`temporal_workflow_completed_total{namespace="default",workflow_type="Release"} 3`,
		`temporal_workflow_completed_total{namespace="default",workflow_type=""} 1`,
		`temporal_activity_execution_latency_seconds_sum{activity_type="Verify",namespace="default"} 1.5`,
		`temporal_activity_execution_latency_seconds_count{activity_type="Verify",namespace="default"} 1`,
		`temporal_worker_task_slots_available{namespace="default"} 7`,
		`slipway_api_requests_total{method="other",route="unmatched",status="404"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(text, "extra_tag") {
		t.Error("a tag outside the first label set reached the scrape")
	}
}
