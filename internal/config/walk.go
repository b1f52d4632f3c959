package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds the nodes one decode visits. Real configs have a few
// thousand; the bound stops aliases from expanding a small file into an
// exponential amount of work ("billion laughs").
const maxNodes = 1 << 20

var durationType = reflect.TypeFor[Duration]()

// decoder walks a yaml.Node tree into the schema structs by reflection. It
// never stops at a problem: each one is recorded and the walk goes on, so a
// single run reports everything that is wrong.
type decoder struct {
	file  string
	lines map[string]int      // field path → line of its key (or list item)
	nulls map[string]bool     // field paths written as null
	order map[string][]string // map path → its keys in file order
	bad   map[string]bool     // paths whose value did not decode
	// merging holds the mappings being expanded by merge keys, to stop a
	// mapping that merges itself (yaml.v3 leaves such alias cycles in the tree).
	merging map[*yaml.Node]bool
	probs   Problems
	nodes   int // visited so far, against maxNodes
}

func newDecoder(file string) *decoder {
	return &decoder{
		file:  file,
		lines: map[string]int{},
		nulls: map[string]bool{},
		order: map[string][]string{},
		bad:   map[string]bool{},
		// merging is set per merge expansion, see mergeMapping.
		merging: map[*yaml.Node]bool{},
	}
}

func (d *decoder) problem(line int, path, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// fail records a value that could not be decoded at path; validation problems
// at or below path are then left out as noise.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.bad[path] = true
	d.problem(n.Line, path, format, args...)
}

func (d *decoder) mismatch(n *yaml.Node, path, want string) {
	d.fail(n, path, "expected %s, got %s", want, describe(n))
}

// spend counts a visit to n and reports whether the budget allows it; the
// first refusal is recorded as a problem.
func (d *decoder) spend(n *yaml.Node) bool {
	d.nodes++
	if d.nodes == maxNodes {
		d.problem(n.Line, "", "config is too large (too many nodes or alias expansions)")
	}
	return d.nodes < maxNodes
}

// covered reports whether path or one of its parents failed to decode.
func (d *decoder) covered(path string) bool {
	for {
		if d.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// document decodes the root mapping into c.
func (d *decoder) document(root *yaml.Node, c *Config) {
	d.value(root, reflect.ValueOf(c).Elem(), "")
}

// value decodes n into v, which must be settable. A null leaves v's zero value.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n) {
		return
	}
	n = resolve(n)
	if isNull(n) {
		return
	}
	if v.Type() == durationType {
		d.duration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.String:
		d.str(n, v, path)
	case reflect.Int:
		d.integer(n, v, path)
	case reflect.Bool:
		d.boolean(n, v, path)
	default:
		panic("config: unsupported schema type " + v.Type().String())
	}
}

// structure decodes a mapping into a struct, by the fields' yaml tags.
// Unknown and repeated keys are problems, except that keys starting with
// "x-" are ignored (as in Docker Compose) so that shared settings can be
// written once under an anchor and merged with "<<: *name".
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(n, path, "a mapping")
		return
	}
	fields, names := fieldIndex(v.Type())
	seen := map[string]int{}
	for _, p := range d.pairs(n, path) {
		key, fp, ok := d.key(p, path, seen)
		if !ok {
			continue
		}
		if strings.HasPrefix(key, "x-") {
			continue // an extension key, a place for YAML anchors
		}
		i, known := fields[key]
		if !known {
			d.problem(p.key.Line, fp, "unknown field %s", suggest(key, names))
			continue
		}
		d.entry(p, fp)
		d.value(p.val, v.Field(i), fp)
	}
}

// mapping decodes a mapping into a map with string keys, recording the keys'
// order. A null entry of a map of pointers still gets an (empty) element.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(n, path, "a mapping")
		return
	}
	t := v.Type()
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	seen := map[string]int{}
	for _, p := range d.pairs(n, path) {
		key, fp, ok := d.key(p, path, seen)
		if !ok {
			continue
		}
		d.entry(p, fp)
		d.order[path] = append(d.order[path], key)
		e := reflect.New(t.Elem()).Elem()
		d.value(p.val, e, fp)
		if e.Kind() == reflect.Pointer && e.IsNil() {
			e.Set(reflect.New(t.Elem().Elem()))
		}
		m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), e)
	}
	v.Set(m)
}

// entry records the line of a present key and whether its value is null.
func (d *decoder) entry(p pair, path string) {
	d.lines[path] = p.key.Line
	if isNull(resolve(p.val)) {
		d.nulls[path] = true
	}
}

