// Package format implements the subset of Python's str.format that mqttwarn
// configurations use for title, format and priority strings: named fields
// ({user}), indexing ({a[b]}, {a[0]}, {a.b}), conversions (!s, !r, !a) and
// the format-spec mini-language ({x:.2f}, {n:03d}, {s:>8}, {n:,}), with {{
// and }} as literal braces. Values are what encoding/json produces (with
// UseNumber), so JSON payloads format the way Python's json.loads would.
//
// The package is pure: Parse validates a string once (at config load) and
// Execute renders it against a map without side effects.
package format

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MissingKeyError reports a field that names a key the data does not have.
type MissingKeyError struct {
	// Key is the field as written, e.g. "user" or "a[b]".
	Key string
}

func (e *MissingKeyError) Error() string { return fmt.Sprintf("missing key %q", e.Key) }

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("format syntax")

// Template is a parsed format string.
type Template struct {
	src   string
	parts []part
}

// part is either literal text (field == nil) or a replacement field.
type part struct {
	lit   string
	field *field
}

type field struct {
	raw      string     // the field name as written, for errors
	root     string     // first name
	path     []accessor // [key] or .attr steps
	conv     byte       // 0, 's', 'r' or 'a'
	spec     *spec      // parsed spec when it has no nested fields
	specTmpl *Template  // spec with nested fields, parsed at Execute time
}

type accessor struct {
	key   string
	index bool // written as [..] (else .attr)
}

// String returns the source text.
func (t *Template) String() string { return t.src }

// Parse parses a format string.
func Parse(s string) (*Template, error) {
	return parse(s, 0)
}

// MustParse is Parse that panics; for tests and constants.
func MustParse(s string) *Template {
	t, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return t
}

func parse(s string, depth int) (*Template, error) {
	t := &Template{src: s}
	var lit strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '{':
			if i+1 < len(s) && s[i+1] == '{' {
				lit.WriteByte('{')
				i += 2
				continue
			}
			end, err := matchBrace(s, i)
			if err != nil {
				return nil, err
			}
			f, err := parseField(s[i+1:end], depth)
			if err != nil {
				return nil, err
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, part{lit: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, part{field: f})
			i = end + 1
		case '}':
			if i+1 < len(s) && s[i+1] == '}' {
				lit.WriteByte('}')
				i += 2
				continue
			}
			return nil, fmt.Errorf("%w: single '}' at offset %d (write '}}' for a literal brace)", ErrSyntax, i)
		default:
			lit.WriteByte(c)
			i++
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, part{lit: lit.String()})
	}
	return t, nil
}

// matchBrace returns the index of the '}' closing the field opened at
// s[open]. Braces nest inside the format spec only; brackets in the field
// name may contain any character but ']'.
func matchBrace(s string, open int) (int, error) {
	depth := 0
	inBracket := false
	for i := open + 1; i < len(s); i++ {
		c := s[i]
		switch {
		case inBracket:
			if c == ']' {
				inBracket = false
			}
		case c == '[' && depth == 0:
			inBracket = true
		case c == '{':
			depth++
		case c == '}':
			if depth == 0 {
				return i, nil
			}
			depth--
		}
	}
	return 0, fmt.Errorf("%w: '{' at offset %d is not closed (write '{{' for a literal brace)", ErrSyntax, open)
}

func parseField(body string, depth int) (*field, error) {
	// Split name, conversion and spec. The name ends at the first '!' or ':'
	// outside brackets.
	name := body
	rest := ""
	inBracket := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if inBracket {
			if c == ']' {
				inBracket = false
			}
			continue
		}
		if c == '[' {
			inBracket = true
			continue
		}
		if c == '!' || c == ':' {
			name, rest = body[:i], body[i:]
			break
		}
	}
	f := &field{raw: name}
	if err := parseName(f, name); err != nil {
		return nil, err
	}
	if strings.HasPrefix(rest, "!") {
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: field {%s}: '!' needs a conversion (s, r or a)", ErrSyntax, body)
		}
		switch rest[1] {
		case 's', 'r', 'a':
			f.conv = rest[1]
		default:
			return nil, fmt.Errorf("%w: field {%s}: unknown conversion %q (use s, r or a)", ErrSyntax, body, rest[1])
		}
		rest = rest[2:]
		if rest != "" && rest[0] != ':' {
			return nil, fmt.Errorf("%w: field {%s}: expected ':' after the conversion", ErrSyntax, body)
		}
	}
	if strings.HasPrefix(rest, ":") {
		specText := rest[1:]
		if strings.ContainsAny(specText, "{}") {
			if depth > 0 {
				return nil, fmt.Errorf("%w: field {%s}: format specs nest only one level deep", ErrSyntax, body)
			}
			st, err := parse(specText, depth+1)
			if err != nil {
				return nil, err
			}
			f.specTmpl = st
		} else {
			sp, err := parseSpec(specText)
			if err != nil {
				return nil, fmt.Errorf("%w: field {%s}: %v", ErrSyntax, body, err)
			}
			f.spec = sp
		}
	}
	return f, nil
}

