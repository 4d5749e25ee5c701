package starter

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/workflows"
)

// Chart colours: canary and stable, both with a contrast of at least 4.5:1 on white.
const (
	colourCanary = "#b45309"
	colourStable = "#1d4ed8"
)

// evidenceChart draws a verdict's evidence as inline SVG: the error rate of the canary (the
// new replicas) against the stable ones, and their latency distribution (p50, p95, p99).
// Stable figures come from the judgment's statistics when it has them, else from the
// baseline fields of the evidence; a side without figures is left out, and said so.
func evidenceChart(v workflows.Verdict) template.HTML {
	ev := v.Evidence
	canErr, stErr := ev.ErrorRate, ev.BaselineErrors
	canLat := []time.Duration{ev.P50, ev.P95, ev.P99}
	var stLat []time.Duration
	if ev.BaselineP95 > 0 {
		stLat = []time.Duration{0, ev.BaselineP95, 0}
	}
	// Error rates are the evidence's own (every sample); the latency distribution comes from
	// the judgment's statistics when there are some.
	if st := ev.Statistics; st != nil {
		if st.Canary.N > 0 {
			canLat = []time.Duration{st.Canary.P50, st.Canary.P95, st.Canary.P99}
		}
		if st.Baseline && st.Stable.N > 0 {
			stLat = []time.Duration{st.Stable.P50, st.Stable.P95, st.Stable.P99}
		}
	}
	hasStable := ev.Baseline || stLat != nil
	id := fmt.Sprintf("ev-%s-%s-%d", v.Service, v.Cluster, v.At.UnixNano())
	id = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, id)
	title := fmt.Sprintf("Evidence for %s on %s (%s, %s): error rate canary %.1f%%", v.Service, v.Cluster, v.Stage, v.Result, canErr*100)
	if hasStable {
		title += fmt.Sprintf(" against stable %.1f%%", stErr*100)
	} else {
		title += " (no stable version to compare with)"
	}
	title += fmt.Sprintf("; latency p50/p95/p99 canary %s", durs(canLat))
	if stLat != nil {
		title += ", stable " + durs(stLat)
	}

	const w, h = 560, 236
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="evidence-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-t" aria-describedby="%s-d">`, w, h, w, h, id, id)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title>`, id, html.EscapeString(title))
	fmt.Fprintf(&b, `<desc id="%s-d">%s</desc>`, id, html.EscapeString("Bar chart. Left: error rate of the canary and of stable, on a linear scale from 0. "+
		"Right: latency percentiles of successful answers in milliseconds, on a logarithmic scale (gridlines at each power of ten), so that a latency of a millisecond still shows beside one of hundreds."))
	// Legend.
	fmt.Fprintf(&b, `<rect x="10" y="8" width="12" height="12" fill="%s"/><text x="27" y="19" font-size="12" fill="#111827">canary (new)</text>`, colourCanary)
	if hasStable {
		fmt.Fprintf(&b, `<rect x="120" y="8" width="12" height="12" fill="%s"/><text x="137" y="19" font-size="12" fill="#111827">stable</text>`, colourStable)
	}
	b.WriteString(`<text x="550" y="19" font-size="12" text-anchor="end" fill="#374151">error rate: linear; latency: log scale</text>`)

	// The plot area: bars grow from bottom up to plotTop; plotTop leaves room for the value
	// written over a full-height bar below the panel titles (at titleY).
	const titleY, plotTop, bottom = 48.0, 72.0, 206.0
	bar := func(x, hgt float64, colour, label, name string) {
		fmt.Fprintf(&b, `<rect class="bar" data-series="%s" x="%.1f" y="%.1f" width="30" height="%.1f" fill="%s"/>`, name, x, bottom-hgt, max(hgt, 0.5), colour)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" fill="#111827">%s</text>`, x+15, bottom-max(hgt, 0.5)-4, html.EscapeString(label))
	}

	// Panel 1: error rate, 0 to max(rates, 5%); a non-zero rate is at least 3 px tall.
	maxErr := max(canErr, stErr, 0.05)
	errH := func(v float64) float64 {
		if v <= 0 {
			return 0
		}
		return max(3, (bottom-plotTop)*v/maxErr)
	}
	fmt.Fprintf(&b, `<text x="10" y="%.0f" font-size="12" font-weight="bold" fill="#111827">Error rate</text>`, titleY)
	fmt.Fprintf(&b, `<line x1="10" y1="%.0f" x2="170" y2="%.0f" stroke="#6b7280"/>`, bottom, bottom)
	bar(40, errH(canErr), colourCanary, fmt.Sprintf("%.1f%%", canErr*100), "canary-errors")
	if hasStable {
		bar(100, errH(stErr), colourStable, fmt.Sprintf("%.1f%%", stErr*100), "stable-errors")
	}

	// Panel 2: latency percentiles on a log scale from the power of ten below half the
	// smallest figure to the largest: ~1 ms stable against ~300 ms canary both show.
	var lo, hi float64
	for _, d := range append(append([]time.Duration{}, canLat...), stLat...) {
		if ms := float64(d) / float64(time.Millisecond); ms > 0 {
			hi = max(hi, ms)
			if lo == 0 || ms < lo {
				lo = ms
			}
		}
	}
	if lo > 0 {
		lo = math.Pow(10, math.Floor(math.Log10(lo/2)))
	}
	latH := func(d time.Duration) float64 {
		ms := float64(d) / float64(time.Millisecond)
		if ms <= 0 || lo <= 0 {
			return 0
		}
		return max(3, (bottom-plotTop)*math.Log10(ms/lo)/math.Log10(hi/lo))
	}
	fmt.Fprintf(&b, `<text x="200" y="%.0f" font-size="12" font-weight="bold" fill="#111827">Latency of successful answers (ms, log scale)</text>`, titleY)
	if lo > 0 {
		for g := lo; g <= hi*1.0001; g *= 10 {
			y := bottom - (bottom-plotTop)*math.Log10(g/lo)/math.Log10(hi/lo)
			fmt.Fprintf(&b, `<line x1="214" y1="%.1f" x2="550" y2="%.1f" stroke="#d1d5db" stroke-dasharray="3 3"/>`, y, y)
			fmt.Fprintf(&b, `<text x="211" y="%.1f" font-size="9" text-anchor="end" fill="#374151">%s</text>`, y+3, strconv.FormatFloat(g, 'g', -1, 64))
		}
	}
	fmt.Fprintf(&b, `<line x1="200" y1="%.0f" x2="550" y2="%.0f" stroke="#6b7280"/>`, bottom, bottom)
	for i, name := range []string{"p50", "p95", "p99"} {
		x := 225 + float64(i)*110
		bar(x, latH(canLat[i]), colourCanary, numLabel(canLat[i]), "canary-"+name)
		if stLat != nil && stLat[i] > 0 {
			bar(x+42, latH(stLat[i]), colourStable, numLabel(stLat[i]), "stable-"+name)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="12" text-anchor="middle" fill="#111827">%s</text>`, x+36, bottom+16, name)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built here from numbers; every text in it is escaped
}

// numLabel is a latency over its bar, in ms (the panel's title gives the unit).
func numLabel(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	ms := float64(d) / float64(time.Millisecond)
	if ms >= 100 {
		return fmt.Sprintf("%.0f", ms)
	}
	return fmt.Sprintf("%.1f", ms)
}

func msLabel(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func durs(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = msLabel(d)
	}
	return strings.Join(out, " / ")
}
