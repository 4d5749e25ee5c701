package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The API is driven with plain HTTP (its wire format is the contract, docs/api.md), so a
// transport error (a replica killed mid-request) is told apart from an answer.

// release is the part of the API's release view the test reads.
type release struct {
	ID       string `json:"id"`
	Running  bool   `json:"running"`
	Phase    string `json:"phase"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason"`
	Existing bool   `json:"existing"`
	Status   *struct {
		Verdicts []struct {
			Result  string `json:"result"`
			Stage   string `json:"stage"`
			Cluster string `json:"cluster"`
			Reason  string `json:"reason"`
			// Evidence is printed for a good version that did not pass.
			Evidence json.RawMessage `json:"evidence"`
		} `json:"verdicts"`
		Gates []struct {
			Service string `json:"service"`
			Cluster string `json:"cluster"`
		} `json:"gates"`
		// Repair says how a release closed from outside Slipway was repaired (outcome
		// terminated): rolled_back, succeeded (it had succeeded and was cleaning up), failed.
		Repair *struct {
			WorkflowID string `json:"workflow_id"`
			Outcome    string `json:"outcome"`
			Reason     string `json:"reason"`
		} `json:"repair"`
	} `json:"status"`
	StatusError string `json:"status_error"`
}

// problem is an API error answer (application/problem+json).
type problem struct {
	Status     int    `json:"status"`
	Title      string `json:"title"`
	Detail     string `json:"detail"`
	InFlight   string `json:"in_flight"`
	RetryAfter int    `json:"retry_after"`
}

func (p *problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

// transportError is a request that got no answer: the replica is down or was killed.
type transportError struct{ err error }

func (e *transportError) Error() string { return "no answer: " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// apiClient talks to one API replica.
type apiClient struct {
	name, base, token string
	http              *http.Client
}

func newAPIClient(name, base, token string) *apiClient {
	return &apiClient{name: name, base: base, token: token, http: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 5 * time.Second},
	}}
}

func (c *apiClient) do(ctx context.Context, method, path string, q url.Values, hdr map[string]string, body []byte, timeout time.Duration, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &transportError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return &transportError{err}
	}
	if resp.StatusCode >= 400 {
		p := &problem{}
		if json.Unmarshal(data, p) != nil || p.Status == 0 {
			p = &problem{Status: resp.StatusCode, Title: resp.Status, Detail: string(data)}
		}
		if p.RetryAfter == 0 {
			p.RetryAfter, _ = strconv.Atoi(resp.Header.Get("Retry-After"))
		}
		return p
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode %q: %w", method, path, data, err)
	}
	return nil
}

// trigger is the JSON body of POST /v1/releases that releases services of the checked-in
// spec at new versions.
type trigger struct {
	Environment string            `json:"environment"`
	Services    map[string]string `json:"services"`
	Description string            `json:"description,omitempty"`
}

// start POSTs a release (with an Idempotency-Key when key is not empty): body is a trigger,
// or a whole spec when yaml is set.
func (c *apiClient) start(ctx context.Context, body []byte, yaml bool, key string) (*release, error) {
	hdr := map[string]string{"Content-Type": "application/json"}
	if yaml {
		hdr["Content-Type"] = "application/yaml"
	}
	if key != "" {
		hdr["Idempotency-Key"] = key
	}
	var r release
	if err := c.do(ctx, http.MethodPost, "/v1/releases", nil, hdr, body, 30*time.Second, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// get returns a release's view; wait > 0 holds the request until the release ends.
func (c *apiClient) get(ctx context.Context, id string, wait time.Duration) (*release, error) {
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var r release
	if err := c.do(ctx, http.MethodGet, "/v1/releases/"+url.PathEscape(id), q, nil, nil, wait+30*time.Second, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// retryable reports whether a request should be sent again (to the other replica): no
// answer, the replica cannot reach Temporal (5xx), or a rate limit.
func retryable(err error) bool {
	var te *transportError
	if errors.As(err, &te) {
		return true
	}
	var p *problem
	return errors.As(err, &p) && (p.Status >= 500 || p.Status == http.StatusTooManyRequests)
}
