package spec

import (
	"fmt"
	"io"
	"os"
	"reflect"
)

// Parse decodes a deployment spec (YAML, or JSON, which is YAML too) strictly, validates
// it and applies defaults. filename is only used in error messages. Every problem is
// reported at once as Errors, each with line, column and field path. Input over
// MaxSpecBytes is refused.
func Parse(filename string, data []byte) (*Environment, error) {
	if len(data) > MaxSpecBytes {
		return nil, Errors{{File: filename, Message: fmt.Sprintf("the spec is %d bytes; the limit is %d (1 MiB)", len(data), MaxSpecBytes)}}
	}
	root, errs := parseDocument(filename, data)
	if errs != nil {
		return nil, errs
	}
	env := &Environment{}
	d := newDecoder(filename)
	d.decode(root, reflect.ValueOf(env).Elem(), "")
	if !d.halted {
		v := &validator{file: filename, pos: d.pos, bad: d.bad}
		v.environment(env)
		d.errs = append(d.errs, v.errs...)
	}
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	ApplyDefaults(env)
	v := &validator{file: filename, pos: d.pos, bad: d.bad}
	v.sampleBudget(env)
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	return env, nil
}

// Load reads and parses a spec file (see Parse), refusing files over MaxSpecBytes before
// reading them whole. Every error, a missing file included, is returned as Errors.
func Load(path string) (*Environment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Errors{{File: path, Message: err.Error(), Err: err}}
	}
	defer func() { _ = f.Close() }() // opened read-only: a failed close loses nothing
	data, err := io.ReadAll(io.LimitReader(f, MaxSpecBytes+1))
	if err != nil {
		return nil, Errors{{File: path, Message: fmt.Sprintf("reading: %v", err), Err: err}}
	}
	if len(data) > MaxSpecBytes {
		return nil, Errors{{File: path, Message: fmt.Sprintf("the spec is larger than the limit of %d bytes (1 MiB)", MaxSpecBytes)}}
	}
	return Parse(path, data)
}
