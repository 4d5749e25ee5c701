package spec

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// MaxNameLength is the longest environment, cluster, service or load-test name. Names become
// parts of container names (slipway.<env>.<cluster>.<service>.<version>.<slot>) and DNS
// aliases, so they are DNS labels kept short.
const MaxNameLength = 40

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// headerRE is an HTTP header name (RFC 9110 token).
	headerRE     = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	envNameRE    = regexp.MustCompile(EnvNamePattern)
	secretNameRE = regexp.MustCompile(SecretNamePattern)
)

// EnvNamePattern is the pattern of an environment variable name in secrets (a portable
// shell name).
const EnvNamePattern = `^[A-Za-z_][A-Za-z0-9_]*$`

// SecretNamePattern is the pattern of a secret name: 1 to 63 lower-case letters, digits,
// '.', '_' and '-', starting with a letter or digit. It names a file in the worker's
// secrets directory, so it can never be a path ("..", "/").
const SecretNamePattern = `^[a-z0-9][a-z0-9._-]{0,62}$`

// ValidSecretName reports whether name is a valid secret name (SecretNamePattern).
func ValidSecretName(name string) bool { return secretNameRE.MatchString(name) }

// ValidEnvName reports whether name is a valid environment variable name for secrets
// (EnvNamePattern).
func ValidEnvName(name string) bool { return envNameRE.MatchString(name) }

// secretWords are the parts of an environment variable name that say its value is a secret.
var secretWords = []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "PRIVATE_KEY"}

// LooksLikeSecret reports whether an environment variable name says its value is a secret
// (it contains PASSWORD, SECRET, TOKEN, API_KEY, PRIVATE_KEY …, in any case, with '-' or
// '.' read as '_'). Such names are refused in env: their values belong in secrets.
func LooksLikeSecret(name string) bool {
	n := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// NamePattern is the JSON Schema pattern of environment, cluster, service and load-test names.
const NamePattern = `^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`

// VersionPattern is the JSON Schema pattern of a service version (tag or sha256 digest).
const VersionPattern = `^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[0-9a-f]{64})$`

// DurationPattern is the JSON Schema pattern of a duration string (Go's time.ParseDuration
// syntax without sign).
const DurationPattern = `^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// Methods allowed in probes.
var probeMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// minMemory is the least memory Docker accepts as a container limit (6 MiB).
const minMemory = 6 << 20

// validator checks the decoded Environment. With positions from the decoder it points at
// lines; without (Validate on an Environment built in code) it reports paths only.
type validator struct {
	file string
	pos  map[string]*yaml.Node
	bad  map[string]bool
	errs Errors
}

// Validate checks an Environment built or changed in code (after decoding or ApplyOverrides)
// and returns Errors with field paths (no lines). Parse already validates.
func (env *Environment) Validate() error {
	v := &validator{}
	v.environment(env)
	v.sampleBudget(env)
	return v.errs.sorted().orNil()
}

// sampleBudget checks, on the defaulted spec, that every verification window can reach its
// min_samples: a window of D at interval I sends D/I requests to each replica. A window that
// cannot would only ever give inconclusive verdicts. Unset fields are skipped.
func (v *validator) sampleBudget(env *Environment) {
	for i, s := range env.Services {
		vf := s.Verification
		if vf == nil || vf.Skip || vf.Interval <= 0 || vf.MinSamples <= 0 {
			continue
		}
		p := fmt.Sprintf("services[%d]", i)
		check := func(field string, window Duration, what string) {
			if window <= 0 {
				return
			}
			if n := int(window.D() / vf.Interval.D()); n < vf.MinSamples {
				v.errorf(field, "%s of %s at verification.interval %s sends %d requests per replica, fewer than verification.min_samples %d: the verdict could never be reached (lengthen it, shorten the interval, or lower min_samples)",
					what, window, vf.Interval, n, vf.MinSamples)
			}
		}
		check(p+".verification.duration", vf.Duration, "a verification window")
		if s.Canary != nil && !s.Canary.Skip {
			check(p+".canary.soak", s.Canary.Soak, "the canary soak")
		}
	}
}

// parentPath strips the last segment of a field path.
func parentPath(p string) string {
	switch {
	case strings.HasSuffix(p, `"]`):
		if i := strings.LastIndex(p, `["`); i >= 0 {
			return p[:i]
		}
	case strings.HasSuffix(p, "]"):
		if i := strings.LastIndex(p, "["); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

// node returns the node at path or, when the field is missing, at its closest ancestor.
func (v *validator) node(p string) *yaml.Node {
	for {
		if n, ok := v.pos[p]; ok {
			return n
		}
		if p == "" {
			return nil
		}
		p = parentPath(p)
	}
}

// present reports whether path was written in the file with a non-null value.
func (v *validator) present(p string) bool {
	n, ok := v.pos[p]
	return ok && !isNull(n)
}

// suppressed is true when path or an ancestor already has a decode error: its value is not
// what the author wrote, so further complaints would only confuse.
func (v *validator) suppressed(p string) bool {
	for {
		if v.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
		p = parentPath(p)
	}
}

func (v *validator) errorf(p, format string, args ...any) {
	v.errorAt(p, p, format, args...)
}

// errorAt reports a problem of field path p at the position of the node at posPath (used
// when a value is inherited from defaults).
func (v *validator) errorAt(p, posPath, format string, args ...any) {
	if v.suppressed(p) || v.suppressed(posPath) {
		return
	}
	e := &FieldError{File: v.file, Path: p, Message: fmt.Sprintf(format, args...)}
	if n := v.node(posPath); n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, e)
}

