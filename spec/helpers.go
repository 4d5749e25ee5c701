package spec

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Cluster returns the cluster with the given name.
func (env *Environment) Cluster(name string) (Cluster, bool) {
	for _, c := range env.Clusters {
		if c.Name == name {
			return c, true
		}
	}
	return Cluster{}, false
}

// Service returns the service with the given name.
func (env *Environment) Service(name string) (Service, bool) {
	for _, s := range env.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// serviceClusterNames is the clusters a service runs on: its list, or every cluster.
func serviceClusterNames(env *Environment, s *Service) []string {
	if len(s.Clusters) > 0 {
		return s.Clusters
	}
	names := make([]string, len(env.Clusters))
	for i, c := range env.Clusters {
		names[i] = c.Name
	}
	return names
}

// ServiceClusters returns the clusters a service runs on (every cluster when its list is
// empty), sorted by wave, then name. Unknown names are left out.
func (env *Environment) ServiceClusters(svc string) []Cluster {
	s, ok := env.Service(svc)
	if !ok {
		return nil
	}
	var out []Cluster
	for _, name := range serviceClusterNames(env, &s) {
		if c, ok := env.Cluster(name); ok {
			out = append(out, c)
		}
	}
	sortClusters(out)
	return out
}

func effectiveWave(c Cluster) int {
	if c.Wave == 0 {
		return DefaultWave
	}
	return c.Wave
}

func sortClusters(cs []Cluster) {
	sort.SliceStable(cs, func(i, j int) bool {
		wi, wj := effectiveWave(cs[i]), effectiveWave(cs[j])
		if wi != wj {
			return wi < wj
		}
		return cs[i].Name < cs[j].Name
	})
}

// Waves groups the clusters by wave, ascending; clusters of one wave are sorted by name.
func (env *Environment) Waves() [][]Cluster {
	cs := slices.Clone(env.Clusters)
	sortClusters(cs)
	var out [][]Cluster
	for i, c := range cs {
		if i == 0 || effectiveWave(c) != effectiveWave(cs[i-1]) {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], c)
	}
	return out
}

// CanaryCluster returns the cluster that says canary: true or, when none does (before
// ApplyDefaults), the first cluster in file order of the lowest wave. It returns the zero
// Cluster when there are no clusters.
func (env *Environment) CanaryCluster() Cluster {
	for _, c := range env.Clusters {
		if c.Canary {
			return c
		}
	}
	if len(env.Clusters) == 0 {
		return Cluster{}
	}
	best := env.Clusters[0]
	for _, c := range env.Clusters[1:] {
		if effectiveWave(c) < effectiveWave(best) {
			best = c
		}
	}
	return best
}

// ServiceCanaryCluster returns where a service's canary is onboarded: the environment's
// canary cluster when the service runs there, otherwise the first of its own clusters (by
// wave, then name). ok is false for an unknown service or one without clusters.
func (env *Environment) ServiceCanaryCluster(svc string) (c Cluster, ok bool) {
	cs := env.ServiceClusters(svc)
	if len(cs) == 0 {
		return Cluster{}, false
	}
	canary := env.CanaryCluster()
	for _, c := range cs {
		if c.Name == canary.Name {
			return c, true
		}
	}
	return cs[0], true
}

// ApplyOverrides sets service versions from service=version pairs (e.g. a release request
// that only bumps some services). Every override is checked: an unknown service or an
// invalid version is an error (Errors whose Path is the service name) and the Environment
// is left unchanged.
func ApplyOverrides(env *Environment, overrides map[string]string) error {
	var errs Errors
	names := make([]string, 0, len(overrides))
	for name := range overrides {
		names = append(names, name)
	}
	sort.Strings(names)
	index := map[string]int{}
	for i, s := range env.Services {
		index[s.Name] = i
	}
	for _, name := range names {
		i, ok := index[name]
		if !ok {
			errs = append(errs, &FieldError{Path: name, Message: fmt.Sprintf("unknown service %q%s", name, didYouMean(name, keys(index)))})
			continue
		}
		v := &validator{}
		v.image(fmt.Sprintf("services[%d]", i), env.Services[i].Image, overrides[name])
		for _, e := range v.errs {
			if strings.HasSuffix(e.Path, ".version") {
				errs = append(errs, &FieldError{Path: name, Message: e.Message})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	for _, name := range names {
		env.Services[index[name]].Version = overrides[name]
	}
	return nil
}

// ServiceOrder sorts the named services into layers by depends_on: every service of a
// layer depends only on services of earlier layers (or on services not named, which are
// taken as already running). Names within a layer are sorted. Unknown names and cycles
// are errors.
func (env *Environment) ServiceOrder(names []string) ([][]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		if _, ok := env.Service(n); !ok {
			return nil, fmt.Errorf("unknown service %q", n)
		}
		want[n] = true
	}
	pending := map[string][]string{} // service → dependencies still to place
	//workflowcheck:ignore map order: fills a map
	for n := range want {
		s, _ := env.Service(n)
		var deps []string
		for _, d := range s.DependsOn {
			if want[d] && !slices.Contains(deps, d) {
				deps = append(deps, d)
			}
		}
		pending[n] = deps
	}
	var layers [][]string
	placed := map[string]bool{}
	for len(pending) > 0 {
		var layer []string
		//workflowcheck:ignore map order: the layer is sorted below
		for n, deps := range pending {
			ready := true
			for _, d := range deps {
				if !placed[d] {
					ready = false
					break
				}
			}
			if ready {
				layer = append(layer, n)
			}
		}
		if len(layer) == 0 {
			rest := make([]string, 0, len(pending))
			//workflowcheck:ignore map order: sorted below
			for n := range pending {
				rest = append(rest, n)
			}
			sort.Strings(rest)
			return nil, fmt.Errorf("dependency cycle among %s", strings.Join(rest, ", "))
		}
		sort.Strings(layer)
		for _, n := range layer {
			placed[n] = true
			delete(pending, n)
		}
		layers = append(layers, layer)
	}
	return layers, nil
}
