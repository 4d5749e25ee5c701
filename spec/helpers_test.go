package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t *testing.T, doc string) *Environment {
	t.Helper()
	env, err := Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return env
}

const shop = `
environment: shop
clusters:
  - {name: zeta, wave: 2}
  - {name: canary}
  - {name: alpha, wave: 2}
  - {name: omega, wave: 3}
services:
  - {name: web, image: shop/web, version: "1", depends_on: [api, cart]}
  - {name: api, image: shop/api, version: "1", depends_on: [cart, catalog], clusters: [omega, alpha, canary]}
  - {name: cart, image: shop/cart, version: "1", depends_on: [db]}
  - {name: catalog, image: shop/catalog, version: "1", depends_on: [db], clusters: [zeta]}
  - {name: db, image: shop/db, version: "1"}
`

func clusterNames(cs []Cluster) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestLookups(t *testing.T) {
	env := mustParse(t, shop)
	if c, ok := env.Cluster("alpha"); !ok || c.Wave != 2 {
		t.Errorf("Cluster(alpha) = %+v, %v", c, ok)
	}
	if _, ok := env.Cluster("nope"); ok {
		t.Error("Cluster(nope) found")
	}
	if s, ok := env.Service("cart"); !ok || s.Image != "shop/cart" {
		t.Errorf("Service(cart) = %+v, %v", s, ok)
	}
	if _, ok := env.Service("nope"); ok {
		t.Error("Service(nope) found")
	}
}

func TestServiceClustersAndWaves(t *testing.T) {
	env := mustParse(t, shop)
	if got, want := clusterNames(env.ServiceClusters("api")), []string{"canary", "alpha", "omega"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceClusters(api) = %v, want %v", got, want)
	}
	// No clusters listed: every cluster.
	if got, want := clusterNames(env.ServiceClusters("db")), []string{"canary", "alpha", "zeta", "omega"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceClusters(db) = %v, want %v", got, want)
	}
	if got := env.ServiceClusters("nope"); got != nil {
		t.Errorf("ServiceClusters(nope) = %v", got)
	}
	var waves [][]string
	for _, w := range env.Waves() {
		waves = append(waves, clusterNames(w))
	}
	if want := [][]string{{"canary"}, {"alpha", "zeta"}, {"omega"}}; !reflect.DeepEqual(waves, want) {
		t.Errorf("Waves() = %v, want %v", waves, want)
	}
}

func TestCanaryCluster(t *testing.T) {
	env := mustParse(t, shop)
	if got := env.CanaryCluster().Name; got != "canary" {
		t.Errorf("CanaryCluster() = %q, want the first cluster of the lowest wave", got)
	}
	if c, ok := env.ServiceCanaryCluster("api"); !ok || c.Name != "canary" {
		t.Errorf("ServiceCanaryCluster(api) = %q", c.Name)
	}
	// catalog does not run on the canary cluster: its own first cluster.
	if c, ok := env.ServiceCanaryCluster("catalog"); !ok || c.Name != "zeta" {
		t.Errorf("ServiceCanaryCluster(catalog) = %q, want zeta", c.Name)
	}
	explicit := mustParse(t, `
environment: x
clusters: [{name: a}, {name: b, canary: true}]
services: [{name: s, image: x, version: "1"}]
`)
	if got := explicit.CanaryCluster().Name; got != "b" {
		t.Errorf("CanaryCluster() = %q, want b (canary: true)", got)
	}
	if explicit.Clusters[0].Canary {
		t.Error("defaults marked a second canary cluster")
	}
	// Before defaults, on an Environment built in code.
	raw := &Environment{Clusters: []Cluster{{Name: "late", Wave: 3}, {Name: "early", Wave: 1}, {Name: "also", Wave: 1}}}
	if got := raw.CanaryCluster().Name; got != "early" {
		t.Errorf("CanaryCluster() = %q, want early", got)
	}
	if got := (&Environment{}).CanaryCluster(); got.Name != "" {
		t.Errorf("CanaryCluster() of no clusters = %+v", got)
	}
}

