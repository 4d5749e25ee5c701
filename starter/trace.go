package starter

import (
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/slipwayhq/slipway/workflows"
)

// Jenkins traceability: a release records the build that triggered it (build_url), the commit
// it releases and a description. They are checked here, kept in the workflow input (the
// status shows them) and in the memo (the Web UI and GET /v1/releases show them).

// Limits of the trace fields.
const (
	maxDescription = 500
	maxBuildURL    = 2000
)

var commitHex = regexp.MustCompile(`^[0-9a-fA-F]{7,40}$`)

// checkTrace validates (and trims) a release's build URL, commit and description: an
// absolute http(s) URL without credentials, a 7–40 digit hex commit, a description of at most
// 500 characters on one line.
func checkTrace(in *workflows.ReleaseInput) error {
	in.BuildURL = strings.TrimSpace(in.BuildURL)
	in.Commit = strings.ToLower(strings.TrimSpace(in.Commit))
	in.Description = strings.TrimSpace(in.Description)
	if in.BuildURL != "" {
		u, err := url.Parse(in.BuildURL)
		switch {
		case len(in.BuildURL) > maxBuildURL:
			return badRequest("build_url: at most %d characters", maxBuildURL)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return badRequest("build_url: %q is not an http or https URL", in.BuildURL)
		case u.User != nil:
			return badRequest("build_url: must not carry credentials")
		}
	}
	if in.Commit != "" && !commitHex.MatchString(in.Commit) {
		return badRequest("commit: %q is not a commit hash (7 to 40 hex digits)", in.Commit)
	}
	if n := utf8.RuneCountInString(in.Description); n > maxDescription {
		return badRequest("description: %d characters, at most %d", n, maxDescription)
	}
	if !utf8.ValidString(in.Description) || strings.ContainsAny(in.Description, "\r\n\x00") {
		return badRequest("description: one line of text")
	}
	return nil
}

// traceMemo is the memo a release starts with: the request's hash (Idempotency-Key) and its
// description, build URL and commit when given.
func traceMemo(reqHash string, in workflows.ReleaseInput) map[string]any {
	m := map[string]any{memoRequestHash: reqHash, memoDescription: in.Description}
	if in.BuildURL != "" {
		m[memoBuildURL] = in.BuildURL
	}
	if in.Commit != "" {
		m[memoCommit] = in.Commit
	}
	return m
}

// memoString reads one string field of a memo ("" when absent).
func memoString(m *commonpb.Memo, key string) string {
	var v string
	if p := m.GetFields()[key]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &v)
	}
	return v
}