func parseName(f *field, name string) error {
	i := 0
	for i < len(name) && name[i] != '.' && name[i] != '[' {
		i++
	}
	f.root = name[:i]
	if f.root == "" {
		return fmt.Errorf("%w: empty field name {%s}: positional fields are not supported, name a key", ErrSyntax, name)
	}
	if isDigits(f.root) {
		return fmt.Errorf("%w: positional field {%s} is not supported, name a key", ErrSyntax, name)
	}
	for i < len(name) {
		switch name[i] {
		case '.':
			j := i + 1
			for j < len(name) && name[j] != '.' && name[j] != '[' {
				j++
			}
			if j == i+1 {
				return fmt.Errorf("%w: field {%s}: empty attribute name", ErrSyntax, name)
			}
			f.path = append(f.path, accessor{key: name[i+1 : j]})
			i = j
		case '[':
			j := strings.IndexByte(name[i:], ']')
			if j < 0 {
				return fmt.Errorf("%w: field {%s}: missing ']'", ErrSyntax, name)
			}
			if j == 1 {
				return fmt.Errorf("%w: field {%s}: empty index", ErrSyntax, name)
			}
			f.path = append(f.path, accessor{key: name[i+1 : i+j], index: true})
			i += j + 1
		default:
			return fmt.Errorf("%w: field {%s}: only '.' or '[' may follow ']'", ErrSyntax, name)
		}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Fields returns the top-level names the template refers to, in order of
// first use (nested spec fields included).
func (t *Template) Fields() []string {
	var out []string
	seen := map[string]bool{}
	var walk func(*Template)
	walk = func(t *Template) {
		for _, p := range t.parts {
			if p.field == nil {
				continue
			}
			if !seen[p.field.root] {
				seen[p.field.root] = true
				out = append(out, p.field.root)
			}
			if p.field.specTmpl != nil {
				walk(p.field.specTmpl)
			}
		}
	}
	walk(t)
	return out
}

// References reports whether the template uses the top-level name.
func (t *Template) References(name string) bool {
	for _, f := range t.Fields() {
		if f == name {
			return true
		}
	}
	return false
}

// Execute renders the template. A field naming a key that data lacks
// returns a *MissingKeyError; a value that the spec cannot format returns
// another error. On error the partial output is discarded.
func (t *Template) Execute(data map[string]any) (string, error) {
	var b strings.Builder
	if err := t.execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// ExecutePartial renders the template, writing each field that fails
// (missing key or bad value) as its source text, e.g. "{user}". It returns
// the text and the first error met, if any.
func (t *Template) ExecutePartial(data map[string]any) (string, error) {
	var b strings.Builder
	var first error
	for _, p := range t.parts {
		if p.field == nil {
			b.WriteString(p.lit)
			continue
		}
		s, err := p.field.render(data)
		if err != nil {
			if first == nil {
				first = err
			}
			b.WriteString("{" + p.field.raw + "}")
			continue
		}
		b.WriteString(s)
	}
	return b.String(), first
}

func (t *Template) execute(b *strings.Builder, data map[string]any) error {
	for _, p := range t.parts {
		if p.field == nil {
			b.WriteString(p.lit)
			continue
		}
		s, err := p.field.render(data)
		if err != nil {
			return err
		}
		b.WriteString(s)
	}
	return nil
}

func (f *field) render(data map[string]any) (string, error) {
	v, err := f.resolve(data)
	if err != nil {
		return "", err
	}
	switch f.conv {
	case 's':
		v = Str(v)
	case 'r':
		v = Repr(v, false)
	case 'a':
		v = Repr(v, true)
	}
	sp := f.spec
	if f.specTmpl != nil {
		text, err := f.specTmpl.Execute(data)
		if err != nil {
			return "", err
		}
		sp, err = parseSpec(text)
		if err != nil {
			return "", fmt.Errorf("field {%s}: %w", f.raw, err)
		}
	}
	if sp == nil {
		return Str(v), nil
	}
	s, err := sp.apply(v)
	if err != nil {
		return "", fmt.Errorf("field {%s}: %w", f.raw, err)
	}
	return s, nil
}

func (f *field) resolve(data map[string]any) (any, error) {
	v, ok := data[f.root]
	if !ok {
		return nil, &MissingKeyError{Key: f.root}
	}
	for _, a := range f.path {
		switch c := v.(type) {
		case map[string]any:
			nv, ok := c[a.key]
			if !ok {
				return nil, &MissingKeyError{Key: f.raw}
			}
			v = nv
		case []any:
			if !a.index || !isDigits(a.key) {
				return nil, fmt.Errorf("field {%s}: a list is indexed by number", f.raw)
			}
			n, err := strconv.Atoi(a.key)
			if err != nil || n >= len(c) {
				return nil, &MissingKeyError{Key: f.raw}
			}
			v = c[n]
		default:
			return nil, fmt.Errorf("field {%s}: %s is not indexable", f.raw, typeName(v))
		}
	}
	return v, nil
}
