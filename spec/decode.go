package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// maxVisits bounds the values the decoder looks at. YAML aliases can make a small document
// expand enormously ("billion laughs"); no honest spec comes close to this (the production
// example has about 600).
const maxVisits = 300_000

// decoder walks a yaml.Node tree into the model's Go types, reporting every unknown key,
// wrong type and bad value with its position, and remembering the node of every field path
// so validation can point at the right line.
type decoder struct {
	file   string
	errs   Errors
	pos    map[string]*yaml.Node
	bad    map[string]bool // paths that had a decode error
	visits int
	halted bool
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: map[string]*yaml.Node{}, bad: map[string]bool{}}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	e := &FieldError{File: d.file, Path: path, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
	d.bad[path] = true
}

// parseDocument reads exactly one YAML (or JSON) document and returns its root node.
func parseDocument(file string, data []byte) (*yaml.Node, Errors) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	if looksLikeJSON(data) {
		data = unescapeJSONSlashes(data)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: file, Line: 1, Column: 1, Message: "the spec is empty"}}
		}
		return nil, Errors{yamlSyntaxError(file, err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, Errors{yamlSyntaxError(file, err)}
	default:
		return nil, Errors{{File: file, Line: next.Line, Column: next.Column,
			Message: "a spec file holds one document; found a second one (---)"}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, Errors{{File: file, Line: 1, Column: 1, Message: "the spec is empty"}}
	}
	return doc.Content[0], nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxError turns a yaml.v3 parse error ("yaml: line 3: did not find expected key")
// into a FieldError with the line.
func yamlSyntaxError(file string, err error) *FieldError {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: file, Line: line, Message: "invalid YAML: " + m[2], Err: err}
	}
	return &FieldError{File: file, Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: "), Err: err}
}

func looksLikeJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// unescapeJSONSlashes rewrites the JSON escape \/ (which YAML parsers reject) to a plain /
// inside double-quoted strings. Columns after it on the same line shift by one.
func unescapeJSONSlashes(data []byte) []byte {
	if !bytes.Contains(data, []byte(`\/`)) {
		return data
	}
	out := make([]byte, 0, len(data))
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case !inString:
			if c == '"' {
				inString = true
			}
		case c == '\\' && i+1 < len(data):
			if data[i+1] == '/' {
				out = append(out, '/')
				i++
				continue
			}
			out = append(out, c, data[i+1])
			i++
			continue
		case c == '"':
			inString = false
		}
		out = append(out, c)
	}
	return out
}

var durationType = reflect.TypeOf(Duration(0))

// decode fills v from n. path names v for errors (services[2].canary.soak).
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.halted {
		return
	}
	d.visits++
	if d.visits > maxVisits {
		d.halted = true
		d.errorf(n, path, "the document is too complex: more than %d values, counting each use of an alias", maxVisits)
		return
	}
	n = d.resolve(n, path)
	if n == nil {
		return
	}
	d.pos[path] = n
	if isNull(n) {
		return // null is the same as leaving the field out
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "" && !strings.HasPrefix(n.Tag, "!!") {
		d.errorf(n, path, "custom YAML tag %s is not supported", n.Tag)
		return
	}
	if v.Type() == durationType {
		d.decodeDuration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if p.Elem().Type() == durationType { // *Duration: a duration whose 0s is a value
			d.decodeDuration(n, p.Elem(), path)
		} else {
			d.decodeValue(n, p.Elem(), path)
		}
		v.Set(p)
	default:
		d.decodeValue(n, v, path)
	}
}

// resolve follows aliases to the node they name.
func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 || n.Alias == nil {
			d.errorf(n, path, "unresolvable alias")
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.wrongType(n, path, "a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.wrongType(n, path, "true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.wrongType(n, path, "an integer")
			return
		}
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.errorf(n, path, "integer %s is out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			d.wrongType(n, path, "a number")
			return
		}
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n, path, "must be a finite number, got %s", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		// The model only uses the kinds above; a new kind must be taught here.
		d.errorf(n, path, "internal error: cannot decode into %s", v.Type())
	}
}

