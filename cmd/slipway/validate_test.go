package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the root command with args and returns stdout and the error.
func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd() // a fresh tree: no flag value survives from another test
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func writeSpec(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const badSpec = `environment: shop
clusters: [{name: a}]
services:
  - name: web
    image: shop/web
    version: "1"
    replicas: 0
    colour: blue
`

func TestValidateCommand(t *testing.T) {
	good := filepath.Join("..", "..", "deployments", "local.yaml")
	bad := writeSpec(t, "bad.yaml", badSpec)

	out, err := runCLI(t, "", "validate", good)
	if err != nil || out != good+": ok\n" {
		t.Fatalf("good file: out %q, err %v", out, err)
	}

	out, err = runCLI(t, "", "validate", good, bad)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("want exit code 1, got %v", err)
	}
	want := good + ": ok\n" +
		bad + ":7:15: services[0].replicas: must be at least 1 (leave the field out for the default)\n" +
		bad + ":8:5: services[0].colour: unknown field \"colour\" (known fields: canary, clusters, command, depends_on, env, health, image, mounts, name, placement, port, privileged, replicas, resources, rollback, rollout, secrets, stop_grace, verification, version)\n"
	if out != want {
		t.Fatalf("output\n%s\nwant\n%s", out, want)
	}

	out, err = runCLI(t, "", "validate", "--output", "json", bad, filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("want exit code 1, got %v", err)
	}
	var results []validateResult
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if len(results) != 2 || results[0].OK || len(results[0].Errors) != 2 || results[1].OK || len(results[1].Errors) != 1 {
		t.Fatalf("json results %+v", results)
	}
	if e := results[0].Errors[0]; e.Line != 7 || e.Column != 15 || e.Path != "services[0].replicas" {
		t.Fatalf("first error %+v", e)
	}

	// Flags keep their values between Execute calls in one process: set --output again.
	out, err = runCLI(t, badSpec, "validate", "--output", "text", "-")
	if !errors.As(err, &ee) || !strings.HasPrefix(out, "<stdin>:7:15: services[0].replicas") {
		t.Fatalf("stdin: out %q err %v", out, err)
	}
}

func TestSchemaCommand(t *testing.T) {
	out, err := runCLI(t, "", "schema")
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if s["$schema"] == nil || s["properties"] == nil {
		t.Fatalf("schema lacks $schema or properties: %.200s", out)
	}
}
