package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunProbesEveryStreamEveryRound(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/bad" {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(`{"version":"1.2.3"}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	closed := closedPort(t)
	j := Job{
		Targets:  []string{addr, closed, ""},
		Requests: []Request{{Path: "/", KeepBody: 64}, {Path: "/bad"}},
		Streams:  []Stream{{0, 0}, {0, 1}, {1, 0}, {2, 0}},
		Interval: 10 * time.Millisecond, Rounds: 5, Repeat: 2,
	}
	var got []Result
	if err := Run(context.Background(), j, func(r Result) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4*5*2 {
		t.Fatalf("%d results, want 40", len(got))
	}
	for _, r := range got {
		switch r.S {
		case 0:
			if r.Status != 200 || r.Body != `{"version":"1.2.3"}` || r.Latency <= 0 {
				t.Errorf("stream 0: %+v", r)
			}
		case 1:
			if r.Status != 500 || r.Body != "" {
				t.Errorf("stream 1: %+v (no body kept unless asked)", r)
			}
		case 2:
			if r.Err != ErrRefused || r.Lost() {
				t.Errorf("closed port: %+v, want refused, not lost", r)
			}
		case 3:
			if r.Err != ErrNoAddress || !r.Lost() {
				t.Errorf("no address: %+v, want lost", r)
			}
		}
	}
	if hits["/"] != 10 || hits["/bad"] != 10 {
		t.Errorf("hits %v, want 10 each (5 rounds × 2 repeats)", hits)
	}
}

func TestRunTimesOutAndStopsOnCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	addr := strings.TrimPrefix(srv.URL, "http://")
	var got []Result
	err := Run(context.Background(), Job{Targets: []string{addr}, Requests: []Request{{Path: "/", Timeout: 50 * time.Millisecond}},
		Streams: []Stream{{}}, Interval: 10 * time.Millisecond, Rounds: 1}, func(r Result) { got = append(got, r) })
	if err != nil || len(got) != 1 || got[0].Err != ErrTimeout {
		t.Fatalf("err %v, results %+v: want one timeout", err, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = Run(ctx, Job{Targets: []string{addr}, Requests: []Request{{Path: "/"}}, Streams: []Stream{{}}, Interval: 10 * time.Millisecond, Duration: time.Hour}, func(Result) {})
	if err != context.DeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s, want the context's end promptly", err, time.Since(start))
	}
}

func TestRunDialsOnlyItsTargets(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer other.Close()
	redirect := httptest.NewServer(http.RedirectHandler(other.URL+"/", http.StatusFound))
	defer redirect.Close()
	var got []Result
	err := Run(context.Background(), Job{Targets: []string{strings.TrimPrefix(redirect.URL, "http://")}, Requests: []Request{{Path: "/"}},
		Streams: []Stream{{}}, Interval: 10 * time.Millisecond, Rounds: 1}, func(r Result) { got = append(got, r) })
	if err != nil || len(got) != 1 || got[0].Status != http.StatusFound {
		t.Fatalf("err %v, %+v: a redirect is an answer, never followed", err, got)
	}
}

func TestJobValidateAndEncode(t *testing.T) {
	for _, j := range []Job{
		{Streams: []Stream{{}}, Targets: []string{"a:1"}, Requests: []Request{{Path: "/"}}, Rounds: 1},
		{Interval: time.Second, Targets: []string{"a:1"}, Requests: []Request{{Path: "/"}}, Streams: []Stream{{}}},
		{Interval: time.Second, Rounds: 1},
		{Interval: time.Second, Rounds: 1, Targets: []string{"a:1"}, Requests: []Request{{Path: "/"}}, Streams: []Stream{{Target: 1}}},
	} {
		if j.Validate() == nil {
			t.Errorf("%+v validated", j)
		}
	}
	j := Job{Interval: time.Second, Rounds: 1, Targets: []string{"a:1"}, Requests: []Request{{Path: "/x y", Headers: map[string]string{"A": "b"}}}, Streams: []Stream{{}}}
	arg, err := EncodeJob(j)
	if err != nil || strings.ContainsAny(arg, " \\\"'") {
		t.Fatalf("%q %v", arg, err)
	}
	back, err := DecodeJob(arg)
	if err != nil || back.Requests[0].Path != "/x y" || back.Requests[0].Headers["A"] != "b" {
		t.Fatalf("%+v %v", back, err)
	}
	if _, err := DecodeJob("!!"); err == nil {
		t.Error("garbage decoded")
	}
}

func TestMainExitCodes(t *testing.T) {
	var out, errb strings.Builder
	if code := Main([]string{"nonsense"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage") {
		t.Errorf("code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := Main([]string{"run", "e30"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "interval") {
		t.Errorf("an empty job: code %d, stderr %q", code, errb.String())
	}
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
