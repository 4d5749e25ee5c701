// Package probe is Slipway's prober: it sends HTTP requests to replicas on a fixed schedule
// and reports every answer. The same code runs in two places:
//
//   - next to the replicas, inside a small probe container that the Docker adapter starts on
//     the service's network of the replica's own engine (the default: the worker needs
//     nothing but the engine's API, so a remote engine works, and latency is measured where
//     the replicas are);
//   - in the worker itself, for clusters that choose `probes: direct` (the worker then must
//     be able to route to the containers' addresses).
//
// A Job is a set of streams (one target address × one request) fired together every
// Interval, open loop: a slow answer never delays the next round, so a slow version gets as
// many samples as a fast one, and the two sides of a comparison are probed at the same
// moments. Each answer becomes one Result; the caller judges.
//
// The package imports nothing but the standard library: the agent binary built from it
// (cmd/slipway-probe) stays a few megabytes, cheap to load into an engine.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Request is one HTTP request of a job.
type Request struct {
	Method  string            `json:"m,omitempty"` // default GET
	Path    string            `json:"p"`
	Headers map[string]string `json:"h,omitempty"`
	// Timeout of one request, from dial to the whole body read (default 2s).
	Timeout time.Duration `json:"t,omitempty"`
	// KeepBody keeps up to this many bytes of the answer's body in the result (default 0:
	// none; at most 4 KiB): for diagnostics and checks, never for judging.
	KeepBody int `json:"k,omitempty"`
}

// Stream is one target address × one request, probed once per round.
type Stream struct {
	Target  int `json:"t"` // index into Job.Targets
	Request int `json:"r"` // index into Job.Requests
}

// Job is what a prober does: every Interval, for Duration (or Rounds rounds), one request
// per stream, all streams at the same moment.
type Job struct {
	// Targets are host:port addresses; an empty one is reported as ErrNoAddress each round.
	Targets  []string      `json:"targets"`
	Requests []Request     `json:"requests"`
	Streams  []Stream      `json:"streams"`
	Interval time.Duration `json:"interval"`
	// Duration bounds the job (0: until Rounds, or until cancelled). Rounds (0: no limit)
	// stops it after that many rounds.
	Duration time.Duration `json:"duration,omitempty"`
	Rounds   int           `json:"rounds,omitempty"`
	// DialTimeout bounds the TCP connect (default 1s).
	DialTimeout time.Duration `json:"dial_timeout,omitempty"`
	// Repeat sends each stream's request this many times per round (default 1): load
	// generation at rates a round timer could not keep.
	Repeat int `json:"repeat,omitempty"`
}

// Error classes of a Result. A replica that refuses, times out or breaks an answer has
// answered badly; ErrUnreachable and ErrNoAddress mean the probe could not be taken.
const (
	ErrRefused     = "refused"     // connection refused: nothing listens on the port
	ErrTimeout     = "timeout"     // no whole answer within the request timeout
	ErrIO          = "io"          // connection reset, broken body, bad HTTP
	ErrUnreachable = "unreachable" // no route, host unreachable, dial timeout
	ErrNoAddress   = "noaddr"      // the target has no address
)

// Result is one probe: stream S in round R, sent At after the job started.
type Result struct {
	S       int           `json:"s"`
	R       int           `json:"r"`
	At      time.Duration `json:"at"`
	Status  int           `json:"c,omitempty"`
	Latency time.Duration `json:"l,omitempty"`
	Err     string        `json:"e,omitempty"`
	Body    string        `json:"b,omitempty"` // the first Request.KeepBody bytes
}

// Lost reports whether the probe could not be taken (as opposed to a bad answer).
func (r Result) Lost() bool { return r.Err == ErrUnreachable || r.Err == ErrNoAddress }

// Validate reports what is wrong with a job.
func (j Job) Validate() error {
	switch {
	case j.Interval <= 0:
		return errors.New("probe job: interval must be positive")
	case j.Duration <= 0 && j.Rounds <= 0:
		return errors.New("probe job: needs a duration or a number of rounds")
	case len(j.Streams) == 0:
		return errors.New("probe job: no streams")
	}
	for _, s := range j.Streams {
		if s.Target < 0 || s.Target >= len(j.Targets) || s.Request < 0 || s.Request >= len(j.Requests) {
			return errors.New("probe job: a stream names a target or request that does not exist")
		}
	}
	return nil
}

// Run executes the job and calls emit for every result (from one goroutine at a time), in
// no particular order across streams. It returns when the last round's probes have
// answered or timed out, or when ctx ends (then with ctx's error).
func Run(ctx context.Context, j Job, emit func(Result)) error {
	if err := j.Validate(); err != nil {
		return err
	}
	dial := j.DialTimeout
	if dial <= 0 {
		dial = time.Second
	}
	allowed := map[string]bool{}
	for _, t := range j.Targets {
		allowed[t] = true
	}
	dialer := &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: nil, // straight to the replicas, never through a proxy
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !allowed[addr] {
				return nil, fmt.Errorf("the prober dials only its targets, not %s", addr)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is an answer, never followed
	}}

	var emitMu sync.Mutex
	var inflight sync.WaitGroup
	start := time.Now()
	ticker := time.NewTicker(j.Interval)
	defer ticker.Stop()
	for round := 0; ; round++ {
		if j.Rounds > 0 && round >= j.Rounds {
			break
		}
		if j.Duration > 0 && round > 0 && time.Since(start) >= j.Duration {
			break
		}
		at := time.Since(start)
		for si, s := range j.Streams {
			for range max(j.Repeat, 1) {
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					res := do(ctx, client, j.Targets[s.Target], j.Requests[s.Request])
					res.S, res.R, res.At = si, round, at
					if ctx.Err() != nil {
						return // cancelled: not a measurement
					}
					emitMu.Lock()
					defer emitMu.Unlock()
					emit(res)
				}()
			}
		}
		select {
		case <-ctx.Done():
			inflight.Wait()
			return ctx.Err()
		case <-ticker.C:
		}
	}
	inflight.Wait()
	return ctx.Err()
}

func timeoutOf(r Request) time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return 2 * time.Second
}

// do sends one request and classifies the outcome.
func do(ctx context.Context, c *http.Client, addr string, r Request) Result {
	if addr == "" {
		return Result{Err: ErrNoAddress}
	}
	ctx, cancel := context.WithTimeout(ctx, timeoutOf(r))
	defer cancel()
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	path := r.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		return Result{Err: ErrIO}
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return Result{Err: classify(err), Latency: time.Since(t0)}
	}
	var kept strings.Builder
	var rerr error
	if n := min(r.KeepBody, 4<<10); n > 0 {
		_, rerr = io.Copy(&kept, io.LimitReader(resp.Body, int64(n)))
	}
	if rerr == nil {
		_, rerr = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	}
	_ = resp.Body.Close()
	out := Result{Status: resp.StatusCode, Latency: time.Since(t0), Body: kept.String()}
	if rerr != nil {
		out.Err = classify(rerr)
	}
	return out
}

// classify names what went wrong with a request.
func classify(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrRefused
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		if errors.As(err, &op) && op.Op == "dial" {
			return ErrUnreachable // could not even connect in time: no route to the replica
		}
		return ErrTimeout
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return ErrUnreachable
	case errors.As(err, &op) && op.Op == "dial":
		return ErrUnreachable
	default:
		return ErrIO
	}
}
