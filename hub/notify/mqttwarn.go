package notify

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// MqttwarnImport is the result of ImportMqttwarn.
type MqttwarnImport struct {
	// Config is the notify section (targets and routes) as Parse takes it.
	Config map[string]any
	// YAML is a hub.yaml fragment: `notify:` with Config, and a comment
	// header.
	YAML []byte
	// Warnings lists what could not be carried across, one line each.
	Warnings []string
}

// mqttwarn services warren can carry, and the warren type of each.
var mqttwarnServices = map[string]string{
	"file": "file", "log": "log", "pushover": "pushover", "smtp": "smtp",
	"ntfy": "ntfy", "gotify": "gotify", "http": "webhook", "http_urllib": "webhook",
}

// ImportMqttwarn converts the common subset of an mqttwarn ini file to
// warren's notify configuration: [config:SERVICE] sections of the services
// above with their `targets = {name: [...]}` dictionaries, and topic
// sections ([logging/hare], or any name with `topic =`) with targets,
// format, title and priority. Every topic section becomes a route with
// continue: true, since mqttwarn notifies every matching section. What
// cannot be carried (other services, functions, filters, datamaps,
// templates, broker settings) is reported in Warnings. The result is not
// validated; Parse it. Only a file that is not ini at all is an error.
//
// `${ENV:NAME}` in a value (mqttwarn's interpolation) is replaced with
// NAME from the environment through lookup (nil: the process environment),
// as mqttwarn would at start; each replacement and each unset variable is
// reported, since the value then stands inline in the YAML.
func ImportMqttwarn(ini []byte, lookup func(string) (string, bool)) (*MqttwarnImport, error) {
	secs, err := parseINI(string(ini))
	if err != nil {
		return nil, err
	}
	im := &mqttwarnImporter{targets: map[string]any{}, known: map[string]string{}, routeNames: map[string]bool{}}
	im.expandEnv(secs, lookup)
	for _, s := range secs {
		switch svc, isSvc := strings.CutPrefix(s.name, "config:"); {
		case s.name == "defaults":
			im.defaults(s)
		case isSvc:
			im.service(svc, s)
		case s.name == "failover" || s.name == "cron":
			im.warn("[%s]: not carried; set `failover:` on warren targets, and use silence watches for periodic checks", s.name)
		}
	}
	for _, s := range secs {
		if s.name != "defaults" && s.name != "failover" && s.name != "cron" && !strings.HasPrefix(s.name, "config:") {
			im.route(s)
		}
	}
	cfg := map[string]any{"targets": im.targets, "routes": im.routes}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"notify": cfg}); err != nil {
		return nil, err
	}
	doc := buf.Bytes()
	head := "# warren notify configuration converted from mqttwarn by `hub notify import-mqttwarn`.\n" +
		"# Check it with `hub notify check` and try it with `hub notify test`.\n"
	// Round-trip so Config holds exactly what the YAML says.
	var back map[string]any
	if err := yaml.Unmarshal(doc, &back); err != nil {
		return nil, err
	}
	out, _ := back["notify"].(map[string]any)
	return &MqttwarnImport{Config: out, YAML: append([]byte(head), doc...), Warnings: im.warnings}, nil
}

type mqttwarnImporter struct {
	targets    map[string]any
	known      map[string]string // "service:name" -> warren target name
	routeNames map[string]bool
	routes     []any
	warnings   []string
}

func (im *mqttwarnImporter) warn(f string, a ...any) {
	im.warnings = append(im.warnings, fmt.Sprintf(f, a...))
}

func (im *mqttwarnImporter) defaults(s iniSection) {
	var dropped []string
	for _, kv := range s.kv {
		switch kv.key {
		case "functions":
			im.warn("[defaults] functions: Python functions cannot be carried; routes that use them are reported below")
		case "launch", "protocol":
		default:
			dropped = append(dropped, kv.key)
		}
	}
	if len(dropped) > 0 {
		im.warn("[defaults] %s: not needed (the notifier reads the hub's stream, not an MQTT broker)", strings.Join(dropped, ", "))
	}
}

