package starter_test

import (
	"strings"
	"testing"
)

// TestDecisionGateFields: service and cluster name a gate, so only approve and abort take
// them; an approve naming a gate reaches the release (here: an unknown one, 404).
func TestDecisionGateFields(t *testing.T) {
	a := newAPI(t, nil)
	rel := "/v1/releases/release-nowhere-20260101t000000abcdef/"
	for _, action := range []string{"pause", "resume"} {
		status, hdr, body := a.do("POST", rel+action, tokAdmin, "application/json", []byte(`{"service":"web","cluster":"a"}`))
		p := a.problem(status, hdr, body, 400)
		if !strings.Contains(p.Detail, "only approve and abort") {
			t.Errorf("%s: %q", action, p.Detail)
		}
	}
	for _, action := range []string{"approve", "abort"} {
		status, hdr, body := a.do("POST", rel+action, tokAdmin, "application/json", []byte(`{"service":"web","cluster":"a","reason":"x"}`))
		a.problem(status, hdr, body, 404)
	}
}
