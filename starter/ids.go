package starter

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/workflows"
)

// A release id is its Temporal workflow ID, workflows.ReleaseWorkflowID(environment, short),
// where short (generated here) has no '-', so the environment can be read back from the id
// without a round trip (for scope checks).

var (
	envName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	shortID = regexp.MustCompile(`^[a-z0-9]{1,64}$`)
	// safeValue is what a filter value may hold (it goes into a visibility query).
	safeValue = regexp.MustCompile(`^[A-Za-z0-9._:/@+=-]{1,200}$`)
)

const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newShortID is a time-ordered, random, dash-free id: 20261127t094403 + 6 random characters.
func newShortID(now time.Time) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to the clock.
		return now.UTC().Format("20060102t150405") + strings.ToLower(hex.EncodeToString([]byte{byte(now.Nanosecond())}))
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return now.UTC().Format("20060102t150405") + string(b)
}

// keyShortID is the short id of releases started before keyShortIDs (k + 24 hex digits):
// still looked up, so a key used then names the same release.
func keyShortID(actor, key string) string {
	h := sha256.Sum256([]byte(actor + "\x00" + key))
	return "k" + hex.EncodeToString(h[:12])
}

// keyShortIDs derives the short id from an Idempotency-Key (scoped to the token holder), so a
// retried POST names the same workflow, readable: the UTC day and a short hash of the key
// (20261202k3fa9c2d1e0; the release id is release-<environment>-<that>). The first is the id
// a new release gets; the others are those the key may already name and are looked up first:
// the day before (a retry across midnight UTC) and the form before days (keyShortID).
func keyShortIDs(actor, key string, now time.Time) []string {
	h := sha256.Sum256([]byte(actor + "\x00" + key))
	tag := "k" + hex.EncodeToString(h[:5])
	day := now.UTC()
	return []string{day.Format("20060102") + tag, day.AddDate(0, 0, -1).Format("20060102") + tag, keyShortID(actor, key)}
}

// envOfID reads the environment out of a release id; ok is false for ids that are not
// release ids (they are unknown releases: 404).
func envOfID(id string) (env string, ok bool) {
	rest, found := strings.CutPrefix(id, workflows.ReleaseIDPrefix)
	if !found {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", false
	}
	env, short := rest[:i], rest[i+1:]
	if !envName.MatchString(env) || !shortID.MatchString(short) {
		return "", false
	}
	return env, workflows.ReleaseWorkflowID(env, short) == id
}

// shortOfID is the part after the environment.
func shortOfID(id string) string {
	return id[strings.LastIndexByte(id, '-')+1:]
}
