package format

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// testData is decoded the way the notifier decodes payloads (UseNumber).
func testData(t testing.TB) map[string]any {
	t.Helper()
	const doc = `{"user":"jjolie","tst":1795384588,"x":3.14159,"n":7,"neg":-42,"s":"abc","a":{"b":"deep","c":[1,2,3]},"f":1.0,"big":12345678901234567890,"t":true,"z":null,"e":1e-7,"h":255,"u":"h\u00e9llo","q":"it's","lst":[1,"a",null,true],"pct":0.256,"large":1e22,"numstr":"42"}`
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPythonCompat checks outputs produced by CPython 3's str.format on the
// same data (generated once, pasted here).
func TestPythonCompat(t *testing.T) {
	data := testData(t)
	cases := []struct{ format, want string }{
		{"{user}", "jjolie"},
		{"{a[b]}", "deep"},
		{"{a[c][1]}", "2"},
		{"{x:.2f}", "3.14"},
		{"{n:03d}", "007"},
		{"{s:>8}", "     abc"},
		{"{s:<8}|", "abc     |"},
		{"{s:^9}", "   abc   "},
		{"{s:*^9}", "***abc***"},
		{"{{literal}} {user}", "{literal} jjolie"},
		{"{x}", "3.14159"},
		{"{f}", "1.0"},
		{"{big}", "12345678901234567890"},
		{"{t}", "True"},
		{"{z}", "None"},
		{"{e}", "1e-07"},
		{"{large}", "1e+22"},
		{"{a}", "{'b': 'deep', 'c': [1, 2, 3]}"},
		{"{lst}", "[1, 'a', None, True]"},
		{"{q!r}", "\"it's\""},
		{"{user!r}", "'jjolie'"},
		{"{u!a}", "'h\\xe9llo'"},
		{"{u!r}", "'h\u00e9llo'"},
		{"{n:+d}", "+7"},
		{"{neg:05d}", "-0042"},
		{"{neg:=+8d}", "-     42"},
		{"{tst:,}", "1,795,384,588"},
		{"{tst:_}", "1_795_384_588"},
		{"{h:x}", "ff"},
		{"{h:#x}", "0xff"},
		{"{h:#X}", "0XFF"},
		{"{h:b}", "11111111"},
		{"{h:#o}", "0o377"},
		{"{h:08b}", "11111111"},
		{"{x:e}", "3.141590e+00"},
		{"{x:E}", "3.141590E+00"},
		{"{x:g}", "3.14159"},
		{"{large:g}", "1e+22"},
		{"{e:g}", "1e-07"},
		{"{x:10.3f}", "     3.142"},
		{"{x:<10.3f}|", "3.142     |"},
		{"{pct:.1%}", "25.6%"},
		{"{x:.3}", "3.14"},
		{"{f:.3}", "1.0"},
		{"{n:.2f}", "7.00"},
		{"{n:e}", "7.000000e+00"},
		{"{s:.2}", "ab"},
		{"{s:10.2}|", "ab        |"},
		{"{x: .2f}", " 3.14"},
		{"{neg:,}", "-42"},
		{"{big:,}", "12,345,678,901,234,567,890"},
		{"{n:c}", "\a"},
		{"{x:,.2f}", "3.14"},
		{"{tst:d}", "1795384588"},
		{"{x:G}", "3.14159"},
		{"{e:.2e}", "1.00e-07"},
		{"{s:05}", "abc00"},
		{"{n:5}", "    7"},
		{"{x:8}", " 3.14159"},
		{"{n}", "7"},
		{"{neg}", "-42"},
		{"{u:>7}", "  h\u00e9llo"},
		{"{s!s:>5}", "  abc"},
		{"{t:d}", "1"},
		{"{x:.0f}", "3"},
		{"{x:#.0f}", "3."},
		{"{x:#g}", "3.14159"},
		{"{tst:>12}", "  1795384588"},
		{"{n:{h}}", "                                                                                                                                                                                                                                                              7"},
		{"{s:{n}}|", "abc    |"},
	}
	for _, c := range cases {
		t.Run(c.format, func(t *testing.T) {
			tmpl, err := Parse(c.format)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := tmpl.Execute(data)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestLenient covers where warren accepts what Python would reject, because
// mqttwarn payloads are loosely typed.
func TestLenient(t *testing.T) {
	data := testData(t)
	cases := []struct{ format, want string }{
		{"{f:d}", "1"},           // integral float as integer
		{"{numstr:03d}", "042"},  // numeric string as number
		{"{numstr:.1f}", "42.0"}, // numeric string as float
		{"{a.b}", "deep"},        // attribute access on a dict
		{"{a[c].0}", "1"},        // attribute-style list index is refused below; map keys work
		{"{a[c][0]:>3}", "  1"},
	}
	for _, c := range cases[:4] {
		got, err := MustParse(c.format).Execute(data)
		if err != nil || got != c.want {
			t.Errorf("%s = %q, %v; want %q", c.format, got, err, c.want)
		}
	}
	if _, err := MustParse("{a[c].0}").Execute(data); err == nil {
		t.Errorf("{a[c].0}: want an error for attribute access on a list")
	}
	if got, err := MustParse(cases[5].format).Execute(data); err != nil || got != cases[5].want {
		t.Errorf("%s = %q, %v", cases[5].format, got, err)
	}
}

func TestMissingKey(t *testing.T) {
	data := testData(t)
	cases := []struct{ format, key string }{
		{"hello {nobody}", "nobody"},
		{"{a[zz]}", "a[zz]"},
		{"{a[c][9]}", "a[c][9]"},
		{"{x:{nowidth}}", "nowidth"},
	}
	for _, c := range cases {
		_, err := MustParse(c.format).Execute(data)
		var mk *MissingKeyError
		if !errors.As(err, &mk) || mk.Key != c.key {
			t.Errorf("%s: err = %v, want missing key %q", c.format, err, c.key)
		}
	}
	got, err := MustParse("{user} from {rhost} at {tst}").ExecutePartial(data)
	if err == nil || got != "jjolie from {rhost} at 1795384588" {
		t.Errorf("ExecutePartial = %q, %v", got, err)
	}
}

func TestValueErrors(t *testing.T) {
	data := testData(t)
	for _, f := range []string{"{s:d}", "{s:.2f}", "{x:x}", "{n:s}", "{s:+}", "{s:=5}", "{s:,}", "{n:.2d}", "{user[0]}", "{lst[a]}", "{h:,x}"} {
		if got, err := MustParse(f).Execute(data); err == nil {
			t.Errorf("%s = %q, want an error", f, got)
		} else if errors.As(err, new(*MissingKeyError)) {
			t.Errorf("%s: %v is not a missing key", f, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, f := range []string{"{", "}", "a{b", "a}b", "{}", "{0}", "{1:d}", "{x!}", "{x!q}", "{x!r5}", "{x:q}", "{x:.}", "{x:5d5}", "{a[}", "{a[]}", "{a.}", "{x:{y:{z}}}", "{x:99999}"} {
		if _, err := Parse(f); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) err = %v, want ErrSyntax", f, err)
		}
	}
}

func TestFields(t *testing.T) {
	tm := MustParse("{user}@{host[name]} {user} {x:{w}} {{lit}}")
	got := strings.Join(tm.Fields(), ",")
	if got != "user,host,x,w" {
		t.Errorf("Fields = %s", got)
	}
	if !tm.References("w") || tm.References("lit") {
		t.Errorf("References wrong")
	}
	if tm.String() != "{user}@{host[name]} {user} {x:{w}} {{lit}}" {
		t.Errorf("String = %q", tm.String())
	}
}

func TestNoFieldsVerbatim(t *testing.T) {
	for _, s := range []string{"", "plain text", "multi\nline", "ünïcode"} {
		got, err := MustParse(s).Execute(nil)
		if err != nil || got != s {
			t.Errorf("%q -> %q, %v", s, got, err)
		}
	}
}

func TestBuiltinTypes(t *testing.T) {
	data := map[string]any{"i": 5, "i64": int64(-3), "f": 2.5, "u": uint64(9)}
	got, err := MustParse("{i:02d} {i64} {f:.1f} {f} {u:x}").Execute(data)
	if err != nil || got != "05 -3 2.5 2.5 9" {
		t.Errorf("got %q, %v", got, err)
	}
}

func FuzzFormat(f *testing.F) {
	for _, s := range []string{"{user}", "{a[b]}", "{x:.2f}", "{n:03d}", "{s:>8}", "{{", "}}", "{x:{w}}", "{a[c][1]!r:^9}", "{h:#_x}", "{x:,.3%}"} {
		f.Add(s)
	}
	data := testData(f)
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := Parse(s)
		if err != nil {
			return
		}
		out, err := tm.Execute(data)
		if err == nil && len(out) > 3*maxWidth+len(s)*maxWidth {
			t.Fatalf("output of %d bytes", len(out))
		}
		_, _ = tm.ExecutePartial(data)
		_ = tm.Fields()
	})
}
