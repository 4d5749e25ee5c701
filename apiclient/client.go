package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/workflows"
)

// DefaultURL is where the CLI looks for the API when SLIPWAY_URL is not set.
const DefaultURL = "http://127.0.0.1:8080"

// Client talks to Slipway's HTTP API.
type Client struct {
	baseURL string
	token   string
	http    *http.Client
	// Timeout bounds one ordinary request (a ?wait adds its wait). Streams are bounded only
	// by their context.
	Timeout time.Duration
}

// New returns a client of the API at baseURL (e.g. http://127.0.0.1:8080) that sends token as
// its bearer token.
func New(baseURL, token string) *Client {
	if baseURL == "" {
		baseURL = DefaultURL
	}
	return &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		token:   token,
		http: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}},
		Timeout: 60 * time.Second,
	}
}

// BaseURL returns the API's base URL.
func (c *Client) BaseURL() string { return c.baseURL }

// StartRequest starts a release: either Spec (a whole deployment spec, YAML or JSON) or
// Trigger (services at new versions against the environment's checked-in spec).
type StartRequest struct {
	// Spec is the spec file's content; SpecName its file name (".json" selects JSON).
	Spec     []byte
	SpecName string
	// Overrides set service versions on Spec (service=version).
	Overrides map[string]string
	// Trigger is used when Spec is empty.
	Trigger *TriggerRequest
	// Description, BuildURL and Commit are recorded with the release (with a Spec body;
	// a Trigger carries its own).
	Description string
	BuildURL    string
	Commit      string
	// IdempotencyKey makes a retried start return the same release.
	IdempotencyKey string
	// Wait blocks on the server until the release ends or Wait runs out.
	Wait time.Duration
	// Queue makes a release that overlaps one in flight wait up to Queue for it instead of
	// being refused (409).
	Queue time.Duration
}

// StartRelease starts a release (POST /v1/releases).
func (c *Client) StartRelease(ctx context.Context, r StartRequest) (*Release, error) {
	q := url.Values{}
	var body []byte
	var ctype string
	if len(r.Spec) > 0 {
		body = r.Spec
		ctype = ContentTypeForFile(r.SpecName)
		keys := make([]string, 0, len(r.Overrides))
		for k := range r.Overrides {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			q.Add("set", k+"="+r.Overrides[k])
		}
		setIf(q, "description", r.Description)
		setIf(q, "build_url", r.BuildURL)
		setIf(q, "commit", r.Commit)
		setIf(q, "filename", filepath.Base(r.SpecName))
	} else if r.Trigger != nil {
		var err error
		if body, err = json.Marshal(r.Trigger); err != nil {
			return nil, fmt.Errorf("encode release request: %w", err)
		}
		ctype = "application/json"
	} else {
		return nil, errors.New("start release: neither a spec nor services given")
	}
	if r.Queue > 0 {
		q.Set("queue", r.Queue.String())
	}
	if r.Wait > 0 {
		q.Set("wait", r.Wait.String())
	}
	h := http.Header{"Content-Type": {ctype}}
	if r.IdempotencyKey != "" {
		h.Set("Idempotency-Key", r.IdempotencyKey)
	}
	var rel Release
	if err := c.do(ctx, http.MethodPost, "/v1/releases", q, h, body, r.Wait, &rel); err != nil {
		return nil, err
	}
	return &rel, nil
}

