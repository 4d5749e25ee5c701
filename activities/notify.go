package activities

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Webhook delivery headers (docs/observability.md shows a receiver checking them).
const (
	// HeaderSignature is "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)), when
	// the webhook names a secret.
	HeaderSignature = "X-Slipway-Signature"
	// HeaderTimestamp is the delivery's Unix time in seconds (signed with the body): a
	// receiver refuses old ones, so a captured delivery cannot be replayed later.
	HeaderTimestamp = "X-Slipway-Timestamp"
	// HeaderEventID is the notification's ID, the same on every delivery of one event of
	// one release: de-duplicate on it.
	HeaderEventID = "X-Slipway-Event-Id"
	// HeaderEvent is the event (started, canary_passed, ...).
	HeaderEvent = "X-Slipway-Event"
)

// Notifier sends webhook notifications (workflows/notify.go queues them).
type Notifier struct {
	client  *http.Client
	secrets SecretSource
	now     func() time.Time
}

// NewNotifier returns the webhook activity; secrets resolves webhooks' secret names (the
// worker's secrets directory, as for services). Each request is bounded by 10 s.
func NewNotifier(secrets SecretSource) *Notifier {
	return &Notifier{client: &http.Client{Timeout: 10 * time.Second}, secrets: secrets, now: time.Now}
}

// RegisterNotify registers the webhook activity under its stable name.
func RegisterNotify(r sdkworker.ActivityRegistry, n *Notifier) {
	r.RegisterActivityWithOptions(n.SendWebhook, activity.RegisterOptions{Name: workflows.ActivitySendWebhook})
}

// SendWebhook posts one notification to one webhook. A 2xx answer is delivered; 408, 429
// and 5xx answers and network errors are retried by the workflow's policy; any other 4xx is
// final (WebhookRejected). Errors name the webhook by its index, never its URL (it may
// carry a token) nor the secret.
func (n *Notifier) SendWebhook(ctx context.Context, in workflows.WebhookInput) error {
	body, err := WebhookBody(in.Webhook.Format, in.Notification)
	if err != nil {
		return badInput("webhook %d: %v", in.Index, err)
	}
	target := in.Webhook.URL
	if in.Webhook.URLSecret != "" {
		if target, err = n.secret(ctx, in.Index, in.Webhook.URLSecret); err != nil {
			return err
		}
		if err := spec.CheckWebhookURL(target); err != nil {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("webhook %d: the URL in secret %s %v", in.Index, in.Webhook.URLSecret, err), workflows.ErrSecretMissing, nil)
		}
	}
	ts := strconv.FormatInt(n.now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return badInput("webhook %d: invalid url", in.Index)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "slipway-webhook")
	req.Header.Set(HeaderEventID, in.Notification.ID)
	req.Header.Set(HeaderEvent, in.Notification.Event)
	req.Header.Set(HeaderTimestamp, ts)
	if in.Webhook.Secret != "" {
		key, err := n.secret(ctx, in.Index, in.Webhook.Secret)
		if err != nil {
			return err
		}
		req.Header.Set(HeaderSignature, Sign([]byte(key), ts, body))
	}
	activity.RecordHeartbeat(ctx)
	resp, err := n.client.Do(req)
	if err != nil {
		// The error of net/http quotes the URL: say what happened without it.
		what := "no answer"
		if ctx.Err() != nil {
			what = "cancelled"
		} else if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
			what = "timed out"
		}
		return fmt.Errorf("webhook %d: %s", in.Index, what)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // drained for the connection's reuse; the answer's body is not used
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return fmt.Errorf("webhook %d answered %d", in.Index, c)
	default:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("webhook %d answered %d", in.Index, c), workflows.ErrWebhookRejected, nil)
	}
}

// secret reads a webhook's secret (its signing key or its URL): a missing one is final, any
// other error is retried. The errors name the secret, never its value.
func (n *Notifier) secret(ctx context.Context, index int, name string) (string, error) {
	if n.secrets == nil {
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("webhook %d: no secrets directory configured for its secret %s", index, name), workflows.ErrSecretMissing, nil)
	}
	v, err := n.secrets.Lookup(ctx, name)
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, ErrSecretMissing):
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("webhook %d: secret %s: %v", index, name, err), workflows.ErrSecretMissing, nil)
	default:
		return "", fmt.Errorf("webhook %d: secret %s: %w", index, name, err)
	}
}

// Sign is the X-Slipway-Signature value of body sent at ts (Unix seconds) with key.
func Sign(key []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// WebhookBody is the body of a notification in a webhook format: json is the Notification
// itself, slack Slack's incoming-webhook payload (text, blocks) with the notification
// under "slipway".
func WebhookBody(format string, n workflows.Notification) ([]byte, error) {
	switch format {
	case "", spec.WebhookFormatJSON:
		return json.Marshal(n)
	case spec.WebhookFormatSlack:
		return json.Marshal(slackPayload(n))
	default:
		return nil, fmt.Errorf("unknown format %q", format)
	}
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackMessage struct {
	Text    string                 `json:"text"`
	Blocks  []slackBlock           `json:"blocks"`
	Slipway workflows.Notification `json:"slipway"`
}

var slackHeadline = map[string]string{
	spec.EventStarted:          ":rocket: Release started",
	spec.EventCanaryPassed:     ":white_check_mark: Canary passed",
	spec.EventAwaitingApproval: ":raised_hand: Awaiting approval",
	spec.EventSucceeded:        ":tada: Release succeeded",
	spec.EventRolledBack:       ":rewind: Release rolled back",
	spec.EventFailed:           ":x: Release failed",
}

func slackPayload(n workflows.Notification) slackMessage {
	head := slackHeadline[n.Event]
	if head == "" {
		head = n.Event
	}
	var vs []string
	for s, v := range n.Versions {
		vs = append(vs, s+" "+v)
	}
	sort.Strings(vs)
	text := fmt.Sprintf("%s: %s (%s)", head, n.ReleaseID, n.Environment)
	detail := fmt.Sprintf("*%s* in *%s*\nRelease `%s`", head, n.Environment, n.ReleaseID)
	if len(vs) > 0 {
		detail += "\nVersions: " + strings.Join(vs, ", ")
	}
	if n.Service != "" {
		detail += "\nService: " + n.Service
		if n.Cluster != "" {
			detail += " on " + n.Cluster
		}
	}
	if n.Reason != "" {
		detail += "\nReason: " + n.Reason
	} else if n.Message != "" {
		detail += "\n" + n.Message
	}
	ctxLine := "event id " + n.ID
	if n.TriggeredBy != "" {
		ctxLine = "triggered by " + n.TriggeredBy + " · " + ctxLine
	}
	return slackMessage{
		Text: text,
		Blocks: []slackBlock{
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: detail}},
			{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: ctxLine}}},
		},
		Slipway: n,
	}
}
