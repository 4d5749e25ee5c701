package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/slipwayhq/slipway/schedules"
)

// The load-test routes (docs/loadtests.md): run a test now, follow and cancel a run, and sync,
// list and delete an environment's load-test schedules.

// LoadTestRequest runs one load test of a spec now (POST /v1/loadtests).
type LoadTestRequest struct {
	// Spec is the spec file's content; SpecName its file name (".json" selects JSON).
	Spec     []byte
	SpecName string
	// Name is the load test of the spec to run.
	Name string
	// IdempotencyKey names the run: a retried request answers the same run (Existing).
	IdempotencyKey string
	// Wait blocks on the server until the run ends or Wait runs out.
	Wait time.Duration
}

// StartLoadTest runs one load test now (POST /v1/loadtests).
func (c *Client) StartLoadTest(ctx context.Context, r LoadTestRequest) (*LoadTestRun, error) {
	q := url.Values{}
	setIf(q, "name", r.Name)
	setIf(q, "filename", filepath.Base(r.SpecName))
	if r.Wait > 0 {
		q.Set("wait", r.Wait.String())
	}
	h := http.Header{"Content-Type": {ContentTypeForFile(r.SpecName)}}
	if r.IdempotencyKey != "" {
		h.Set("Idempotency-Key", r.IdempotencyKey)
	}
	var run LoadTestRun
	if err := c.do(ctx, http.MethodPost, "/v1/loadtests", q, h, r.Spec, r.Wait, &run); err != nil {
		return nil, err
	}
	return &run, nil
}

// GetLoadTest returns a load-test run (GET /v1/loadtests/{id}): its phase while it runs, its
// result after. With wait > 0 the server holds the request until the run ends or wait runs
// out.
func (c *Client) GetLoadTest(ctx context.Context, id string, wait time.Duration) (*LoadTestRun, error) {
	var run LoadTestRun
	if err := c.getWaiting(ctx, "/v1/loadtests/"+url.PathEscape(id), wait, &run); err != nil {
		return nil, err
	}
	return &run, nil
}

// CancelLoadTest cancels a running load test (POST /v1/loadtests/{id}/cancel): it stops the
// load and scales back what it scaled out. A run that already ended is a *Problem with
// status 409.
func (c *Client) CancelLoadTest(ctx context.Context, id string) (*LoadTestRun, error) {
	var run LoadTestRun
	if err := c.do(ctx, http.MethodPost, "/v1/loadtests/"+url.PathEscape(id)+"/cancel", nil, nil, nil, 0, &run); err != nil {
		return nil, err
	}
	return &run, nil
}

// syncSlack is how much longer than an ordinary request a schedule sync may take (the server
// allows it several Temporal calls).
const syncSlack = time.Minute

// SyncSchedules makes the Temporal Schedules of the spec's environment match its load tests
// (POST /v1/loadtests/schedules); dryRun reports what would change and changes nothing.
func (c *Client) SyncSchedules(ctx context.Context, spec []byte, specName string, dryRun bool) (*schedules.Report, error) {
	q := url.Values{}
	setIf(q, "filename", filepath.Base(specName))
	if dryRun {
		q.Set("dry_run", "true")
	}
	h := http.Header{"Content-Type": {ContentTypeForFile(specName)}}
	var rep schedules.Report
	if err := c.do(ctx, http.MethodPost, "/v1/loadtests/schedules", q, h, spec, syncSlack, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// ListSchedules lists the load-test schedules the token may see, of one environment when
// environment is set (GET /v1/loadtests/schedules).
func (c *Client) ListSchedules(ctx context.Context, environment string) ([]schedules.Info, error) {
	q := url.Values{}
	setIf(q, "environment", environment)
	var out struct {
		Schedules []schedules.Info `json:"schedules"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/loadtests/schedules", q, nil, nil, 0, &out); err != nil {
		return nil, err
	}
	return out.Schedules, nil
}

// DeleteSchedules deletes one load-test schedule of an environment (name set) or all of them
// (DELETE /v1/loadtests/schedules), and returns the IDs deleted.
func (c *Client) DeleteSchedules(ctx context.Context, environment, name string) ([]string, error) {
	q := url.Values{}
	q.Set("environment", environment)
	setIf(q, "name", name)
	var out struct {
		Deleted []string `json:"deleted"`
	}
	if err := c.do(ctx, http.MethodDelete, "/v1/loadtests/schedules", q, nil, nil, 0, &out); err != nil {
		return nil, err
	}
	return out.Deleted, nil
}
