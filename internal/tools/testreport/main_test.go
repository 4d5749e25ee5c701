package main

import (
	"strings"
	"testing"
)

// run feeds lines of `go test -json` to a report and returns its verdict and what it printed.
func run(t *testing.T, noSkips bool, allow map[key]bool, lines ...string) (bool, string) {
	t.Helper()
	var out strings.Builder
	r := &report{out: &out, allow: allow, output: map[key][]string{}, builds: map[string][]string{}, running: map[string]bool{}, slowest: 2}
	if err := r.read(strings.NewReader(strings.Join(lines, "\n"))); err != nil {
		t.Fatal(err)
	}
	ok := r.summary(noSkips)
	return ok, out.String()
}

const (
	start   = `{"Action":"start","Package":"p"}`
	runA    = `{"Action":"run","Package":"p","Test":"TestA"}`
	passA   = `{"Action":"pass","Package":"p","Test":"TestA"}`
	okLine  = `{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}`
	passPkg = `{"Action":"pass","Package":"p"}`
	skipB   = `{"Action":"output","Package":"p","Test":"TestB","Output":"    x_test.go:9: no engine here\n"}
{"Action":"skip","Package":"p","Test":"TestB"}`
)

func TestPassesAndPrintsThePackageLine(t *testing.T) {
	ok, out := run(t, true, nil, start, runA, passA, okLine, passPkg)
	if !ok || !strings.Contains(out, "ok  \tp\t0.1s") || !strings.Contains(out, "1 passed, 0 failed, 0 skipped") {
		t.Fatalf("ok=%v\n%s", ok, out)
	}
}

func TestASkipFailsOnlyWithNoSkipsAndNotAllowed(t *testing.T) {
	for _, c := range []struct {
		noSkips bool
		allow   map[key]bool
		want    bool
	}{
		{false, nil, true},
		{true, nil, false},
		{true, map[key]bool{{"p", "TestB"}: true}, true},
	} {
		ok, out := run(t, c.noSkips, c.allow, start, runA, passA, skipB, okLine, passPkg)
		if ok != c.want || !strings.Contains(out, "p TestB: x_test.go:9: no engine here") {
			t.Errorf("noSkips=%v allow=%v: ok=%v, want %v\n%s", c.noSkips, c.allow, ok, c.want, out)
		}
	}
}

func TestAFailedTestPrintsItsOutput(t *testing.T) {
	ok, out := run(t, false, nil, start,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"    x_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}`,
		`{"Action":"fail","Package":"p"}`)
	if ok || !strings.Contains(out, "x_test.go:3: boom") || !strings.Contains(out, "FAIL\tp") {
		t.Fatalf("ok=%v\n%s", ok, out)
	}
}

func TestAStreamCutShortFails(t *testing.T) {
	ok, out := run(t, false, nil, start, runA,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"    still running\n"}`)
	if ok || !strings.Contains(out, "still running") || !strings.Contains(out, "no result") {
		t.Fatalf("ok=%v\n%s", ok, out)
	}
}

func TestNothingRanFails(t *testing.T) {
	if ok, _ := run(t, false, nil); ok {
		t.Fatal("an empty run passed")
	}
}

func TestPrintsTheSlowestTopLevelTests(t *testing.T) {
	_, out := run(t, false, nil, start,
		`{"Action":"pass","Package":"p","Test":"TestA","Elapsed":1.5}`,
		`{"Action":"pass","Package":"p","Test":"TestB/sub","Elapsed":99}`,
		`{"Action":"pass","Package":"p","Test":"TestB","Elapsed":120}`,
		`{"Action":"fail","Package":"p","Test":"TestC","Elapsed":7}`,
		okLine, passPkg)
	want := "slowest tests:\n    120.0s p TestB\n      7.0s p TestC\n"
	if !strings.Contains(out, want) || strings.Contains(out, "TestB/sub") {
		t.Fatalf("want\n%s\nin\n%s", want, out)
	}
}
