// Command demo-service is Slipway's demo workload: a small static HTTP server that reports its
// version and can be told to misbehave, so releases, canaries, verification and rollbacks can
// be exercised against real containers.
//
// Endpoints (port 8080, PORT overrides):
//
//	GET /         JSON {version, hostname, started, uptime_ms, requests}
//	GET /healthz  200 "ok" while healthy, 503 once DEMO_FAIL_HEALTH_AFTER has passed
//	GET /lookup?host=NAME  JSON {host, addrs}: NAME resolved by the container's DNS (on a
//	              Docker network, which replicas a service alias balances over)
//
// Knobs (environment variables, baked into the bad-* image tags):
//
//	DEMO_VERSION            version reported by GET / (default "dev")
//	DEMO_CRASH_AT_START=1   exit 1 right away
//	DEMO_FAIL_HEALTH_AFTER  duration after start when /healthz turns 503 (e.g. 3s)
//	DEMO_ERROR_RATE         share of GET / requests answered 500, spread evenly by a counter
//	                        (0.5 = every second request), so tests are deterministic
//	DEMO_LATENCY            delay added to every request except /healthz (e.g. 300ms)
//	DEMO_IGNORE_SIGTERM=1   ignore SIGTERM (the engine has to kill the container)
//
// With -healthcheck the binary GETs http://127.0.0.1:$PORT/healthz and exits 0 (healthy) or 1:
// the image HEALTHCHECK of a FROM scratch image, which has no curl.
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
	healthcheck := flag.Bool("healthcheck", false, "GET http://127.0.0.1:$PORT/healthz and exit 0 when it answers 200, 1 otherwise")
	flag.Parse()

	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-service: %v\n", err)
		os.Exit(2)
	}
	if *healthcheck {
		if err := checkHealth(cfg.Port, 2*time.Second); err != nil {
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
// shuts down gracefully.
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
		Addr:              ":" + cfg.Port,
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

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Printf("demo-service %s listening on :%s (%s)", cfg.Version, cfg.Port, cfg)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
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
