package format

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// spec is a parsed format spec:
// [[fill]align][sign][z][#][0][width][grouping][.precision][type].
type spec struct {
	fill      rune
	align     byte // 0, '<', '>', '=', '^'
	sign      byte // 0, '+', '-', ' '
	alt       bool
	zero      bool
	width     int
	grouping  byte // 0, ',', '_'
	precision int  // -1 when absent
	typ       byte // 0 or one of bcdeEfFgGnosxX%
	zeroAlign bool // align '=' came from the '0' flag, not from the spec
}

// maxWidth bounds width and precision so a hostile spec cannot allocate
// without limit.
const maxWidth = 4096

func parseSpec(s string) (*spec, error) {
	sp := &spec{fill: ' ', precision: -1}
	i := 0
	// fill and align: an align char at position 1 means position 0 is fill.
	if r, n := utf8.DecodeRuneInString(s); n > 0 && n < len(s) && isAlign(s[n]) {
		sp.fill, sp.align = r, s[n]
		i = n + 1
	} else if len(s) > 0 && isAlign(s[0]) {
		sp.align = s[0]
		i = 1
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-' || s[i] == ' ') {
		sp.sign = s[i]
		i++
	}
	if i < len(s) && s[i] == 'z' {
		i++ // negative zero coercion: floats here are never formatted as -0 anyway
	}
	if i < len(s) && s[i] == '#' {
		sp.alt = true
		i++
	}
	if i < len(s) && s[i] == '0' {
		sp.zero = true
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > start {
		w, err := strconv.Atoi(s[start:i])
		if err != nil || w > maxWidth {
			return nil, fmt.Errorf("width %q too large", s[start:i])
		}
		sp.width = w
	}
	if i < len(s) && (s[i] == ',' || s[i] == '_') {
		sp.grouping = s[i]
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		start = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return nil, errors.New("format specifier missing precision")
		}
		p, err := strconv.Atoi(s[start:i])
		if err != nil || p > maxWidth {
			return nil, fmt.Errorf("precision %q too large", s[start:i])
		}
		sp.precision = p
	}
	if i < len(s) {
		if i != len(s)-1 || !strings.ContainsRune("bcdeEfFgGnosxX%", rune(s[i])) {
			return nil, fmt.Errorf("invalid format specifier %q", s)
		}
		sp.typ = s[i]
	}
	if sp.zero && sp.align == 0 {
		sp.fill, sp.align, sp.zeroAlign = '0', '=', true
	}
	return sp, nil
}

func isAlign(c byte) bool { return c == '<' || c == '>' || c == '=' || c == '^' }

// apply formats v according to the spec.
func (sp *spec) apply(v any) (string, error) {
	switch sp.typ {
	case 0, 's':
		if sp.typ == 0 {
			// No type: numbers keep their numeric formatting.
			if _, isBool := v.(bool); !isBool {
				if n, ok := number(v); ok {
					return sp.applyNumber(n)
				}
			}
		}
		if sp.typ == 's' {
			if _, isStr := v.(string); !isStr {
				if _, isNum := number(v); isNum {
					return "", fmt.Errorf("unknown format code 's' for a number")
				}
			}
		}
		if sp.sign != 0 {
			return "", errors.New("sign not allowed in string format specifier")
		}
		align := byte('<')
		if sp.align == '=' {
			if !sp.zeroAlign {
				return "", errors.New("'=' alignment not allowed in string format specifier")
			}
		} else if sp.align != 0 {
			align = sp.align
		}
		if sp.grouping != 0 {
			return "", errors.New("cannot specify grouping with a string")
		}
		s := Str(v)
		if sp.precision >= 0 {
			s = truncateRunes(s, sp.precision)
		}
		return sp.padAligned(s, align, ""), nil
	}
	n, ok := number(v)
	if !ok {
		// Lenient: a numeric string formats as its number (mqttwarn payloads
		// often carry numbers as strings, e.g. "tst": "1391779336").
		if s, isStr := v.(string); isStr {
			if pn, err := parseNumber(strings.TrimSpace(s)); err == nil {
				n, ok = pn, true
			}
		}
		if !ok {
			return "", fmt.Errorf("unknown format code '%c' for %s", sp.typ, typeName(v))
		}
	}
	return sp.applyNumber(n)
}

// num is a number: an integer (i != nil) or a float.
type num struct {
	i *big.Int
	f float64
}

func (n num) float() float64 {
	if n.i != nil {
		f, _ := new(big.Float).SetInt(n.i).Float64()
		return f
	}
	return n.f
}

func number(v any) (num, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := parseNumber(string(x))
		return n, err == nil
	case bool:
		if x {
			return num{i: big.NewInt(1)}, true
		}
		return num{i: big.NewInt(0)}, true
	case int:
		return num{i: big.NewInt(int64(x))}, true
	case int64:
		return num{i: big.NewInt(x)}, true
	case int32:
		return num{i: big.NewInt(int64(x))}, true
	case uint64:
		return num{i: new(big.Int).SetUint64(x)}, true
	case float64:
		return num{f: x}, true
	case float32:
		return num{f: float64(x)}, true
	}
	return num{}, false
}

