package testenv

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// LoadAverage is the machine's 1-minute load average (/proc/loadavg), which benchmarks
// report beside their figures (BENCHMARKS.md says what else ran); 0 where it cannot be read.
func LoadAverage(tb testing.TB) float64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		tb.Logf("load average: %v", err)
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	l, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		tb.Logf("load average %q: %v", f[0], err)
		return 0
	}
	return l
}