func (v *validator) name(p, kind, s string) {
	switch {
	case s == "":
		v.errorf(p, "%s name is required", kind)
	case len(s) > MaxNameLength || !nameRE.MatchString(s):
		v.errorf(p, "%q is not a valid %s name: use 1 to %d lower-case letters, digits and '-', starting and ending with a letter or digit (names become parts of container names and DNS aliases)", s, kind, MaxNameLength)
	}
}

// positiveIfSet checks an int that is optional (0 = unset) but must be ≥ min when written.
func (v *validator) atLeast(p string, n, minimum int) {
	if n < minimum && (n != 0 || v.present(p)) {
		if n == 0 {
			v.errorf(p, "must be at least %d (leave the field out for the default)", minimum)
			return
		}
		v.errorf(p, "must be at least %d, got %d", minimum, n)
	}
}

// durationAtLeast checks an optional duration (0 = unset) that must be ≥ minimum when written.
func (v *validator) durationAtLeast(p string, d Duration, minimum time.Duration) {
	if d.D() < 0 {
		v.errorf(p, "must not be negative, got %s", d)
		return
	}
	if d.D() < minimum && (d != 0 || v.present(p)) {
		v.errorf(p, "must be at least %s, got %s (leave the field out for the default)", minimum, d)
	}
}

func (v *validator) durationNonNegative(p string, d Duration) {
	if d.D() < 0 {
		v.errorf(p, "must not be negative, got %s", d)
	}
}

func (v *validator) environment(env *Environment) {
	v.name("environment", "environment", env.Environment)
	v.atLeast("rollout.max_parallel_clusters", env.Rollout.MaxParallelClusters, 0)
	v.atLeast("rollout.max_parallel_services", env.Rollout.MaxParallelServices, 0)

	clusters := map[string]int{}
	if len(env.Clusters) == 0 {
		v.errorf("clusters", "at least one cluster is required")
	}
	canaries := 0
	for i := range env.Clusters {
		c := &env.Clusters[i]
		p := fmt.Sprintf("clusters[%d]", i)
		v.cluster(c, p)
		if c.Name != "" {
			if j, dup := clusters[c.Name]; dup {
				v.errorf(p+".name", "duplicate cluster %q (also clusters[%d])", c.Name, j)
			} else {
				clusters[c.Name] = i
			}
		}
		if c.Canary {
			canaries++
			if canaries == 2 {
				v.errorf(p+".canary", "only one cluster can be the canary cluster")
			}
		}
	}

	v.defaults(&env.Defaults)

	services := map[string]int{}
	if len(env.Services) == 0 {
		v.errorf("services", "at least one service is required")
	}
	for i := range env.Services {
		s := &env.Services[i]
		p := fmt.Sprintf("services[%d]", i)
		if s.Name != "" {
			if j, dup := services[s.Name]; dup {
				v.errorf(p+".name", "duplicate service %q (also services[%d])", s.Name, j)
			} else {
				services[s.Name] = i
			}
		}
	}
	loadTests := map[string]int{}
	for i := range env.LoadTests {
		lt := &env.LoadTests[i]
		if lt.Name != "" {
			if j, dup := loadTests[lt.Name]; dup {
				v.errorf(fmt.Sprintf("load_tests[%d].name", i), "duplicate load test %q (also load_tests[%d])", lt.Name, j)
			} else {
				loadTests[lt.Name] = i
			}
		}
	}
	for i := range env.Services {
		v.service(env, i, clusters, services, loadTests)
	}
	v.cycles(env, services)
	for i := range env.LoadTests {
		v.loadTest(env, i, clusters, services)
	}
	v.notifications(env.Notifications)
}

