package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/spec"
)

// ActivitySendWebhook posts one release event to one webhook (activities/notify.go).
const ActivitySendWebhook = "SendWebhook"

// ErrWebhookRejected: the receiver answered with a 4xx that no retry can fix (not 408 or
// 429). The delivery is recorded as failed in the status; the release goes on.
const ErrWebhookRejected = "WebhookRejected"

// changeNotifyWebhooks: a release whose environment has notifications.webhooks sends its
// events to them (SendWebhook activities from one workflow goroutine). Only such releases
// ask for the version, so histories without webhooks are untouched.
const changeNotifyWebhooks = "notify-webhooks"

// Notification is one release event as a webhook receives it (the json format's body).
type Notification struct {
	// ID is the same for every delivery of this event of this release (retries, a worker
	// restart): receivers de-duplicate on it. "<release id>/<event>", and for events that
	// can happen more than once a suffix: the service (canary_passed) or the timeline entry's
	// number (awaiting_approval).
	ID          string            `json:"id"`
	Event       string            `json:"event"`
	ReleaseID   string            `json:"release_id"`
	Environment string            `json:"environment"`
	Phase       Phase             `json:"phase"`
	Outcome     Outcome           `json:"outcome,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Service     string            `json:"service,omitempty"`
	Cluster     string            `json:"cluster,omitempty"`
	Message     string            `json:"message,omitempty"`
	TriggeredBy string            `json:"triggered_by,omitempty"`
	Versions    map[string]string `json:"versions,omitempty"` // service → version, of the services the release changes
	At          time.Time         `json:"at"`
}

// WebhookInput is one delivery: the event to one webhook (its index in the spec's list).
type WebhookInput struct {
	Index        int          `json:"index"`
	Webhook      spec.Webhook `json:"webhook"`
	Notification Notification `json:"notification"`
}

// WebhookFailure is a delivery that failed after its retries; the release went on.
type WebhookFailure struct {
	Webhook int    `json:"webhook"` // index in notifications.webhooks (the URL may be sensitive)
	EventID string `json:"event_id"`
	Event   string `json:"event"`
	Error   string `json:"error"`
}

// webhookRetry: a receiver that is down is tried for about two minutes (1, 2, 4, 8, 16,
// 30, 30, 30 s), then the delivery is recorded as failed.
func webhookRetry() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        30 * time.Second,
		MaximumAttempts:        8,
		NonRetryableErrorTypes: append(slices.Clone(permanentErrors), ErrWebhookRejected),
	}
}

// outbox is the release's queue of notifications: the release appends to it and never
// waits; one workflow goroutine (deliver) sends them in order; the release drains it
// before it ends.
type outbox struct {
	off    bool // the history predates changeNotifyWebhooks
	queue  []Notification
	closed bool
	done   bool
}

func (r *release) webhooks() []spec.Webhook {
	if r.in.Spec.Notifications == nil {
		return nil
	}
	return r.in.Spec.Notifications.Webhooks
}

// notify queues n for the webhooks that want its event.
func (r *release) notify(ctx workflow.Context, n Notification) {
	hooks := r.webhooks()
	if r.kind == KindRepair || len(hooks) == 0 {
		return
	}
	if r.obs.out == nil {
		r.obs.out = &outbox{}
		if workflow.GetVersion(ctx, changeNotifyWebhooks, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			r.obs.out.off = true
		} else {
			// Disconnected: an abort or a cancel stops the release's forward path, not its
			// notifications (the rolled_back one comes after).
			dctx, _ := workflow.NewDisconnectedContext(ctx)
			workflow.Go(dctx, r.deliver)
		}
	}
	if r.obs.out.off || r.obs.out.closed {
		return
	}
	wanted := false
	for _, h := range hooks {
		wanted = wanted || h.Wants(n.Event)
	}
	if !wanted {
		return
	}
	n.ReleaseID, n.Environment, n.TriggeredBy = r.wid, r.in.Spec.Environment, r.in.TriggeredBy
	n.At, n.Phase = workflow.Now(ctx), r.st.Phase
	if n.Versions == nil {
		n.Versions = r.changedVersions()
	}
	r.obs.out.queue = append(r.obs.out.queue, n)
}

// deliver sends the queued notifications one after the other, each to every webhook that
// wants it, in the spec's order. A delivery that fails after its retries is recorded in the
// status and the next one goes.
func (r *release) deliver(ctx workflow.Context) {
	ob := r.obs.out
	hooks := r.webhooks()
	for {
		if err := workflow.Await(ctx, func() bool { return len(ob.queue) > 0 || ob.closed }); err != nil {
			ob.done = true
			return
		}
		if len(ob.queue) == 0 {
			ob.done = true
			return
		}
		n := ob.queue[0]
		ob.queue = ob.queue[1:]
		for i, h := range hooks {
			if !h.Wants(n.Event) {
				continue
			}
			in := WebhookInput{Index: i, Webhook: h, Notification: n}
			if err := workflow.ExecuteActivity(optionsFor(ctx, ActivitySendWebhook, 0), ActivitySendWebhook, in).Get(ctx, nil); err != nil {
				r.st.WebhookFailures = append(r.st.WebhookFailures, WebhookFailure{Webhook: i, EventID: n.ID, Event: n.Event, Error: errText(err)})
				r.event(ctx, r.st.Phase, "", "", fmt.Sprintf("webhook %d: %s not delivered: %s", i, n.ID, errText(err)))
			}
		}
	}
}

// drainNotifications waits until every queued notification was sent (or failed).
func (r *release) drainNotifications(ctx workflow.Context) {
	ob := r.obs.out
	if ob == nil || ob.off {
		return
	}
	ob.closed = true
	_ = workflow.Await(ctx, func() bool { return ob.done }) // ctx is the disconnected one: only a terminate ends it
}

// changedVersions is service → version of the services the release changes (all of the
// spec's before the plan is known).
func (r *release) changedVersions() map[string]string {
	names := r.plan.Changed()
	out := map[string]string{}
	for _, s := range r.in.Spec.Services {
		if len(names) == 0 || slices.Contains(names, s.Name) {
			out[s.Name] = s.Version
		}
	}
	return out
}

// notifyPhase sends the events a phase change means: started (the release begins
// planning), awaiting_approval, and at the end succeeded, rolled_back or failed (a refused
// or terminated release is failed, its outcome says which) before draining the queue.
func (r *release) notifyPhase(ctx workflow.Context, p Phase) {
	id := r.wid
	switch p {
	case PhasePlanning:
		if !r.obs.started {
			r.obs.started = true
			r.notify(ctx, Notification{ID: id + "/" + spec.EventStarted, Event: spec.EventStarted, Message: r.lastMessage()})
		}
	case PhaseAwaitingApproval:
		r.notify(ctx, Notification{ID: fmt.Sprintf("%s/%s/%d", id, spec.EventAwaitingApproval, r.seq), Event: spec.EventAwaitingApproval, Message: r.lastMessage()})
	case PhaseDone:
		ev := spec.EventFailed
		switch r.st.Outcome {
		case OutcomeSucceeded:
			ev = spec.EventSucceeded
		case OutcomeRolledBack:
			ev = spec.EventRolledBack
		}
		r.notify(ctx, Notification{ID: id + "/" + ev, Event: ev, Outcome: r.st.Outcome, Reason: r.st.Reason, Message: r.lastMessage()})
		r.drainNotifications(ctx)
	}
}

// notifyVerdict sends canary_passed for a passed canary verdict.
func (r *release) notifyVerdict(ctx workflow.Context, v Verdict) {
	if v.Result != VerdictPassed || stageKind(v.Stage) != "canary" {
		return
	}
	r.notify(ctx, Notification{ID: fmt.Sprintf("%s/%s/%s", r.wid, spec.EventCanaryPassed, v.Service), Event: spec.EventCanaryPassed,
		Service: v.Service, Cluster: v.Cluster, Message: v.Reason})
}

func (r *release) lastMessage() string {
	if len(r.st.Events) == 0 {
		return ""
	}
	return r.st.Events[len(r.st.Events)-1].Message
}
