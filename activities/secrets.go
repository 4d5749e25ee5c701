package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Default secrets directories the commands offer (the --secrets-dir flag of slipway dev
// and slipway worker).
const (
	// DefaultDevSecretsDir is the secrets directory of `slipway dev`, relative to the
	// working directory (beside the dev server's other state in .slipway/).
	DefaultDevSecretsDir = ".slipway/secrets"
	// DefaultWorkerSecretsDir is the secrets directory of `slipway worker`.
	DefaultWorkerSecretsDir = "/etc/slipway/secrets"
)

// SecretSource resolves the secret names of a service (services[].secrets) to their
// values. It lives on the worker only: values never travel through the API or the
// workflow history, and the activities put them nowhere but in the environment of the
// containers they create on a plain engine, or in Swarm secrets (files in /run/secrets,
// never variables) on a swarm.
type SecretSource interface {
	// Lookup returns the value of the named secret. A secret that does not exist, or that
	// exists but cannot be used (see DirSecrets), is an error wrapping ErrSecretMissing: the
	// release fails at once. Any other error counts as transient and is retried. An error
	// must never contain the value.
	Lookup(ctx context.Context, name string) (string, error)
}

// ErrSecretMissing is wrapped by SecretSource errors that no retry can fix: the secret
// does not exist or cannot be used as it is.
var ErrSecretMissing = errors.New("secret missing")

// maxSecretBytes caps one secret's value: more is a mistake (a wrong file), and Docker
// passes environment variables on the kernel's limited argument space.
const maxSecretBytes = 64 << 10

// DirSecrets returns a SecretSource reading one file per secret from dir: the value of
// secret "cart-db-password" is the content of <dir>/cart-db-password, with one trailing
// newline ("\n" or "\r\n") removed. Files are read at every lookup, so a changed value
// reaches the next container created (containers that run keep theirs).
//
// A file is refused (ErrSecretMissing, the message says why) when it is not a regular
// file, is empty, is larger than 64 KiB, contains a NUL byte, or when its mode gives any
// permission to others or group write (e.g. 0644, 0666, 0664): chmod 600 (or 640/440 to
// share it with a group, as Kubernetes' fsGroup does). Refusing, not warning, because a
// warning in a worker log is easily missed and the fix is one chmod. Symbolic links are
// followed (Kubernetes secret volumes are made of them) and the mode checked is the
// target's. Secret names are checked against spec.SecretNamePattern, so a lookup never
// leaves dir.
func DirSecrets(dir string) SecretSource { return dirSecrets{dir: dir} }

type dirSecrets struct{ dir string }

func (d dirSecrets) Lookup(ctx context.Context, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !spec.ValidSecretName(name) {
		// The name is not repeated: it may be a value written in the wrong place.
		return "", fmt.Errorf("invalid secret name (want %s): %w", spec.SecretNamePattern, ErrSecretMissing)
	}
	if d.dir == "" {
		return "", fmt.Errorf("no secrets directory configured: %w", ErrSecretMissing)
	}
	p := filepath.Join(d.dir, name)
	f, err := os.Open(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("no file %s: %w", p, ErrSecretMissing)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("the worker may not read %s (%v): %w", p, errors.Unwrap(err), ErrSecretMissing)
	case err != nil:
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	defer func() { _ = f.Close() }() // opened read-only: a failed close loses nothing
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file (%s): %w", p, fi.Mode().Type(), ErrSecretMissing)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return "", fmt.Errorf("%s has mode %04o, open to others or writable by its group: chmod 600 %s (or 640 to share it with a group): %w", p, perm, p, ErrSecretMissing)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("%s is larger than %d bytes: %w", p, maxSecretBytes, ErrSecretMissing)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	switch {
	case v == "":
		return "", fmt.Errorf("%s is empty: %w", p, ErrSecretMissing)
	case strings.ContainsRune(v, 0):
		return "", fmt.Errorf("%s contains a NUL byte, which an environment variable cannot hold: %w", p, ErrSecretMissing)
	}
	return v, nil
}

// secretMissing is the permanent error of a secret the worker cannot provide: it names the
// service, the variable and the secret, never a value.
func secretMissing(service, variable, name, why string) error {
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("service %s: secret %q (for %s) is missing on this worker: %s", service, name, variable, why),
		workflows.ErrSecretMissing, nil)
}