// service converts the targets of one [config:SERVICE] section.
// A section with `module = M` is service svc implemented by module M.
func (im *mqttwarnImporter) service(svc string, s iniSection) {
	opts := map[string]any{}
	var tv any
	for _, kv := range s.kv {
		v := pyValue(kv.value)
		if kv.key == "targets" {
			tv = v
		} else {
			opts[kv.key] = v
		}
	}
	module := svc
	if m, ok := opts["module"].(string); ok {
		module = strings.TrimSpace(m)
		delete(opts, "module")
	}
	typ, ok := mqttwarnServices[module]
	if !ok {
		im.warn("[config:%s]: service %q has no warren target type; its targets are dropped", svc, module)
		return
	}
	tm, ok := tv.(map[string]any)
	if !ok {
		im.warn("[config:%s] targets: want a {name: [...]} dictionary", svc)
		return
	}
	for _, name := range sortedKeys(tm) {
		wname := targetName(svc + "-" + name)
		where := fmt.Sprintf("[config:%s] target %s", svc, name)
		conf, err := im.targetConfig(module, tm[name], opts, where)
		if err != nil {
			im.warn("%s: %v; dropped", where, err)
			continue
		}
		im.targets[wname] = map[string]any{"type": typ, "config": conf}
		im.known[svc+":"+name] = wname
	}
	for _, k := range sortedKeys(opts) {
		if !slices.Contains(usedOptions[module], k) {
			im.warn("[config:%s] %s: not carried", svc, k)
		}
	}
}

var usedOptions = map[string][]string{
	"file": {"append_newline", "overwrite"},
	"smtp": {"server", "sender", "username", "password", "starttls"},
	"http": {"timeout"}, "http_urllib": {"timeout"},
}

func (im *mqttwarnImporter) targetConfig(svc string, v any, opts map[string]any, where string) (map[string]any, error) {
	list, _ := v.([]any)
	if s, ok := v.(string); ok {
		list = []any{s}
	}
	str := func(i int) string {
		if i < len(list) {
			if s, ok := list[i].(string); ok {
				return s
			}
		}
		return ""
	}
	secret := func(key string) {
		im.warn("%s: %s is inline; move it to a file and use %s_file", where, key, key)
	}
	switch svc {
	case "file":
		if str(0) == "" {
			return nil, errors.New("no file name")
		}
		if strings.Contains(str(0), "{") {
			im.warn("%s: path %q has placeholders; warren file paths are Go templates ({{.Edge}})", where, str(0))
		}
		return map[string]any{"path": str(0), "newline": truthy(opts["append_newline"]), "append": !truthy(opts["overwrite"])}, nil
	case "log":
		lvl := map[string]string{"debug": "debug", "info": "info", "warn": "warn", "warning": "warn", "error": "error", "crit": "error", "critical": "error"}[strings.ToLower(str(0))]
		if lvl == "" {
			lvl = "info"
		}
		return map[string]any{"level": lvl}, nil
	case "pushover":
		if str(0) == "" || str(1) == "" {
			return nil, errors.New("want [userkey, appkey(, sound)]")
		}
		secret("token")
		c := map[string]any{"user_key": str(0), "token": str(1), "retry": "60s", "expire": "1h"}
		if s := str(2); s != "" {
			c["sound"] = s
		}
		return c, nil
	case "smtp":
		if len(list) == 0 {
			return nil, errors.New("no recipients")
		}
		server, _ := opts["server"].(string)
		host, port, _ := strings.Cut(server, ":")
		c := map[string]any{"host": host, "from": opts["sender"], "to": list, "mode": "starttls"}
		if p, err := strconv.Atoi(port); err == nil {
			c["port"] = p
		}
		if !truthy(opts["starttls"]) {
			c["mode"] = "none"
			if port == "465" {
				c["mode"] = "tls"
			}
		}
		if u, ok := opts["username"].(string); ok && u != "" {
			c["username"] = u
		}
		if p, ok := opts["password"].(string); ok && p != "" {
			c["password"] = p
			secret("password")
		}
		return c, nil
	case "ntfy":
		raw := str(0)
		var extra map[string]any
		if m, ok := v.(map[string]any); ok {
			extra = m
			raw, _ = m["url"].(string)
		}
		u, err := url.Parse(raw)
		if raw == "" || err != nil || u.Host == "" {
			return nil, errors.New("want a https://host/topic URL")
		}
		i := strings.LastIndex(u.Path, "/")
		c := map[string]any{"url": u.Scheme + "://" + u.Host + u.Path[:max(i, 0)], "topic": u.Path[i+1:]}
		for _, k := range sortedKeys(extra) {
			switch k {
			case "url":
			case "tags":
				c["tags"] = splitList(extra[k])
			case "click", "icon":
				c[k] = extra[k]
			default:
				im.warn("%s: %s not carried (set title and priority on the route)", where, k)
			}
		}
		return c, nil
	case "gotify":
		if str(0) == "" || str(1) == "" {
			return nil, errors.New("want [url, token(, priority)]")
		}
		secret("token")
		return map[string]any{"url": strings.TrimSuffix(strings.TrimSuffix(str(0), "/"), "/message"), "token": str(1)}, nil
	default: // http
		method, u := strings.ToUpper(str(0)), str(1)
		if u == "" {
			return nil, errors.New("want [method, url, params, auth]")
		}
		switch method {
		case "POST", "PUT", "PATCH", "GET", "DELETE":
		default:
			im.warn("%s: method %q becomes POST (the webhook target posts warren's JSON message)", where, str(0))
			method = "POST"
		}
		u = strings.TrimSuffix(u, "?")
		c := map[string]any{"url": u, "method": method}
		if len(list) > 2 && list[2] != nil {
			params, ok := list[2].(map[string]any)
			if !ok {
				return nil, errors.New("params: want a {name: value} dict or None")
			}
			query := map[string]any{}
			for _, k := range sortedKeys(params) {
				v, ok := params[k].(string)
				if !ok {
					im.warn("%s: params.%s: not a string, not carried", where, k)
					continue
				}
				tpl, ok := queryTemplate(v)
				if !ok {
					im.warn("%s: params.%s: %q is more than {name} placeholders, not carried (write a query: template)", where, k, v)
					continue
				}
				query[k] = tpl
			}
			if len(query) > 0 {
				c["query"] = query
			}
		}
		if len(list) > 3 {
			if auth, ok := list[3].([]any); ok && len(auth) == 2 {
				c["username"], c["password"] = auth[0], auth[1]
				secret("password")
			}
		}
		return c, nil
	}
}

