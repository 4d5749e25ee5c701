package workflows

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/slipwayhq/slipway/spec"
)

// TestReleaseNotifiesWebhooks: the release's events reach a webhook in order with stable
// ids, a webhook that refuses every delivery is recorded in the status and the timeline,
// and the release still succeeds.
func TestReleaseNotifiesWebhooks(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))}
	in.Spec.Notifications = &spec.Notifications{Webhooks: []spec.Webhook{
		{URL: "https://hooks.example.com/a"},
		{URL: "https://hooks.example.com/b", Events: []string{spec.EventSucceeded}},
	}}
	var got []string
	send := func(_ context.Context, in WebhookInput) error {
		if in.Index == 1 {
			return temporal.NewNonRetryableApplicationError("webhook 1 answered 410", ErrWebhookRejected, nil)
		}
		got = append(got, in.Notification.ID)
		return nil
	}
	// As run does, with the webhook activity registered before the fake world's mocks.
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDetachedChildWait(false)
	Register(env)
	env.RegisterActivityWithOptions(send, activity.RegisterOptions{Name: ActivitySendWebhook})
	w.register(env)
	in.ID, in.TriggeredBy = "r1", "jenkins"
	env.ExecuteWorkflow(ReleaseWorkflowName, in)
	require.True(t, env.IsWorkflowCompleted())
	st, err := ReleaseResultOf(env.GetWorkflowResult)
	require.NoError(t, err)
	requireEndedAs(t, st, env.GetWorkflowError())
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	wid := "default-test-workflow-id" // the test environment's workflow ID
	require.Equal(t, []string{wid + "/started", wid + "/canary_passed/web", wid + "/succeeded"}, got)
	require.Len(t, st.WebhookFailures, 1)
	require.Equal(t, WebhookFailure{Webhook: 1, EventID: wid + "/succeeded", Event: spec.EventSucceeded, Error: st.WebhookFailures[0].Error}, st.WebhookFailures[0])
	require.Contains(t, st.WebhookFailures[0].Error, "410")
}
