package starter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/workflows"
)

// TestCheckTrace: the Jenkins fields a release may start with.
func TestCheckTrace(t *testing.T) {
	good := workflows.ReleaseInput{BuildURL: " https://ci.example/job/web/42/ ", Commit: "0123ABCD", Description: "web #42"}
	require.NoError(t, checkTrace(&good))
	require.Equal(t, "https://ci.example/job/web/42/", good.BuildURL)
	require.Equal(t, "0123abcd", good.Commit)
	require.NoError(t, checkTrace(&workflows.ReleaseInput{}), "all optional")
	long := make([]byte, 501)
	for i := range long {
		long[i] = 'x'
	}
	for name, in := range map[string]workflows.ReleaseInput{
		"ftp URL":          {BuildURL: "ftp://ci.example/42"},
		"relative URL":     {BuildURL: "/job/web/42"},
		"javascript URL":   {BuildURL: "javascript:alert(1)"},
		"URL with secret":  {BuildURL: "https://user:token@ci.example/job/42"},
		"short commit":     {Commit: "abc12"},
		"non-hex commit":   {Commit: "0123abcz"},
		"41-digit commit":  {Commit: "0123456789012345678901234567890123456789a"},
		"long description": {Description: string(long)},
		"two lines":        {Description: "a\nb"},
	} {
		in := in
		err := checkTrace(&in)
		require.Error(t, err, name)
		require.Equal(t, 400, problemFor(err).Status, name)
	}
	m := traceMemo("h", good)
	require.Equal(t, "https://ci.example/job/web/42/", m[memoBuildURL])
	require.Equal(t, "0123abcd", m[memoCommit])
	require.Equal(t, "web #42", m[memoDescription])
}

// TestKeyShortIDs: an Idempotency-Key names a readable release id (UTC day + short hash),
// stable for the key and token, and the ids it may already name: the day before, and the
// form before days (still valid ids, so old releases are found).
func TestKeyShortIDs(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 30, 0, 0, time.UTC)
	ids := keyShortIDs("jenkins", "web-42", now)
	require.Len(t, ids, 3)
	require.Regexp(t, `^20261202k[0-9a-f]{10}$`, ids[0])
	require.Equal(t, "20261201"+ids[0][8:], ids[1])
	require.Equal(t, keyShortID("jenkins", "web-42"), ids[2])
	require.Equal(t, ids, keyShortIDs("jenkins", "web-42", now.Add(time.Hour)))
	require.NotEqual(t, ids[0], keyShortIDs("other", "web-42", now)[0], "scoped to the token")
	for _, id := range ids {
		wid := workflows.ReleaseWorkflowID("production", id)
		env, ok := envOfID(wid)
		require.True(t, ok, wid)
		require.Equal(t, "production", env)
	}
}
