// Command demo-service is Slipway's demo workload: a small static HTTP server that reports its
// version and can be told to misbehave, so releases, canaries, verification and rollbacks can
// be exercised against real containers.
//
// Endpoints (port 8080, PORT overrides, DEMO_LISTEN_PORT overrides both):
//
//	GET /         JSON {version, hostname, started, uptime_ms, request}
//	GET /healthz  200 "ok" while healthy; 503 until DEMO_START_DELAY has passed and once
//	              DEMO_FAIL_HEALTH_AFTER has passed
//	GET /lookup?host=NAME  JSON {host, addrs}: NAME resolved by the container's DNS (on a
//	              Docker network, which replicas a service alias balances over)
//
// Knobs (environment variables, baked into the image tags by build-images.sh). Shares are
// numbers from 0 to 1, durations Go durations (300ms, 3s), sizes bytes or binary units
// (64Mi, 512MiB). "Every route but /healthz" includes / , /lookup and unknown paths (404).
//
//	DEMO_VERSION            version reported by GET / (default "dev")
//	DEMO_CRASH_AT_START=1   exit 1 right away
//	DEMO_CRASH_AFTER        exit 1 this long after start (e.g. 20s), without a graceful stop
//	DEMO_FAIL_HEALTH_AFTER  duration after start when /healthz turns 503 (e.g. 3s)
//	DEMO_START_DELAY        slow start (e.g. 12s): the port listens at once, but /healthz and
//	                        every other route answer 503 until this long after start
//	DEMO_ERROR_RATE         share of requests on every route but /healthz answered 500, drawn
//	                        at random per request
//	DEMO_ERROR_SPREAD=even  spread the DEMO_ERROR_RATE failures evenly by a counter instead
//	                        (0.5 = every second request), for deterministic tests
//	DEMO_ERRORS_BUT_HEALTH=1  500 on every route but /healthz (which stays 200)
//	DEMO_LATENCY            delay added to every request but /healthz (e.g. 300ms)
//	DEMO_TAIL_RATE, DEMO_TAIL_LATENCY  tail latency: a DEMO_TAIL_RATE share of the requests
//	                        on every route but /healthz, drawn at random, is slowed by
//	                        DEMO_TAIL_LATENCY more (e.g. 0.08 and 800ms); set both or neither
//	DEMO_LEAK_PER_SECOND    memory growth: the heap grows this much per second (e.g. 64Mi), its
//	                        pages written so the resident set grows, until the cap: with a
//	                        container memory limit below the cap the process is OOM-killed
//	DEMO_LEAK_MAX           the cap; by default twice the cgroup memory limit + 64Mi when
//	                        there is a limit (so the limit is hit first), else 512Mi
//	DEMO_LISTEN_PORT        listen on this port instead of PORT: the service is not where the
//	                        spec says (the -healthcheck flag follows it, so the image's own
//	                        HEALTHCHECK still passes)
//	DEMO_IGNORE_SIGTERM=1   ignore SIGTERM (the engine has to kill the container)
//
// A value that does not parse stops the service at start (exit 2) with an error naming the
// variable.
//
// With -healthcheck the binary GETs http://127.0.0.1:$PORT/healthz ($DEMO_LISTEN_PORT when
// set) and exits 0 (healthy) or 1: the image HEALTHCHECK of a FROM scratch image, which has
// no curl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	healthcheck := flag.Bool("healthcheck", false, "GET http://127.0.0.1:$PORT/healthz ($DEMO_LISTEN_PORT when set) and exit 0 when it answers 200, 1 otherwise")
	flag.Parse()

	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-service: %v\n", err)
		os.Exit(2)
	}
	if *healthcheck {
		if err := checkHealth(cfg.listenPort(), 2*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "demo-service: healthcheck: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "demo-service: %v\n", err)
		os.Exit(1)
	}
}

// run serves until SIGTERM or SIGINT (SIGTERM is ignored with DEMO_IGNORE_SIGTERM=1), then
// shuts down gracefully; or until DEMO_CRASH_AFTER has passed, then returns an error at once
// (main exits 1).
func run(cfg config) error {
	logger := log.New(os.Stderr, "", log.LstdFlags|log.LUTC)
	if cfg.CrashAtStart {
		return errors.New("DEMO_CRASH_AT_START=1: crashing at start as asked")
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	srv := &http.Server{
		Addr:              ":" + cfg.listenPort(),
		Handler:           newServer(cfg, hostname, time.Now),
		ReadHeaderTimeout: 5 * time.Second,
	}

	stop := make(chan os.Signal, 1)
	if cfg.IgnoreSIGTERM {
		// Catch SIGTERM so the default action (exit) does not happen, and say so in the log.
		ignored := make(chan os.Signal, 1)
		signal.Notify(ignored, syscall.SIGTERM)
		go func() {
			for range ignored {
				logger.Print("SIGTERM received and ignored (DEMO_IGNORE_SIGTERM=1)")
			}
		}()
		signal.Notify(stop, syscall.SIGINT)
	} else {
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	}

	var crash <-chan time.Time // nil: never
	if cfg.CrashAfter > 0 {
		crash = time.After(cfg.CrashAfter)
	}
	done := make(chan struct{})
	defer close(done)
	if cfg.LeakPerSecond > 0 {
		go leak(cfg, logger.Printf, done)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Printf("demo-service %s listening on :%s (%s)", cfg.Version, cfg.listenPort(), cfg)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-crash:
		return fmt.Errorf("DEMO_CRASH_AFTER=%s has passed: crashing as asked", cfg.CrashAfter)
	case sig := <-stop:
		logger.Printf("%v received, shutting down", sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Print("stopped")
	return nil
}

// checkHealth GETs /healthz on the local port and fails unless it answers 200.
func checkHealth(port string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %s", resp.Status)
	}
	return nil
}
