// Command testreport reads `go test -json` on standard input and prints what a plain
// `go test` run prints (one line per package, the output of every test that failed), then
// the tests that were skipped and why. It exits 1 when a test or a package failed (build
// errors included) or no test ran at all, and, with -no-skips, when a test skipped without
// being on the allow-list: CI (.ci/run) runs `make test` that way, so an integration test
// cannot go green by skipping.
//
//	go test -json ./... | go run ./internal/tools/testreport -no-skips -allow .ci/allowed-skips
//
// The allow-list has one test per line, `<package> <test>` (a subtest as Parent/sub),
// then a comment saying why it may skip; # starts a comment line.
//
// Last it prints the slowest top-level tests (-slowest, 10 by default): where a CI run's
// minutes went.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), build events included.
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	ImportPath  string // build-output, build-fail
	FailedBuild string // a package's fail when it did not build
}

type key struct{ pkg, test string }

type skip struct {
	key
	reason  string
	allowed bool
}

type report struct {
	out     io.Writer
	allow   map[key]bool
	output  map[key][]string // output so far of each running test ("" test: the package)
	builds  map[string][]string
	running map[string]bool // packages started and not ended
	skips   []skip
	passed  int
	failed  []key
	pkgFail []string
	slowest int
	timed   []timed // top-level tests that ended, with their time
}

// timed is a top-level test and its run time.
type timed struct {
	key
	secs float64
}

func main() {
	noSkips := flag.Bool("no-skips", false, "fail when a test skips without being on the allow-list")
	allowFile := flag.String("allow", "", "allow-list of tests that may skip (one `<package> <test>` per line)")
	slowest := flag.Int("slowest", 10, "print the `n` slowest top-level tests")
	flag.Parse()
	allow := map[key]bool{}
	if *allowFile != "" {
		var err error
		if allow, err = readAllow(*allowFile); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
	}
	r := &report{out: os.Stdout, allow: allow, output: map[key][]string{}, builds: map[string][]string{}, running: map[string]bool{}, slowest: *slowest}
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	if !r.summary(*noSkips) {
		os.Exit(1)
	}
}

// readAllow reads the allow-list: `<package> <test> [# why]` per line.
func readAllow(path string) (map[key]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	allow := map[key]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		if c := strings.IndexByte(line, '#'); c >= 0 {
			line = line[:c]
		}
		f := strings.Fields(line)
		switch len(f) {
		case 0:
		case 2:
			allow[key{f[0], f[1]}] = true
		default:
			return nil, fmt.Errorf("%s:%d: want `<package> <test>  # why`", path, i+1)
		}
	}
	return allow, nil
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			// Not an event (go test's own messages): pass it on.
			r.printf("%s\n", sc.Text())
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *report) event(e event) {
	k := key{e.Package, e.Test}
	if e.Test == "" {
		switch e.Action {
		case "start":
			r.running[e.Package] = true
		case "pass", "fail", "skip":
			delete(r.running, e.Package)
		}
	}
	if (e.Action == "pass" || e.Action == "fail") && e.Test != "" && !strings.Contains(e.Test, "/") {
		r.timed = append(r.timed, timed{k, e.Elapsed})
	}
	switch e.Action {
	case "build-output":
		r.builds[e.ImportPath] = append(r.builds[e.ImportPath], e.Output)
	case "build-fail":
		r.printf("%s", strings.Join(r.builds[e.ImportPath], ""))
		delete(r.builds, e.ImportPath)
	case "output":
		r.output[k] = append(r.output[k], e.Output)
	case "pass":
		if e.Test == "" {
			r.printf("%s", lastLine(r.output[k], "ok  "))
		} else {
			r.passed++
		}
		delete(r.output, k)
	case "skip":
		if e.Test == "" { // a package without tests
			r.printf("%s", lastLine(r.output[k], "?   "))
		} else {
			r.skips = append(r.skips, skip{key: k, reason: skipReason(r.output[k]), allowed: r.allow[k]})
		}
		delete(r.output, k)
	case "fail":
		if e.Test == "" {
			// Tests that never ended (a panic, a timeout) first, then the package's lines.
			r.flushUnended(e.Package)
			r.printf("%s", strings.Join(r.output[k], ""))
			r.pkgFail = append(r.pkgFail, e.Package)
		} else {
			r.printf("%s", strings.Join(r.output[k], ""))
			r.failed = append(r.failed, k)
		}
		delete(r.output, k)
	}
}