// wrongType reports a value of the wrong kind, with a hint for the common YAML surprises.
func (d *decoder) wrongType(n *yaml.Node, path, want string) {
	got := describe(n)
	hint := ""
	if want == "a string" && n.Kind == yaml.ScalarNode {
		hint = fmt.Sprintf(" (quote it: %q)", n.Value)
	}
	d.errorf(n, path, "must be %s, got %s%s", want, got, hint)
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
		}
	}
	return "an unexpected node"
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
			hint = fmt.Sprintf(" (add a unit: \"%ss\")", n.Value)
		}
		d.errorf(n, path, "must be a duration such as \"30s\" or \"1m30s\", got %s%s", describe(n), hint)
		return
	}
	t, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, path, "invalid duration %q: use a number with a unit (ms, s, m, h), e.g. \"250ms\", \"30s\", \"1m30s\"", n.Value)
		return
	}
	if t < 0 {
		d.errorf(n, path, "duration %q must not be negative", n.Value)
		return
	}
	v.SetInt(int64(t))
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.wrongType(n, path, "a list")
		return
	}
	if len(n.Content) == 0 {
		return // an empty list is the same as none (keeps JSON round trips exact)
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

// pair is one key/value of a mapping after merge keys (<<) are resolved.
type pair struct {
	key, value *yaml.Node
}

// pairs returns a mapping's entries with YAML merge keys applied (explicit keys win over
// merged ones, earlier merges over later ones) and reports duplicate keys.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) []pair {
	var out []pair
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be plain strings, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, joinKey(path, k.Value), "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, val})
	}
	if depth > 10 {
		if len(merges) > 0 {
			d.errorf(n, path, "merge keys (<<) nested too deeply")
		}
		return out
	}
	for _, m := range merges {
		m = d.resolve(m, path)
		if m == nil {
			continue
		}
		var sources []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{m}
		case yaml.SequenceNode:
			for _, s := range m.Content {
				if s = d.resolve(s, path); s != nil {
					sources = append(sources, s)
				}
			}
		default:
			d.errorf(m, path, "a merge key (<<) needs a mapping or a list of mappings, got %s", describe(m))
			continue
		}
		for _, src := range sources {
			if src.Kind != yaml.MappingNode {
				d.errorf(src, path, "a merge key (<<) needs a mapping or a list of mappings, got %s", describe(src))
				continue
			}
			d.visits += len(src.Content)
			if d.visits > maxVisits {
				return out
			}
			for _, p := range d.pairs(src, path, depth+1) {
				if _, dup := seen[p.key.Value]; dup {
					continue
				}
				seen[p.key.Value] = p.key
				out = append(out, p)
			}
		}
	}
	return out
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// joinKey appends a mapping key to a path: a.b for plain keys, a["x.y"] otherwise.
func joinKey(path, key string) string {
	if !plainKeyRE.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.wrongType(n, path, "a mapping")
		return
	}
	ps := d.pairs(n, path, 0)
	if len(ps) == 0 {
		return // an empty mapping is the same as none
	}
	m := reflect.MakeMapWithSize(v.Type(), len(ps))
	for _, p := range ps {
		kp := joinKey(path, p.key.Value)
		if p.key.ShortTag() != "!!str" {
			d.errorf(p.key, kp, "keys must be strings, got %s (quote it: %q)", describe(p.key), p.key.Value)
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(p.value, elem, kp)
		d.keyPosition(kp, p)
		m.SetMapIndex(reflect.ValueOf(p.key.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

// structFields maps the YAML names of a struct type to field indexes.
type structFields struct {
	index map[string]int
	names []string // sorted, for suggestions
}

var fieldCache sync.Map // reflect.Type → *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	sf := &structFields{index: map[string]int{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		sf.index[name] = i
		sf.names = append(sf.names, name)
	}
	sort.Strings(sf.names)
	fieldCache.Store(t, sf)
	return sf
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.wrongType(n, path, "a mapping")
		return
	}
	fields := fieldsOf(v.Type())
	for _, p := range d.pairs(n, path, 0) {
		kp := joinKey(path, p.key.Value)
		if path == "" && strings.HasPrefix(p.key.Value, "x-") {
			continue // top-level extension keys hold anchors for reuse; they are ignored
		}
		i, ok := fields.index[p.key.Value]
		if !ok || p.key.ShortTag() != "!!str" {
			msg := fmt.Sprintf("unknown field %q", p.key.Value)
			if s := suggest(p.key.Value, fields.names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known fields: " + strings.Join(fields.names, ", ") + ")"
			}
			d.errorf(p.key, kp, "%s", msg)
			continue
		}
		d.decode(p.value, v.Field(i), kp)
		d.keyPosition(kp, p)
	}
}

// keyPosition makes later messages about a field point at its key when the value is a
// block (a mapping or list on the following lines) or an alias (whose target is elsewhere).
func (d *decoder) keyPosition(kp string, p pair) {
	n := d.pos[kp]
	if n == nil {
		return
	}
	switch {
	case p.value.Kind == yaml.AliasNode:
		d.pos[kp] = p.value
	case (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) && n.Style&yaml.FlowStyle == 0 && n.Line != p.key.Line:
		d.pos[kp] = p.key
	}
}

// suggest returns the known name closest to an unknown one, if it is close enough to be a
// typo.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	if len(name) <= 3 {
		bestDist = 2
	}
	lower := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	for _, k := range known {
		if lower == k {
			return k
		}
		if dist := levenshtein(lower, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
