package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/testenv"
)

// buildBinary builds slipway once per test process into a temporary directory.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "slipway")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("build slipway: %v", err)
	}
	return bin
}

var apiLine = regexp.MustCompile(`API\s+(http://\S+)`)

// startDev starts `slipway dev` (ephemeral, free ports) and returns once it is ready: for
// --temporal-only when it says Temporal is up, otherwise when /readyz answers 200. It returns
// the time that took and the process.
func startDev(tb testing.TB, bin string, temporalOnly bool) (time.Duration, *exec.Cmd) {
	tb.Helper()
	args := []string{"dev", "--ephemeral", "--data-dir", tb.TempDir(), "--temporal-port", "0", "--ui-port", "0",
		"--api-addr", "127.0.0.1:0", "--deployments", "../../deployments"}
	if temporalOnly {
		args = append(args, "--temporal-only")
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	began := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	var apiURL string
	for lines.Scan() {
		line := lines.Text()
		if temporalOnly && strings.HasPrefix(line, "Temporal is up") {
			go drain(lines)
			return time.Since(began), cmd
		}
		if m := apiLine.FindStringSubmatch(line); m != nil {
			apiURL = m[1]
			break
		}
	}
	if apiURL == "" {
		tb.Fatalf("slipway dev printed no API URL")
	}
	go drain(lines)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get(apiURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(began), cmd
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("/readyz never answered 200")
	return 0, nil
}

func drain(s *bufio.Scanner) {
	for s.Scan() {
	}
}

// rssMiB reads the resident set size of a process from /proc.
func rssMiB(tb testing.TB, pid int) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// BenchmarkDevStartup measures `slipway dev` from process start to /readyz 200 and its
// resident memory after 5 s idle, against a baseline measured in the same run: the same
// binary running only the embedded Temporal server and Web UI (--temporal-only). Each
// iteration starts each side SLIPWAY_BENCH_STARTUP_RUNS times (default 5), alternating which
// goes first (baseline then subject, subject then baseline, ...), one process at a time.
// Reports the medians, the ranges (min, max) and the ratios of the medians. Goals
// (BENCHMARKS.md, Start-up): under 3 s and under 250 MiB.
func BenchmarkDevStartup(b *testing.B) {
	if testing.Short() {
		b.Skip("starts processes")
	}
	runs := 5
	if v := os.Getenv("SLIPWAY_BENCH_STARTUP_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("SLIPWAY_BENCH_STARTUP_RUNS=%q: want a positive number", v)
		}
		runs = n
	}
	bin := buildBinary(b)
	var base, full, baseRSS, fullRSS []float64
	load0 := testenv.LoadAverage(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < runs; r++ {
			order := []bool{true, false} // baseline first
			if r%2 == 1 {
				order = []bool{false, true}
			}
			for _, temporalOnly := range order {
				d, cmd := startDev(b, bin, temporalOnly)
				time.Sleep(5 * time.Second)
				rss := rssMiB(b, cmd.Process.Pid)
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
				if temporalOnly {
					base, baseRSS = append(base, d.Seconds()), append(baseRSS, rss)
				} else {
					full, fullRSS = append(full, d.Seconds()), append(fullRSS, rss)
				}
			}
		}
	}
	b.StopTimer()
	report := func(v []float64, unit string) float64 {
		sort.Float64s(v)
		m := median(v)
		b.ReportMetric(m, unit)
		b.ReportMetric(v[0], unit+"-min")
		b.ReportMetric(v[len(v)-1], unit+"-max")
		return m
	}
	rf, rb := report(full, "ready-s"), report(base, "baseline-s")
	b.ReportMetric(rf/rb, "ready/baseline")
	mf, mb := report(fullRSS, "idle-RSS-MiB"), report(baseRSS, "baseline-RSS-MiB")
	b.ReportMetric(mf/mb, "RSS/baseline")
	b.ReportMetric(float64(len(full)), "runs-each")
	b.ReportMetric((load0+testenv.LoadAverage(b))/2, "load1")
}

// median of a sorted, non-empty slice.
func median(v []float64) float64 {
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
