package spec

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/invopop/jsonschema"
)

// Notifications says who hears of the environment's releases.
type Notifications struct {
	// Webhooks are HTTP endpoints sent a signed POST on release events (docs/observability.md).
	Webhooks []Webhook `yaml:"webhooks,omitempty" json:"webhooks,omitempty"`
}

// Webhook is one receiver of release events.
type Webhook struct {
	// URL is the http(s) endpoint posted to. It is kept in the release's history: put no
	// credential in it (the secret signs the deliveries). A URL that is itself a
	// credential (Slack's incoming webhooks) goes in url_secret instead.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// URLSecret names a worker secret whose value is the URL (one line, http or https):
	// only the name travels through the API and the release's history. Set url or
	// url_secret, not both.
	URLSecret string `yaml:"url_secret,omitempty" json:"url_secret,omitempty"`
	// Secret names a worker secret (a file of the worker's secrets directory, like a
	// service's secrets) whose value signs every delivery with HMAC-SHA256 (header
	// X-Slipway-Signature). Empty: deliveries are not signed.
	Secret string `yaml:"secret,omitempty" json:"secret,omitempty"`
	// Events are the release events sent (default: all of them): started, canary_passed,
	// awaiting_approval, succeeded, rolled_back, failed.
	Events []string `yaml:"events,omitempty" json:"events,omitempty" jsonschema:"enum=started,enum=canary_passed,enum=awaiting_approval,enum=succeeded,enum=rolled_back,enum=failed"`
	// Format of the body: json (default: Slipway's event) or slack (Slack's incoming-webhook
	// payload, text and blocks).
	Format string `yaml:"format,omitempty" json:"format,omitempty" jsonschema:"enum=json,enum=slack"`
}

// Release events a webhook can be sent.
const (
	EventStarted          = "started"
	EventCanaryPassed     = "canary_passed"
	EventAwaitingApproval = "awaiting_approval"
	EventSucceeded        = "succeeded"
	EventRolledBack       = "rolled_back"
	EventFailed           = "failed"
)

// WebhookEvents are the release events, in the order a release can send them.
var WebhookEvents = []string{EventStarted, EventCanaryPassed, EventAwaitingApproval, EventSucceeded, EventRolledBack, EventFailed}

// Webhook body formats.
const (
	WebhookFormatJSON  = "json"
	WebhookFormatSlack = "slack"
)

// Wants reports whether the webhook is sent event.
func (w Webhook) Wants(event string) bool {
	return len(w.Events) == 0 || slices.Contains(w.Events, event)
}

// notifications validates the notifications section.
func (v *validator) notifications(n *Notifications) {
	if n == nil {
		return
	}
	for i, w := range n.Webhooks {
		p := "notifications.webhooks[" + strconv.Itoa(i) + "]"
		switch {
		case w.URL == "" && w.URLSecret == "":
			v.errorf(p+".url", "a webhook needs a url (or url_secret, naming a worker secret that holds it)")
		case w.URL != "" && w.URLSecret != "":
			v.errorf(p+".url_secret", "set url or url_secret, not both")
		case w.URLSecret != "":
			if !ValidSecretName(w.URLSecret) {
				v.errorf(p+".url_secret", "must be a secret name (%s)", SecretNamePattern)
			}
		default:
			if err := CheckWebhookURL(w.URL); err != nil {
				v.errorf(p+".url", "%v", err)
			} else if u, _ := url.Parse(w.URL); u.User != nil {
				v.errorf(p+".url", "must not carry credentials (the URL is kept in the release's history); sign with secret, or put the whole URL in url_secret")
			}
		}
		if w.Secret != "" && !ValidSecretName(w.Secret) {
			v.errorf(p+".secret", "must be a secret name (%s)", SecretNamePattern)
		}
		seen := map[string]bool{}
		for j, e := range w.Events {
			ep := p + ".events[" + strconv.Itoa(j) + "]"
			switch {
			case !slices.Contains(WebhookEvents, e):
				v.errorf(ep, "unknown event %q (want one of %s)", e, strings.Join(WebhookEvents, ", "))
			case seen[e]:
				v.errorf(ep, "event %q is listed twice", e)
			}
			seen[e] = true
		}
		switch w.Format {
		case "", WebhookFormatJSON, WebhookFormatSlack:
		default:
			v.errorf(p+".format", "unknown format %q (want json or slack)", w.Format)
		}
	}
}

// CheckWebhookURL says what is wrong with a webhook URL, the spec's or one the worker read
// from url_secret: it must be an absolute http:// or https:// URL. The error never quotes
// the URL (one from a secret is a credential).
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http:// or https:// URL")
	}
	return nil
}

// JSONSchemaExtend adds the url and secret name patterns to the generated schema.
func (Webhook) JSONSchemaExtend(s *jsonschema.Schema) {
	setPattern(s, "url", `^https?://`)
	setPattern(s, "secret", SecretNamePattern)
	setPattern(s, "url_secret", SecretNamePattern)
}