func parseNumber(s string) (num, error) {
	if s == "" {
		return num{}, errors.New("empty")
	}
	if !strings.ContainsAny(s, ".eEnN") { // nN: nan, inf
		if i, ok := new(big.Int).SetString(s, 10); ok {
			return num{i: i}, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return num{}, err
	}
	return num{f: f}, nil
}

func (sp *spec) applyNumber(n num) (string, error) {
	typ := sp.typ
	if n.i != nil {
		switch typ {
		case 0, 'd', 'n', 'b', 'o', 'x', 'X', 'c':
			return sp.formatInt(n.i, typ)
		}
		return sp.formatFloat(n.float(), typ)
	}
	switch typ {
	case 'd', 'n', 'b', 'o', 'x', 'X', 'c':
		// Lenient: an integral float formats as an integer.
		if n.f == math.Trunc(n.f) && !math.IsInf(n.f, 0) && math.Abs(n.f) < 1e18 {
			return sp.formatInt(big.NewInt(int64(n.f)), typ)
		}
		return "", fmt.Errorf("unknown format code '%c' for a float", typ)
	}
	return sp.formatFloat(n.f, typ)
}

func (sp *spec) formatInt(i *big.Int, typ byte) (string, error) {
	if sp.precision >= 0 {
		return "", errors.New("precision not allowed in integer format specifier")
	}
	neg := i.Sign() < 0
	abs := new(big.Int).Abs(i)
	var digits, prefix string
	switch typ {
	case 'c':
		if sp.sign != 0 || sp.alt {
			return "", errors.New("sign or '#' not allowed with integer format specifier 'c'")
		}
		if !abs.IsInt64() || neg || abs.Int64() > utf8.MaxRune {
			return "", errors.New("%c arg not in range(0x110000)")
		}
		return sp.pad(string(rune(abs.Int64())), '>', ""), nil
	case 'b':
		digits, prefix = abs.Text(2), "0b"
	case 'o':
		digits, prefix = abs.Text(8), "0o"
	case 'x':
		digits, prefix = abs.Text(16), "0x"
	case 'X':
		digits, prefix = strings.ToUpper(abs.Text(16)), "0X"
	default:
		digits = abs.Text(10)
	}
	if !sp.alt {
		prefix = ""
	}
	if sp.grouping != 0 {
		every := 3
		if typ == 'b' || typ == 'o' || typ == 'x' || typ == 'X' {
			if sp.grouping == ',' {
				return "", fmt.Errorf("cannot specify ',' with '%c'", typ)
			}
			every = 4
		}
		digits = group(digits, sp.grouping, every)
	}
	return sp.pad(digits, '>', sp.signOf(neg)+prefix), nil
}

func (sp *spec) formatFloat(f float64, typ byte) (string, error) {
	if sp.alt && typ == 0 {
		typ = 'g'
	}
	neg := math.Signbit(f) && !math.IsNaN(f)
	a := math.Abs(f)
	var body string
	switch {
	case math.IsInf(a, 0):
		body = "inf"
		if typ == 'F' || typ == 'E' || typ == 'G' {
			body = "INF"
		}
		if typ == '%' {
			body += "%"
		}
	case math.IsNaN(a):
		body = "nan"
		if typ == 'F' || typ == 'E' || typ == 'G' {
			body = "NAN"
		}
		if typ == '%' {
			body += "%"
		}
	default:
		p := sp.precision
		switch typ {
		case 'f', 'F':
			if p < 0 {
				p = 6
			}
			body = strconv.FormatFloat(a, 'f', p, 64)
			if sp.alt && p == 0 {
				body += "."
			}
		case '%':
			if p < 0 {
				p = 6
			}
			body = strconv.FormatFloat(a*100, 'f', p, 64) + "%"
		case 'e', 'E':
			if p < 0 {
				p = 6
			}
			body = strconv.FormatFloat(a, 'e', p, 64)
			if sp.alt && p == 0 {
				body = strings.Replace(body, "e", ".e", 1)
			}
			if typ == 'E' {
				body = strings.ToUpper(body)
			}
		case 'g', 'G', 'n':
			if p < 0 {
				p = 6
			}
			body = pyGeneral(a, p, sp.alt)
			if typ == 'G' {
				body = strings.ToUpper(body)
			}
		default: // no type
			if p < 0 {
				body = pyRepr(a)
			} else {
				body = pyGeneral(a, p, sp.alt)
				if !strings.ContainsAny(body, ".e") {
					// Python's untyped float format keeps a decimal point.
					body += ".0"
				}
			}
		}
		if sp.grouping != 0 {
			intPart, frac := body, ""
			if k := strings.IndexAny(body, ".e%"); k >= 0 {
				intPart, frac = body[:k], body[k:]
			}
			body = group(intPart, sp.grouping, 3) + frac
		}
	}
	return sp.pad(body, '>', sp.signOf(neg)), nil
}

// pyGeneral is Python's 'g' presentation: precision p significant digits,
// scientific when the exponent is < -4 or >= p, trailing zeros removed
// unless alt.
func pyGeneral(a float64, p int, alt bool) string {
	if p == 0 {
		p = 1
	}
	if a == 0 {
		if alt {
			return "0." + strings.Repeat("0", p-1)
		}
		return "0"
	}
	e := strconv.FormatFloat(a, 'e', p-1, 64) // d.ddde±XX
	k := strings.IndexByte(e, 'e')
	exp, _ := strconv.Atoi(e[k+1:])
	var s string
	if exp < -4 || exp >= p {
		mant := e[:k]
		if !alt {
			mant = trimZeros(mant)
		}
		s = mant + "e" + expString(exp)
	} else {
		s = strconv.FormatFloat(a, 'f', max(p-1-exp, 0), 64)
		if !alt {
			s = trimZeros(s)
		} else if !strings.Contains(s, ".") {
			s += "."
		}
	}
	return s
}

// pyRepr is Python's repr() of a non-negative finite float.
func pyRepr(a float64) string {
	if a == 0 {
		return "0.0"
	}
	e := strconv.FormatFloat(a, 'e', -1, 64)
	k := strings.IndexByte(e, 'e')
	exp, _ := strconv.Atoi(e[k+1:])
	if exp < -4 || exp >= 16 {
		return e[:k] + "e" + expString(exp)
	}
	s := strconv.FormatFloat(a, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func expString(exp int) string {
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	if exp < 10 {
		return sign + "0" + strconv.Itoa(exp)
	}
	return sign + strconv.Itoa(exp)
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func group(digits string, sep byte, every int) string {
	if len(digits) <= every {
		return digits
	}
	var b strings.Builder
	first := len(digits) % every
	if first > 0 {
		b.WriteString(digits[:first])
	}
	for i := first; i < len(digits); i += every {
		if b.Len() > 0 {
			b.WriteByte(sep)
		}
		b.WriteString(digits[i : i+every])
	}
	return b.String()
}

func (sp *spec) signOf(neg bool) string {
	switch {
	case neg:
		return "-"
	case sp.sign == '+':
		return "+"
	case sp.sign == ' ':
		return " "
	}
	return ""
}

// pad applies width, fill and alignment (defAlign when the spec has none).
// prefix (sign and base prefix) goes before the padding for '=' alignment
// and before the body otherwise.
func (sp *spec) pad(body string, defAlign byte, prefix string) string {
	align := sp.align
	if align == 0 {
		align = defAlign
	}
	return sp.padAligned(body, align, prefix)
}

func (sp *spec) padAligned(body string, align byte, prefix string) string {
	n := utf8.RuneCountInString(prefix) + utf8.RuneCountInString(body)
	if n >= sp.width {
		return prefix + body
	}
	fill := strings.Repeat(string(sp.fill), sp.width-n)
	switch align {
	case '<':
		return prefix + body + fill
	case '=':
		return prefix + fill + body
	case '^':
		left := (sp.width - n) / 2
		lf := strings.Repeat(string(sp.fill), left)
		rf := strings.Repeat(string(sp.fill), sp.width-n-left)
		return lf + prefix + body + rf
	default:
		return fill + prefix + body
	}
}

func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case map[string]any:
		return "a dict"
	case []any:
		return "a list"
	case json.Number, int, int64, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// Str is Python's str() of a JSON value: strings as they are, integers in
// decimal, floats as Python's repr, true/false/null as True/False/None,
// objects and arrays as Python's dict and list reprs (keys sorted).
func Str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return Repr(v, false)
}

// Repr is Python's repr() of a JSON value; ascii escapes non-ASCII runes
// as Python's ascii() does.
func Repr(v any, ascii bool) string {
	var b strings.Builder
	repr(&b, v, ascii, 0)
	return b.String()
}

func repr(b *strings.Builder, v any, ascii bool, depth int) {
	if depth > 64 {
		b.WriteString("...")
		return
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case string:
		quoteString(b, x, ascii)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			quoteString(b, k, ascii)
			b.WriteString(": ")
			repr(b, x[k], ascii, depth+1)
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			repr(b, e, ascii, depth+1)
		}
		b.WriteByte(']')
	default:
		if n, ok := number(v); ok {
			if n.i != nil {
				b.WriteString(n.i.String())
				return
			}
			switch {
			case math.IsNaN(n.f):
				b.WriteString("nan")
			case math.IsInf(n.f, 1):
				b.WriteString("inf")
			case math.IsInf(n.f, -1):
				b.WriteString("-inf")
			default:
				if math.Signbit(n.f) {
					b.WriteByte('-')
				}
				b.WriteString(pyRepr(math.Abs(n.f)))
			}
			return
		}
		fmt.Fprint(b, v)
	}
}

// quoteString writes s quoted the way Python's repr does: single quotes
// unless s contains a single quote and no double quote.
func quoteString(b *strings.Builder, s string, ascii bool) {
	q := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, "\"") {
		q = '"'
	}
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\x%02x`, r)
		case ascii && r > 0x7f:
			switch {
			case r <= 0xff:
				fmt.Fprintf(b, `\x%02x`, r)
			case r <= 0xffff:
				fmt.Fprintf(b, `\u%04x`, r)
			default:
				fmt.Fprintf(b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
}
