package activities

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// Load-test limits a worker applies when its options do not say.
const (
	DefaultLoadTestMaxRate     = 5000             // requests per second
	DefaultLoadTestMaxDuration = 10 * time.Minute // warm-up included
	DefaultLoadTestMaxInFlight = 2000             // concurrent requests of one generator
)

// DefaultLoadTestNetworks are the networks load may go to: loopback and the private ranges
// Docker bridges use. A replica whose address is elsewhere is refused.
var DefaultLoadTestNetworks = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
}

// LoadTestOptions configure the load-test activities. Zero values take the defaults.
type LoadTestOptions struct {
	// MaxRate caps a test's rate in requests/s (default 5000): a test asking for more is
	// refused (LoadTestLimit), never silently slowed down.
	MaxRate int
	// MaxDuration caps a test's warm-up + duration (default 10 min).
	MaxDuration time.Duration
	// MaxInFlight caps the generator's concurrent requests (default 2000). A target slower
	// than MaxInFlight/rate seconds cannot be sent the full rate: the achieved rate and the
	// throughput SLO show it.
	MaxInFlight int
	// Networks load may go to (default DefaultLoadTestNetworks).
	Networks []netip.Prefix
	// DialTimeout bounds one TCP connect of the generator (default 2s).
	DialTimeout time.Duration
	// HeartbeatEvery is how often every load-test activity heartbeats while it runs, and the
	// generator reports its progress (default 1s, see Options.HeartbeatEvery).
	HeartbeatEvery time.Duration
	// Client reaches Temporal for the previous-run lookup (default: the worker's own
	// client, activity.GetClient).
	Client client.Client
	// Secrets resolves the secrets of the replicas the scale-out starts (see
	// Options.Secrets); nil: a service with secrets cannot be scaled out (SecretMissing).
	Secrets SecretSource
}

func (o LoadTestOptions) withDefaults() LoadTestOptions {
	if o.MaxRate <= 0 {
		o.MaxRate = DefaultLoadTestMaxRate
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = DefaultLoadTestMaxDuration
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultLoadTestMaxInFlight
	}
	if len(o.Networks) == 0 {
		o.Networks = DefaultLoadTestNetworks
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.HeartbeatEvery <= 0 {
		o.HeartbeatEvery = DefaultHeartbeatEvery
	}
	return o
}

// LoadTestActivities are the LoadTest workflow's activities: limits and targets, scale-out
// and scale-in through the engine port, the load generator, the previous-run lookup.
type LoadTestActivities struct {
	base *Activities
	opts LoadTestOptions
}

// NewLoadTest returns the load-test activities using d to reach cluster engines.
func NewLoadTest(d engine.Dialer, opts LoadTestOptions) *LoadTestActivities {
	opts = opts.withDefaults()
	return &LoadTestActivities{base: New(d, Options{HeartbeatEvery: opts.HeartbeatEvery, Secrets: opts.Secrets}), opts: opts}
}

// RegisterLoadTest registers the load-test activities under their stable names
// (workflows.ActivityLoadTest*).
func RegisterLoadTest(r sdkworker.ActivityRegistry, a *LoadTestActivities) {
	for name, fn := range map[string]any{
		workflows.ActivityLoadTestPrepare:  a.Prepare,
		workflows.ActivityLoadTestScaleOut: a.ScaleOut,
		workflows.ActivityLoadTestScaleIn:  a.ScaleIn,
		workflows.ActivityLoadTestGenerate: a.Generate,
		workflows.ActivityLoadTestPrevious: a.Previous,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// checkLimits refuses a rate or duration above the worker's caps.
func (a *LoadTestActivities) checkLimits(rate int, total time.Duration) error {
	if rate > a.opts.MaxRate {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("rate %d req/s is above this worker's cap of %d req/s (worker option: load-test max rate)", rate, a.opts.MaxRate),
			workflows.ErrLoadTestLimit, nil)
	}
	if total > a.opts.MaxDuration {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("warm-up + duration %s is above this worker's cap of %s (worker option: load-test max duration)", total, a.opts.MaxDuration),
			workflows.ErrLoadTestLimit, nil)
	}
	if rate <= 0 || total <= 0 {
		return badInput("load test needs a positive rate and duration (got %d req/s for %s)", rate, total)
	}
	return nil
}

// Prepare checks the test against the worker's caps and the clusters' policy, and reports
// the replicas that serve the service on every target cluster. No replica to load is a
// permanent NoTargets error: nothing was changed yet.
func (a *LoadTestActivities) Prepare(ctx context.Context, in workflows.LoadTestPrepareInput) (workflows.LoadTestPrepareResult, error) {
	out := workflows.LoadTestPrepareResult{MaxRate: a.opts.MaxRate, MaxDuration: a.opts.MaxDuration}
	if err := a.checkLimits(in.Rate, in.Duration); err != nil {
		return out, err
	}
	defer a.base.beat(ctx)()
	serving, err := a.serving(ctx, in.Environment, in.Service, in.Targets, in.Containers)
	if err != nil {
		return out, err
	}
	for _, t := range in.Targets {
		cs := serving[t.Cluster]
		version, n := ltMajority(cs)
		if f := max(in.ScaleFactor, 1); f > 1 && t.Policy.MaxReplicas > 0 && n*f > t.Policy.MaxReplicas {
			return out, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("scaling %s from %d to %d replicas (scale_factor %d) exceeds cluster %s's max_replicas %d", in.Service, n, n*f, f, t.Cluster, t.Policy.MaxReplicas),
				workflows.ErrPolicyDenied, nil)
		}
		out.Clusters = append(out.Clusters, workflows.LoadTestClusterBase{Cluster: t.Cluster, Version: version, Replicas: n})
	}
	return out, nil
}

