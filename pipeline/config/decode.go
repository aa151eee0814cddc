package config

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder fills Go values from a yaml.Node tree strictly: every key must be a field, every
// value must have the field's type, every required field must be there. It keeps going after
// a problem, so one run reports all of them, each with its line and key path. yaml.v3's own
// Decode with KnownFields stops at the first unknown key and knows no key paths; walking the
// nodes ourselves gives both.
type decoder struct {
	file  string
	errs  Errors
	lines map[string]linePos
	keys  map[string][]string // mapping path -> its keys in file order
	// failed lists the paths with errors, so that Validate's follow-on errors about them
	// (a value left empty because it did not decode) are left out.
	failed []string
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.failed = append(d.failed, path)
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

func (d *decoder) mark(path string, n *yaml.Node) {
	if _, ok := d.lines[path]; !ok && n != nil {
		d.lines[path] = linePos{n.Line, n.Column}
	}
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	validator       = reflect.TypeFor[interface{ Validate() error }]()
)

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// decode fills v (settable) from n; path names v in messages.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	d.mark(path, n)
	if isNull(n) {
		return // as if absent: the zero value
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind == yaml.ScalarNode {
			if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
				d.errorf(n, path, "%v", err)
			}
			return
		}
		if n.Kind != yaml.MappingNode || v.Kind() != reflect.Struct || len(fieldsOf(v.Type())) == 0 {
			d.errorf(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
			return
		}
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!bool" {
			d.errorf(n, path, "expected a string, got %s", describeNode(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n, path, "expected true or false, got %s", describeNode(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.errorf(n, path, "expected an integer, got %s", describeNode(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil {
			d.errorf(n, path, "expected a number, got %s", describeNode(n))
			return
		}
		v.SetFloat(f)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "expected a mapping, got %s", describeNode(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		seen := map[string]bool{}
		for _, p := range d.pairs(n, path) {
			k := p.key.Value
			kp := join(path, k)
			if seen[k] {
				d.errorf(p.key, kp, "key %q appears twice", k)
				continue
			}
			seen[k] = true
			d.keys[path] = append(d.keys[path], k)
			d.mark(kp, p.key)
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(p.value, ev, kp)
			v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "expected a list, got %s", describeNode(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	default:
		panic(fmt.Sprintf("config: no decoding for %s at %s", v.Type(), path))
	}
	if v.Kind() == reflect.String && v.Addr().Type().Implements(validator) {
		if err := v.Addr().Interface().(interface{ Validate() error }).Validate(); err != nil {
			d.errorf(n, path, "%v", err)
		}
	}
}

type pair struct{ key, value *yaml.Node }

// pairs lists a mapping's entries with merge keys (<<: *anchor) applied: explicit keys win
// over merged ones, earlier merged mappings over later ones.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var out, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "expected a string key, got %s", describeNode(k))
			continue
		}
		if k.Tag != "!!merge" {
			out = append(out, pair{k, val})
			continue
		}
		val = resolve(val)
		srcs := []*yaml.Node{val}
		if val.Kind == yaml.SequenceNode {
			srcs = val.Content
		}
		for _, src := range srcs {
			src = resolve(src)
			if src.Kind != yaml.MappingNode {
				d.errorf(k, path, "a merge key (<<) needs a mapping or a list of mappings, got %s", describeNode(src))
				continue
			}
			merged = append(merged, d.pairs(src, path)...)
		}
	}
	for _, m := range merged {
		if !slices.ContainsFunc(out, func(p pair) bool { return p.key.Value == m.key.Value }) {
			out = append(out, m)
		}
	}
	return out
}

// field is a struct field as the file names it.
type field struct {
	name     string
	index    []int
	required bool
	tags     map[string][]string // jsonschema tag keywords: enum, minimum, ...
}

func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.Anonymous && opts == "inline" {
			for _, inner := range fieldsOf(f.Type) {
				inner.index = append([]int{i}, inner.index...)
				out = append(out, inner)
			}
			continue
		}
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		fl := field{name: name, index: f.Index, tags: map[string][]string{}}
		for _, kw := range strings.Split(f.Tag.Get("jsonschema"), ",") {
			k, v, _ := strings.Cut(kw, "=")
			if k == "required" {
				fl.required = true
			} else if k != "" {
				fl.tags[k] = append(fl.tags[k], v)
			}
		}
		out = append(out, fl)
	}
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]*yaml.Node{}
	failed := map[string]bool{}
	for _, p := range d.pairs(n, path) {
		k := p.key.Value
		kp := join(path, k)
		if path == "" && strings.HasPrefix(k, "x-") {
			continue // extension keys at the top: a place for anchors
		}
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == k })
		if i < 0 {
			d.errorf(p.key, kp, "unknown key %q%s", k, suggest(k, fields))
			continue
		}
		if first, dup := seen[k]; dup {
			d.errorf(p.key, kp, "key %q appears twice (first on line %d)", k, first.Line)
			continue
		}
		seen[k] = p.key
		d.mark(kp, p.key)
		fv := v.FieldByIndex(fields[i].index)
		nerr := len(d.errs)
		d.decode(p.value, fv, kp)
		if len(d.errs) == nerr {
			d.checkTags(p.value, fv, kp, fields[i])
		} else {
			failed[k] = true
		}
	}
	at := n
	if lp, ok := d.lines[path]; ok && path != "" {
		at = &yaml.Node{Line: lp.line, Column: lp.col} // the key that holds this mapping
	}
	for _, f := range fields {
		k, ok := seen[f.name]
		switch {
		case f.required && !ok:
			d.errorf(at, path, "missing required key %q", f.name)
		case f.required && !failed[f.name] && v.FieldByIndex(f.index).IsZero():
			d.errorf(k, join(path, f.name), "needs a value")
		}
	}
}

