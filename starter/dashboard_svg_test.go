package starter

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/judgment"
	"github.com/slipwayhq/slipway/workflows"
)

// svgDoc is what TestEvidenceChartScales reads back of a chart.
type svgDoc struct {
	Title string `xml:"title"`
	Desc  string `xml:"desc"`
	Rects []struct {
		Series string  `xml:"data-series,attr"`
		Y      float64 `xml:"y,attr"`
		Height float64 `xml:"height,attr"`
	} `xml:"rect"`
	Texts []struct {
		Y    float64 `xml:"y,attr"`
		Bold string  `xml:"font-weight,attr"`
		Text string  `xml:",chardata"`
	} `xml:"text"`
}

// TestEvidenceChartScales: stable at ~1 ms beside a canary at ~300 ms still draws visible
// latency bars (log scale, said in the legend); a full-height bar's value stays inside the
// plot area, below the panel titles; the chart keeps its title and description.
// $SLIPWAY_CHART_SVG names a file to write the chart to, to look at it.
func TestEvidenceChartScales(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	v := workflows.Verdict{Result: workflows.VerdictFailed, Service: "api", Cluster: "c1", Stage: "canary", At: time.Unix(1, 0),
		Evidence: workflows.Evidence{Baseline: true, ErrorRate: 0.5, BaselineErrors: 0,
			Statistics: &judgment.Result{Baseline: true,
				Canary: judgment.SideStats{N: 10, P50: ms(301), P95: ms(305.2), P99: ms(310)},
				Stable: judgment.SideStats{N: 10, P50: ms(0.8), P95: ms(1.1), P99: ms(1.4)}}}}
	out := string(evidenceChart(v))
	if f := os.Getenv("SLIPWAY_CHART_SVG"); f != "" {
		if err := os.WriteFile(filepath.Clean(f), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("the chart is not well-formed XML: %v\n%s", err, out)
	}
	if !strings.Contains(doc.Title, "stable 0.8 ms / 1.1 ms / 1.4 ms") || !strings.Contains(doc.Desc, "logarithmic") {
		t.Errorf("title %q, desc %q", doc.Title, doc.Desc)
	}
	if !strings.Contains(out, "latency: log scale") {
		t.Error("the legend does not say the latency scale")
	}
	heights := map[string]float64{}
	lowestTop := 1e9 // the highest point of any bar (smallest y)
	for _, r := range doc.Rects {
		if r.Series != "" {
			heights[r.Series] = r.Height
			lowestTop = min(lowestTop, r.Y)
		}
	}
	for _, s := range []string{"stable-p50", "stable-p95", "stable-p99"} {
		if heights[s] < 20 {
			t.Errorf("%s bar %.1f px tall: barely visible", s, heights[s])
		}
	}
	if heights["canary-p95"] <= heights["stable-p95"] || heights["canary-errors"] <= heights["stable-errors"] {
		t.Errorf("bars %v: the canary's are not the taller", heights)
	}
	titleBottom := 0.0
	for _, tx := range doc.Texts {
		if tx.Bold == "bold" {
			titleBottom = max(titleBottom, tx.Y)
		}
	}
	for _, tx := range doc.Texts {
		if tx.Bold == "" && tx.Y < lowestTop && tx.Y > 25 { // a value over a bar (not the legend)
			if tx.Y-11 < titleBottom+2 {
				t.Errorf("value %q at y=%s overlaps the panel titles (down to y=%.0f)", tx.Text, strconv.FormatFloat(tx.Y, 'f', 1, 64), titleBottom)
			}
		}
	}
}