// resolveSecrets reads the values of a service's secrets from the worker's SecretSource:
// environment variable → value, each secret looked up once. The map lives in memory only,
// for the container specs of this activity call.
func (a *Activities) resolveSecrets(ctx context.Context, s spec.Service) (map[string]string, error) {
	if len(s.Secrets) == 0 {
		return nil, nil
	}
	vars := make([]string, 0, len(s.Secrets))
	for k := range s.Secrets {
		vars = append(vars, k)
	}
	sort.Strings(vars)
	out := make(map[string]string, len(vars))
	for _, k := range vars {
		name := s.Secrets[k]
		if !spec.ValidEnvName(k) {
			return nil, badInput("service %s: secrets: invalid environment variable name %q", s.Name, k)
		}
		if _, both := s.Env[k]; both {
			return nil, badInput("service %s: %s is set in both env and secrets", s.Name, k)
		}
		if !spec.ValidSecretName(name) {
			return nil, badInput("service %s: secrets.%s: invalid secret name (want %s)", s.Name, k, spec.SecretNamePattern)
		}
		if a.opts.Secrets == nil {
			return nil, secretMissing(s.Name, k, name, "this worker has no secrets configured (start it with --secrets-dir)")
		}
		v, err := a.opts.Secrets.Lookup(ctx, name)
		switch {
		case err == nil:
			out[k] = v
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, ErrSecretMissing):
			return nil, secretMissing(s.Name, k, name, strings.TrimSuffix(err.Error(), ": "+ErrSecretMissing.Error()))
		default:
			return nil, temporal.NewApplicationError(
				fmt.Sprintf("service %s: reading secret %q (for %s): %v", s.Name, name, k, err), workflows.ErrSecretUnavailable)
		}
	}
	logInfo(ctx, "secrets resolved", "service", s.Name, "secrets", secretNames(s.Secrets))
	return out, nil
}

// containerSpecs builds the engine specs of slots of a service on a target with the
// service's secrets resolved into their environment (on a swarm: into secret files, with
// <VAR>_FILE in the environment): the one path every activity that creates containers
// takes. The returned values are the secrets' values, for redact.
func (a *Activities) containerSpecs(ctx context.Context, t workflows.Target, release string, role engine.Role, s spec.Service, slots []int) ([]engine.ContainerSpec, []string, error) {
	secrets, err := a.resolveSecrets(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	specs := make([]engine.ContainerSpec, len(slots))
	for i, slot := range slots {
		cs, err := containerSpec(t, release, role, s, slot, secrets)
		if err != nil {
			return nil, nil, err
		}
		specs[i] = cs
	}
	values := make([]string, 0, len(secrets))
	for _, v := range secrets {
		values = append(values, v)
	}
	return specs, values, nil
}

// minRedact is the shortest secret value redact looks for: shorter ones would match
// ordinary text (container names, numbers) and garble the message more than they protect.
const minRedact = 4

// redact replaces every secret value (of at least minRedact bytes) in err's message with
// "[redacted]", keeping the application error's type and retryability. It guards the one
// way a value could reach the workflow history despite everything else: an engine error
// that quotes the container's configuration.
func redact(err error, values []string) error {
	if err == nil || len(values) == 0 {
		return err
	}
	ae, isApp := err.(*temporal.ApplicationError) // activities return them unwrapped
	msg := err.Error()
	if isApp {
		msg = ae.Message()
		if c := ae.Unwrap(); c != nil {
			msg += ": " + c.Error()
		}
	}
	hit := false
	for _, v := range values {
		if len(v) >= minRedact && strings.Contains(msg, v) {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
			hit = true
		}
	}
	if !hit {
		return err
	}
	if isApp {
		if ae.NonRetryable() {
			return temporal.NewNonRetryableApplicationError(msg, ae.Type(), nil)
		}
		return temporal.NewApplicationError(msg, ae.Type())
	}
	return errors.New(msg)
}

// secretNames returns the secret names of services[].secrets (its values), sorted.
func secretNames(secrets map[string]string) []string {
	out := make([]string, 0, len(secrets))
	for _, name := range secrets {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
