// Package schedules turns an environment's load tests into Temporal Schedules. Every load
// test of a spec with a schedule (a cron expression such as "0 3 * * *", in UTC unless it
// starts with CRON_TZ=, or an interval "@every 6h") becomes one Schedule, ID
// "loadtest-<environment>-<test>", that starts the LoadTest workflow with the test frozen
// from the spec. Sync makes Temporal match the spec: it creates what is missing, updates
// what changed (the spec hash in the schedule's action memo says), and deletes the
// environment's load-test schedules the spec no longer has. Running it twice changes
// nothing the second time. The CLI (slipway schedules sync) and the API use it.
//
// A scheduled run is skipped while the previous one is still going (overlap policy SKIP),
// and a run missed while Temporal was down is not started more than CatchupWindow late: a
// load test at 03:00 must not start at peak time after an outage.
package schedules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Memo keys of a load-test schedule. Environment and test are in the schedule's own memo
// (fixed at creation, like the ID); the schedule string and the spec hash are in its
// action's memo, which every update replaces (and every run carries).
const (
	MemoEnvironment = "slipway_environment"
	MemoLoadTest    = "slipway_load_test"
	MemoSchedule    = "slipway_schedule"
)

// CatchupWindow is how late a missed scheduled run may still start.
const CatchupWindow = 10 * time.Minute

// Options tune Sync.
type Options struct {
	// TaskQueue the runs go to (default workflows.TaskQueue).
	TaskQueue string
	// DryRun reports what Sync would do and changes nothing.
	DryRun bool
}

// Action is what Sync did (or would do) to one schedule.
type Action string

// Actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
	Deleted   Action = "deleted"
)

// Change is one schedule of a sync.
type Change struct {
	ID       string `json:"id"`
	Test     string `json:"test"`
	Schedule string `json:"schedule,omitempty"`
	Action   Action `json:"action"`
	SpecHash string `json:"spec_hash,omitempty"`
}

// Report is what a sync did, schedule by schedule, sorted by ID.
type Report struct {
	Environment string   `json:"environment"`
	DryRun      bool     `json:"dry_run,omitempty"`
	Changes     []Change `json:"changes"`
}

