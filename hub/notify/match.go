package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/warren-mesh/warren/hub/notify/format"
)

// ValidFilter checks an MQTT topic filter: '+' and '#' fill whole levels
// and '#' is last.
func ValidFilter(f string) error {
	if f == "" {
		return errors.New("empty topic filter")
	}
	if strings.ContainsAny(f, "\x00") {
		return fmt.Errorf("topic filter %q contains NUL", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#":
			if i != len(levels)-1 {
				return fmt.Errorf("topic filter %q: '#' must be the last level", f)
			}
		case l == "+":
		case strings.ContainsAny(l, "+#"):
			return fmt.Errorf("topic filter %q: a wildcard must fill a whole level", f)
		}
	}
	return nil
}

// MatchTopic reports whether the MQTT topic matches filter (which must be
// valid). As in MQTT, wildcards at the first level do not match topics
// starting with '$', and "a/#" also matches "a".
func MatchTopic(filter, topic string) bool {
	if topic != "" && topic[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// topic ended: only a trailing "/#" still matches
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// validGlob checks a shell-style pattern for path.Match.
func validGlob(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

func matchGlobs(patterns []string, s string) bool {
	for _, p := range patterns {
		if p == s {
			return true
		}
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// fieldPath is a parsed JSON field path.
type fieldPath []string

// parseFieldPath parses "a.b", "a[b.c]", "list.0" or "list[0]".
func parseFieldPath(s string) (fieldPath, error) {
	if s == "" {
		return nil, errors.New("empty key")
	}
	var p fieldPath
	var cur strings.Builder
	flush := func() error {
		if cur.Len() == 0 {
			return fmt.Errorf("key %q: empty path element", s)
		}
		p = append(p, cur.String())
		cur.Reset()
		return nil
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '.':
			if i > 0 && s[i-1] == ']' {
				continue
			}
			if err := flush(); err != nil {
				return nil, err
			}
		case '[':
			if cur.Len() > 0 {
				if err := flush(); err != nil {
					return nil, err
				}
			} else if i > 0 && s[i-1] != ']' {
				return nil, fmt.Errorf("key %q: empty path element", s)
			}
			j := strings.IndexByte(s[i:], ']')
			if j <= 1 {
				return nil, fmt.Errorf("key %q: bad brackets", s)
			}
			p = append(p, s[i+1:i+j])
			i += j
			if i+1 < len(s) && s[i+1] != '.' && s[i+1] != '[' {
				return nil, fmt.Errorf("key %q: '.' or '[' must follow ']'", s)
			}
		case ']':
			return nil, fmt.Errorf("key %q: unbalanced ']'", s)
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		p = append(p, cur.String())
	} else if len(s) > 0 && s[len(s)-1] == '.' {
		return nil, fmt.Errorf("key %q: empty path element", s)
	}
	return p, nil
}

// lookup walks the path through decoded JSON.
func (p fieldPath) lookup(doc map[string]any) (any, bool) {
	var v any = doc
	for _, k := range p {
		switch c := v.(type) {
		case map[string]any:
			nv, ok := c[k]
			if !ok {
				return nil, false
			}
			v = nv
		case []any:
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 || n >= len(c) {
				return nil, false
			}
			v = c[n]
		default:
			return nil, false
		}
	}
	return v, true
}

type condOp int

const (
	opEq condOp = iota
	opNe
	opRegex
	opExists
)

// condition is a compiled FieldMatch.
type condition struct {
	path   fieldPath
	op     condOp
	want   string // canonical text of Eq/Ne
	wantN  *big.Float
	re     *regexp.Regexp
	exists bool
}

func compileCondition(fm FieldMatch) (*condition, error) {
	p, err := parseFieldPath(fm.Key)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	c := &condition{path: p}
	n := 0
	if fm.Eq != nil {
		n++
		c.op = opEq
		c.want, c.wantN = canonical(fm.Eq)
	}
	if fm.Ne != nil {
		n++
		c.op = opNe
		c.want, c.wantN = canonical(fm.Ne)
	}
	if fm.Regex != "" {
		n++
		c.op = opRegex
		re, err := regexp.Compile(fm.Regex)
		if err != nil {
			return nil, fmt.Errorf("regex: %w", err)
		}
		c.re = re
	}
	if fm.Exists != nil {
		n++
		c.op = opExists
		c.exists = *fm.Exists
	}
	if n != 1 {
		return nil, errors.New("set exactly one of eq, ne, regex, exists")
	}
	if _, isMap := fm.Eq.(map[string]any); isMap {
		return nil, errors.New("eq: compare with a scalar value")
	}
	if _, isMap := fm.Ne.(map[string]any); isMap {
		return nil, errors.New("ne: compare with a scalar value")
	}
	return c, nil
}

func (c *condition) match(doc map[string]any) bool {
	var v any
	ok := false
	if doc != nil {
		v, ok = c.path.lookup(doc)
	}
	switch c.op {
	case opExists:
		return ok == c.exists
	case opNe:
		return !ok || !c.equal(v)
	case opEq:
		return ok && c.equal(v)
	case opRegex:
		if !ok {
			return false
		}
		s, _ := canonical(v)
		return c.re.MatchString(s)
	}
	return false
}

func (c *condition) equal(v any) bool {
	s, n := canonical(v)
	if n != nil && c.wantN != nil {
		return n.Cmp(c.wantN) == 0
	}
	return s == c.want
}

// canonical returns the comparison text of a JSON or YAML value, and its
// numeric value when it is a number.
func canonical(v any) (string, *big.Float) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case nil:
		return "null", nil
	case json.Number:
		if f, ok := new(big.Float).SetString(string(x)); ok {
			return string(x), f
		}
		return string(x), nil
	case int:
		return strconv.Itoa(x), new(big.Float).SetInt64(int64(x))
	case int64:
		return strconv.FormatInt(x, 10), new(big.Float).SetInt64(x)
	case uint64:
		return strconv.FormatUint(x, 10), new(big.Float).SetUint64(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), big.NewFloat(x)
	case map[string]any, []any:
		b, err := json.Marshal(x)
		if err != nil {
			return format.Str(x), nil
		}
		return string(b), nil
	}
	return fmt.Sprint(v), nil
}

// matcher is a compiled MatchConfig.
type matcher struct {
	topics  []string
	edges   []string
	sources []string
	fields  []*condition
}

func compileMatch(m MatchConfig, key string) (*matcher, error) {
	var errs []error
	out := &matcher{topics: m.Topic, edges: m.Edge, sources: m.Source}
	for i, f := range m.Topic {
		if err := ValidFilter(f); err != nil {
			errs = append(errs, fmt.Errorf("%s.topic[%d]: %w", key, i, err))
		}
	}
	for i, e := range m.Edge {
		if err := validGlob(e); err != nil {
			errs = append(errs, fmt.Errorf("%s.edge[%d]: %w", key, i, err))
		}
	}
	for i, s := range m.Source {
		if err := validGlob(s); err != nil {
			errs = append(errs, fmt.Errorf("%s.source[%d]: %w", key, i, err))
		}
	}
	for i, f := range m.Fields {
		c, err := compileCondition(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.fields[%d].%w", key, i, err))
			continue
		}
		out.fields = append(out.fields, c)
	}
	return out, errors.Join(errs...)
}

// match reports whether the event matches, and when not and explain is
// set (dry runs), which condition failed. Live routing passes false: the
// text would be built for every route an event does not take.
func (m *matcher) match(ev *Event, explain bool) (bool, string) {
	failed := m.failed(ev)
	if failed == condNone || !explain {
		return failed == condNone, ""
	}
	switch failed {
	case condTopic:
		return false, fmt.Sprintf("topic %q matches none of %q", ev.Topic, m.topics)
	case condEdge:
		return false, fmt.Sprintf("edge %q matches none of %q", ev.Edge, m.edges)
	case condSource:
		return false, fmt.Sprintf("source %q matches none of %q", ev.Source, m.sources)
	default:
		c := m.fields[failed-condField]
		return false, fmt.Sprintf("field condition on %q does not hold", strings.Join(c.path, "."))
	}
}

// Conditions failed reports; condField+i is field condition i.
const (
	condNone = iota - 1
	condTopic
	condEdge
	condSource
	condField
)

// failed returns the first condition ev fails, or condNone.
func (m *matcher) failed(ev *Event) int {
	if len(m.topics) > 0 {
		ok := false
		for _, f := range m.topics {
			if MatchTopic(f, ev.Topic) {
				ok = true
				break
			}
		}
		if !ok {
			return condTopic
		}
	}
	if len(m.edges) > 0 && !matchGlobs(m.edges, ev.Edge) {
		return condEdge
	}
	if len(m.sources) > 0 && !matchGlobs(m.sources, ev.Source) {
		return condSource
	}
	for i, c := range m.fields {
		if !c.match(ev.doc) {
			return condField + i
		}
	}
	return condNone
}