// serving returns, per target cluster, the replicas load may go to: the service's
// containers of the environment that run and have an address, and are in traffic — or,
// with names, exactly the named containers. Every address must lie in the allowed
// networks. A cluster without any is a permanent NoTargets error.
func (a *LoadTestActivities) serving(ctx context.Context, env, service string, targets []workflows.Target, names []string) (map[string][]engine.Container, error) {
	if env == "" || service == "" || len(targets) == 0 {
		return nil, badInput("load test needs an environment, a service and target clusters (got %q, %q, %d)", env, service, len(targets))
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string][]engine.Container{}
	for _, t := range targets {
		if t.Environment != env {
			return nil, badInput("target cluster %s belongs to environment %q, not %q", t.Cluster, t.Environment, env)
		}
		e, err := a.base.dial(ctx, t)
		if err != nil {
			return nil, err
		}
		all, err := e.List(ctx, engine.Selector{Environment: env, Cluster: t.Cluster, Service: service})
		if err != nil {
			return nil, classify("list "+service+" on cluster "+t.Cluster, err)
		}
		var cs []engine.Container
		for _, c := range all {
			// The selector already says so; the check keeps the safety rule local.
			if c.Environment != env || c.Service != service || !c.Running() || c.Address == "" {
				continue
			}
			if len(want) > 0 && !want[c.Name] {
				continue
			}
			if len(want) == 0 && !c.InTraffic {
				continue
			}
			if err := a.allowed(c.Address); err != nil {
				return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("replica %s: %v", c.Name, err), workflows.ErrNoTargets, nil)
			}
			cs = append(cs, c)
		}
		if len(cs) == 0 {
			what := "running replica of " + service + " in traffic"
			if len(want) > 0 {
				what = "running container among " + strings.Join(names, ", ")
			}
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("no %s with an address on cluster %s of environment %s", what, t.Cluster, env), workflows.ErrNoTargets, nil)
		}
		out[t.Cluster] = cs
	}
	return out, nil
}

// allowed checks that addr (ip:port) lies in the networks load may go to.
func (a *LoadTestActivities) allowed(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q is not ip:port: %v", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("address %q is not an IP address", addr)
	}
	for _, p := range a.opts.Networks {
		if p.Contains(ip.Unmap()) {
			return nil
		}
	}
	return fmt.Errorf("address %s is outside the networks load may go to (%v)", addr, a.opts.Networks)
}

// ltMajority returns the version most of the containers run and how many containers there
// are (ties: the lowest version name).
func ltMajority(cs []engine.Container) (string, int) {
	count := map[string]int{}
	for _, c := range cs {
		count[c.Version]++
	}
	best := ""
	for _, v := range sortedKeys(count) {
		if best == "" || count[v] > count[best] {
			best = v
		}
	}
	return best, len(cs)
}

// Previous returns the latest completed, measured run of the same test (environment and
// name, comparable mode), other than in.Exclude, or nil. It reads the runs' memos through
// visibility (search attributes kind, environment and service narrow the query).
func (a *LoadTestActivities) Previous(ctx context.Context, in workflows.LoadTestPreviousInput) (*workflows.LoadTestSummary, error) {
	defer a.base.beat(ctx)()
	c := a.opts.Client
	if c == nil {
		if !activity.IsActivity(ctx) {
			return nil, badInput("previous run lookup needs a Temporal client")
		}
		c = activity.GetClient(ctx)
	}
	return PreviousLoadTest(ctx, c, in)
}

// PreviousLoadTest is Previous with an explicit client (the API uses it too).
func PreviousLoadTest(ctx context.Context, c client.Client, in workflows.LoadTestPreviousInput) (*workflows.LoadTestSummary, error) {
	q := fmt.Sprintf("%s = %s AND %s = %s AND %s = %s AND ExecutionStatus = 'Completed'",
		workflows.SAKind, ltQuote(workflows.KindLoadTest), workflows.SAEnvironment, ltQuote(in.Environment),
		workflows.SAServices, ltQuote(in.Service))
	name := in.Environment + "/" + in.Test
	dc := converter.GetDefaultDataConverter()
	var best *workflows.LoadTestSummary
	var token []byte
	const maxPages = 5
	for page := 0; page < maxPages; page++ {
		resp, err := c.ListWorkflow(ctx, ltListRequest(q, token))
		if err != nil {
			return nil, fmt.Errorf("list previous runs of %s: %w", name, err)
		}
		for _, ex := range resp.GetExecutions() {
			if ex.GetExecution().GetWorkflowId() == in.Exclude {
				continue
			}
			p := ex.GetMemo().GetFields()[workflows.MemoLoadTest]
			if p == nil {
				continue
			}
			var s workflows.LoadTestSummary
			if err := dc.FromPayload(p, &s); err != nil {
				continue // a memo of another shape is not a run to compare with
			}
			if s.Test != name || !s.Mode.Comparable(in.Mode) || s.Requests == 0 ||
				(s.Outcome != workflows.LoadTestPassed && s.Outcome != workflows.LoadTestFailed) {
				continue
			}
			if best == nil || s.EndedAt.After(best.EndedAt) || (s.EndedAt.Equal(best.EndedAt) && s.WorkflowID > best.WorkflowID) {
				s := s
				best = &s
			}
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	return best, nil
}

// ltQuote quotes a string for a visibility query.
func ltQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func ltListRequest(query string, token []byte) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token, PageSize: 50}
}