// Count returns how many schedules got action a.
func (r Report) Count(a Action) int {
	n := 0
	for _, c := range r.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// Desired is the schedule a load test of the spec asks for.
type Desired struct {
	ID       string
	Test     string
	Schedule string
	Hash     string
	Input    workflows.LoadTestInput
}

// Plan returns the schedules env asks for: one per load test with a schedule, by ID.
func Plan(env *spec.Environment, taskQueue string) ([]Desired, error) {
	if env == nil || env.Environment == "" {
		return nil, errors.New("schedules: no environment")
	}
	if taskQueue == "" {
		taskQueue = workflows.TaskQueue
	}
	var out []Desired
	for _, lt := range env.LoadTests {
		if strings.TrimSpace(lt.Schedule) == "" {
			continue
		}
		in, err := workflows.LoadTestInputFor(env, lt.Name, workflows.LoadTestScheduled)
		if err != nil {
			return nil, fmt.Errorf("schedules: %w", err)
		}
		id := workflows.LoadTestScheduleID(env.Environment, lt.Name)
		in.TriggeredBy = "schedule " + id
		h := sha256.New()
		enc := json.NewEncoder(h) // map keys sorted: the hash is stable
		if err := enc.Encode(struct {
			V         int                     `json:"v"`
			TaskQueue string                  `json:"task_queue"`
			Input     workflows.LoadTestInput `json:"input"`
		}{1, taskQueue, in}); err != nil {
			return nil, fmt.Errorf("schedules: hash %s: %w", id, err)
		}
		hash := "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
		in.SpecHash = hash
		out = append(out, Desired{ID: id, Test: lt.Name, Schedule: strings.TrimSpace(lt.Schedule), Hash: hash, Input: in})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Sync makes the environment's load-test schedules in Temporal match env (see the package
// doc) with the default options.
func Sync(ctx context.Context, c client.Client, env *spec.Environment) (Report, error) {
	return SyncWith(ctx, c, env, Options{})
}

// SyncWith is Sync with options. It does every change it can and returns the report of
// what it did with the errors of what it could not, joined.
func SyncWith(ctx context.Context, c client.Client, env *spec.Environment, opts Options) (Report, error) {
	if c == nil {
		return Report{}, errors.New("schedules: no Temporal client")
	}
	if opts.TaskQueue == "" {
		opts.TaskQueue = workflows.TaskQueue
	}
	desired, err := Plan(env, opts.TaskQueue)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Environment: env.Environment, DryRun: opts.DryRun}
	sc := c.ScheduleClient()
	var errs []error
	want := map[string]bool{}
	for _, d := range desired {
		want[d.ID] = true
		ch := Change{ID: d.ID, Test: d.Test, Schedule: d.Schedule, SpecHash: d.Hash}
		h := sc.GetHandle(ctx, d.ID)
		desc, err := h.Describe(ctx)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			ch.Action = Created
			if !opts.DryRun {
				if _, err := sc.Create(ctx, options(env.Environment, d, opts.TaskQueue)); err != nil {
					errs = append(errs, fmt.Errorf("create schedule %s: %w", d.ID, err))
					continue
				}
			}
		case err != nil:
			errs = append(errs, fmt.Errorf("describe schedule %s: %w", d.ID, err))
			continue
		case actionHash(desc) == d.Hash:
			ch.Action = Unchanged
		default:
			ch.Action = Updated
			if !opts.DryRun {
				if err := update(ctx, h, d, opts.TaskQueue); err != nil {
					errs = append(errs, fmt.Errorf("update schedule %s: %w", d.ID, err))
					continue
				}
			}
		}
		rep.Changes = append(rep.Changes, ch)
	}
	existing, err := List(ctx, c, env.Environment)
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range existing {
		if want[s.ID] {
			continue
		}
		if !opts.DryRun {
			if err := sc.GetHandle(ctx, s.ID).Delete(ctx); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete schedule %s: %w", s.ID, err))
				continue
			}
		}
		rep.Changes = append(rep.Changes, Change{ID: s.ID, Test: s.Test, Schedule: s.Schedule, Action: Deleted})
	}
	sort.Slice(rep.Changes, func(i, j int) bool { return rep.Changes[i].ID < rep.Changes[j].ID })
	return rep, errors.Join(errs...)
}

// scheduleSpec turns the spec's schedule into Temporal's: a cron expression or "@every"
// interval, both of which Temporal compiles (into calendars and intervals) itself.
func scheduleSpec(s string) client.ScheduleSpec {
	return client.ScheduleSpec{CronExpressions: []string{s}}
}

func action(d Desired, taskQueue string) *client.ScheduleWorkflowAction {
	return &client.ScheduleWorkflowAction{
		ID:                  d.ID,
		Workflow:            workflows.LoadTestWorkflowName,
		Args:                []any{d.Input},
		TaskQueue:           taskQueue,
		WorkflowRunTimeout:  workflows.LoadTestRunTimeout(d.Input),
		WorkflowTaskTimeout: workflows.WorkflowTaskTimeout,
		Memo: map[string]any{
			workflows.MemoSpecHash: d.Hash,
			MemoSchedule:           d.Schedule,
			"summary":              fmt.Sprintf("scheduled load test %s (%s)", d.Input.Name(), d.Schedule),
		},
		TypedSearchAttributes: workflows.LoadTestStartAttributes(d.Input.Environment, d.Input.Service.Name, d.Input.TriggeredBy),
	}
}

func note(d Desired) string {
	return fmt.Sprintf("synced by slipway from the spec of %s (%s)", d.Input.Environment, d.Hash)
}

func options(env string, d Desired, taskQueue string) client.ScheduleOptions {
	return client.ScheduleOptions{
		ID:                    d.ID,
		Spec:                  scheduleSpec(d.Schedule),
		Action:                action(d, taskQueue),
		Overlap:               enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow:         CatchupWindow,
		Note:                  note(d),
		Memo:                  map[string]any{MemoEnvironment: env, MemoLoadTest: d.Test},
		TypedSearchAttributes: workflows.LoadTestStartAttributes(env, "", ""),
	}
}

