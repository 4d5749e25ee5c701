// Command observer is the outside client of the rollback benchmarks (e2e/rollback_bench_test.go,
// BENCHMARKS.md, Rollback): it runs in a container on a service's network and asks the
// service the way a consumer there does, through its DNS name, until it is stopped.
//
// Every round (-interval) it resolves the name with the network's DNS (Docker's embedded
// server: a Slipway service's alias, or a Swarm service's name with --endpoint-mode dnsrr)
// and sends GET -path to every address the answer holds, in parallel, each on a new
// connection: every replica behind the name is asked every round. It prints one line per
// round on standard output, when the round's last answer is in:
//
//	<round start, Unix ns> <addr>=<status>:<version> ...
//	<round start, Unix ns> dns=<error>
//
// status is the HTTP status, or "err" with the error's class in place of the version
// (refused, timeout, io). The clock is the machine's (a container shares the host's
// wall clock), so the benchmark compares these times with its own.
//
// Built static (CGO_ENABLED=0) into a FROM scratch image by the benchmark; no registry.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "web", "the service's DNS name on the network")
	port := flag.Int("port", 8080, "the service's port")
	path := flag.String("path", "/", "the path asked")
	interval := flag.Duration("interval", 20*time.Millisecond, "time between two rounds")
	timeout := flag.Duration("timeout", time.Second, "timeout of one lookup or request")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var out sync.Mutex
	emit := func(line string) {
		out.Lock()
		defer out.Unlock()
		_, _ = io.WriteString(os.Stdout, line+"\n") // nowhere else to report a failed write
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		go round(ctx, client, *name, *port, *path, *timeout, emit)
	}
}

// round resolves name and asks every address once.
func round(ctx context.Context, client *http.Client, name string, port int, path string, timeout time.Duration, emit func(string)) {
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, timeout)
	addrs, err := net.DefaultResolver.LookupHost(lctx, name)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		emit(fmt.Sprintf("%d dns=%s", start.UnixNano(), dnsClass(err)))
		return
	}
	answers := make([]string, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = a + "=" + ask(ctx, client, "http://"+net.JoinHostPort(a, fmt.Sprint(port))+path)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	emit(fmt.Sprintf("%d %s", start.UnixNano(), strings.Join(answers, " ")))
}

// ask GETs url and returns "<status>:<version>" or "err:<class>".
func ask(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "err:request"
	}
	resp, err := client.Do(req)
	if err != nil {
		return "err:" + errClass(err)
	}
	defer resp.Body.Close()
	var body struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil || body.Version == "" {
		return fmt.Sprintf("%d:-", resp.StatusCode)
	}
	return fmt.Sprintf("%d:%s", resp.StatusCode, body.Version)
}

func errClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	}
	return "io"
}

func dnsClass(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return "notfound"
		case de.IsTimeout:
			return "timeout"
		}
	}
	return "error"
}
