package spec

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func durationPtr(d time.Duration) *Duration {
	v := Duration(d)
	return &v
}

// TestBake: verification.bake defaults to 30s, is inherited from the defaults block, and 0s
// stays 0s (no bake), through ApplyDefaults again and a JSON round trip.
func TestBake(t *testing.T) {
	env := mustParse(t, `
environment: x
clusters: [{name: a}]
defaults:
  verification: {bake: 2m}
services:
  - {name: inherits, image: x, version: "1", port: 80}
  - {name: own, image: x, version: "1", port: 80, verification: {bake: 45s}}
  - {name: none, image: x, version: "1", port: 80, verification: {bake: 0s}}
  - {name: portless, image: x, version: "1"}
`)
	want := map[string]time.Duration{"inherits": 2 * time.Minute, "own": 45 * time.Second, "none": 0, "portless": 2 * time.Minute}
	check := func(env *Environment) {
		t.Helper()
		for _, s := range env.Services {
			if s.Verification.Bake == nil || s.Verification.Bake.D() != want[s.Name] {
				t.Errorf("%s: bake %v, want %s", s.Name, s.Verification.Bake, want[s.Name])
			}
		}
	}
	check(env)
	if env.Services[0].Verification.Bake == env.Defaults.Verification.Bake {
		t.Error("an inherited bake shares the defaults' pointer")
	}
	ApplyDefaults(env)
	check(env)
	j, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	var back Environment
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	check(&back)
	if !reflect.DeepEqual(env, &back) {
		t.Error("bake does not survive a JSON round trip")
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}

	plain := mustParse(t, "environment: x\nclusters: [{name: a}]\nservices: [{name: web, image: x, version: \"1\", port: 80}]\n")
	if b := plain.Services[0].Verification.Bake; b == nil || b.D() != DefaultBake {
		t.Errorf("default bake %v, want %s", b, DefaultBake)
	}
}
