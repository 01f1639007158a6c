package target

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// maxResponseBody bounds how much of a response body is read.
const maxResponseBody = 64 << 10

// HTTPResponse is what DoHTTP keeps of a response.
type HTTPResponse struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Header holds the response headers.
	Header http.Header
	// Body holds up to 64 KiB of the response body.
	Body []byte
}

// RetryableStatus reports whether an HTTP status is worth retrying: 408,
// 425, 429 and every 5xx.
func RetryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return true
	case code >= 500 && code <= 599:
		return true
	}
	return false
}

// ParseRetryAfter parses a Retry-After header value: delay seconds or an
// HTTP-date (relative to now). Negative results are clamped to zero.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Bound absurd values instead of overflowing.
		const maxSecs = int64(7 * 24 * 3600)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// StatusError classifies a non-2xx HTTP status: it returns whether the
// failure is retryable and an error naming the status plus detail (which
// the caller has already redacted). For a retryable status with a valid
// Retry-After header the error is a *RetryAfterError. A 2xx status returns
// (false, nil).
func StatusError(code int, header http.Header, detail string, now time.Time) (retry bool, err error) {
	if code >= 200 && code <= 299 {
		return false, nil
	}
	msg := fmt.Sprintf("http status %d", code)
	if txt := http.StatusText(code); txt != "" {
		msg += " " + txt
	}
	if detail != "" {
		msg += ": " + detail
	}
	err = errors.New(msg)
	retry = RetryableStatus(code)
	if retry && header != nil {
		if d, ok := ParseRetryAfter(header.Get("Retry-After"), now); ok {
			err = &RetryAfterError{After: d, Err: err}
		}
	}
	return retry, err
}

// Snippet returns a short, single-line, printable excerpt of a response
// body for an error message.
func Snippet(b []byte) string {
	const limit = 200
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > limit {
		s = string([]rune(s)[:limit]) + "…"
	}
	return s
}

// DoHTTP sends req with client, reads up to 64 KiB of the response and
// classifies the outcome. A transport failure returns a nil response and
// retry=true, except for bad certificates and malformed requests. A non-2xx
// status returns the response together with StatusError's classification
// (the body excerpt redacted). Every error is passed through red.
func DoHTTP(client *http.Client, req *http.Request, red *Redactor) (*HTTPResponse, bool, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, transportRetryable(err), red.Error(fmt.Errorf("send: %w", err))
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, maxResponseBody)
	out := &HTTPResponse{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// The request was accepted; a short read of the body does not
		// change that, and retrying would send twice.
		return out, false, nil
	}
	if rerr != nil && len(body) == 0 {
		body = []byte("(body unreadable)")
	}
	retry, serr := StatusError(resp.StatusCode, resp.Header, red.String(Snippet(body)), time.Now())
	return out, retry, serr
}

// transportRetryable decides whether a failure to get any response is worth
// retrying: network trouble and timeouts are; a certificate the target will
// present again, or a request that cannot be built, are not.
func transportRetryable(err error) bool {
	return !IsCertError(err) && !strings.Contains(err.Error(), "unsupported protocol scheme")
}

// IsCertError reports whether err is the peer's certificate being refused
// (unknown CA, wrong host name, invalid, failed verification): the peer
// will present it again, so retrying cannot help.
func IsCertError(err error) bool {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		certErr   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &certErr) || errors.As(err, &verifyErr)
}
