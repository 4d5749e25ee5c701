package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// Memory growth (DEMO_LEAK_PER_SECOND): the heap grows steadily and every new page is
// written, so the resident set (what a container memory limit counts) really grows, up to a
// cap (leakCap). With a container memory limit below the cap the kernel OOM-kills the
// process; without one the growth stops at the cap and the service keeps serving.

const (
	// defaultLeakCap caps the growth when no container memory limit is found, so a test
	// machine never suffers.
	defaultLeakCap = 512 << 20
	// leakOverLimit is how far above what the cgroup allows the growth may go when a memory
	// limit is found: the process is sure to hit the limit first.
	leakOverLimit = 64 << 20
	// unlimited: cgroup v1 writes "no limit" as a number near 2^63.
	unlimited = 1 << 60
	leakTick  = 100 * time.Millisecond
	pageSize  = 4096
)

// cgroupMemoryLimit reads the memory limit of the process's cgroup as a container sees it
// (cgroup v2 memory.max, else cgroup v1 memory.limit_in_bytes); ok is false when there is
// none or it cannot be read.
func cgroupMemoryLimit(readFile func(string) ([]byte, error)) (limit int64, ok bool) {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := readFile(path)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= unlimited {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// leakCap is where the growth stops: DEMO_LEAK_MAX when set; else, under a memory limit L,
// 2L + 64 MiB (past L, and past L of swap too, Docker's default --memory-swap of 2L: the
// OOM killer acts first); else 512 MiB. why says which rule applied, for the log.
func leakCap(cfg config, readFile func(string) ([]byte, error)) (limit int64, why string) {
	if cfg.LeakMax > 0 {
		return cfg.LeakMax, "DEMO_LEAK_MAX"
	}
	if l, ok := cgroupMemoryLimit(readFile); ok {
		return 2*l + leakOverLimit, "memory limit " + sizeString(l) + ": twice the limit (swap) + 64Mi"
	}
	return defaultLeakCap, "no memory limit found: default cap"
}

// leaker holds the leaked memory.
type leaker struct {
	perSecond int64
	max       int64
	held      [][]byte
	total     int64
}

// grow brings the leak to perSecond*elapsed bytes, at most max, writing one byte per page of
// the new memory so it is resident. It returns the bytes held.
func (l *leaker) grow(elapsed time.Duration) int64 {
	var target int64
	switch f := float64(l.perSecond) * elapsed.Seconds(); {
	case f >= float64(l.max):
		target = l.max
	case f > 0:
		target = int64(f)
	}
	if target <= l.total {
		return l.total
	}
	b := make([]byte, target-l.total)
	for i := 0; i < len(b); i += pageSize {
		b[i] = 1
	}
	l.held = append(l.held, b)
	l.total = target
	return l.total
}

// leak grows the heap every leakTick until the cap, then holds it until stop closes.
func leak(cfg config, logf func(string, ...any), stop <-chan struct{}) {
	limit, why := leakCap(cfg, os.ReadFile)
	logf("DEMO_LEAK_PER_SECOND=%s: growing the heap up to %s (%s)", sizeString(cfg.LeakPerSecond), sizeString(limit), why)
	l := &leaker{perSecond: cfg.LeakPerSecond, max: limit}
	start := time.Now()
	tick := time.NewTicker(leakTick)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if l.grow(time.Since(start)) >= l.max {
			logf("DEMO_LEAK_PER_SECOND: holding %s, the cap; not growing further", sizeString(l.total))
			<-stop
			return
		}
	}
}