// update replaces the schedule's calendar, action and policies; a pause set by hand stays.
func update(ctx context.Context, h client.ScheduleHandle, d Desired, taskQueue string) error {
	return h.Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			sp := scheduleSpec(d.Schedule)
			s.Spec = &sp
			s.Action = action(d, taskQueue)
			s.Policy = &client.SchedulePolicies{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: CatchupWindow}
			if s.State == nil {
				s.State = &client.ScheduleState{}
			}
			if !s.State.Paused {
				s.State.Note = note(d)
			}
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
}

// actionHash is the spec hash in a schedule's action memo ("" when absent).
func actionHash(desc *client.ScheduleDescription) string {
	return actionMemo(desc, workflows.MemoSpecHash)
}

// actionMemo is a string field of a schedule's action memo ("" when absent).
func actionMemo(desc *client.ScheduleDescription, key string) string {
	a, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok {
		return ""
	}
	var s string
	switch v := a.Memo[key].(type) {
	case *commonpb.Payload:
		_ = converter.GetDefaultDataConverter().FromPayload(v, &s)
	case string:
		s = v
	}
	return s
}

// Info is one load-test schedule as Temporal has it.
type Info struct {
	ID          string      `json:"id"`
	Environment string      `json:"environment"`
	Test        string      `json:"test"`
	Schedule    string      `json:"schedule"`
	SpecHash    string      `json:"spec_hash,omitempty"`
	Paused      bool        `json:"paused,omitempty"`
	Note        string      `json:"note,omitempty"`
	NextRuns    []time.Time `json:"next_runs,omitempty"`
	RecentRuns  []Run       `json:"recent_runs,omitempty"`
}

// Run is one run a schedule started.
type Run struct {
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id,omitempty"`
	At         time.Time `json:"at"`
}

// List returns the load-test schedules of environment ("" for every environment), sorted
// by ID. Which schedules exist comes from visibility, which is eventually consistent (a
// schedule created a moment ago may be missing); the details of each come from Describe.
func List(ctx context.Context, c client.Client, environment string) ([]Info, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 500})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var out []Info
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if !strings.HasPrefix(e.ID, workflows.LoadTestIDPrefix) {
			continue
		}
		env, test := memoString(e.Memo, MemoEnvironment), memoString(e.Memo, MemoLoadTest)
		if env == "" || test == "" || (environment != "" && env != environment) {
			continue // not a schedule of ours, or another environment's
		}
		info, err := Get(ctx, c, env, test)
		if isNotFound(err) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get describes the schedule of one load test (strongly consistent).
func Get(ctx context.Context, c client.Client, environment, test string) (Info, error) {
	id := workflows.LoadTestScheduleID(environment, test)
	desc, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("describe schedule %s: %w", id, err)
	}
	info := Info{
		ID: id, Environment: environment, Test: test, NextRuns: desc.Info.NextActionTimes,
		Schedule: actionMemo(desc, MemoSchedule), SpecHash: actionHash(desc),
	}
	if desc.Schedule.State != nil {
		info.Paused, info.Note = desc.Schedule.State.Paused, desc.Schedule.State.Note
	}
	for _, r := range desc.Info.RecentActions {
		if r.StartWorkflowResult != nil {
			info.RecentRuns = append(info.RecentRuns, Run{WorkflowID: r.StartWorkflowResult.WorkflowID, RunID: r.StartWorkflowResult.FirstExecutionRunID, At: r.ActualTime})
		}
	}
	return info, nil
}

// Delete deletes the schedule of one load test, or with test "" every load-test schedule of
// the environment (as List sees them). Deleting what is gone is success. It returns the IDs
// it deleted.
func Delete(ctx context.Context, c client.Client, environment, test string) ([]string, error) {
	if environment == "" {
		return nil, errors.New("schedules: delete needs an environment")
	}
	var ids []string
	if test != "" {
		ids = []string{workflows.LoadTestScheduleID(environment, test)}
	} else {
		list, err := List(ctx, c, environment)
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			ids = append(ids, s.ID)
		}
	}
	var done []string
	var errs []error
	for _, id := range ids {
		err := c.ScheduleClient().GetHandle(ctx, id).Delete(ctx)
		switch {
		case err == nil:
			done = append(done, id)
		case isNotFound(err):
		default:
			errs = append(errs, fmt.Errorf("delete schedule %s: %w", id, err))
		}
	}
	return done, errors.Join(errs...)
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

func memoString(m *commonpb.Memo, key string) string {
	p := m.GetFields()[key]
	if p == nil {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}