// checkTags enforces the jsonschema keywords the schema states, so that the file is held to
// the same rules as the schema tells editors.
func (d *decoder) checkTags(n *yaml.Node, v reflect.Value, path string, f field) {
	n = resolve(n)
	for _, p := range tagProblems(v, f) {
		at, ap := n, path
		if p.index >= 0 {
			at, ap = n.Content[p.index], fmt.Sprintf("%s[%d]", path, p.index)
		}
		d.errorf(at, ap, "%s", p.msg)
	}
}

// tagProblem is a value that breaks a jsonschema keyword of its field; index is the list
// element at fault, -1 for the value itself.
type tagProblem struct {
	index int
	msg   string
}

// tagProblems checks v, the value of field f, against f's jsonschema keywords (enum,
// pattern, minItems, minimum, maximum, exclusiveMinimum). The decoder and Validate share it.
func tagProblems(v reflect.Value, f field) []tagProblem {
	var out []tagProblem
	add := func(i int, format string, args ...any) {
		out = append(out, tagProblem{i, fmt.Sprintf(format, args...)})
	}
	if enum := f.tags["enum"]; len(enum) > 0 {
		switch v.Kind() {
		case reflect.String:
			if !slices.Contains(enum, v.String()) {
				add(-1, "%q is not one of %s", v.String(), quoteList(enum))
			}
		case reflect.Slice:
			for i := range v.Len() {
				if s := v.Index(i).String(); !slices.Contains(enum, s) {
					add(i, "%q is not one of %s", s, quoteList(enum))
				}
			}
		}
	}
	if p := f.tags["pattern"]; len(p) > 0 && v.Kind() == reflect.String && v.String() != "" {
		if !regexp.MustCompile(p[0]).MatchString(v.String()) {
			add(-1, "%q does not match %s", v.String(), p[0])
		}
	}
	num := func(kw string) (float64, bool) {
		if s := f.tags[kw]; len(s) > 0 {
			x, err := strconv.ParseFloat(s[0], 64)
			return x, err == nil
		}
		return 0, false
	}
	var x float64
	switch v.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		x = float64(v.Int())
	case reflect.Float64:
		x = v.Float()
	case reflect.Slice:
		if m, ok := num("minItems"); ok && float64(v.Len()) < m {
			if m == 1 {
				add(-1, "needs at least one entry")
			} else {
				add(-1, "needs at least %v entries", m)
			}
		}
		return out
	default:
		return out
	}
	if m, ok := num("minimum"); ok && x < m {
		add(-1, "%v is less than the minimum %v", x, m)
	}
	if m, ok := num("maximum"); ok && x > m {
		add(-1, "%v is more than the maximum %v", x, m)
	}
	if m, ok := num("exclusiveMinimum"); ok && x <= m {
		add(-1, "%v must be more than %v", x, m)
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// suggest offers the known key nearest to a misspelt one.
func suggest(k string, fields []field) string {
	best, bestD := "", 3
	for _, f := range fields {
		if dd := distance(strings.ToLower(k), f.name); dd < bestD {
			best, bestD = f.name, dd
		}
	}
	if best != "" {
		return fmt.Sprintf(", did you mean %q?", best)
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// describeNode says what a value is without repeating long or multi-line values (which may
// be secrets pasted in the wrong place): a mapping, a list, or a short scalar.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	kind := map[string]string{"!!str": "the string", "!!int": "the integer", "!!float": "the number", "!!bool": "the boolean", "!!null": "nothing"}[n.Tag]
	if kind == "" {
		kind = "the value"
	}
	if n.Tag == "!!null" {
		return kind
	}
	if len(n.Value) > 40 || strings.ContainsAny(n.Value, "\n\r") {
		return kind + " (" + strconv.Itoa(len(n.Value)) + " characters)"
	}
	return kind + " " + strconv.Quote(n.Value)
}

func describeType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return `a duration like "30s"`
	case reflect.TypeFor[Batches]():
		return `a number of hosts or a percentage like "25%"`
	case reflect.TypeFor[HostSpec]():
		return `a host ("host[:port]" or a mapping with host, port, user)`
	case reflect.TypeFor[Deployment]():
		return "a deployment (a name or a mapping with name and containers)"
	}
	return "a mapping"
}
