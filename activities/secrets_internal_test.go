package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

func writeSecret(t *testing.T, dir, name, value string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(value), 0o600))
	require.NoError(t, os.Chmod(p, mode)) // WriteFile's mode is filtered by the umask
}

func TestDirSecrets(t *testing.T) {
	dir := t.TempDir()
	writeSecret(t, dir, "plain", "hunter2-plain", 0o600)
	writeSecret(t, dir, "newline", "hunter2-nl\n", 0o400)
	writeSecret(t, dir, "crlf", "hunter2-crlf\r\n", 0o600)
	writeSecret(t, dir, "two-newlines", "line1\nline2\n\n", 0o600)
	writeSecret(t, dir, "group-read", "shared-with-group", 0o640)
	writeSecret(t, dir, "world-read", "everyone-reads-me", 0o644)
	writeSecret(t, dir, "group-write", "group-may-change-me", 0o660)
	writeSecret(t, dir, "empty", "\n", 0o600)
	writeSecret(t, dir, "nul", "a\x00b", 0o600)
	writeSecret(t, dir, "big", strings.Repeat("x", maxSecretBytes+1), 0o600)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "a-dir"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(dir, "plain"), filepath.Join(dir, "link")))
	require.NoError(t, os.WriteFile(filepath.Join(t.TempDir(), "outside"), []byte("outside"), 0o600))

	src := DirSecrets(dir)
	ctx := context.Background()
	for name, want := range map[string]string{
		"plain":        "hunter2-plain",
		"newline":      "hunter2-nl",
		"crlf":         "hunter2-crlf",
		"two-newlines": "line1\nline2\n", // one trailing newline is trimmed, no more
		"group-read":   "shared-with-group",
		"link":         "hunter2-plain", // symbolic links are followed (Kubernetes volumes)
	} {
		got, err := src.Lookup(ctx, name)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
	for name, why := range map[string]string{
		"missing":         "no file " + filepath.Join(dir, "missing"),
		"world-read":      "mode 0644, open to others or writable by its group: chmod 600",
		"group-write":     "mode 0660",
		"empty":           "is empty",
		"nul":             "NUL byte",
		"big":             "larger than 65536 bytes",
		"a-dir":           "not a regular file",
		"../outside":      "invalid secret name",
		"Plain":           "invalid secret name",
		"":                "invalid secret name",
		"plain/../../etc": "invalid secret name",
	} {
		v, err := src.Lookup(ctx, name)
		require.ErrorIs(t, err, ErrSecretMissing, name)
		require.Contains(t, err.Error(), why, name)
		require.Empty(t, v, name)
		for _, value := range []string{"everyone-reads-me", "group-may-change-me", "hunter2"} {
			require.NotContains(t, err.Error(), value, "the error repeats a value")
		}
	}
	_, err := DirSecrets("").Lookup(ctx, "plain")
	require.ErrorIs(t, err, ErrSecretMissing)
	require.Contains(t, err.Error(), "no secrets directory")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = src.Lookup(cctx, "plain")
	require.ErrorIs(t, err, context.Canceled)
}

// TestDirSecretsUnreadable: a file the worker may not read is permanent, not retried. Root
// reads everything, so the check needs another user.
func TestDirSecretsUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file: cannot make one unreadable")
	}
	dir := t.TempDir()
	writeSecret(t, dir, "locked", "nobody-reads-me", 0o000)
	_, err := DirSecrets(dir).Lookup(context.Background(), "locked")
	require.ErrorIs(t, err, ErrSecretMissing)
	require.Contains(t, err.Error(), "may not read")
}

// flakySource fails with a transient error.
type flakySource struct{}

func (flakySource) Lookup(context.Context, string) (string, error) {
	return "", errors.New("vault sealed for a moment")
}