func (v *validator) cluster(c *Cluster, p string) {
	v.name(p+".name", "cluster", c.Name)
	v.atLeast(p+".wave", c.Wave, 1)
	v.atLeast(p+".policy.max_replicas", c.Policy.MaxReplicas, 0)
	switch c.Probes {
	case "", ProbesEngine, ProbesDirect:
	default:
		v.errorf(p+".probes", "probes must be %q (next to the replicas, the default) or %q (from the worker), got %q", ProbesEngine, ProbesDirect, c.Probes)
	}
	v.placement(p+".policy.placement", c.Policy.Placement)
	switch c.Kind {
	case "", KindEngine:
		if c.Policy.Placement != nil {
			// A service's own placement is ignored on a plain engine (it may also run on a
			// swarm); a cluster's applies to nothing there.
			v.errorf(p+".policy.placement", "placement applies to a swarm's nodes: cluster %q is a plain Docker engine (set kind: swarm, or remove placement)", c.Name)
		}
	case KindSwarm:
		if c.Probes == ProbesDirect {
			v.errorf(p+".probes", "a swarm cluster's replicas are reached on its overlay network: probes must be %q there, got %q", ProbesEngine, c.Probes)
		}
	default:
		v.errorf(p+".kind", "kind must be %q (a Docker engine, the default) or %q (a Swarm manager), got %q", KindEngine, KindSwarm, c.Kind)
	}
	for k := range c.Labels {
		if k == "" {
			v.errorf(p+".labels", "label keys must not be empty")
		}
	}
	scheme := ""
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		switch {
		case err != nil:
			v.errorf(p+".endpoint", "invalid endpoint %q: %v", c.Endpoint, err)
		case u.Scheme == "unix":
			scheme = u.Scheme
			if u.Path == "" || !path.IsAbs(u.Path) {
				v.errorf(p+".endpoint", "a unix endpoint needs an absolute socket path, e.g. unix:///var/run/docker.sock")
			}
		case u.Scheme == "tcp":
			scheme = u.Scheme
			host, port, err := net.SplitHostPort(u.Host)
			if err != nil || host == "" {
				v.errorf(p+".endpoint", "a tcp endpoint needs host:port, e.g. tcp://docker-1.example.com:2376")
			} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				v.errorf(p+".endpoint", "port %q is out of range 1..65535", port)
			}
			if u.Path != "" && u.Path != "/" {
				v.errorf(p+".endpoint", "a tcp endpoint has no path, got %q", u.Path)
			}
		default:
			v.errorf(p+".endpoint", "endpoint %q must start with unix:// or tcp:// (empty means the worker's DOCKER_HOST)", c.Endpoint)
		}
	}
	if c.TLS != nil {
		if c.Endpoint == "" || (scheme != "" && scheme != "tcp") {
			v.errorf(p+".tls", "TLS files apply to tcp:// endpoints only")
		}
		if (c.TLS.Cert == "") != (c.TLS.Key == "") {
			v.errorf(p+".tls", "cert and key go together: set both or neither")
		}
	}
}

func (v *validator) defaults(d *ServiceDefaults) {
	v.atLeast("defaults.replicas", d.Replicas, 1)
	v.resources("defaults.resources", d.Resources)
	v.health("defaults.health", d.Health)
	v.canary("defaults.canary", d.Canary)
	v.rollout("defaults.rollout", d.Rollout)
	v.verification("defaults.verification", d.Verification)
	v.rollback("defaults.rollback", d.Rollback)
}

