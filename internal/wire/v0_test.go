package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestAppendV0(t *testing.T) {
	tests := []struct {
		name string
		in   Login
		want string
	}{
		{
			name: "design example",
			in: Login{Tst: 1795384588, Hostname: "vm", User: Some("jjolie"), Service: Some("sshd"),
				RHost: Some("198.51.100.7"), TTY: Some("ssh")},
			want: `{"tst":1795384588,"hostname":"vm","user":"jjolie","service":"sshd","rhost":"198.51.100.7","tty":"ssh"}`,
		},
		{
			name: "unset variables are null",
			in:   Login{Tst: 1, Hostname: "h"},
			want: `{"tst":1,"hostname":"h","user":null,"service":null,"rhost":null,"tty":null}`,
		},
		{
			name: "set but empty is an empty string",
			in:   Login{Tst: 0, Hostname: "", User: Some(""), RHost: Some("")},
			want: `{"tst":0,"hostname":"","user":"","service":null,"rhost":"","tty":null}`,
		},
		{
			name: "hostname fallback of the C hare",
			in:   Login{Tst: 1700000000, Hostname: "?", User: Some("root"), Service: Some("su"), TTY: Some("pts/0")},
			want: `{"tst":1700000000,"hostname":"?","user":"root","service":"su","rhost":null,"tty":"pts/0"}`,
		},
		{
			name: "close event adds a last key",
			in:   Login{Tst: 5, Hostname: "vm", User: Some("u"), Event: EventClose},
			want: `{"tst":5,"hostname":"vm","user":"u","service":null,"rhost":null,"tty":null,"event":"close"}`,
		},
		{
			name: "negative time still an integer",
			in:   Login{Tst: -1, Hostname: "x"},
			want: `{"tst":-1,"hostname":"x","user":null,"service":null,"rhost":null,"tty":null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendV0(nil, tt.in))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AppendV0 mismatch (-want +got):\n%s", diff)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendV0Appends(t *testing.T) {
	prefix := []byte("PREFIX")
	got := AppendV0(prefix, Login{Tst: 1, Hostname: "h"})
	if !bytes.HasPrefix(got, []byte("PREFIX{\"tst\":1,")) {
		t.Fatalf("AppendV0 did not append to dst: %q", got)
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "jjolie", `"jjolie"`},
		{"empty", "", `""`},
		{"quote", `a"b`, `"a\"b"`},
		{"backslash", `a\b`, `"a\\b"`},
		{"short escapes", "\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"other control chars upper-case hex", "\x01\x0b\x1b\x1e", `"\u0001\u000B\u001B\u001E"`},
		{"0x1F escaped (ccan leaves it raw, which is invalid JSON)", "\x1f", `"\u001F"`},
		{"NUL", "a\x00b", `"a\u0000b"`},
		{"slash not escaped", "pts/3", `"pts/3"`},
		{"DEL raw", "\x7f", "\"\x7f\""},
		{"html characters raw", "<a&b>", `"<a&b>"`},
		{"U+2028 raw", "a\u2028b\u2029", "\"a\u2028b\u2029\""},
		{"two-byte UTF-8 raw", "jürgen", `"jürgen"`},
		{"three-byte UTF-8 raw", "日本", `"日本"`},
		{"four-byte UTF-8 raw", "🐇", `"🐇"`},
		{"literal U+FFFD raw", "\uFFFD", "\"\uFFFD\""},
		{"invalid byte replaced", "a\xffb", "\"a\uFFFDb\""},
		{"lone continuation replaced", "\x80", "\"\uFFFD\""},
		{"overlong two-byte replaced per byte", "\xc0\xaf", "\"\uFFFD\uFFFD\""},
		{"truncated three-byte replaced per byte", "\xe2\x82", "\"\uFFFD\uFFFD\""},
		{"surrogate replaced per byte", "\xed\xa0\x80", "\"\uFFFD\uFFFD\uFFFD\""},
		{"beyond U+10FFFF replaced per byte", "\xf4\x90\x80\x80", "\"\uFFFD\uFFFD\uFFFD\uFFFD\""},
		{"mixed", "x\"\\\n\x01ü\xff/", "\"x\\\"\\\\\\n\\u0001ü\uFFFD/\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendString(nil, tt.in))
			if got != tt.want {
				t.Errorf("AppendString(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %q", got)
			}
			if ref, ok := ccanEmitString(tt.in); ok && ref != got {
				t.Errorf("differs from the ccan/json reference: got %q, ccan %q", got, ref)
			}
		})
	}
}

// ccanEmitString is a test-only port of ccan/json's emit_string (as built
// with NDEBUG), written independently of AppendString and without the
// unicode/utf8 package, so the two can be compared. ok is false for inputs
// where AppendString deliberately differs (0x1F, NUL).
func ccanEmitString(s string) (out string, ok bool) {
	if strings.ContainsAny(s, "\x00\x1f") {
		return "", false
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
			i++
			continue
		case '\\':
			b.WriteString(`\\`)
			i++
			continue
		case '\b':
			b.WriteString(`\b`)
			i++
			continue
		case '\f':
			b.WriteString(`\f`)
			i++
			continue
		case '\n':
			b.WriteString(`\n`)
			i++
			continue
		case '\r':
			b.WriteString(`\r`)
			i++
			continue
		case '\t':
			b.WriteString(`\t`)
			i++
			continue
		}
		n := ccanValidateChar(s[i:])
		switch {
		case n == 0:
			b.WriteString("\xef\xbf\xbd")
			i++
		case c < 0x1f:
			const hex = "0123456789ABCDEF"
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			i++
		default:
			b.WriteString(s[i : i+n])
			i += n
		}
	}
	b.WriteByte('"')
	return b.String(), true
}

// ccanValidateChar mirrors ccan/json's utf8_validate_cz: the length of the
// valid UTF-8 sequence at the start of s, or 0. A missing byte counts as the
// C string's NUL terminator, which is never a continuation byte.
func ccanValidateChar(s string) int {
	at := func(i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	cont := func(i int) bool { return at(i)&0xc0 == 0x80 }
	c := at(0)
	switch {
	case c <= 0x7f:
		return 1
	case c <= 0xc1:
		return 0
	case c <= 0xdf:
		if !cont(1) {
			return 0
		}
		return 2
	case c <= 0xef:
		if c == 0xe0 && at(1) < 0xa0 || c == 0xed && at(1) > 0x9f {
			return 0
		}
		if !cont(1) || !cont(2) {
			return 0
		}
		return 3
	case c <= 0xf4:
		if c == 0xf0 && at(1) < 0x90 || c == 0xf4 && at(1) > 0x8f {
			return 0
		}
		if !cont(1) || !cont(2) || !cont(3) {
			return 0
		}
		return 4
	default:
		return 0
	}
}

// checkV0 asserts everything a v0 payload must satisfy for l: valid JSON,
// exact key order, and values that decode back to l's strings (after the
// per-byte U+FFFD replacement encoding/json applies too).
func checkV0(t *testing.T, l Login, got []byte) {
	t.Helper()
	if !json.Valid(got) {
		t.Fatalf("not valid JSON: %q", got)
	}
	if !utf8.Valid(got) {
		t.Fatalf("not valid UTF-8: %q", got)
	}
	if got[0] != V0Start || bytes.IndexByte(got, '\n') >= 0 {
		t.Fatalf("bad framing (must start with '{', no raw newline): %q", got)
	}
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("first token %v, %v", tok, err)
	}
	keys := []string{"tst", "hostname", "user", "service", "rhost", "tty"}
	if l.Event != EventOpen {
		keys = append(keys, "event")
	}
	wantVals := []any{json.Number(strconv.FormatInt(l.Tst, 10)), l.Hostname, optAny(l.User), optAny(l.Service), optAny(l.RHost), optAny(l.TTY), l.Event}
	for i, k := range keys {
		tok, err := dec.Token()
		if err != nil || tok != k {
			t.Fatalf("key %d = %v (%v), want %q in %q", i, tok, err, k, got)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("value of %q: %v", k, err)
		}
		want := wantVals[i]
		if s, ok := want.(string); ok {
			want = viaEncodingJSON(t, s)
		}
		if v != want {
			t.Fatalf("value of %q = %#v, want %#v", k, v, want)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		t.Fatalf("after last key: %v, %v", tok, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("trailing data after object in %q", got)
	}
}

func optAny(o Opt) any {
	if !o.Set {
		return nil
	}
	return o.Value
}

// viaEncodingJSON is what encoding/json makes of s after a round trip: s
// with each invalid UTF-8 byte replaced by U+FFFD.
func viaEncodingJSON(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestV0RoundTrip(t *testing.T) {
	cases := []Login{
		{Tst: 1795384588, Hostname: "vm", User: Some("jjolie"), Service: Some("sshd"), RHost: Some("198.51.100.7"), TTY: Some("ssh")},
		{Tst: -9223372036854775808, Hostname: "\xff\xfe", User: Some("\x00\x1f\x7f"), TTY: Some("\u2028")},
		{Tst: 9223372036854775807, Hostname: "h", Event: EventClose},
		{Tst: 3, Hostname: `"\`, Service: Some(strings.Repeat("é", 100)), Event: "x\ny"},
	}
	for _, l := range cases {
		checkV0(t, l, AppendV0(nil, l))
	}
}

func BenchmarkAppendV0(b *testing.B) {
	l := Login{Tst: 1795384588, Hostname: "vm", User: Some("jjolie"), Service: Some("sshd"), RHost: Some("198.51.100.7"), TTY: Some("ssh")}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendV0(buf[:0], l)
	}
}