// ContentTypeForFile picks the spec content type from a file name: JSON for .json, else YAML.
func ContentTypeForFile(name string) string {
	if strings.EqualFold(filepath.Ext(name), ".json") {
		return "application/json"
	}
	return "application/yaml"
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// GetRelease returns a release's full status (GET /v1/releases/{id}). With wait > 0 the
// server holds the request until the release ends or wait runs out.
func (c *Client) GetRelease(ctx context.Context, id string, wait time.Duration) (*Release, error) {
	var rel Release
	if err := c.getWaiting(ctx, "/v1/releases/"+url.PathEscape(id), wait, &rel); err != nil {
		return nil, err
	}
	return &rel, nil
}

// getWaiting GETs path, with ?wait= when wait > 0 (the server holds the request until what
// it names ends or wait runs out).
func (c *Client) getWaiting(ctx context.Context, path string, wait time.Duration, out any) error {
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	return c.do(ctx, http.MethodGet, path, q, nil, nil, wait, out)
}

// ListOptions filter GET /v1/releases.
type ListOptions struct {
	Environment string
	Service     string
	Phase       string
	Outcome     string
	// Running limits the list to releases in flight.
	Running   bool
	PageSize  int
	PageToken string
}

// ListReleases lists releases, newest first (GET /v1/releases).
func (c *Client) ListReleases(ctx context.Context, o ListOptions) (*ReleaseList, error) {
	q := url.Values{}
	setIf(q, "environment", o.Environment)
	setIf(q, "service", o.Service)
	setIf(q, "phase", o.Phase)
	setIf(q, "outcome", o.Outcome)
	setIf(q, "page_token", o.PageToken)
	if o.Running {
		q.Set("running", "true")
	}
	if o.PageSize > 0 {
		q.Set("page_size", strconv.Itoa(o.PageSize))
	}
	var l ReleaseList
	if err := c.do(ctx, http.MethodGet, "/v1/releases", q, nil, nil, 0, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Actions on a running release (workflow Updates).
const (
	ActionApprove = "approve"
	ActionAbort   = "abort"
	ActionPause   = "pause"
	ActionResume  = "resume"
)

// Resolve frees the locks an ended release left held because its rollback or repair could
// not finish (reason required: it is recorded in each lock's history).
func (c *Client) Resolve(ctx context.Context, id, reason string) (*Resolution, error) {
	body, err := json.Marshal(DecisionRequest{Reason: reason})
	if err != nil {
		return nil, fmt.Errorf("encode resolve: %w", err)
	}
	var res Resolution
	h := http.Header{"Content-Type": {"application/json"}}
	if err := c.do(ctx, http.MethodPost, "/v1/releases/"+url.PathEscape(id)+"/resolve", nil, h, body, 0, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Decide sends approve, abort, pause or resume to a running release. A rejected decision is
// a *Problem with status 409 and the reason.
func (c *Client) Decide(ctx context.Context, id, action, reason string) (*Release, error) {
	return c.DecideService(ctx, id, action, reason, "")
}

// DecideService is Decide narrowed to one service (approve only that service's gate).
func (c *Client) DecideService(ctx context.Context, id, action, reason, service string) (*Release, error) {
	return c.DecideGate(ctx, id, action, reason, service, "")
}

// DecideGate is Decide naming one pending gate by service and cluster (either may be
// empty): approve only that gate, or abort the release refusing it.
func (c *Client) DecideGate(ctx context.Context, id, action, reason, service, cluster string) (*Release, error) {
	body, err := json.Marshal(DecisionRequest{Reason: reason, Service: service, Cluster: cluster})
	if err != nil {
		return nil, fmt.Errorf("encode decision: %w", err)
	}
	var rel Release
	h := http.Header{"Content-Type": {"application/json"}}
	if err := c.do(ctx, http.MethodPost, "/v1/releases/"+url.PathEscape(id)+"/"+action, nil, h, body, 0, &rel); err != nil {
		return nil, err
	}
	return &rel, nil
}

// Rollback starts a fast-tracked release that brings back what an ended release replaced.
func (c *Client) Rollback(ctx context.Context, id, reason, idempotencyKey string) (*Release, error) {
	body, err := json.Marshal(DecisionRequest{Reason: reason})
	if err != nil {
		return nil, fmt.Errorf("encode rollback: %w", err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if idempotencyKey != "" {
		h.Set("Idempotency-Key", idempotencyKey)
	}
	var rel Release
	if err := c.do(ctx, http.MethodPost, "/v1/releases/"+url.PathEscape(id)+"/rollback", nil, h, body, 0, &rel); err != nil {
		return nil, err
	}
	return &rel, nil
}

// Plan asks for the dry-run diff of a spec against the live engines (POST /v1/plan). The
// answer is decoded into out.
func (c *Client) Plan(ctx context.Context, spec []byte, specName string, overrides map[string]string, out any) error {
	q := url.Values{}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("set", k+"="+overrides[k])
	}
	setIf(q, "filename", filepath.Base(specName))
	h := http.Header{"Content-Type": {ContentTypeForFile(specName)}}
	return c.do(ctx, http.MethodPost, "/v1/plan", q, h, spec, 0, out)
}

// Environment asks what runs where in an environment (GET /v1/environments/{env}); the
// answer is decoded into out.
func (c *Client) Environment(ctx context.Context, env string, out any) error {
	return c.do(ctx, http.MethodGet, "/v1/environments/"+url.PathEscape(env), nil, nil, nil, 0, out)
}

// Ready asks /readyz. A not-ready answer is a *Problem (503) carrying NotReady.
func (c *Client) Ready(ctx context.Context) (*Health, error) {
	var h Health
	if err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil, 0, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, h http.Header, body []byte, wait time.Duration, out any) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout+wait)
		defer cancel()
	}
	u := c.baseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return problemFrom(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func problemFrom(resp *http.Response, data []byte) error {
	p := &Problem{}
	if err := json.Unmarshal(data, p); err != nil || p.Status == 0 {
		p = &Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: strings.TrimSpace(string(data))}
	}
	if p.RetryAfter == 0 {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			p.RetryAfter = s
		}
	}
	return p
}

// Follow reads the release's event stream (GET /v1/releases/{id}/events) and calls fn for
// every event, in order, until the release ends (fn sees the "outcome" event), fn returns an
// error, or ctx ends. afterSeq > 0 resumes after that event sequence number. It reconnects
// when the connection drops before the outcome.
func (c *Client) Follow(ctx context.Context, id string, afterSeq int, fn func(StreamEvent) error) error {
	last := afterSeq
	backoff := 200 * time.Millisecond
	for {
		done, err := c.followOnce(ctx, id, &last, fn)
		if done || ctx.Err() != nil {
			if ctx.Err() != nil && err == nil {
				err = ctx.Err()
			}
			return err
		}
		var p *Problem
		if errors.As(err, &p) && p.Status != http.StatusServiceUnavailable && p.Status != http.StatusTooManyRequests {
			return err
		}
		// The stream broke before the outcome: reconnect after a short pause.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// followOnce reads one connection of the stream; done is true when the stream reached its
// outcome or fn stopped it.
func (c *Client) followOnce(ctx context.Context, id string, last *int, fn func(StreamEvent) error) (done bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/v1/releases/"+url.PathEscape(id)+"/events", nil)
	if err != nil {
		return true, fmt.Errorf("follow %s: %w", id, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.Itoa(*last))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("follow %s: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return false, problemFrom(resp, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var typ, idField string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				typ, idField = "", ""
				continue
			}
			ev := StreamEvent{Type: typ}
			if ev.Type == "" {
				ev.Type = "message"
			}
			if err := decodeStreamData(&ev, data.String()); err != nil {
				return true, fmt.Errorf("follow %s: %w", id, err)
			}
			if n, err := strconv.Atoi(idField); err == nil && n > *last {
				*last = n
			}
			data.Reset()
			typ, idField = "", ""
			if err := fn(ev); err != nil {
				return true, err
			}
			if ev.Type == EventOutcome {
				return true, nil
			}
			if ev.Type == EventError && ev.Problem != nil {
				return false, ev.Problem
			}
		case strings.HasPrefix(line, ":"):
			// comment (keep-alive)
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "id:"):
			idField = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("follow %s: %w", id, err)
	}
	return false, fmt.Errorf("follow %s: stream ended before the outcome", id)
}

func decodeStreamData(ev *StreamEvent, data string) error {
	var err error
	switch ev.Type {
	case EventPhase:
		ev.Event = new(workflows.Event)
		err = json.Unmarshal([]byte(data), ev.Event)
	case EventStatus:
		ev.Status = new(workflows.ReleaseStatus)
		err = json.Unmarshal([]byte(data), ev.Status)
	case EventOutcome:
		ev.Release = new(Release)
		err = json.Unmarshal([]byte(data), ev.Release)
	case EventError:
		ev.Problem = new(Problem)
		err = json.Unmarshal([]byte(data), ev.Problem)
	}
	if err != nil {
		return fmt.Errorf("decode %q event: %w", ev.Type, err)
	}
	return nil
}