func (v *validator) service(env *Environment, i int, clusters, services, loadTests map[string]int) {
	s := &env.Services[i]
	p := fmt.Sprintf("services[%d]", i)
	v.name(p+".name", "service", s.Name)
	v.image(p, s.Image, s.Version)
	v.atLeast(p+".replicas", s.Replicas, 1)
	if s.Port != 0 || v.present(p+".port") {
		if s.Port < 1 || s.Port > 65535 {
			v.errorf(p+".port", "port %d is out of range 1..65535", s.Port)
		}
	}
	for k, val := range s.Env {
		kp := joinKey(p+".env", k)
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.errorf(kp, "invalid environment variable name %q", k)
		}
		if strings.ContainsRune(val, 0) {
			v.errorf(kp, "environment variable values cannot contain NUL bytes")
		}
		if _, both := s.Secrets[k]; both {
			v.errorf(kp, "%s is also in secrets: a variable comes from env or from secrets, not both (keep it in secrets only)", k)
		} else if LooksLikeSecret(k) {
			to := k
			if !envNameRE.MatchString(k) {
				to = "<NAME>" // secrets take portable names only
			}
			v.errorf(kp, "%s looks like a secret: env values are stored in the release's workflow history, visible in the Web UI; move it to secrets (secrets: {%s: <secret-name>}) and give the value to the worker as a file in its secrets directory", k, to)
		}
	}
	for k, name := range s.Secrets {
		kp := joinKey(p+".secrets", k)
		if !envNameRE.MatchString(k) {
			v.errorf(kp, "invalid environment variable name %q: use letters, digits and '_', not starting with a digit", k)
		}
		switch {
		case name == "":
			v.errorf(kp, "secret name is required (the name of a file in the worker's secrets directory, not the value)")
		case !secretNameRE.MatchString(name):
			// The name is not repeated: it may be a value written by mistake.
			v.errorf(kp, "invalid secret name: use 1 to 63 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit (it names a file in the worker's secrets directory; write the secret's name here, never its value)")
		}
	}
	v.resources(p+".resources", s.Resources)
	v.placement(p+".placement", s.Placement)
	for j, m := range s.Mounts {
		mp := fmt.Sprintf("%s.mounts[%d]", p, j)
		if m.Source == "" || !path.IsAbs(m.Source) {
			v.errorf(mp+".source", "mount source must be an absolute host path, got %q", m.Source)
		}
		if m.Target == "" || !path.IsAbs(m.Target) {
			v.errorf(mp+".target", "mount target must be an absolute container path, got %q", m.Target)
		}
	}
	v.health(p+".health", s.Health)
	v.canary(p+".canary", s.Canary)
	v.rollout(p+".rollout", s.Rollout)
	v.verification(p+".verification", s.Verification)
	v.rollback(p+".rollback", s.Rollback)
	v.durationNonNegative(p+".stop_grace", s.StopGrace)
	if s.StopGrace.D() > MaxStopGrace {
		v.errorf(p+".stop_grace", "stop_grace %s is longer than the %s allowed (how long a stopped replica gets between SIGTERM and SIGKILL)", s.StopGrace, MaxStopGrace)
	}

	// Clusters.
	seen := map[string]bool{}
	for j, c := range s.Clusters {
		cp := fmt.Sprintf("%s.clusters[%d]", p, j)
		if _, ok := clusters[c]; !ok {
			v.errorf(cp, "unknown cluster %q%s", c, didYouMean(c, keys(clusters)))
		}
		if seen[c] {
			v.errorf(cp, "cluster %q is listed twice", c)
		}
		seen[c] = true
	}
	// Dependencies.
	seenDep := map[string]bool{}
	for j, dep := range s.DependsOn {
		dp := fmt.Sprintf("%s.depends_on[%d]", p, j)
		if _, ok := services[dep]; !ok {
			v.errorf(dp, "unknown service %q%s", dep, didYouMean(dep, keys(services)))
		}
		if seenDep[dep] {
			v.errorf(dp, "service %q is listed twice", dep)
		}
		seenDep[dep] = true
	}

	// Rules on effective values: the service's own or those inherited from defaults.
	replicas, replicasAt := s.Replicas, p+".replicas"
	if replicas == 0 && env.Defaults.Replicas != 0 {
		replicas, replicasAt = env.Defaults.Replicas, "defaults.replicas"
	}
	if replicas == 0 {
		replicas, replicasAt = 1, p
	}
	canaryReplicas, canaryAt := 0, ""
	if s.Canary != nil && s.Canary.Replicas != 0 {
		canaryReplicas, canaryAt = s.Canary.Replicas, p+".canary.replicas"
	} else if env.Defaults.Canary != nil && env.Defaults.Canary.Replicas != 0 {
		canaryReplicas, canaryAt = env.Defaults.Canary.Replicas, "defaults.canary.replicas"
	}
	swarmChecked := false
	for _, c := range serviceClusterNames(env, s) {
		ci, ok := clusters[c]
		if !ok {
			continue
		}
		cl := &env.Clusters[ci]
		if cl.Kind == KindSwarm && !swarmChecked {
			// On a swarm a secret is a file and <VAR>_FILE says where: that variable is
			// the secret's.
			swarmChecked = true
			for k := range s.Secrets {
				fk := k + "_FILE"
				_, inEnv := s.Env[fk]
				_, inSecrets := s.Secrets[fk]
				if inEnv || inSecrets {
					v.errorf(joinKey(p+".secrets", k), "on swarm cluster %q secret %s is a file, and %s says where it is: remove %s from env and secrets", c, k, fk, fk)
				}
			}
		}
		if s.Privileged && !cl.Policy.AllowPrivileged {
			v.errorf(p+".privileged", "service %q may not run privileged on cluster %q: its policy does not set allow_privileged", s.Name, c)
		}
		if len(s.Mounts) > 0 && !cl.Policy.AllowHostMounts {
			v.errorf(p+".mounts", "service %q may not mount host paths on cluster %q: its policy does not set allow_host_mounts", s.Name, c)
		}
		if limit := cl.Policy.MaxReplicas; limit > 0 {
			if replicas > limit {
				v.errorAt(p+".replicas", replicasAt, "%d replicas exceed cluster %q's policy.max_replicas %d", replicas, c, limit)
			}
			if canaryReplicas > limit {
				v.errorAt(p+".canary.replicas", canaryAt, "%d canary replicas exceed cluster %q's policy.max_replicas %d", canaryReplicas, c, limit)
			}
		}
	}
	if lt, at := s.canaryLoadTest(env, p); lt != "" {
		if j, ok := loadTests[lt]; !ok {
			v.errorAt(p+".canary.load_test", at, "unknown load test %q%s", lt, didYouMean(lt, keys(loadTests)))
		} else if other := env.LoadTests[j].Service; other != s.Name && at != "defaults.canary.load_test" {
			v.errorAt(p+".canary.load_test", at, "load test %q targets service %q, not %q: a canary gate must load the canary's own service", lt, other, s.Name)
		}
	}
	if s.Port == 0 {
		if hp, at := s.healthPath(env, p); hp != "" {
			v.errorAt(p+".port", at, "health.http_path %q needs the service's port", hp)
		}
		if s.Verification != nil && len(s.Verification.Requests) > 0 && !s.Verification.Skip {
			v.errorf(p+".port", "verification requests need the service's port (or set verification.skip)")
		}
	}
}

