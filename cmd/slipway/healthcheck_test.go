package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
		case "/moved":
			http.Redirect(w, r, "/healthz", http.StatusFound)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(ok.Close)

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tcp.Close() })
	sock := filepath.Join(t.TempDir(), "s.sock")
	ux, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ux.Close() })

	// A port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()

	for _, tc := range []struct {
		target string
		want   string // "" = healthy, else a substring of the error
	}{
		{ok.URL + "/healthz", ""},
		{ok.URL + "/moved", ""},
		{ok.URL + "/readyz", "503"},
		{"http://" + closed + "/healthz", "refused"},
		{"tcp://" + tcp.Addr().String(), ""},
		{"tcp://" + closed, "refused"},
		{"tcp://127.0.0.1", "want tcp://host:port"},
		{"unix://" + sock, ""},
		{"unix://" + sock + ".missing", "no such file"},
		{"unix://", "want unix:///path"},
		{"ftp://example", "unknown scheme"},
		{"127.0.0.1:80", "not a URL"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			err := probe(context.Background(), tc.target, 2*time.Second)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("probe(%s) = %v, want healthy", tc.target, err)
			case tc.want != "" && err == nil:
				t.Fatalf("probe(%s) healthy, want error containing %q", tc.target, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("probe(%s) = %v, want error containing %q", tc.target, err, tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.target):
				t.Fatalf("error %q does not name the target %s", err, tc.target)
			}
		})
	}
}

func TestHealthcheckCommandExitCode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := "tcp://" + l.Addr().String()
	t.Cleanup(func() { _ = l.Close() })
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "tcp://" + down.Addr().String()
	_ = down.Close()

	root := newRootCmd()
	root.SetArgs([]string{"healthcheck", "--timeout", "2s", up})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("healthy target: %v", err)
	}
	root = newRootCmd()
	root.SetArgs([]string{"healthcheck", "--timeout", "2s", up, gone})
	err = root.ExecuteContext(context.Background())
	ee, ok := err.(*exitError)
	if !ok || ee.code != 1 {
		t.Fatalf("one target down: err = %v, want exit code 1", err)
	}
	if !strings.Contains(err.Error(), gone) || strings.Contains(err.Error(), up+":") {
		t.Fatalf("error %q should name only the failing target %s", err, gone)
	}
}