func TestServiceOrder(t *testing.T) {
	env := mustParse(t, shop)
	for _, c := range []struct {
		names []string
		want  [][]string
	}{
		{[]string{"web", "api", "cart", "catalog", "db"}, [][]string{{"db"}, {"cart", "catalog"}, {"api"}, {"web"}}},
		// Dependencies outside the release are taken as running.
		{[]string{"web", "cart"}, [][]string{{"cart"}, {"web"}}},
		{[]string{"catalog", "web"}, [][]string{{"catalog", "web"}}},
		{[]string{"db"}, [][]string{{"db"}}},
		{nil, nil},
	} {
		got, err := env.ServiceOrder(c.names)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ServiceOrder(%v) = %v, want %v", c.names, got, c.want)
		}
	}
	if _, err := env.ServiceOrder([]string{"web", "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("want an unknown-service error, got %v", err)
	}
	// A cycle in an Environment built in code (Parse would have refused it).
	cyclic := &Environment{Services: []Service{
		{Name: "a", DependsOn: []string{"b"}}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c"},
	}}
	if _, err := cyclic.ServiceOrder([]string{"a", "b", "c"}); err == nil || !strings.Contains(err.Error(), "cycle among a, b") {
		t.Errorf("want a cycle error, got %v", err)
	}
}

func TestApplyOverrides(t *testing.T) {
	env := mustParse(t, shop)
	if err := ApplyOverrides(env, map[string]string{"web": "2.0.0", "db": "sha256:" + strings.Repeat("ab", 32)}); err != nil {
		t.Fatal(err)
	}
	if s, _ := env.Service("web"); s.Version != "2.0.0" || s.ImageRef() != "shop/web:2.0.0" {
		t.Errorf("web = %s", s.ImageRef())
	}
	if s, _ := env.Service("db"); s.ImageRef() != "shop/db@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("db = %s", s.ImageRef())
	}
	err := ApplyOverrides(env, map[string]string{"cart": "3.0.0", "webb": "1", "api": "bad tag"})
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("want two errors, got %v", err)
	}
	if errs[0].Path != "api" || !strings.Contains(errs[0].Message, "invalid tag") {
		t.Errorf("first error %v", errs[0])
	}
	if errs[1].Path != "webb" || !strings.Contains(errs[1].Message, `did you mean "web"`) {
		t.Errorf("second error %v", errs[1])
	}
	if s, _ := env.Service("cart"); s.Version != "1" {
		t.Errorf("a failed ApplyOverrides changed cart to %s", s.Version)
	}
	if err := env.Validate(); err != nil {
		t.Errorf("after overrides: %v", err)
	}
}

func TestValidateInCode(t *testing.T) {
	env := mustParse(t, shop)
	env.Services[0].Replicas = -1
	env.Services[1].Clusters = append(env.Services[1].Clusters, "mars")
	err := env.Validate()
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("want two errors, got %v", err)
	}
	paths := []string{errs[0].Path, errs[1].Path}
	want := []string{"services[0].replicas", "services[1].clusters[3]"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	if errs[0].Line != 0 {
		t.Errorf("Validate has no positions, got line %d", errs[0].Line)
	}
}

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{
		"67108864": 64 << 20,
		"64Mi":     64 << 20,
		"1Gi":      1 << 30,
		"1.5Gi":    3 << 29,
		"512Ki":    512 << 10,
		"2Ti":      2 << 40,
		"512M":     512_000_000,
		"1G":       1_000_000_000,
		"100k":     100_000,
		"100K":     100_000,
		"1T":       1_000_000_000_000,
		"0.5":      0,
	} {
		got, err := ParseMemory(in)
		if err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1Mi", "1e3", "64 Mi", "512m", "1g", "1MB", "9999999999Ti", "1.Mi", ".5Gi"} {
		if n, err := ParseMemory(in); err == nil {
			t.Errorf("ParseMemory(%q) = %d, want an error", in, n)
		}
	}
	if _, err := ParseMemory("512m"); err == nil || !strings.Contains(err.Error(), "512Mi") {
		t.Errorf("want a hint for 512m, got %v", err)
	}
}