// canaryLoadTest is the effective canary.load_test and where it was written.
func (s *Service) canaryLoadTest(env *Environment, p string) (string, string) {
	if s.Canary != nil && s.Canary.LoadTest != "" {
		return s.Canary.LoadTest, p + ".canary.load_test"
	}
	if env.Defaults.Canary != nil && env.Defaults.Canary.LoadTest != "" {
		return env.Defaults.Canary.LoadTest, "defaults.canary.load_test"
	}
	return "", ""
}

// healthPath is the effective health.http_path and where it was written.
func (s *Service) healthPath(env *Environment, p string) (string, string) {
	if s.Health != nil && s.Health.HTTPPath != "" {
		return s.Health.HTTPPath, p + ".health.http_path"
	}
	if s.Health != nil && s.Health.Image {
		return "", ""
	}
	if env.Defaults.Health != nil && env.Defaults.Health.HTTPPath != "" {
		return env.Defaults.Health.HTTPPath, "defaults.health.http_path"
	}
	return "", ""
}

func (v *validator) image(p, image, version string) {
	switch image {
	case "":
		v.errorf(p+".image", "image is required (a repository such as registry.example.com/shop/cart)")
	default:
		named, err := reference.ParseNormalizedNamed(image)
		switch {
		case err != nil:
			v.errorf(p+".image", "invalid image repository %q: %v", image, err)
		case !reference.IsNameOnly(named):
			v.errorf(p+".image", "image %q must be a repository without tag or digest; put the tag in version", image)
		}
	}
	switch {
	case version == "":
		v.errorf(p+".version", "version is required (a tag such as 1.4.2 or a digest sha256:…)")
	case strings.HasPrefix(version, "sha256:"):
		if !digestRE.MatchString(version) {
			v.errorf(p+".version", "invalid digest %q: want sha256: followed by 64 lower-case hex digits", version)
		}
	case !tagRE.MatchString(version):
		v.errorf(p+".version", "invalid tag %q: use up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'", version)
	}
}

func (v *validator) resources(p string, r *Resources) {
	if r == nil {
		return
	}
	if r.Memory != "" || v.present(p+".memory") {
		n, err := ParseMemory(r.Memory)
		switch {
		case err != nil:
			v.errorf(p+".memory", "%v", err)
		case n < minMemory:
			v.errorf(p+".memory", "memory %q is below Docker's minimum of 6Mi", r.Memory)
		}
	}
	if r.CPUs < 0 || (r.CPUs == 0 && v.present(p+".cpus")) {
		v.errorf(p+".cpus", "cpus must be greater than 0, got %g", r.CPUs)
	} else if r.CPUs > 1024 {
		v.errorf(p+".cpus", "cpus %g is more than any engine has (max 1024)", r.CPUs)
	}
	if r.ReserveMemory != "" || v.present(p+".reserve_memory") {
		n, err := ParseMemory(r.ReserveMemory)
		switch {
		case err != nil:
			v.errorf(p+".reserve_memory", "%v", err)
		case n <= 0:
			v.errorf(p+".reserve_memory", "reserve_memory must be more than 0 (leave the field out for no reservation)")
		case r.Memory != "":
			if limit, err := ParseMemory(r.Memory); err == nil && n > limit {
				v.errorf(p+".reserve_memory", "reserve_memory %q is more than the memory limit %q: a task could never use what is reserved for it", r.ReserveMemory, r.Memory)
			}
		}
	}
	if r.ReserveCPUs < 0 || (r.ReserveCPUs == 0 && v.present(p+".reserve_cpus")) {
		v.errorf(p+".reserve_cpus", "reserve_cpus must be greater than 0, got %g", r.ReserveCPUs)
	} else if r.ReserveCPUs > 1024 {
		v.errorf(p+".reserve_cpus", "reserve_cpus %g is more than any engine has (max 1024)", r.ReserveCPUs)
	} else if r.CPUs > 0 && r.ReserveCPUs > r.CPUs {
		v.errorf(p+".reserve_cpus", "reserve_cpus %g is more than the cpus limit %g", r.ReserveCPUs, r.CPUs)
	}
}

