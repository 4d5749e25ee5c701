package dockerengine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/slipwayhq/slipway/engine"
)

// secretValue is a fresh value no other text of a test's environment can contain.
func secretValue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "sv-" + hex.EncodeToString(b)
}

// secretFile reads a file as a container sees it (through /proc/<pid>/root of its process:
// the engine's archive API shows the mount point of a secret, not the secret; the test
// daemon runs on this machine, as root) and says whether it holds want, with its mode and
// owner; the content is never printed.
func secretFile(t *testing.T, s *Swarm, id, path, want string) (same bool, mode os.FileMode, uid uint32) {
	t.Helper()
	ci, err := s.cli.ContainerInspect(ctxT(t, 30*time.Second), id)
	if err != nil || ci.State == nil || ci.State.Pid == 0 {
		t.Fatalf("inspect container %s: %v (not running?)", id, err)
	}
	p := fmt.Sprintf("/proc/%d/root%s", ci.State.Pid, path)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s of container %s: %v", path, id, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no owner of %s", p)
	}
	if string(b) != want {
		t.Logf("%s of container %s: %d bytes (the value has %d)", path, id, len(b), len(want))
	}
	return string(b) == want, fi.Mode().Perm(), st.Uid
}

// swarmSecretsOf lists the Swarm secrets of an environment, by name.
func swarmSecretsOf(t *testing.T, s *Swarm, env string) []string {
	t.Helper()
	list, err := s.cli.SecretList(ctxT(t, 30*time.Second), swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", engine.LabelEnvironment+"="+env))})
	if err != nil {
		t.Fatalf("list swarm secrets: %v", err)
	}
	var out []string
	for _, sec := range list {
		out = append(out, sec.Spec.Name)
	}
	slices.Sort(out)
	return out
}

// serviceSecret is the Swarm secret name the service of a version references for file.
func serviceSecret(t *testing.T, s *Swarm, k engine.Key, file string) string {
	t.Helper()
	svc, ok, err := s.service(ctxT(t, 30*time.Second), "test", k)
	if err != nil || !ok {
		t.Fatalf("service of %s: %v %v", k.Version, ok, err)
	}
	for _, r := range svc.Spec.TaskTemplate.ContainerSpec.Secrets {
		if r.File != nil && r.File.Name == file {
			return r.SecretName
		}
	}
	t.Fatalf("service of %s has no secret file %s: %+v", k.Version, file, svc.Spec.TaskTemplate.ContainerSpec.Secrets)
	return ""
}

// TestSwarmSecrets: a secret of a service on a swarm is a Swarm secret, a file at
// /run/secrets/<name> (mode 0400, owned by the image's user) with the value, pointed to by
// <VAR>_FILE; the value is in no inspect of the service, its task container or the secret.
// A changed value is a new Swarm secret for the next version while the running version
// keeps the old one; a secret no service uses any more goes with the last service using it.
func TestSwarmSecrets(t *testing.T) {
	f, s := swarmFixture(t, "sw")
	ctx := ctxT(t, 4*time.Minute)
	const file = "web-db-password"
	v1Value, v2Value := secretValue(t), secretValue(t)
	withSecret := func(tag string, slot int, value string) engine.ContainerSpec {
		cs := f.spec("sw", "web", tag, slot)
		cs.Env = map[string]string{"DB_PASSWORD_FILE": "/run/secrets/" + file, "LOG_LEVEL": "info"}
		cs.Secrets = []engine.SecretFile{{Name: file, Value: value}}
		return cs
	}

	v1 := withSecret("1.0.0", 0, v1Value)
	mustEnsure(t, s, v1)
	c := mustHealthy(t, s, v1.ContainerName())
	if c.ID == "" {
		t.Fatalf("replica without a container: %+v", c)
	}
	same, mode, uid := secretFile(t, s, c.ID, "/run/secrets/"+file, v1Value)
	if !same {
		t.Fatalf("/run/secrets/%s does not hold the secret's value", file)
	}
	if mode != 0o400 || uid != 65534 {
		t.Fatalf("/run/secrets/%s: mode %04o, uid %d; want 0400 owned by the image's user 65534", file, mode, uid)
	}

	_, rawSvc, err := s.cli.ServiceInspectWithRaw(ctx, SwarmServiceName(v1.Key), swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rawSvc, []byte(v1Value)) {
		t.Fatal("docker service inspect shows the secret's value")
	}
	ci, rawCtr, err := s.cli.ContainerInspectWithRaw(ctx, c.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rawCtr, []byte(v1Value)) {
		t.Fatal("docker inspect of the task container shows the secret's value")
	}
	if !slices.Contains(ci.Config.Env, "DB_PASSWORD_FILE=/run/secrets/"+file) {
		t.Fatalf("task container env %v has no DB_PASSWORD_FILE", ci.Config.Env)
	}
	for _, e := range ci.Config.Env {
		if strings.HasPrefix(e, "DB_PASSWORD=") {
			t.Fatal("the task container has the secret as a variable")
		}
	}
	name1 := SwarmSecretName(f.env, file, v1Value)
	if got := serviceSecret(t, s, v1.Key, file); got != name1 {
		t.Fatalf("version 1's secret %q, want %q", got, name1)
	}
	sec, rawSec, err := s.cli.SecretInspectWithRaw(ctx, name1)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rawSec, []byte(v1Value)) || strings.Contains(strings.Join(mapValues(sec.Spec.Labels), " "), v1Value) {
		t.Fatal("docker secret inspect shows the secret's value")
	}
	if sec.Spec.Labels[engine.LabelEnvironment] != f.env || sec.Spec.Labels[labelSecret] != file || sec.Spec.Labels[engine.LabelManaged] != "true" {
		t.Fatalf("swarm secret labels %v", sec.Spec.Labels)
	}

	// The value changes: the next version gets a new Swarm secret; version 1, which runs,
	// keeps its own, even for a slot added after the change.
	v2 := withSecret("2.0.0", 0, v2Value)
	mustEnsure(t, s, v2)
	c2 := mustHealthy(t, s, v2.ContainerName())
	name2 := SwarmSecretName(f.env, file, v2Value)
	if name2 == name1 {
		t.Fatal("two values share a swarm secret name")
	}
	if got := serviceSecret(t, s, v2.Key, file); got != name2 {
		t.Fatalf("version 2's secret %q, want %q", got, name2)
	}
	if same, _, _ := secretFile(t, s, c2.ID, "/run/secrets/"+file, v2Value); !same {
		t.Fatal("version 2's file does not hold the new value")
	}
	mustEnsure(t, s, withSecret("1.0.0", 1, v2Value))
	if got := serviceSecret(t, s, v1.Key, file); got != name1 {
		t.Fatalf("version 1's secret became %q, want it kept at %q", got, name1)
	}
	if got := swarmSecretsOf(t, s, f.env); !sameSet(got, name1, name2) {
		t.Fatalf("swarm secrets %v, want %s and %s", got, name1, name2)
	}

	// Version 1 goes: its secret, used by nothing else, goes with it; version 2's stays.
	for slot := range 2 {
		if err := s.Remove(ctx, f.spec("sw", "web", "1.0.0", slot).ContainerName()); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
	if got := swarmSecretsOf(t, s, f.env); !sameSet(got, name2) {
		t.Fatalf("swarm secrets after version 1 went: %v, want only %s", got, name2)
	}
	if err := s.Remove(ctx, v2.ContainerName()); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if got := swarmSecretsOf(t, s, f.env); len(got) != 0 {
		t.Fatalf("swarm secrets left after every service went: %v", got)
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestSwarmSecretName: names Swarm accepts (at most 64 characters), the same for the same
// value, another for another value, environment or secret.
func TestSwarmSecretName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`)
	long := strings.Repeat("s", 63)
	seen := map[string]bool{}
	for _, c := range [][3]string{{"prod", "db", "a"}, {"prod", "db", "b"}, {"stage", "db", "a"}, {"prod", "db2", "a"},
		{strings.Repeat("e", 40), long, "a"}, {strings.Repeat("e", 40), long[:62] + "t", "a"}} {
		n := SwarmSecretName(c[0], c[1], c[2])
		if !valid.MatchString(n) || len(n) > 64 {
			t.Errorf("%v: %q is not a valid swarm secret name", c, n)
		}
		if n != SwarmSecretName(c[0], c[1], c[2]) {
			t.Errorf("%v: not deterministic", c)
		}
		if seen[n] {
			t.Errorf("%v: %q is taken", c, n)
		}
		seen[n] = true
	}
	if n := SwarmSecretName("prod", "db", "a"); !strings.HasPrefix(n, "slipway-prod-db-") || len(n) != len("slipway-prod-db-")+8 {
		t.Errorf("plain name %q", n)
	}
}

// TestSwarmPlacement: placement and reservations reach the Swarm service; a constraint the
// node satisfies runs, one no node satisfies leaves the task pending, and WaitHealthy ends at
// its deadline saying no node can take the task and naming the constraint.
func TestSwarmPlacement(t *testing.T) {
	f, s := swarmFixture(t, "sw")
	ctx := ctxT(t, 3*time.Minute)
	ok := f.spec("sw", "web", "1.0.0", 0)
	ok.Placement = engine.Placement{Constraints: []string{"node.role==manager", "node.platform.os==linux"}, Spread: []string{"node.labels.zone"}}
	ok.MemoryBytes, ok.ReserveMemoryBytes, ok.NanoCPUs, ok.ReserveNanoCPUs = 64<<20, 16<<20, 1e9, 1e8
	mustEnsure(t, s, ok)
	mustHealthy(t, s, ok.ContainerName())
	svc, found, err := s.service(ctx, "test", ok.Key)
	if err != nil || !found {
		t.Fatalf("service: %v %v", found, err)
	}
	pl := svc.Spec.TaskTemplate.Placement
	if pl == nil || !slices.Equal(pl.Constraints, ok.Placement.Constraints) || len(pl.Preferences) != 1 ||
		pl.Preferences[0].Spread == nil || pl.Preferences[0].Spread.SpreadDescriptor != "node.labels.zone" {
		t.Fatalf("placement %+v", pl)
	}
	r := svc.Spec.TaskTemplate.Resources
	if r == nil || r.Reservations == nil || r.Reservations.MemoryBytes != 16<<20 || r.Reservations.NanoCPUs != 1e8 ||
		r.Limits == nil || r.Limits.MemoryBytes != 64<<20 || r.Limits.NanoCPUs != 1e9 {
		t.Fatalf("resources %+v", r)
	}

	nowhere := f.spec("sw", "web", "2.0.0", 0)
	nowhere.Placement = engine.Placement{Constraints: []string{"node.labels.tier==nowhere"}}
	mustEnsure(t, s, nowhere)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = s.WaitHealthy(wctx, nowhere.ContainerName())
	wantKind(t, err, engine.KindUnhealthy)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no node of the swarm can take its task") ||
		!strings.Contains(err.Error(), "node.labels.tier==nowhere") {
		t.Fatalf("error does not say no node satisfies the constraint: %v", err)
	}
	if err := s.Remove(ctx, nowhere.ContainerName()); err != nil {
		t.Fatalf("remove the unplaceable version: %v", err)
	}
}

// TestSwarmSecretGoneAtCreate: a service created with a Swarm secret that was removed
// meanwhile (another worker's prune) is refused as invalid, naming the secret: what
// Swarm.create retries once on, after making the secret again; create itself succeeds.
func TestSwarmSecretGoneAtCreate(t *testing.T) {
	f, s := swarmFixture(t, "sw")
	ctx := ctxT(t, 2*time.Minute)
	cs := f.spec("sw", "web", "1.0.0", 0)
	cs.Network = SwarmNetworkName(cs.Network)
	cs.Secrets = []engine.SecretFile{{Name: "gone", Value: secretValue(t)}}
	refs, err := s.ensureSecrets(ctx, "test", cs)
	if err != nil || len(refs) != 1 {
		t.Fatalf("ensure secrets: %v %v", refs, err)
	}
	if err := s.cli.SecretRemove(ctx, refs[0].SecretID); err != nil {
		t.Fatal(err)
	}
	nets, err := s.networksNamed(ctx, "test", cs.Network)
	if err != nil || len(nets) != 1 {
		t.Fatalf("network: %v %v", nets, err)
	}
	_, err = s.cli.ServiceCreate(ctx, serviceSpec(cs, nets[0].ID, refs), swarm.ServiceCreateOptions{})
	if err == nil {
		t.Fatal("a service with a removed secret was created")
	}
	if kindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("kind %s: %v; want InvalidRequest naming the secret", kindOf(err), err)
	}
	if err := s.create(ctx, "test", cs, nets[0].ID); err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := serviceSecret(t, s, cs.Key, "gone"); got != refs[0].SecretName {
		t.Fatalf("secret %q, want %q", got, refs[0].SecretName)
	}
}
