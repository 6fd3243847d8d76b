package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator is implemented by every component configuration.
type Validator interface {
	// Validate reports the first problems found as *FieldError values naming the field path.
	Validate() error
}

// LoadFile reads the YAML file at path into out and validates it; see Parse.
func LoadFile(path string, out Validator) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := Parse(data, out); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// Parse expands ${ENV} references in data, decodes it strictly into out (which the caller has
// already filled with defaults, so absent keys keep them), then validates out.
//
// Strict means unknown keys and values of the wrong type are errors, reported with the field
// path and line: a typo in an edge node's config must fail loudly at start, not be ignored.
func Parse(data []byte, out Validator) error {
	expanded, err := ExpandEnv(data, os.LookupEnv)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	err = dec.Decode(out)
	switch {
	case errors.Is(err, io.EOF): // an empty file means "all defaults"
	case err != nil:
		return fieldErrors(expanded, err)
	}
	return out.Validate()
}

// fieldErrors rewrites yaml.v3's decoding errors, which name only a line, into FieldErrors that
// name the field path too, found by walking the same document as a node tree.
func fieldErrors(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("parse: %w", err)
	}
	var root yaml.Node
	if yerr := yaml.Unmarshal(data, &root); yerr != nil {
		return fmt.Errorf("parse: %w", err)
	}
	lines := map[int]string{}
	indexPaths(&root, "", lines)
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		errs = append(errs, describe(msg, lines))
	}
	return errors.Join(errs...)
}

var (
	lineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	typeRE    = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// describe turns one of yaml.v3's decoder messages into a FieldError naming the field path and
// the line in the user's file.
func describe(msg string, lines map[int]string) error {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(msg)
	}
	n, _ := strconv.Atoi(m[1])
	path, rest := lines[n], m[2]
	if u := unknownRE.FindStringSubmatch(rest); u != nil {
		// The line's path may stop at the enclosing item ("- bogus: 1"): name the key itself.
		if path != u[1] && !strings.HasSuffix(path, "."+u[1]) {
			path = strings.TrimPrefix(path+"."+u[1], ".")
		}
		return Errorf(path, "unknown field (line %d)", n)
	}
	if t := typeRE.FindStringSubmatch(rest); t != nil {
		return Errorf(path, "cannot use %s %q as %s (line %d)", t[1], t[2], goTypeName(t[3]), n)
	}
	return Errorf(path, "%s (line %d)", rest, n)
}

func goTypeName(t string) string {
	switch t {
	case "time.Duration":
		return "a duration (like 30s or 5m)"
	case "int", "int64", "uint", "uint64", "int32", "uint32":
		return "an integer"
	case "float64", "float32":
		return "a number"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	}
	if strings.HasPrefix(t, "[]") {
		return "a list"
	}
	if strings.HasPrefix(t, "map[") {
		return "a mapping"
	}
	return t
}

// indexPaths walks a YAML tree recording, by line, the dotted path of the mapping key or
// sequence item found there. The deepest one on a line wins: in "- name: 5" a bad value is
// models[0].name, not models[0].
func indexPaths(n *yaml.Node, path string, byLine map[int]string) {
	record := func(line int, p string) { byLine[line] = p }
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexPaths(c, path, byLine)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			record(k.Line, p)
			indexPaths(v, p, byLine)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			record(c.Line, p)
			indexPaths(c, p, byLine)
		}
	}
}

// envRef matches ${NAME} and ${NAME:-default}; $$ escapes a literal dollar.
var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${NAME} with the value of the environment variable NAME and ${NAME:-def}
// with def when NAME is unset or empty; "$$" stands for a literal "$". Only the braced form is
// expanded so that passwords containing a bare "$" survive. A reference to an unset variable
// without a default is an error: a secret that silently became "" is worse than a failed start.
func ExpandEnv(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(data, func(ref []byte) []byte {
		if string(ref) == "$$" {
			return []byte("$")
		}
		m := envRef.FindSubmatch(ref)
		name := string(m[1])
		if v, ok := lookup(name); ok && v != "" {
			return []byte(v)
		}
		if len(m[2]) > 0 {
			return m[3]
		}
		missing = append(missing, name)
		return nil
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variable %s is not set (referenced as ${%s}; use ${%s:-default} for an optional value)", missing[0], missing[0], missing[0])
	}
	return out, nil
}
