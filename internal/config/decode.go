package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a config file, located by line and field path.
type Problem struct {
	// File is the config file's path ("" when parsed from memory without a name).
	File string
	// Line is the 1-based line of the offending field; 0 when unknown.
	Line int
	// Path names the field, as in "pools.app.backends[1].weight"; "" for the
	// whole file.
	Path string
	// Msg says what is wrong, lowercase, without a trailing period.
	Msg string
}

// String formats p as "FILE:LINE: field.path: message". The path is left out
// when empty, and so is the line when unknown (0).
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a config file, in line order. It is the
// error Load and Parse return; get it back with errors.As.
type Problems []Problem

// Error lists the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortByLine orders ps by line, keeping the order of problems on one line.
func (ps Problems) sortByLine() {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}

// Load reads, decodes, defaults and validates the config file at path. A file
// that cannot be read gives a wrapped os error; a file with problems gives
// Problems listing all of them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data, applies the defaults and validates the result. file is
// only used to name the file in problems. On any problem it returns nil and
// Problems (decode and validation problems together, sorted by line).
func Parse(file string, data []byte) (*Config, error) {
	root, p := parseYAML(file, data)
	if p != nil {
		return nil, Problems{*p}
	}
	d := newDecoder(file)
	sum := sha256.Sum256(data)
	c := &Config{File: file, Hash: "sha256:" + hex.EncodeToString(sum[:])}
	d.document(root, c)
	c.lines, c.nulls = d.lines, d.nulls
	c.PoolOrder = d.order["pools"]
	applyDefaults(c)
	probs := d.probs
	for _, vp := range c.Validate() {
		if !d.covered(vp.Path) {
			probs = append(probs, vp)
		}
	}
	if len(probs) > 0 {
		probs.sortByLine()
		return nil, probs
	}
	return c, nil
}

// yamlLine finds the line in a yaml.v3 error message ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parseYAML parses the single YAML document in data into a node tree. An
// empty file, a syntax error or a second document is reported as a Problem.
func parseYAML(file string, data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problem{File: file, Msg: "config file is empty"}
		}
		return nil, syntaxProblem(file, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(file, err)
	default:
		return nil, &Problem{File: file, Line: next.Line, Msg: "only one yaml document is allowed"}
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, &Problem{File: file, Line: doc.Line, Msg: "config file is empty"}
	}
	return doc.Content[0], nil
}

// syntaxProblem turns a yaml.v3 parse error into a Problem at its line.
func syntaxProblem(file string, err error) *Problem {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	return &Problem{File: file, Line: line, Msg: "yaml: " + msg}
}

// isNull reports whether n is an explicit or implicit YAML null.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// resolve follows aliases to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// describe names a node's kind for type-mismatch messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "nothing"
}