var placeholderRE = regexp.MustCompile(`\{(\w*)\}`)

// queryTemplate turns an mqttwarn http parameter into a webhook query
// template: "@name" and "{name}" are the message's field name (mqttwarn
// fills them from the payload's fields), {topic} the topic; other text is
// kept. Format specs, indexing and literal braces are not converted (ok
// false).
func queryTemplate(v string) (string, bool) {
	field := func(name string) string {
		if name == "topic" {
			return "{{.Topic}}"
		}
		return fmt.Sprintf("{{index .Fields %q}}", name)
	}
	if name, ok := strings.CutPrefix(v, "@"); ok {
		if name == "" {
			return "", false
		}
		return field(name), true
	}
	var b strings.Builder
	rest := v
	for {
		loc := placeholderRE.FindStringSubmatchIndex(rest)
		lit := rest
		if loc != nil {
			lit = rest[:loc[0]]
		}
		if strings.ContainsAny(lit, "{}") {
			return "", false
		}
		b.WriteString(lit)
		if loc == nil {
			return b.String(), true
		}
		name := rest[loc[2]:loc[3]]
		if name == "" {
			return "", false
		}
		b.WriteString(field(name))
		rest = rest[loc[1]:]
	}
}

var funcRE = regexp.MustCompile(`^[A-Za-z_][\w.:]*\(\)$`)

// route converts one topic section.
func (im *mqttwarnImporter) route(s iniSection) {
	topic := s.name
	name := targetName(s.name)
	for i := 2; im.routeNames[name]; i++ {
		name = fmt.Sprintf("%s-%d", targetName(s.name), i)
	}
	im.routeNames[name] = true
	r := map[string]any{"name": name, "continue": true}
	var targets []any
	for _, kv := range s.kv {
		v := pyValue(kv.value)
		sv, isStr := v.(string)
		switch kv.key {
		case "topic":
			topic = strings.TrimSpace(fmt.Sprint(v))
		case "targets":
			if _, ok := v.(map[string]any); ok {
				im.warn("[%s] targets: per-topic target dictionaries are not carried; list targets instead", s.name)
				continue
			}
			for _, t := range splitList(v) {
				svc, name, _ := strings.Cut(t, ":")
				if w, ok := im.known[svc+":"+name]; ok {
					targets = append(targets, w)
				} else {
					im.warn("[%s] targets: %s is not a converted target; dropped", s.name, t)
				}
			}
		case "format", "title", "priority":
			if v == nil {
				continue
			}
			if !isStr {
				sv = fmt.Sprint(v)
			}
			if funcRE.MatchString(strings.TrimSpace(sv)) {
				im.warn("[%s] %s: function %s cannot be carried; write a format string", s.name, kv.key, sv)
				continue
			}
			r[kv.key] = sv
		case "qos":
		default:
			im.warn("[%s] %s: not carried (use route match fields, Go templates or dedup instead)", s.name, kv.key)
		}
	}
	if len(targets) == 0 {
		im.warn("[%s]: no usable targets; route dropped", s.name)
		return
	}
	r["match"] = map[string]any{"topic": []any{topic}}
	r["targets"] = targets
	im.routes = append(im.routes, r)
}

