package spec

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestValidFiles parses every file in testdata/valid and the shipped deployments.
func TestValidFiles(t *testing.T) {
	files := specFiles(t, "testdata/valid/*")
	files = append(files, specFiles(t, "../deployments/*.yaml")...)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			env, err := Load(f)
			if err != nil {
				t.Fatalf("want no errors, got:\n%v", err)
			}
			if err := env.Validate(); err != nil {
				t.Fatalf("the defaulted spec does not validate:\n%v", err)
			}
		})
	}
}

// want is one expected error of an invalid file, written in the file as
// "# want: <path>:<line> <message substring>".
type want struct {
	path, msg string
	line      int
}

var wantRE = regexp.MustCompile(`^\s*# want: (.+?):(\d+)(?:\s+(.*))?$`)

func wantsOf(t *testing.T, data []byte) []want {
	t.Helper()
	var ws []want
	for _, l := range strings.Split(string(data), "\n") {
		m := wantRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		line, _ := strconv.Atoi(m[2])
		path := m[1]
		if path == "-" {
			path = ""
		}
		ws = append(ws, want{path: path, line: line, msg: strings.TrimSpace(m[3])})
	}
	return ws
}

// TestInvalidFiles parses every file in testdata/invalid and checks that exactly the errors
// announced in its "# want:" comments come out: same field path, same line, message
// containing the given text. JSON files (no comments) have a .want file beside them.
func TestInvalidFiles(t *testing.T) {
	for _, f := range specFiles(t, "testdata/invalid/*") {
		if strings.HasSuffix(f, ".want") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			wantSrc := data
			if w, err := os.ReadFile(f + ".want"); err == nil {
				wantSrc = w
			}
			ws := wantsOf(t, wantSrc)
			if len(ws) == 0 {
				t.Fatalf("%s has no # want: lines", f)
			}
			env, err := Parse(f, data)
			if err == nil {
				t.Fatalf("want errors, got none (environment %q)", env.Environment)
			}
			if env != nil {
				t.Errorf("want a nil Environment with errors")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want spec.Errors, got %T: %v", err, err)
			}
			matched := make([]bool, len(errs))
			for _, w := range ws {
				found := false
				for i, e := range errs {
					if !matched[i] && e.Path == w.path && e.Line == w.line && strings.Contains(e.Message, w.msg) {
						matched[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("missing error %s:%d %q", w.path, w.line, w.msg)
				}
			}
			for i, e := range errs {
				if e.File != f {
					t.Errorf("error names file %q, want %q", e.File, f)
				}
				if !matched[i] {
					t.Errorf("unexpected error: %v", e)
				}
			}
			if t.Failed() {
				t.Logf("all errors:\n%v", err)
			}
		})
	}
}

// TestJSONRoundTrip: the parsed spec is the workflow input, and Temporal's data converter is
// JSON, so Parse → json.Marshal → json.Unmarshal must give the same Environment; parsing the
// JSON again (as the API does) and applying defaults again must not change it either.
func TestJSONRoundTrip(t *testing.T) {
	files := specFiles(t, "testdata/valid/*")
	files = append(files, specFiles(t, "../deployments/*.yaml")...)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			env, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			j, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			var back Environment
			if err := json.Unmarshal(j, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(env, &back) {
				t.Fatalf("JSON round trip changed the spec:\nbefore %+v\nafter  %+v", env, &back)
			}
			again, err := Parse("roundtrip.json", j)
			if err != nil {
				t.Fatalf("the marshalled spec does not parse:\n%v", err)
			}
			if !reflect.DeepEqual(env, again) {
				j2, _ := json.Marshal(again)
				t.Fatalf("parsing the JSON again changed the spec:\n%s\n%s", j, j2)
			}
			ApplyDefaults(again)
			if !reflect.DeepEqual(env, again) {
				t.Fatal("ApplyDefaults is not idempotent")
			}
		})
	}
}

func TestParseRefusesLargeInput(t *testing.T) {
	data := []byte("environment: x\ndescription: \"" + strings.Repeat("a", MaxSpecBytes) + "\"\n")
	_, err := Parse("big.yaml", data)
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("want a size error, got %v", err)
	}
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p)
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Load: want a size error, got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("want one spec error, got %v", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want the error to wrap fs.ErrNotExist, got %v", err)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	for _, c := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Column: 5, Path: "services[0].replicas", Message: "bad"}, "a.yaml:3:5: services[0].replicas: bad"},
		{FieldError{File: "a.yaml", Path: "x", Message: "bad"}, "a.yaml: x: bad"},
		{FieldError{Path: "x", Message: "bad"}, "x: bad"},
		{FieldError{File: "a.yaml", Line: 2, Message: "bad"}, "a.yaml:2: bad"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

// TestAllErrorsAtOnce: many independent mistakes in one file all come out, in line order.
func TestAllErrorsAtOnce(t *testing.T) {
	doc := `environment: Prod
clusters:
  - name: a
    wave: -1
services:
  - name: web
    image: shop/web
    version: "1"
    replicas: zero
    canary: {soak: 10}
    colour: blue
`
	_, err := Parse("x.yaml", []byte(doc))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	var lines []int
	for _, e := range errs {
		lines = append(lines, e.Line)
	}
	if want := []int{1, 4, 9, 10, 11}; !reflect.DeepEqual(lines, want) {
		t.Fatalf("error lines %v, want %v:\n%v", lines, want, err)
	}
}

func TestManyErrorsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("environment: x\nclusters: [{name: a}]\nservices:\n")
	for i := 0; i < 300; i++ {
		b.WriteString("  - {name: s" + strconv.Itoa(i) + ", image: x, version: '1', bogus: 1}\n")
	}
	_, err := Parse("x.yaml", []byte(b.String()))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Message, "200 more errors") {
		t.Fatalf("want %d errors and a summary, got %d; last %v", maxErrors, len(errs), errs[len(errs)-1])
	}
}

// TestAliasBomb: aliases that multiply (a list of 2000 aliases to a service whose requests
// are 2000 aliases to a probe: four million probes from a few kilobytes) are refused.
func TestAliasBomb(t *testing.T) {
	doc := "x-probe: &p {path: /}\n" +
		"x-requests: &r [" + strings.Repeat("*p, ", 1999) + "*p]\n" +
		"x-service: &s {name: s, image: x, version: '1', verification: {requests: *r}}\n" +
		"environment: x\nclusters: [{name: a}]\nservices: [" + strings.Repeat("*s, ", 1999) + "*s]\n"
	_, err := Parse("bomb.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "too complex") {
		t.Fatalf("want a too-complex error, got %v", err)
	}
}

// TestDocsExample keeps the full example in docs/spec.md true: it parses, and it matches
// the schema.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Full example")
	if !ok {
		t.Fatal("docs/spec.md has no full example")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/spec.md: no yaml block in the full example")
	}
	env, err := Parse("docs/spec.md", []byte(example))
	if err != nil {
		t.Fatalf("the docs example does not parse:\n%v", err)
	}
	if len(env.Services) != 3 || len(env.LoadTests) != 1 {
		t.Fatalf("unexpected example: %d services", len(env.Services))
	}
	if err := compileSchema(t).Validate(yamlToJSONValue(t, []byte(example))); err != nil {
		t.Fatalf("the docs example does not match the schema: %v", err)
	}
}