// key returns a mapping key and its field path, or false after recording a
// problem for a non-scalar or repeated key.
func (d *decoder) key(p pair, path string, seen map[string]int) (string, string, bool) {
	k := resolve(p.key)
	if k.Kind != yaml.ScalarNode {
		d.problem(p.key.Line, path, "expected a string key, got %s", describe(k))
		return "", "", false
	}
	key := k.Value
	if k.Tag == "!!null" {
		key = ""
	}
	fp := join(path, key)
	if first, dup := seen[key]; dup {
		d.problem(p.key.Line, fp, "duplicate key (first at line %d)", first)
		return "", "", false
	}
	seen[key] = p.key.Line
	return key, fp, true
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.mismatch(n, path, "a list")
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := path + "[" + strconv.Itoa(i) + "]"
		d.lines[ip] = item.Line
		d.value(item, s.Index(i), ip)
	}
	v.Set(s)
}

// str accepts any scalar, so that expect_status: 200 or on: [502] need no quotes.
func (d *decoder) str(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.mismatch(n, path, "a string")
		return
	}
	v.SetString(n.Value)
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	var i int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.mismatch(n, path, "an integer")
		return
	}
	v.SetInt(int64(i))
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value, path string) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.mismatch(n, path, "true or false")
		return
	}
	v.SetBool(b)
}

// duration parses a Go duration string ("250ms", "1h30m"); a bare 0 is
// accepted too, any other bare number is an error because its unit is unclear.
func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.mismatch(n, path, "a duration")
		return
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == 0 {
			v.SetInt(0)
			return
		}
		d.fail(n, path, "duration %s needs a unit, like %ss or %sms", n.Value, n.Value, n.Value)
		return
	}
	t, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, "invalid duration %q (use a number with a unit: 250ms, 5s, 1m, 1h)", n.Value)
		return
	}
	v.SetInt(int64(t))
}

// pair is one key and value of a mapping.
type pair struct{ key, val *yaml.Node }

// pairs lists a mapping's entries with merge keys ("<<: *base") expanded.
// Written keys come first and win over merged ones; among merged mappings the
// earlier wins, as the YAML merge key spec says.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !d.spend(k) {
			return own
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.merge(v, path)...)
			continue
		}
		own = append(own, pair{k, v})
	}
	if len(merged) == 0 {
		return own
	}
	seen := map[string]bool{}
	for _, p := range own {
		seen[resolve(p.key).Value] = true
	}
	for _, p := range merged {
		if k := resolve(p.key).Value; !seen[k] {
			seen[k] = true
			own = append(own, p)
		}
	}
	return own
}

// merge returns the entries a merge key's value brings in.
func (d *decoder) merge(v *yaml.Node, path string) []pair {
	r := resolve(v)
	switch r.Kind {
	case yaml.MappingNode:
		return d.mergeMapping(v, r, path)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range r.Content {
			if m := resolve(item); m.Kind == yaml.MappingNode {
				out = append(out, d.mergeMapping(item, m, path)...)
			} else {
				d.problem(item.Line, path, "merge key << needs mappings, got %s", describe(m))
			}
		}
		return out
	}
	d.problem(v.Line, path, "merge key << needs a mapping or a list of mappings, got %s", describe(r))
	return nil
}

// mergeMapping returns the entries of the mapping m, which ref (an alias or m
// itself) brings in through a merge key, refusing a mapping that merges itself.
func (d *decoder) mergeMapping(ref, m *yaml.Node, path string) []pair {
	if d.merging[m] {
		d.problem(ref.Line, path, "merge key << refers to a mapping that contains it")
		return nil
	}
	d.merging[m] = true
	defer delete(d.merging, m)
	return d.pairs(m, path)
}

// fieldIndex maps a struct's yaml keys to field indexes; names lists the keys
// in declaration order. Untagged fields use their lowercased name, as yaml.v3
// does; unexported fields and `yaml:"-"` are skipped.
func fieldIndex(t reflect.Type) (map[string]int, []string) {
	idx := map[string]int{}
	var names []string
	for i := range t.NumField() {
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
		idx[name] = i
		names = append(names, name)
	}
	return idx, names
}

// join appends a key to a field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the closest known key to a misspelt one, or lists them all.
func suggest(key string, names []string) string {
	lower := strings.ToLower(key)
	best, dist := "", 3
	for _, n := range names {
		dd := editDistance(lower, n)
		if len(lower) >= 3 && strings.HasPrefix(n, lower) {
			dd = 1
		}
		if dd < dist && dd*3 <= len(lower) {
			best, dist = n, dd
		}
	}
	if best != "" {
		return fmt.Sprintf("(did you mean %q?)", best)
	}
	return "(valid: " + strings.Join(names, ", ") + ")"
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
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