// flushUnended prints the output of pkg's tests that have no result.
func (r *report) flushUnended(pkg string) {
	var open []key
	for k := range r.output {
		if k.pkg == pkg && k.test != "" {
			open = append(open, k)
		}
	}
	slices.SortFunc(open, func(a, b key) int { return strings.Compare(a.test, b.test) })
	for _, k := range open {
		r.printf("%s", strings.Join(r.output[k], ""))
		delete(r.output, k)
	}
}

// summary prints the counts and the skips; false when the run must fail.
func (r *report) summary(noSkips bool) bool {
	for pkg := range r.running { // the stream ended before the package did (go test killed?)
		r.flushUnended(pkg)
		r.printf("%sFAIL\t%s: no result (the run ended before the package)\n", strings.Join(r.output[key{pkg, ""}], ""), pkg)
		r.pkgFail = append(r.pkgFail, pkg)
	}
	ok := len(r.failed) == 0 && len(r.pkgFail) == 0
	if r.passed+len(r.failed) == 0 && len(r.pkgFail) == 0 {
		r.printf("testreport: no test ran\n")
		ok = false
	}
	var refused int
	if len(r.skips) > 0 {
		r.printf("\nskipped:\n")
		slices.SortFunc(r.skips, func(a, b skip) int {
			return strings.Compare(a.pkg+" "+a.test, b.pkg+" "+b.test)
		})
		for _, s := range r.skips {
			mark := ""
			switch {
			case s.allowed:
				mark = " (allowed: .ci/allowed-skips)"
			case noSkips:
				mark = " (NOT ALLOWED)"
				refused++
			}
			r.printf("  %s %s: %s%s\n", s.pkg, s.test, s.reason, mark)
		}
	}
	r.printf("\n%d passed, %d failed, %d skipped", r.passed, len(r.failed), len(r.skips))
	if len(r.pkgFail) > 0 {
		r.printf("; packages failed: %s", strings.Join(r.pkgFail, " "))
	}
	r.printf("\n")
	r.printSlowest()
	if refused > 0 {
		r.printf("testreport: %d test(s) skipped that may not skip here: make them run, or add them to .ci/allowed-skips with the reason\n", refused)
		ok = false
	}
	return ok
}

// printSlowest prints the r.slowest slowest top-level tests, slowest first.
func (r *report) printSlowest() {
	if r.slowest <= 0 || len(r.timed) == 0 {
		return
	}
	slices.SortStableFunc(r.timed, func(a, b timed) int { return cmp.Compare(b.secs, a.secs) })
	r.printf("slowest tests:\n")
	for _, t := range r.timed[:min(r.slowest, len(r.timed))] {
		r.printf("  %7.1fs %s %s\n", t.secs, t.pkg, t.test)
	}
}

// skipReason is the message of a t.Skip: the indented log lines before "--- SKIP".
func skipReason(lines []string) string {
	var msg []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		msg = append(msg, t)
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msg, " / ")
}

// lastLine returns the package's summary line (go test's "ok  pkg 1.2s").
func lastLine(lines []string, prefix string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], prefix) {
			return lines[i]
		}
	}
	return ""
}

func (r *report) printf(format string, args ...any) {
	// A report that cannot be written has nowhere else to go; the exit code still tells.
	_, _ = fmt.Fprintf(r.out, format, args...)
}
