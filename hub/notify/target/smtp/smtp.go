// Package smtp is the notifier target that sends each notification as a
// plain-text mail with the standard library's net/smtp: STARTTLS or
// implicit TLS, AUTH PLAIN, the title as subject, and a Message-ID derived
// from the notification id so a retried mail can be recognised.
package smtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// errPermanent marks failures that retrying cannot fix (configuration or
// server capabilities).
var errPermanent = errors.New("permanent")

// Notifier sends notifications by mail. Safe for concurrent use: each
// delivery uses its own connection.
type Notifier struct {
	cfg      Config
	addr     string
	from     *mail.Address
	to       []*mail.Address
	password string
	tls      *tls.Config
	hello    string
	red      *target.Redactor
}

// New returns an SMTP target; the password and CA files are read now.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	password, err := target.Secret("password", cfg.Password, cfg.PasswordFile)
	if err != nil {
		return nil, err
	}
	n := &Notifier{
		cfg:      cfg,
		addr:     net.JoinHostPort(strings.Trim(cfg.Host, "[]"), strconv.Itoa(cfg.port())),
		password: password,
		hello:    cfg.HelloName,
		red:      target.NewRedactor(password),
	}
	n.from, _ = mail.ParseAddress(cfg.From)
	for _, to := range cfg.To {
		a, _ := mail.ParseAddress(to)
		n.to = append(n.to, a)
	}
	if n.hello == "" {
		if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
			n.hello = h
		} else {
			n.hello = "localhost"
		}
	}
	serverName := cfg.TLSServerName
	if serverName == "" {
		serverName = strings.Trim(cfg.Host, "[]")
	}
	n.tls = &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := target.LoadCAPool(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		n.tls.RootCAs = pool
	}
	return n, nil
}

// Notify delivers m to every recipient in one SMTP transaction.
// Network failures and 4xx replies are retryable; 5xx replies, certificate
// problems and a server lacking STARTTLS or AUTH are not. If the server
// refuses some recipients for good (5xx) the others still get the mail and
// the error (not retryable) names the refused ones.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	retry, err := n.send(ctx, m)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, errPermanent) {
			retry = true
		}
		return retry, n.red.Error(fmt.Errorf("smtp %s: %w", n.addr, err))
	}
	return false, nil
}

func (n *Notifier) send(ctx context.Context, m *target.Message) (bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", n.addr)
	if err != nil {
		return true, err
	}
	defer conn.Close()
	// Bound every read and write by the context, and abort a blocked one
	// when the context ends.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if n.cfg.Mode == ModeTLS {
		tc := tls.Client(conn, n.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return classify(err), fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, strings.Trim(n.cfg.Host, "[]"))
	if err != nil {
		return classify(err), fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(n.hello); err != nil {
		return classify(err), fmt.Errorf("ehlo: %w", err)
	}
	if n.cfg.Mode == ModeStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return false, fmt.Errorf("server does not offer STARTTLS (mode starttls): %w", errPermanent)
		}
		if err := c.StartTLS(n.tls); err != nil {
			return classify(err), fmt.Errorf("starttls: %w", err)
		}
	}
	if n.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return false, fmt.Errorf("server does not offer AUTH: %w", errPermanent)
		}
		auth := smtp.PlainAuth("", n.cfg.Username, n.password, strings.Trim(n.cfg.Host, "[]"))
		if err := c.Auth(auth); err != nil {
			return classify(err), fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(n.from.Address); err != nil {
		return classify(err), fmt.Errorf("mail from: %w", err)
	}
	var refused []string
	for _, to := range n.to {
		err := c.Rcpt(to.Address)
		if err == nil {
			continue
		}
		var te *textproto.Error
		if errors.As(err, &te) && te.Code >= 500 {
			refused = append(refused, fmt.Sprintf("%s (%d %s)", to.Address, te.Code, te.Msg))
			continue
		}
		// A temporary refusal: give up the whole transaction so a retry
		// does not mail the accepted recipients twice.
		_ = c.Reset()
		return classify(err), fmt.Errorf("rcpt to %s: %w", to.Address, err)
	}
	if len(refused) == len(n.to) {
		_ = c.Reset()
		return false, fmt.Errorf("every recipient refused: %s", strings.Join(refused, ", "))
	}
	w, err := c.Data()
	if err != nil {
		return classify(err), fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(n.compose(m)); err != nil {
		return classify(err), fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return classify(err), fmt.Errorf("data: %w", err)
	}
	// The message is accepted; a failing QUIT does not change that.
	_ = c.Quit()
	if len(refused) > 0 {
		return false, fmt.Errorf("sent, but these recipients were refused: %s", strings.Join(refused, ", "))
	}
	return false, nil
}

// compose builds the RFC 5322 message: UTF-8 plain text, quoted-printable.
func (n *Notifier) compose(m *target.Message) []byte {
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", n.from.String())
	to := make([]string, len(n.to))
	for i, a := range n.to {
		to[i] = a.String()
	}
	header("To", strings.Join(to, ", "))
	subject := m.Title
	if subject == "" {
		subject = m.Topic
	}
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	when := m.Time
	if when.IsZero() {
		when = time.Now()
	}
	header("Date", when.Format(time.RFC1123Z))
	header("Message-ID", messageID(m.ID, n.from.Address))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	if m.Topic != "" {
		header("X-Warren-Topic", mime.QEncoding.Encode("utf-8", m.Topic))
	}
	if m.Edge != "" {
		header("X-Warren-Edge", mime.QEncoding.Encode("utf-8", m.Edge))
	}
	header("X-Priority", strconv.Itoa(xPriority(m.Priority)))
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := strings.ReplaceAll(m.Body, "\r\n", "\n")
	qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
	qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}

// messageID derives a stable Message-ID from the notification id, so every
// retry of one notification carries the same id.
func messageID(id, from string) string {
	sum := sha256.Sum256([]byte(id))
	domain := "warren.invalid"
	if at := strings.LastIndexByte(from, '@'); at >= 0 && at+1 < len(from) {
		domain = from[at+1:]
	}
	return "<" + hex.EncodeToString(sum[:16]) + ".warren@" + domain + ">"
}

// xPriority maps -2..2 to the X-Priority scale (1 highest .. 5 lowest).
func xPriority(p int) int {
	return 3 - target.ClampPriority(p)
}

// classify decides whether an SMTP-level failure is worth retrying.
func classify(err error) bool {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code >= 400 && te.Code < 500
	}
	var (
		alert  tls.AlertError
		recErr tls.RecordHeaderError
	)
	switch {
	case target.IsCertError(err), errors.As(err, &alert), errors.As(err, &recErr):
		return false
	case errors.Is(err, errPermanent):
		return false
	}
	// net/smtp reports some refusals as plain errors (e.g. PlainAuth
	// refusing an unencrypted connection).
	if strings.Contains(err.Error(), "unencrypted connection") || strings.Contains(err.Error(), "wrong host name") {
		return false
	}
	return true
}

var _ target.Notifier = (*Notifier)(nil)
