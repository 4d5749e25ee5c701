package schedules_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/schedules"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

var (
	srvOnce sync.Once
	srv     *devserver.Server
	srvErr  error
)

// temporalClient returns a client of the package's embedded Temporal server (in memory,
// Slipway's search attributes registered), started on first use and stopped by TestMain.
func temporalClient(t testing.TB) client.Client {
	t.Helper()
	testenv.RequireTemporal(t)
	srvOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		srv, srvErr = devserver.Start(ctx, devserver.Options{
			Ephemeral: true, UIPort: -1, SearchAttributes: workflows.SearchAttributeTypes, LogLevel: "fatal",
		})
	})
	if srvErr != nil {
		t.Fatalf("start the embedded Temporal server: %v", srvErr)
	}
	return srv.Client()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	os.Exit(code)
}

func parse(t *testing.T, env string, loadTests string) *spec.Environment {
	t.Helper()
	src := fmt.Sprintf(`
environment: %s
clusters:
  - name: a
services:
  - name: web
    image: slipway/demo
    version: 1.0.0
    port: 8080
  - name: api
    image: slipway/demo
    version: 1.0.0
    port: 8080
load_tests:
%s`, env, loadTests)
	e, err := spec.Parse(env+".yaml", []byte(src))
	if err != nil {
		t.Fatalf("spec: %v\n%s", err, src)
	}
	return e
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func actions(r schedules.Report) map[string]schedules.Action {
	out := map[string]schedules.Action{}
	for _, c := range r.Changes {
		out[c.Test] = c.Action
	}
	return out
}

func describe(t *testing.T, c client.Client, id string) *client.ScheduleDescription {
	t.Helper()
	d, err := c.ScheduleClient().GetHandle(context.Background(), id).Describe(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("describe %s: %v", id, err)
	}
	return d
}

func oneRange(rs []client.ScheduleRange, v int) bool {
	return len(rs) == 1 && rs[0].Start == v && (rs[0].End == v || rs[0].End == 0)
}

// waitListed waits until visibility lists the schedules of env (List is eventually
// consistent; Sync's deletions rely on it).
func waitListed(t *testing.T, c client.Client, env string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := schedules.List(ctxT(t, 10*time.Second), c, env)
		if err == nil && len(list) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("visibility lists %d schedules of %s (err %v), want %d", len(list), env, err, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSyncCreatesUpdatesAndDeletes(t *testing.T) {
	c := temporalClient(t)
	env := fmt.Sprintf("sync-%d", time.Now().UnixNano()%1e6)
	other := env + "-other"
	t.Cleanup(func() {
		_, _ = schedules.Delete(context.Background(), c, env, "")
		_, _ = schedules.Delete(context.Background(), c, other, "nightly")
	})
	spec1 := parse(t, env, `
  - name: nightly
    service: web
    rate: 200
    duration: 1m
    schedule: "0 3 * * *"
    slo: {p95: 50ms}
  - name: frequent
    service: api
    rate: 20
    duration: 30s
    schedule: "@every 6h"
  - name: adhoc
    service: web
    rate: 10
    duration: 10s
`)
	// A schedule of another environment that must survive every sync of env.
	if _, err := schedules.Sync(ctxT(t, 30*time.Second), c, parse(t, other, `
  - name: nightly
    service: web
    rate: 10
    duration: 10s
    schedule: "0 1 * * *"
`)); err != nil {
		t.Fatal(err)
	}

	dry, err := schedules.SyncWith(ctxT(t, 30*time.Second), c, spec1, schedules.Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(dry); got["nightly"] != schedules.Created || got["frequent"] != schedules.Created || len(got) != 2 {
		t.Fatalf("dry run = %v, want nightly and frequent created", got)
	}
	if _, err := c.ScheduleClient().GetHandle(context.Background(), workflows.LoadTestScheduleID(env, "nightly")).Describe(ctxT(t, 10*time.Second)); !isNotFound(err) {
		t.Fatalf("a dry run created a schedule (describe: %v)", err)
	}

	rep, err := schedules.Sync(ctxT(t, 30*time.Second), c, spec1)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["nightly"] != schedules.Created || got["frequent"] != schedules.Created || len(got) != 2 {
		t.Fatalf("first sync = %v, want nightly and frequent created (adhoc has no schedule)", got)
	}

	nightly := describe(t, c, workflows.LoadTestScheduleID(env, "nightly"))
	if cal := nightly.Schedule.Spec.Calendars; len(cal) != 1 || !oneRange(cal[0].Hour, 3) || !oneRange(cal[0].Minute, 0) {
		t.Errorf("nightly calendar = %+v, want 03:00", nightly.Schedule.Spec.Calendars)
	}
	if nightly.Schedule.Policy.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP {
		t.Errorf("nightly overlap = %v, want SKIP", nightly.Schedule.Policy.Overlap)
	}
	act, ok := nightly.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || act.Workflow != workflows.LoadTestWorkflowName || act.TaskQueue != workflows.TaskQueue || len(act.Args) != 1 {
		t.Fatalf("nightly action = %+v", nightly.Schedule.Action)
	}
	var in workflows.LoadTestInput
	if err := converter.GetDefaultDataConverter().FromPayload(act.Args[0].(*commonpb.Payload), &in); err != nil {
		t.Fatal(err)
	}
	if in.Test.Name != "nightly" || in.Test.Rate != 200 || in.Service.Name != "web" || in.Mode != workflows.LoadTestScheduled ||
		len(in.Targets) != 1 || in.Targets[0].Cluster != "a" || in.SpecHash == "" {
		t.Errorf("nightly input = %+v", in)
	}
	frequent := describe(t, c, workflows.LoadTestScheduleID(env, "frequent"))
	if iv := frequent.Schedule.Spec.Intervals; len(iv) != 1 || iv[0].Every != 6*time.Hour {
		t.Errorf("frequent intervals = %+v, want every 6h", iv)
	}

	rep, err = schedules.Sync(ctxT(t, 30*time.Second), c, spec1)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["nightly"] != schedules.Unchanged || got["frequent"] != schedules.Unchanged || len(got) != 2 {
		t.Fatalf("second sync = %v, want both unchanged", got)
	}

	// Change nightly's calendar and rate; drop frequent.
	spec2 := parse(t, env, `
  - name: nightly
    service: web
    rate: 300
    duration: 1m
    schedule: "30 4 * * 1"
    slo: {p95: 50ms}
  - name: adhoc
    service: web
    rate: 10
    duration: 10s
`)
	waitListed(t, c, env, 2)
	rep, err = schedules.Sync(ctxT(t, 30*time.Second), c, spec2)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["nightly"] != schedules.Updated || got["frequent"] != schedules.Deleted || len(got) != 2 {
		t.Fatalf("sync after the change = %v, want nightly updated, frequent deleted", got)
	}
	nightly = describe(t, c, workflows.LoadTestScheduleID(env, "nightly"))
	if cal := nightly.Schedule.Spec.Calendars; len(cal) != 1 || !oneRange(cal[0].Hour, 4) || !oneRange(cal[0].Minute, 30) || !oneRange(cal[0].DayOfWeek, 1) {
		t.Errorf("nightly calendar after the change = %+v, want Monday 04:30", nightly.Schedule.Spec.Calendars)
	}
	act = nightly.Schedule.Action.(*client.ScheduleWorkflowAction)
	if err := converter.GetDefaultDataConverter().FromPayload(act.Args[0].(*commonpb.Payload), &in); err != nil || in.Test.Rate != 300 {
		t.Errorf("nightly rate after the change = %d (%v), want 300", in.Test.Rate, err)
	}
	if _, err := c.ScheduleClient().GetHandle(context.Background(), workflows.LoadTestScheduleID(env, "frequent")).Describe(ctxT(t, 10*time.Second)); !isNotFound(err) {
		t.Errorf("frequent still exists after it left the spec (describe: %v)", err)
	}
	if _, err := schedules.Get(ctxT(t, 10*time.Second), c, other, "nightly"); err != nil {
		t.Errorf("the other environment's schedule: %v", err)
	}
	info, err := schedules.Get(ctxT(t, 10*time.Second), c, env, "nightly")
	if err != nil || info.Schedule != "30 4 * * 1" || info.SpecHash != in.SpecHash || len(info.NextRuns) == 0 || info.NextRuns[0].UTC().Hour() != 4 {
		t.Errorf("Get = %+v, %v", info, err)
	}

	// A spec without schedules removes them all.
	waitListed(t, c, env, 1)
	rep, err = schedules.Sync(ctxT(t, 30*time.Second), c, parse(t, env, `
  - name: adhoc
    service: web
    rate: 10
    duration: 10s
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["nightly"] != schedules.Deleted || len(got) != 1 {
		t.Fatalf("sync without schedules = %v, want nightly deleted", got)
	}
}

func TestDelete(t *testing.T) {
	c := temporalClient(t)
	env := fmt.Sprintf("del-%d", time.Now().UnixNano()%1e6)
	e := parse(t, env, `
  - name: one
    service: web
    rate: 10
    duration: 10s
    schedule: "@daily"
  - name: two
    service: api
    rate: 10
    duration: 10s
    schedule: "@hourly"
`)
	rep, err := schedules.Sync(ctxT(t, 30*time.Second), c, e)
	if err != nil || rep.Count(schedules.Created) != 2 {
		t.Fatalf("sync = %+v, %v", rep, err)
	}
	done, err := schedules.Delete(ctxT(t, 10*time.Second), c, env, "one")
	if err != nil || len(done) != 1 || done[0] != workflows.LoadTestScheduleID(env, "one") {
		t.Fatalf("delete one = %v, %v", done, err)
	}
	if done, err := schedules.Delete(ctxT(t, 10*time.Second), c, env, "one"); err != nil || len(done) != 0 {
		t.Fatalf("deleting what is gone = %v, %v; want success, nothing deleted", done, err)
	}
	waitListed(t, c, env, 1)
	done, err = schedules.Delete(ctxT(t, 10*time.Second), c, env, "")
	if err != nil || len(done) != 1 || done[0] != workflows.LoadTestScheduleID(env, "two") {
		t.Fatalf("delete all = %v, %v", done, err)
	}
}

func TestPlanIsStable(t *testing.T) {
	e := parse(t, "plan", `
  - name: nightly
    service: web
    rate: 10
    duration: 10s
    schedule: "0 3 * * *"
`)
	a, err := schedules.Plan(e, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := schedules.Plan(parse(t, "plan", `
  - name: nightly
    service: web
    rate: 10
    duration: 10s
    schedule: "0 3 * * *"
`), "")
	c, _ := schedules.Plan(parse(t, "plan", `
  - name: nightly
    service: web
    rate: 11
    duration: 10s
    schedule: "0 3 * * *"
`), "")
	if len(a) != 1 || a[0].Hash != b[0].Hash || a[0].Hash == c[0].Hash || !strings.HasPrefix(a[0].Hash, "sha256:") {
		t.Errorf("hashes %v %v %v: want equal for equal specs, different for another rate", a[0].Hash, b[0].Hash, c[0].Hash)
	}
	if _, err := schedules.Plan(nil, ""); err == nil {
		t.Error("Plan(nil) = nil error")
	}
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
