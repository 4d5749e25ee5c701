package starter_test

import (
	"context"
	"encoding/json"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// TestReleaseInputIsTheDefaultedSpec: what the Release workflow receives (its recorded input)
// is exactly the spec as spec.ApplyDefaults completes it, the one owner of every default:
// here a spec that sets no policy at all.
func TestReleaseInputIsTheDefaultedSpec(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("dflt")
	t.Cleanup(func() { a.terminateAll(env) })
	yaml := "environment: " + env + "\nclusters:\n  - name: c1\n  - name: c2\n    wave: 2\nservices:\n" +
		"  - name: web\n    image: slipway/demo\n    version: 1.0.0\n    port: 8080\n"
	rel, err := a.client(tokAdmin).StartRelease(context.Background(), apiclient.StartRequest{Spec: []byte(yaml), SpecName: "bare.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	h := a.tc.GetWorkflowHistory(context.Background(), rel.ID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	ev, err := h.Next()
	if err != nil {
		t.Fatal(err)
	}
	var in workflows.ReleaseInput
	if err := converter.GetDefaultDataConverter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in); err != nil {
		t.Fatal(err)
	}
	want, err := spec.Parse("bare.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.CheckDefaulted(in.Spec); err != nil {
		t.Fatalf("the workflow got a spec that is not defaulted: %v", err)
	}
	// The same as the spec package defaults it, once more through JSON (as history does).
	a.requireJSONEqual(want, &in.Spec)
}

// requireJSONEqual compares two values by their JSON (the form workflow inputs travel in).
func (a *api) requireJSONEqual(want, got any) {
	a.t.Helper()
	w, err := json.Marshal(want)
	if err != nil {
		a.t.Fatal(err)
	}
	g, err := json.Marshal(got)
	if err != nil {
		a.t.Fatal(err)
	}
	if string(w) != string(g) {
		a.t.Fatalf("the workflow's spec differs from the defaulted spec:\n got %s\nwant %s", g, w)
	}
}