var nameBadRE = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func targetName(s string) string {
	n := strings.Trim(nameBadRE.ReplaceAllString(s, "-"), "-")
	if n == "" {
		n = "x"
	}
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		b, _ := strconv.ParseBool(strings.ToLower(strings.TrimSpace(x)))
		return b || strings.EqualFold(x, "yes") || strings.EqualFold(x, "on")
	case int64:
		return x != 0
	}
	return false
}

// splitList turns a Python list or a "a, b c" string into strings.
func splitList(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = append(out, strings.TrimSpace(fmt.Sprint(e)))
		}
	case string:
		out = strings.FieldsFunc(x, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	}
	return out
}

// ---- ini (Python configparser's defaults)

type iniKV struct{ key, value string }

type iniSection struct {
	name string
	kv   []iniKV
}

func parseINI(src string) ([]iniSection, error) {
	var secs []iniSection
	var cur *iniSection
	last := -1
	for n, line := range strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil && last >= 0 {
				cur.kv[last].value += "\n" + t
				continue
			}
		}
		if t[0] == '[' && t[len(t)-1] == ']' {
			secs = append(secs, iniSection{name: strings.TrimSpace(t[1 : len(t)-1])})
			cur, last = &secs[len(secs)-1], -1
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: text before the first [section]", n+1)
		}
		i := strings.IndexAny(t, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("line %d: want key = value", n+1)
		}
		cur.kv = append(cur.kv, iniKV{strings.ToLower(strings.TrimSpace(t[:i])), strings.TrimSpace(t[i+1:])})
		last = len(cur.kv) - 1
	}
	if len(secs) == 0 {
		return nil, errors.New("no [section]: not an mqttwarn ini file")
	}
	return secs, nil
}

// ---- Python literals (what mqttwarn reads with ast.literal_eval)

// pyValue is the literal s denotes, or s itself when it is not one (as
// mqttwarn falls back to the raw string).
func pyValue(s string) any {
	p := &pyParser{s: s}
	v, err := p.value(0)
	if err == nil {
		p.space()
		if p.i == len(p.s) {
			return v
		}
	}
	return s
}

type pyParser struct {
	s string
	i int
}

var errPy = errors.New("not a literal")

func (p *pyParser) space() {
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == '#':
			for p.i < len(p.s) && p.s[p.i] != '\n' {
				p.i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *pyParser) value(depth int) (any, error) {
	if depth > 64 {
		return nil, errPy
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, errPy
	}
	switch c := p.s[p.i]; {
	case c == '{' || c == '[' || c == '(':
		return p.container(c, depth)
	case c == '\'' || c == '"':
		return p.str()
	}
	j := p.i
	for j < len(p.s) && (isWordByte(p.s[j]) || p.s[j] == '.' || p.s[j] == '-' || p.s[j] == '+') {
		j++
	}
	w := p.s[p.i:j]
	p.i = j
	switch w {
	case "True":
		return true, nil
	case "False":
		return false, nil
	case "None":
		return nil, nil
	}
	if n, err := strconv.ParseInt(w, 10, 64); err == nil {
		return n, nil
	}
	if f, err := strconv.ParseFloat(w, 64); err == nil && w != "" && !strings.ContainsAny(w, "nN") {
		return f, nil
	}
	return nil, errPy
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func (p *pyParser) container(open byte, depth int) (any, error) {
	close := map[byte]byte{'{': '}', '[': ']', '(': ')'}[open]
	p.i++
	m := map[string]any{}
	l := []any{}
	for {
		p.space()
		if p.i < len(p.s) && p.s[p.i] == close {
			p.i++
			if open == '{' {
				return m, nil
			}
			return l, nil
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if open == '{' {
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, errPy
			}
			p.i++
			val, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(v)] = val
		} else {
			l = append(l, v)
		}
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
		} else if p.i >= len(p.s) || p.s[p.i] != close {
			return nil, errPy
		}
	}
}

func (p *pyParser) str() (string, error) {
	var b strings.Builder
	for p.i < len(p.s) && (p.s[p.i] == '\'' || p.s[p.i] == '"') { // adjacent literals concatenate
		q := p.s[p.i]
		p.i++
		for {
			if p.i >= len(p.s) || p.s[p.i] == '\n' {
				return "", errPy
			}
			c := p.s[p.i]
			p.i++
			if c == q {
				break
			}
			if c == '\\' && p.i < len(p.s) {
				e := p.s[p.i]
				p.i++
				switch e {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case '\\', '\'', '"':
					b.WriteByte(e)
				default:
					b.WriteByte('\\')
					b.WriteByte(e)
				}
				continue
			}
			b.WriteByte(c)
		}
		j := p.i
		p.space()
		if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
			p.i = j
		}
	}
	return b.String(), nil
}
