package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics; it either returns Errors with messages, or an Environment
// that validates and survives a JSON round trip. Seeds are every test file and deployment.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*", "testdata/invalid/*", "../deployments/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("want non-empty Errors, got %T %v", err, err)
			}
			for _, e := range errs {
				if e.Message == "" {
					t.Fatalf("error without message: %+v", e)
				}
			}
			if env != nil {
				t.Fatal("Environment returned with errors")
			}
			return
		}
		if err := env.Validate(); err != nil {
			t.Fatalf("parsed spec does not validate: %v", err)
		}
		j, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Environment
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if !reflect.DeepEqual(env, &back) {
			t.Fatalf("JSON round trip changed the spec: %s", j)
		}
	})
}
