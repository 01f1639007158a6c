package target

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"text/template"
)

// Template is a parsed Go text/template executed over a *Message: fields
// are read as {{.Edge}}, {{.Topic}}, {{.Title}}, {{.Fields.user}}, and a
// missing key in .Fields is an error, not "<no value>".
type Template struct {
	key string
	t   *template.Template
	// static is true when the text holds no action, so Execute can skip
	// the template engine.
	static bool
	text   string
}

// Funcs returns the function set of every warren template (targets' and,
// with get added, routes'): json, lower, upper, trim and replace OLD NEW S.
func Funcs() template.FuncMap { return maps.Clone(funcs) }

// funcs is the small function set available to target templates.
var funcs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"lower":   strings.ToLower,
	"upper":   strings.ToUpper,
	"trim":    strings.TrimSpace,
	"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
}

// ParseTemplate parses text; key is the config key named in errors.
// Besides the built-in functions, templates have json, lower, upper, trim
// and replace OLD NEW S.
func ParseTemplate(key, text string) (*Template, error) {
	t, err := template.New(key).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return &Template{key: key, t: t, text: text, static: !strings.Contains(text, "{{")}, nil
}

// Execute renders the template for m.
func (t *Template) Execute(m *Message) (string, error) {
	if t.static {
		return t.text, nil
	}
	var b strings.Builder
	if err := t.t.Execute(&b, m); err != nil {
		return "", fmt.Errorf("%s: render: %w", t.key, err)
	}
	return b.String(), nil
}

// String returns the template's source text.
func (t *Template) String() string { return t.text }
