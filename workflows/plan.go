package workflows

import (
	"fmt"
	"sort"
	"strings"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

// PlanWorkflowName is the registered name of the Plan workflow.
const PlanWorkflowName = "Plan"

// Action is what a release does to a service on a cluster.
type Action string

// Actions.
const (
	ActionNone   Action = "none"   // already runs the wanted version with the wanted replicas
	ActionCreate Action = "create" // nothing of the service runs there yet
	ActionUpdate Action = "update" // another version serves: replace it
	ActionScale  Action = "scale"  // right version, other replica count
)

// ClusterPlan is one service on one cluster.
type ClusterPlan struct {
	Cluster string `json:"cluster"`
	Wave    int    `json:"wave"`
	// Canary is set on the cluster where the service's canaries are onboarded.
	Canary       bool   `json:"canary,omitempty"`
	Action       Action `json:"action"`
	FromVersion  string `json:"from_version,omitempty"`
	ToVersion    string `json:"to_version"`
	ReplicasFrom int    `json:"replicas_from"`
	ReplicasTo   int    `json:"replicas_to"`
	// Old are the running, in-traffic containers of other versions before the release.
	Old []string `json:"old,omitempty"`
	// Existing are containers of the new version that existed before the release (any
	// state); a rollback stops them instead of removing them.
	Existing []string `json:"existing,omitempty"`
	// Current are the Existing containers that were running in traffic before the release.
	Current []string `json:"current,omitempty"`
}

// ServicePlan is one service of a plan.
type ServicePlan struct {
	Service     string        `json:"service"`
	Action      Action        `json:"action"`
	FromVersion string        `json:"from_version,omitempty"`
	ToVersion   string        `json:"to_version"`
	DependsOn   []string      `json:"depends_on,omitempty"`
	Layer       int           `json:"layer"`
	Clusters    []ClusterPlan `json:"clusters"`
}

// Cluster returns the plan of the named cluster (nil when the service does not run there).
func (s *ServicePlan) Cluster(name string) *ClusterPlan {
	for i := range s.Clusters {
		if s.Clusters[i].Cluster == name {
			return &s.Clusters[i]
		}
	}
	return nil
}

// Plan is what a release would do: every service in scope, in release order (layer, then
// name); unchanged services have Action none.
type Plan struct {
	Environment string        `json:"environment"`
	Services    []ServicePlan `json:"services"`
	// Layers are the changed services by depends_on layer.
	Layers [][]string `json:"layers,omitempty"`
	// Unreachable names clusters whose engine did not answer (their plan assumes nothing runs).
	Unreachable []string `json:"unreachable,omitempty"`
}

// Changed returns the services that change, in release order.
func (p Plan) Changed() []string {
	var out []string
	for _, l := range p.Layers {
		out = append(out, l...)
	}
	return out
}

// Service returns the plan of the named service (nil when absent).
func (p *Plan) Service(name string) *ServicePlan {
	for i := range p.Services {
		if p.Services[i].Service == name {
			return &p.Services[i]
		}
	}
	return nil
}

// PlanResult is the Plan workflow's result: the plan and the live state it was made from.
type PlanResult struct {
	Plan Plan          `json:"plan"`
	Live InspectResult `json:"live"`
}

// ComputePlan decides, from the spec and the live state, what a release of services (empty:
// every service of the spec) would change. It is pure: the Release and Plan workflows and
// tests call it with the result of the Inspect activity.
func ComputePlan(env spec.Environment, services []string, live InspectResult) (Plan, error) {
	p := Plan{Environment: env.Environment}
	scope := services
	if len(scope) == 0 {
		for _, s := range env.Services {
			scope = append(scope, s.Name)
		}
	}
	scope = uniqueSorted(scope)
	for _, c := range live.Clusters {
		if c.Error != "" {
			p.Unreachable = append(p.Unreachable, c.Cluster)
		}
	}
	var changed []string
	for _, name := range scope {
		s, ok := findService(env, name)
		if !ok {
			return Plan{}, fmt.Errorf("service %q is not in the spec of environment %q", name, env.Environment)
		}
		sp := planService(env, s, live)
		if sp.Action != ActionNone {
			changed = append(changed, name)
		}
		p.Services = append(p.Services, sp)
	}
	layers, err := serviceLayers(env, changed)
	if err != nil {
		return Plan{}, err
	}
	p.Layers = layers
	layerOf := map[string]int{}
	for i, l := range layers {
		for _, n := range l {
			layerOf[n] = i
		}
	}
	for i := range p.Services {
		if l, ok := layerOf[p.Services[i].Service]; ok {
			p.Services[i].Layer = l
		} else {
			p.Services[i].Layer = -1
		}
	}
	sort.SliceStable(p.Services, func(i, j int) bool {
		a, b := p.Services[i], p.Services[j]
		if a.Layer != b.Layer {
			// changed services by layer first, unchanged ones (layer -1) last
			if a.Layer < 0 || b.Layer < 0 {
				return b.Layer < 0
			}
			return a.Layer < b.Layer
		}
		return a.Service < b.Service
	})
	return p, nil
}

func planService(env spec.Environment, s spec.Service, live InspectResult) ServicePlan {
	pol := resolvePolicy(s)
	canary := canaryCluster(env, s)
	sp := ServicePlan{Service: s.Name, ToVersion: s.Version, Action: ActionNone, DependsOn: s.DependsOn}
	froms := map[string]bool{}
	for _, c := range serviceClusters(env, s) {
		cp := ClusterPlan{
			Cluster:    c.Name,
			Wave:       waveOf(c),
			Canary:     c.Name == canary,
			ToVersion:  s.Version,
			ReplicasTo: replicasOn(c, pol.Replicas),
		}
		count := map[string]int{}
		var current int
		for _, ct := range live.Cluster(c.Name).Containers(s.Name) {
			serving := ct.Running() && ct.InTraffic
			if ct.Version == s.Version {
				cp.Existing = append(cp.Existing, ct.Name)
				if serving {
					current++
					cp.Current = append(cp.Current, ct.Name)
				}
				continue
			}
			if serving {
				cp.Old = append(cp.Old, ct.Name)
				count[ct.Version]++
			}
		}
		cp.ReplicasFrom = current + len(cp.Old)
		cp.FromVersion = majority(count)
		switch {
		case len(cp.Old) > 0:
			cp.Action = ActionUpdate
		case current == 0:
			cp.Action = ActionCreate
		case current != cp.ReplicasTo:
			cp.Action = ActionScale
		default:
			cp.Action = ActionNone
			cp.FromVersion = s.Version
		}
		if cp.Action == ActionUpdate && cp.FromVersion != "" {
			froms[cp.FromVersion] = true
		}
		sp.Action = strongerAction(sp.Action, cp.Action)
		sp.Clusters = append(sp.Clusters, cp)
	}
	var fl []string
	//workflowcheck:ignore map order: sorted below
	for v := range froms {
		fl = append(fl, v)
	}
	sort.Strings(fl)
	sp.FromVersion = strings.Join(fl, ",")
	if sp.Action == ActionNone || sp.Action == ActionScale {
		sp.FromVersion = s.Version
	}
	return sp
}

// strongerAction keeps the action that says most about a service: update > create > scale > none.
func strongerAction(a, b Action) Action {
	rank := map[Action]int{ActionNone: 0, ActionScale: 1, ActionCreate: 2, ActionUpdate: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// majority returns the version with most replicas (ties: the greatest name).
func majority(count map[string]int) string {
	best, n := "", 0
	keys := make([]string, 0, len(count))
	//workflowcheck:ignore map order: sorted below
	for k := range count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if count[k] >= n {
			best, n = k, count[k]
		}
	}
	return best
}

func uniqueSorted(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// cleanupPlan is what a successful release leaves on one cluster for one service: the new
// version's first ReplicasTo slots keep serving, the version that served before stays as one
// previous revision, stopped, and everything else goes.
type cleanupPlan struct {
	Stop   []string
	Remove []string
}

func planCleanup(cp ClusterPlan, containers []engine.Container) cleanupPlan {
	var out cleanupPlan
	prev := cp.FromVersion
	for _, c := range containers {
		switch {
		case c.Version == cp.ToVersion:
			if c.Slot >= cp.ReplicasTo {
				out.Remove = append(out.Remove, c.Name)
			}
		case prev != "" && prev != cp.ToVersion && c.Version == prev:
			if c.Running() || c.InTraffic {
				out.Stop = append(out.Stop, c.Name)
			}
		default:
			out.Remove = append(out.Remove, c.Name)
		}
	}
	return out
}

// rollbackCheck compares the live state after a rollback with what must hold on one cluster
// for one service: every old container runs in traffic, and nothing of the new version
// serves (pre-existing new-version containers may stay, stopped or out of traffic).
func rollbackCheck(cp ClusterPlan, containers []engine.Container) []string {
	var problems []string
	byName := map[string]engine.Container{}
	for _, c := range containers {
		byName[c.Name] = c
	}
	for _, n := range cp.Old {
		c, ok := byName[n]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is gone", n))
		case !c.Running():
			problems = append(problems, fmt.Sprintf("%s is %s", n, c.State))
		case !c.InTraffic:
			problems = append(problems, fmt.Sprintf("%s is out of traffic", n))
		}
	}
	existing, current := map[string]bool{}, map[string]bool{}
	for _, n := range cp.Existing {
		existing[n] = true
	}
	for _, n := range cp.Current {
		current[n] = true
	}
	for _, c := range containers {
		switch {
		case c.Version != cp.ToVersion || current[c.Name]:
		case !existing[c.Name]:
			problems = append(problems, fmt.Sprintf("%s (%s) is left (%s)", c.Name, c.Version, c.State))
		case c.Running():
			problems = append(problems, fmt.Sprintf("%s (%s) still runs", c.Name, c.Version))
		}
	}
	return problems
}

// runningMap summarises live state as cluster → service → versions running ("unknown: …"
// for a cluster that did not answer).
func runningMap(live InspectResult, services []string) map[string]map[string][]string {
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	out := map[string]map[string][]string{}
	for _, c := range live.Clusters {
		m := map[string][]string{}
		if c.Error != "" {
			for _, s := range services {
				m[s] = []string{"unknown: " + c.Error}
			}
			out[c.Cluster] = m
			continue
		}
		for _, s := range c.Services {
			if len(want) > 0 && !want[s.Service] {
				continue
			}
			for _, v := range s.Versions {
				if v.Running > 0 {
					m[s.Service] = append(m[s.Service], fmt.Sprintf("%s (%d running, %d in traffic)", v.Version, v.Running, v.InTraffic))
				}
			}
		}
		out[c.Cluster] = m
	}
	return out
}