// Placement syntax, as Docker's swarm scheduler reads it (swarmkit's constraint parser):
// an attribute it knows, == or !=, and a value of the characters it accepts.
var (
	constraintRE      = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(==|!=)\s*(.*?)\s*$`)
	constraintValueRE = regexp.MustCompile(`^(?i)[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+$`)
	placementLabelRE  = regexp.MustCompile(`^(node|engine)\.labels\.[A-Za-z0-9_.-]+$`)
)

// constraintAttributes are the node attributes a constraint may test besides labels.
var constraintAttributes = []string{"node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch"}

// ConstraintProblem says what is wrong with a placement constraint, "" when it is valid.
func ConstraintProblem(c string) string {
	m := constraintRE.FindStringSubmatch(c)
	if m == nil {
		return fmt.Sprintf("constraint %q is not <attribute>==<value> or <attribute>!=<value> (e.g. node.labels.tier==frontend)", c)
	}
	attr, val := m[1], m[3]
	if !contains(constraintAttributes, attr) && !placementLabelRE.MatchString(attr) {
		return fmt.Sprintf("constraint %q tests %q: use one of %s, node.labels.<label> or engine.labels.<label>", c, attr, strings.Join(constraintAttributes, ", "))
	}
	if val == "" || !constraintValueRE.MatchString(val) {
		return fmt.Sprintf("constraint %q has no valid value after %s (letters, digits and :-_.*()?+[]^$|/ only)", c, m[2])
	}
	if attr == "node.role" && val != "manager" && val != "worker" {
		return fmt.Sprintf("constraint %q: node.role is manager or worker", c)
	}
	return ""
}

func (v *validator) placement(p string, pl *Placement) {
	if pl == nil {
		return
	}
	for i, c := range pl.Constraints {
		if why := ConstraintProblem(c); why != "" {
			v.errorf(fmt.Sprintf("%s.constraints[%d]", p, i), "%s", why)
		}
	}
	for i, pr := range pl.Preferences {
		pp := fmt.Sprintf("%s.preferences[%d].spread", p, i)
		if !placementLabelRE.MatchString(pr.Spread) {
			v.errorf(pp, "spread %q must name a node label: node.labels.<label> or engine.labels.<label> (e.g. node.labels.zone)", pr.Spread)
		}
	}
}

func (v *validator) health(p string, h *Health) {
	if h == nil {
		return
	}
	if h.HTTPPath != "" {
		v.httpPath(p+".http_path", h.HTTPPath)
		if h.Image {
			v.errorf(p, "set either http_path or image: true, not both")
		}
	}
	v.durationAtLeast(p+".interval", h.Interval, time.Millisecond)
	v.durationAtLeast(p+".timeout", h.Timeout, time.Millisecond)
	v.durationNonNegative(p+".start_period", h.StartPeriod)
	v.durationAtLeast(p+".deadline", h.Deadline, time.Millisecond)
	v.atLeast(p+".retries", h.Retries, 1)
}

func (v *validator) httpPath(p, s string) {
	if !strings.HasPrefix(s, "/") {
		v.errorf(p, "path %q must start with '/'", s)
		return
	}
	if _, err := url.ParseRequestURI(s); err != nil || strings.ContainsAny(s, " \t\r\n") {
		v.errorf(p, "invalid request path %q", s)
	}
}

func (v *validator) canary(p string, c *Canary) {
	if c == nil {
		return
	}
	v.atLeast(p+".replicas", c.Replicas, 1)
	v.durationNonNegative(p+".soak", c.Soak)
	if a := c.Approval; a != nil {
		ap := p + ".approval"
		v.durationAtLeast(ap+".timeout", a.Timeout, time.Second)
		switch a.OnTimeout {
		case "", OnTimeoutRollback, OnTimeoutProceed:
			if a.OnTimeout == "" && v.present(ap+".on_timeout") {
				v.errorf(ap+".on_timeout", "on_timeout must be %q or %q", OnTimeoutRollback, OnTimeoutProceed)
			}
		default:
			v.errorf(ap+".on_timeout", "on_timeout must be %q or %q, got %q", OnTimeoutRollback, OnTimeoutProceed, a.OnTimeout)
		}
	}
}

func (v *validator) rollout(p string, r *Rollout) {
	if r == nil {
		return
	}
	v.atLeast(p+".batch_size", r.BatchSize, 1)
	v.durationNonNegative(p+".pause", r.Pause)
}

func (v *validator) verification(p string, vf *Verification) {
	if vf == nil {
		return
	}
	for j := range vf.Requests {
		v.probe(fmt.Sprintf("%s.requests[%d]", p, j), &vf.Requests[j])
	}
	v.durationAtLeast(p+".interval", vf.Interval, time.Millisecond)
	v.durationAtLeast(p+".duration", vf.Duration, time.Millisecond)
	if vf.Interval > 0 && vf.Duration > 0 && vf.Interval > vf.Duration {
		v.errorf(p+".interval", "interval %s is longer than duration %s", vf.Interval, vf.Duration)
	}
	v.atLeast(p+".min_samples", vf.MinSamples, 1)
	v.rate(p+".max_error_rate", vf.MaxErrorRate)
	v.durationNonNegative(p+".max_p95_latency", vf.MaxP95Latency)
	if vf.Confidence != 0 || v.present(p+".confidence") {
		if !(vf.Confidence > 0.5 && vf.Confidence < 1) {
			v.errorf(p+".confidence", "confidence must be between 0.5 and 1 (e.g. 0.999), got %g", vf.Confidence)
		}
	}
	if vf.MaxLatencyRatio != 0 || v.present(p+".max_latency_ratio") {
		if vf.MaxLatencyRatio < 1 {
			v.errorf(p+".max_latency_ratio", "max_latency_ratio must be at least 1 (new p95 / stable p95), got %g", vf.MaxLatencyRatio)
		}
	}
	if vf.Bake != nil {
		v.durationNonNegative(p+".bake", *vf.Bake)
		if vf.Bake.D() > MaxBake {
			v.errorf(p+".bake", "bake %s is longer than the %s allowed (how long the new replicas stay watched after the last wave)", *vf.Bake, MaxBake)
		}
	}
}

// rate checks an error-rate threshold: 0 < r ≤ 1. Zero cannot be told apart from "unset".
func (v *validator) rate(p string, r float64) {
	switch {
	case r < 0 || r > 1:
		v.errorf(p, "must be between 0 and 1 (a share of requests), got %g", r)
	case r == 0 && v.present(p):
		v.errorf(p, "must be greater than 0 (0 means unset; for near-zero tolerance use e.g. 0.0001)")
	}
}

func (v *validator) probe(p string, pr *Probe) {
	if pr.Path == "" {
		v.errorf(p+".path", "path is required")
	} else {
		v.httpPath(p+".path", pr.Path)
	}
	if pr.Method != "" && !contains(probeMethods, pr.Method) {
		v.errorf(p+".method", "method %q is not one of %s", pr.Method, strings.Join(probeMethods, ", "))
	}
	if pr.ExpectStatus != 0 || v.present(p+".expect_status") {
		if pr.ExpectStatus < 100 || pr.ExpectStatus > 599 {
			v.errorf(p+".expect_status", "expect_status %d is not an HTTP status (100..599)", pr.ExpectStatus)
		}
	}
	for k, val := range pr.Headers {
		if !headerRE.MatchString(k) {
			v.errorf(joinKey(p+".headers", k), "invalid header name %q", k)
		}
		if strings.ContainsAny(val, "\r\n\x00") {
			v.errorf(joinKey(p+".headers", k), "header values cannot contain line breaks")
		}
	}
	v.durationAtLeast(p+".timeout", pr.Timeout, time.Millisecond)
}

func (v *validator) rollback(p string, r *Rollback) {
	if r == nil {
		return
	}
	switch r.Scope {
	case "", ScopeRelease, ScopeService:
	default:
		v.errorf(p+".scope", "scope must be %q or %q, got %q", ScopeRelease, ScopeService, r.Scope)
	}
	switch r.KeepPrevious {
	case "", KeepRunning, KeepStopped:
	default:
		v.errorf(p+".keep_previous", "keep_previous must be %q or %q, got %q", KeepRunning, KeepStopped, r.KeepPrevious)
	}
}

func (v *validator) loadTest(env *Environment, i int, clusters, services map[string]int) {
	lt := &env.LoadTests[i]
	p := fmt.Sprintf("load_tests[%d]", i)
	v.name(p+".name", "load test", lt.Name)
	var svc *Service
	if lt.Service == "" {
		v.errorf(p+".service", "service is required")
	} else if si, ok := services[lt.Service]; !ok {
		v.errorf(p+".service", "unknown service %q%s", lt.Service, didYouMean(lt.Service, keys(services)))
	} else {
		svc = &env.Services[si]
	}
	for j, c := range lt.Clusters {
		cp := fmt.Sprintf("%s.clusters[%d]", p, j)
		if _, ok := clusters[c]; !ok {
			v.errorf(cp, "unknown cluster %q%s", c, didYouMean(c, keys(clusters)))
		} else if svc != nil && !contains(serviceClusterNames(env, svc), c) {
			v.errorf(cp, "service %q does not run on cluster %q", svc.Name, c)
		}
	}
	for j := range lt.Requests {
		v.probe(fmt.Sprintf("%s.requests[%d]", p, j), &lt.Requests[j])
	}
	if lt.Rate <= 0 {
		v.errorf(p+".rate", "rate (requests per second) must be at least 1")
	}
	if lt.Duration <= 0 {
		v.errorf(p+".duration", "duration is required and must be positive")
	}
	v.durationNonNegative(p+".warm_up", lt.WarmUp)
	v.atLeast(p+".scale_factor", lt.ScaleFactor, 1)
	sp := p + ".slo"
	v.durationNonNegative(sp+".p50", lt.SLO.P50)
	v.durationNonNegative(sp+".p95", lt.SLO.P95)
	v.durationNonNegative(sp+".p99", lt.SLO.P99)
	if lt.SLO.P50 > 0 && lt.SLO.P95 > 0 && lt.SLO.P50 > lt.SLO.P95 {
		v.errorf(sp+".p50", "p50 %s is above p95 %s", lt.SLO.P50, lt.SLO.P95)
	}
	if lt.SLO.P95 > 0 && lt.SLO.P99 > 0 && lt.SLO.P95 > lt.SLO.P99 {
		v.errorf(sp+".p95", "p95 %s is above p99 %s", lt.SLO.P95, lt.SLO.P99)
	}
	v.rate(sp+".max_error_rate", lt.SLO.MaxErrorRate)
	if lt.SLO.MinThroughput < 0 {
		v.errorf(sp+".min_throughput", "must not be negative, got %g", lt.SLO.MinThroughput)
	}
	if lt.Schedule != "" {
		if _, err := cronParser.Parse(lt.Schedule); err != nil {
			v.errorf(p+".schedule", "invalid schedule %q: %v (use a cron expression such as \"0 3 * * *\" or \"@every 6h\")", lt.Schedule, err)
		}
	}
}

// cronParser accepts standard five-field cron expressions and descriptors (@daily, @every 6h).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cycles reports every dependency cycle once, naming it (a → b → a).
func (v *validator) cycles(env *Environment, services map[string]int) {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(env.Services))
	var stack []int
	reported := map[string]bool{}
	var visit func(i int)
	visit = func(i int) {
		color[i] = grey
		stack = append(stack, i)
		for j, dep := range env.Services[i].DependsOn {
			di, ok := services[dep]
			if !ok {
				continue
			}
			switch color[di] {
			case white:
				visit(di)
			case grey:
				start := 0
				for k, s := range stack {
					if s == di {
						start = k
					}
				}
				cyc := stack[start:]
				names := make([]string, 0, len(cyc)+1)
				for _, s := range cyc {
					names = append(names, env.Services[s].Name)
				}
				key := canonicalCycle(names)
				if !reported[key] {
					reported[key] = true
					names = append(names, dep)
					v.errorf(fmt.Sprintf("services[%d].depends_on[%d]", i, j), "dependency cycle: %s", strings.Join(names, " → "))
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
	}
	for i := range env.Services {
		if color[i] == white {
			visit(i)
		}
	}
}

// canonicalCycle names a cycle independently of where it was entered.
func canonicalCycle(names []string) string {
	best := 0
	for i := range names {
		if names[i] < names[best] {
			best = i
		}
	}
	rot := append(append([]string{}, names[best:]...), names[:best]...)
	return strings.Join(rot, "\x00")
}

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func didYouMean(name string, known []string) string {
	if s := suggest(name, known); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	if len(known) > 0 && len(known) <= 12 {
		return " (known: " + strings.Join(known, ", ") + ")"
	}
	return ""
}
