package target

import (
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/warren-mesh/warren/internal/secretfile"
	"net/url"
	"os"
	"slices"
	"strings"
)

// ReadSecretFile reads a secret from path for config key key (e.g.
// "token_file"), by the rule every *_file key of warren follows
// (internal/secretfile: at most 64 KiB, one trailing newline removed).
func ReadSecretFile(key, path string) (string, error) { return secretfile.Read(key, path) }

// Secret resolves a secret given inline (key) or as a file (key+"_file").
// At most one of them may be set; both empty returns "" and no error, so
// the caller decides whether the secret is required.
func Secret(key, inline, file string) (string, error) {
	switch {
	case inline != "" && file != "":
		return "", fmt.Errorf("%s and %s_file: set only one", key, key)
	case file != "":
		return ReadSecretFile(key+"_file", file)
	default:
		return inline, nil
	}
}

// Redactor removes known secret values from text. The zero value and a nil
// *Redactor redact nothing but URL credentials.
type Redactor struct {
	secrets []string
}

// NewRedactor returns a Redactor for the given secret values; empty values
// are ignored.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if s != "" && !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
	return r
}

// Redacted replaces each secret value in s.
const Redacted = "REDACTED"

// String returns s with every secret value, and the credentials of any URL
// it contains, replaced.
func (r *Redactor) String(s string) string {
	s = redactURLsIn(s)
	if r != nil {
		for _, sec := range r.secrets {
			s = strings.ReplaceAll(s, sec, Redacted)
			// Secrets also travel URL-encoded (query strings, form bodies).
			if esc := url.QueryEscape(sec); esc != sec {
				s = strings.ReplaceAll(s, esc, Redacted)
			}
		}
	}
	return s
}

// Error returns err with its message redacted. The result keeps errors.Is
// of the original (so context.DeadlineExceeded is still recognised) but not
// errors.As or Unwrap, which could expose the unredacted text. A
// RetryAfterError in the chain is kept, redacted.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	red := &redactedError{msg: r.String(err.Error()), orig: err}
	if after, ok := RetryAfter(err); ok {
		return &RetryAfterError{After: after, Err: red}
	}
	return red
}

type redactedError struct {
	msg  string
	orig error
}

func (e *redactedError) Error() string { return e.msg }

// Is reports whether the original error matches target.
func (e *redactedError) Is(target error) bool {
	return errors.Is(e.orig, target)
}

// RedactURL returns raw with any userinfo and every query value replaced by
// Redacted. A string that does not parse as a URL is returned as a fixed
// placeholder, since it cannot be checked.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	if u.User != nil {
		u.User = url.User(Redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{Redacted}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment = ""
	u.RawFragment = ""
	return u.String()
}

// redactURLsIn redacts credentials and query values of the http(s), mqtt,
// tcp, ssl, ws(s), smtp and nats URLs embedded in free text, such as the
// message of a *url.Error.
func redactURLsIn(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		// Walk back over the scheme.
		start := i
		for start > 0 && isSchemeByte(s[start-1]) {
			start--
		}
		end := i + 3
		for end < len(s) && !isURLEnd(s[end]) {
			end++
		}
		b.WriteString(s[:start])
		if start == i {
			// "://" with no scheme: not a URL, copy through.
			b.WriteString(s[start:end])
		} else {
			b.WriteString(RedactURL(s[start:end]))
		}
		s = s[end:]
	}
}

func isSchemeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'
}

func isURLEnd(c byte) bool {
	return c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == 0x7f
}

// minURLSecret is the shortest URL part treated as a secret by URLSecrets:
// shorter values ("1", "en") are too common in ordinary text to replace.
const minURLSecret = 4

// URLSecrets returns the parts of a URL that may be credentials, for a
// Redactor: the userinfo password, the user name and every query value of
// at least four characters.
func URLSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			out = append(out, pw)
		}
		if name := u.User.Username(); len(name) >= minURLSecret {
			out = append(out, name)
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if len(v) >= minURLSecret {
				out = append(out, v)
			}
		}
	}
	return out
}

// LoadCAPool reads a PEM bundle of CAs (a target's ca_file) to trust
// instead of the system roots.
func LoadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", path)
	}
	return pool, nil
}
