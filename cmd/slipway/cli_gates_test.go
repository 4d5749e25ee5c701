package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/workflows"
)

// TestGatesInTheCLI: the text view lists every pending gate with its service and cluster,
// and the exit message says how to approve them (by cluster when one service has two).
func TestGatesInTheCLI(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.Local)
	gate := func(service, cluster string) workflows.Gate {
		return workflows.Gate{Service: service, Cluster: cluster, Reason: "inconclusive verdict on wave 1", Since: at, Deadline: at.Add(30 * time.Minute), OnTimeout: "rollback"}
	}
	rel := &apiclient.Release{ID: "release-staging-r1", Environment: "staging", Running: true, Phase: workflows.PhaseAwaitingApproval,
		Status: &workflows.ReleaseStatus{Phase: workflows.PhaseAwaitingApproval, Gates: []workflows.Gate{gate("web", "a"), gate("web", "b")}}}

	var out bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&out)
	if err := printRelease(cmd, &clientFlags{output: "text"}, rel); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"awaiting approval: web on a: inconclusive verdict on wave 1 (until 10:30:00, then rollback)", "awaiting approval: web on b"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}

	err := outcomeExit(rel)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != codeWaiting {
		t.Fatalf("exit %v, want %d", err, codeWaiting)
	}
	want := "slipway approve release-staging-r1 --service web --cluster a; slipway approve release-staging-r1 --service web --cluster b"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not say %q", err, want)
	}

	rel.Status.Gates = []workflows.Gate{gate("web", ""), gate("api", "a")}
	if err := outcomeExit(rel); !strings.Contains(err.Error(), "(approve: slipway approve release-staging-r1)") {
		t.Errorf("one gate per service: %q", err)
	}
}

func TestRefusedExit(t *testing.T) {
	rel := &apiclient.Release{ID: "release-staging-r2", Outcome: workflows.OutcomeRefused,
		Reason: "images missing, nothing was changed: slipway/demo:9.9.9 on cluster a (service web)"}
	err := outcomeExit(rel)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != codeError {
		t.Fatalf("exit %v, want %d", err, codeError)
	}
	if !strings.Contains(err.Error(), "release release-staging-r2 refused: images missing, nothing was changed: slipway/demo:9.9.9 on cluster a") {
		t.Errorf("%q", err)
	}
}
