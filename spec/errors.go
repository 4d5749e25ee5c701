package spec

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem in a spec file: where it is (file, line, column, field path) and
// what is wrong. Line and Column are 1-based; 0 means unknown (e.g. an Environment built in
// code and checked with Validate).
type FieldError struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Path is the field path, e.g. services[2].canary.soak; empty for the whole document.
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	// Err is the underlying cause, if any (e.g. a file-system error from Load).
	Err error `json:"-"`
}

// Error formats the problem as file:line:col: path: message, leaving out what is unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, "%d:", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Errors is every problem found in a spec, in file order. Parse, Load and Validate return it
// (as error) so callers can report all problems at once.
type Errors []*FieldError

// Error joins the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors (for errors.Is / errors.As).
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// maxErrors caps how many problems one parse reports; a fuzzer or a wrong file can produce
// thousands, and nobody reads past the first screenful.
const maxErrors = 100

// sorted orders errors by position, drops exact duplicates and caps the count.
func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Path < b.Path
	})
	out := es[:0:0]
	seen := map[string]bool{}
	for _, e := range es {
		k := e.Error()
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	if len(out) > maxErrors {
		rest := len(out) - maxErrors
		out = append(out[:maxErrors:maxErrors], &FieldError{
			File:    out[0].File,
			Message: fmt.Sprintf("%d more errors not shown", rest),
		})
	}
	return out
}

// orNil returns nil (a nil error interface) when there are no errors.
func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