func TestResolveSecretsErrors(t *testing.T) {
	dir := t.TempDir()
	writeSecret(t, dir, "web-db-password", "hunter2-db\n", 0o600)
	svc := spec.Service{Name: "web", Image: "slipway/demo", Version: "1.0.0",
		Env: map[string]string{"LOG_LEVEL": "info"}, Secrets: map[string]string{"DB_PASSWORD": "web-db-password"}}
	ctx := context.Background()
	tgt := workflows.Target{Environment: "x", Cluster: "a"}

	// Resolved: the value joins env in a fresh map; the input's map is left alone.
	a := New(nil, Options{Secrets: DirSecrets(dir)})
	specs, values, err := a.containerSpecs(ctx, tgt, "r1", engine.RoleStable, svc, []int{0, 1})
	require.NoError(t, err)
	require.Len(t, specs, 2)
	for _, cs := range specs {
		require.Equal(t, map[string]string{"LOG_LEVEL": "info", "DB_PASSWORD": "hunter2-db"}, cs.Env)
	}
	require.Equal(t, []string{"hunter2-db"}, values)
	require.Equal(t, map[string]string{"LOG_LEVEL": "info"}, svc.Env, "the input's env map was changed")

	isType := func(err error, typ string, nonRetryable bool, contains ...string) {
		t.Helper()
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "want an application error, got %v", err)
		require.Equal(t, typ, ae.Type(), err.Error())
		require.Equal(t, nonRetryable, ae.NonRetryable(), err.Error())
		for _, c := range contains {
			require.Contains(t, ae.Message(), c)
		}
		require.NotContains(t, err.Error(), "hunter2")
	}

	// No secret source on this worker.
	_, _, err = New(nil, Options{}).containerSpecs(ctx, tgt, "r1", engine.RoleStable, svc, []int{0})
	isType(err, workflows.ErrSecretMissing, true, `service web: secret "web-db-password" (for DB_PASSWORD) is missing on this worker`, "--secrets-dir")

	// The secret is not in the directory.
	other := svc
	other.Secrets = map[string]string{"DB_PASSWORD": "cart-db-password"}
	_, _, err = a.containerSpecs(ctx, tgt, "r1", engine.RoleStable, other, []int{0})
	isType(err, workflows.ErrSecretMissing, true, `secret "cart-db-password"`, "service web", "no file "+filepath.Join(dir, "cart-db-password"))

	// A source that fails for a moment: retryable.
	_, _, err = New(nil, Options{Secrets: flakySource{}}).containerSpecs(ctx, tgt, "r1", engine.RoleStable, svc, []int{0})
	isType(err, workflows.ErrSecretUnavailable, false, "vault sealed")

	// Inputs the spec validation would have refused.
	both := svc
	both.Env = map[string]string{"DB_PASSWORD": "x"}
	_, _, err = a.containerSpecs(ctx, tgt, "r1", engine.RoleStable, both, []int{0})
	isType(err, workflows.ErrBadInput, true, "DB_PASSWORD is set in both env and secrets")
	bad := svc
	bad.Secrets = map[string]string{"DB_PASSWORD": "../web-db-password"}
	_, _, err = a.containerSpecs(ctx, tgt, "r1", engine.RoleStable, bad, []int{0})
	isType(err, workflows.ErrBadInput, true, "invalid secret name")

	// The exported ContainerSpec never builds a spec without the service's secrets.
	_, err = ContainerSpec(tgt, "r1", engine.RoleStable, svc, 0)
	isType(err, workflows.ErrBadInput, true, "has secrets")
	cs, err := ContainerSpec(tgt, "r1", engine.RoleStable, spec.Service{Name: "web", Image: "slipway/demo", Version: "1", Env: map[string]string{"A": "1"}}, 0)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"A": "1"}, cs.Env)
}

func TestRedact(t *testing.T) {
	values := []string{"hunter2-db", "abc"}
	msg := "start slipway.x.a.web.1.0.0.0: InvalidRequest: bad env DB_PASSWORD=hunter2-db (abc)"

	err := redact(temporal.NewNonRetryableApplicationError(msg, workflows.ErrInvalid, nil), values)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, workflows.ErrInvalid, ae.Type())
	require.True(t, ae.NonRetryable())
	require.Equal(t, "start slipway.x.a.web.1.0.0.0: InvalidRequest: bad env DB_PASSWORD=[redacted] (abc)", ae.Message(),
		"values of 4 bytes or more are redacted, shorter ones would garble the message")

	err = redact(temporal.NewApplicationError(msg, workflows.ErrEngineInternal), values)
	require.True(t, errors.As(err, &ae))
	require.False(t, ae.NonRetryable())
	require.NotContains(t, err.Error(), "hunter2-db")

	err = redact(errors.New(msg), values)
	require.NotContains(t, err.Error(), "hunter2-db")

	// Errors without a value pass through untouched (context.Canceled stays itself).
	require.Same(t, context.Canceled, redact(context.Canceled, values))
	plain := temporal.NewApplicationError("engine down", workflows.ErrEngineUnavailable)
	require.Equal(t, plain, redact(plain, values))
	require.NoError(t, redact(nil, values))
}
