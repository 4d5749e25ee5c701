package spec

import (
	"strings"
	"testing"
)

// TestPlacementAndReservations: placement and reservations parse, inherit and survive; a
// service's placement is accepted beside a plain engine (it is ignored there).
func TestPlacementAndReservations(t *testing.T) {
	env := mustParse(t, `
environment: x
clusters:
  - name: edge
  - name: core
    kind: swarm
    endpoint: tcp://manager:2376
    policy:
      placement: {constraints: [node.role==worker]}
defaults:
  resources: {reserve_memory: 32Mi}
services:
  - name: web
    image: shop/web
    version: "1"
    resources: {memory: 64Mi, cpus: 1, reserve_cpus: 0.25}
    placement:
      constraints: [node.labels.tier==frontend, "node.hostname != db-1"]
      preferences: [{spread: node.labels.zone}]
`)
	s, _ := env.Service("web")
	if s.Placement == nil || len(s.Placement.Constraints) != 2 || s.Placement.Preferences[0].Spread != "node.labels.zone" {
		t.Fatalf("placement %+v", s.Placement)
	}
	if r := s.Resources; r.ReserveCPUs != 0.25 || r.ReserveMemory != "32Mi" || r.Memory != "64Mi" {
		t.Fatalf("resources %+v (reserve_memory is inherited from defaults)", r)
	}
	if p := env.Clusters[1].Policy.Placement; p == nil || p.Constraints[0] != "node.role==worker" {
		t.Fatalf("cluster placement %+v", p)
	}
}

// TestPlacementErrors: bad constraints, spreads and reservations are named with file, line
// and field; a cluster placement on a plain engine is refused.
func TestPlacementErrors(t *testing.T) {
	doc := `environment: x
clusters:
  - name: edge
    policy:
      placement: {constraints: [node.role==worker]}
  - name: core
    kind: swarm
services:
  - name: web
    image: shop/web
    version: "1"
    resources: {memory: 64Mi, reserve_memory: 128Mi, cpus: 0.5, reserve_cpus: 1}
    placement:
      constraints:
        - node.labels.tier==frontend
        - node.labels.tier=frontend
        - node.colour==blue
        - node.role==boss
        - "node.labels.tier=="
      preferences: [{spread: zone}]
`
	_, err := Parse("env.yaml", []byte(doc))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"env.yaml:5:",
		"clusters[0].policy.placement: placement applies to a swarm's nodes: cluster \"edge\" is a plain Docker engine",
		"env.yaml:16:11: services[0].placement.constraints[1]: constraint \"node.labels.tier=frontend\" is not <attribute>==<value>",
		"env.yaml:17:11: services[0].placement.constraints[2]: constraint \"node.colour==blue\" tests \"node.colour\"",
		"env.yaml:18:11: services[0].placement.constraints[3]: constraint \"node.role==boss\": node.role is manager or worker",
		"services[0].placement.constraints[4]: constraint \"node.labels.tier==\" has no valid value",
		"services[0].placement.preferences[0].spread: spread \"zone\" must name a node label",
		"env.yaml:12:",
		"services[0].resources.reserve_memory: reserve_memory \"128Mi\" is more than the memory limit \"64Mi\"",
		"services[0].resources.reserve_cpus: reserve_cpus 1 is more than the cpus limit 0.5",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "constraints[0]") {
		t.Errorf("a valid constraint is refused:\n%v", err)
	}
}

// TestConstraintProblem: the constraint syntax Docker's scheduler reads.
func TestConstraintProblem(t *testing.T) {
	for c, ok := range map[string]bool{
		"node.labels.tier==frontend":     true,
		"node.role==manager":             true,
		"node.role != worker":            true,
		"engine.labels.storage==ssd":     true,
		"node.platform.os==linux":        true,
		"node.id==2ivku8v2gvtg4":         true,
		"node.labels.tier":               false,
		"node.labels.tier=frontend":      false,
		"node.labels.tier<>frontend":     false,
		"labels.tier==frontend":          false,
		"node.labels.==x":                false,
		"node.labels.tier==front\"end":   false,
		"node.hostname==":                false,
		"node.labels.tier==frontend,x=y": false,
	} {
		if why := ConstraintProblem(c); (why == "") != ok {
			t.Errorf("ConstraintProblem(%q) = %q, want ok=%v", c, why, ok)
		}
	}
}

// TestSchemaPlacement: the JSON Schema accepts the new fields.
func TestSchemaPlacement(t *testing.T) {
	s := compileSchema(t)
	doc := "environment: x\nclusters: [{name: a, kind: swarm, policy: {placement: {constraints: [node.role==worker]}}}]\n" +
		"services: [{name: web, image: shop/web, version: '1', resources: {reserve_memory: 32Mi, reserve_cpus: 0.5}, placement: {constraints: [node.labels.a==b], preferences: [{spread: node.labels.zone}]}}]\n"
	if err := s.Validate(yamlToJSONValue(t, []byte(doc))); err != nil {
		t.Fatalf("schema refuses placement: %v", err)
	}
	bad := strings.Replace(doc, "reserve_memory: 32Mi", "reserve_memory: 32mb", 1)
	if err := s.Validate(yamlToJSONValue(t, []byte(bad))); err == nil {
		t.Fatal("schema accepts reserve_memory 32mb")
	}
}

// TestSwarmSecretFileVariable: on a swarm, <VAR>_FILE belongs to secret VAR (it says where
// the file is): a service on a swarm that also sets it is refused, on a plain engine not.
func TestSwarmSecretFileVariable(t *testing.T) {
	doc := `environment: x
clusters:
  - name: edge
  - name: core
    kind: swarm
services:
  - name: web
    image: shop/web
    version: "1"
    clusters: [%s]
    env: {DSN_FILE: /etc/dsn}
    secrets:
      DSN: web-dsn
`
	_, err := Parse("env.yaml", []byte(strings.Replace(doc, "%s", "edge", 1)))
	if err != nil {
		t.Fatalf("plain engine: %v", err)
	}
	_, err = Parse("env.yaml", []byte(strings.Replace(doc, "%s", "edge, core", 1)))
	want := `env.yaml:13:12: services[0].secrets.DSN: on swarm cluster "core" secret DSN is a file, and DSN_FILE says where it is`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}
