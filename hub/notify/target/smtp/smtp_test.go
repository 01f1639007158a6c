package smtp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/hub/notify/target"
)

const (
	user     = "warren"
	password = "correct horse battery staple"
)

// received is one mail the test server accepted.
type received struct {
	From     string
	To       []string
	Data     string
	AuthUser string
	TLS      bool
}

// mailServer is a real SMTP server (go-smtp) on a loopback port, with
// AUTH PLAIN, optional STARTTLS or implicit TLS, and recipient rules.
type mailServer struct {
	addr   string
	port   int
	mu     sync.Mutex
	mails  []received
	reject map[string]*gosmtp.SMTPError // recipient → refusal
}

func (s *mailServer) got() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.mails...)
}

type session struct {
	srv  *mailServer
	conn *gosmtp.Conn
	cur  received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, pw string) error {
		if username != user || pw != password {
			return gosmtp.ErrAuthFailed
		}
		s.cur.AuthUser = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	s.cur.From = from
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.srv.mu.Lock()
	rej := s.srv.reject[to]
	s.srv.mu.Unlock()
	if rej != nil {
		return rej
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = string(b)
	_, s.cur.TLS = s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.mails = append(s.srv.mails, s.cur)
	s.srv.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = received{AuthUser: s.cur.AuthUser} }
func (s *session) Logout() error { return nil }

// startServer starts a go-smtp server. tlsConf nil: no STARTTLS offered;
// implicit: the listener speaks TLS from the first byte.
func startServer(t *testing.T, tlsConf *tls.Config, implicit bool) *mailServer {
	t.Helper()
	ms := &mailServer{reject: map[string]*gosmtp.SMTPError{}}
	be := gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &session{srv: ms, conn: c}, nil
	})
	srv := gosmtp.NewServer(be)
	srv.Domain = "localhost"
	srv.TLSConfig = tlsConf
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	var l net.Listener
	var err error
	if implicit {
		l, err = tls.Listen("tcp", "127.0.0.1:0", tlsConf)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = l.Addr().String()
	ms.port = l.Addr().(*net.TCPAddr).Port
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ms
}

// selfSigned makes a certificate for localhost/127.0.0.1 and returns the
// server TLS config and a PEM file holding the certificate, to trust.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "warren test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}, caFile
}

func passwordFile(t *testing.T, pw string) string {
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testMessage() *target.Message {
	return &target.Message{
		ID: "site1:abc:42/hare/mail", Topic: "logging/hare", Edge: "site1",
		Title: "Login: jö on vm", Body: "jo logged in from 198.51.100.7\nservice sshd, tty pts/3 — ünïcode",
		Priority: 1, Time: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func newNotifier(t *testing.T, mut func(*Config)) *Notifier {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Host = "127.0.0.1"
	cfg.From = "Warren Hub <warren@example.org>"
	cfg.To = []string{"ops@example.org", "Jo <jo@example.org>"}
	cfg.Timeout = 10 * time.Second
	mut(&cfg)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkMail parses a received mail and checks envelope, headers and body.
func checkMail(t *testing.T, r received, wantTLS bool, wantAuth string) {
	t.Helper()
	if r.From != "warren@example.org" {
		t.Errorf("MAIL FROM %q", r.From)
	}
	if d := cmp.Diff([]string{"ops@example.org", "jo@example.org"}, r.To); d != "" {
		t.Errorf("RCPT TO (-want +got)\n%s", d)
	}
	if r.TLS != wantTLS || r.AuthUser != wantAuth {
		t.Errorf("tls=%v auth=%q, want %v %q", r.TLS, r.AuthUser, wantTLS, wantAuth)
	}
	msg, err := mail.ReadMessage(strings.NewReader(r.Data))
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Data)
	}
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
	if subject != "Login: jö on vm" {
		t.Errorf("subject %q", subject)
	}
	for k, want := range map[string]string{
		"From":                      `"Warren Hub" <warren@example.org>`,
		"To":                        `<ops@example.org>, "Jo" <jo@example.org>`,
		"Date":                      "Fri, 01 May 2026 12:00:00 +0000",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
		"X-Warren-Topic":            "logging/hare",
		"X-Warren-Edge":             "site1",
		"X-Priority":                "2",
	} {
		if got := msg.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if id := msg.Header.Get("Message-Id"); !strings.HasSuffix(id, ".warren@example.org>") {
		t.Errorf("Message-ID %q", id)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(body), "jo logged in from 198.51.100.7\r\nservice sshd, tty pts/3 — ünïcode\r\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}

func TestStartTLSWithAuth(t *testing.T) {
	tlsConf, caFile := selfSigned(t)
	srv := startServer(t, tlsConf, false)
	n := newNotifier(t, func(c *Config) {
		c.Port = srv.port
		c.CAFile = caFile
		c.Username = user
		c.PasswordFile = passwordFile(t, password)
	})
	if retry, err := n.Notify(context.Background(), testMessage()); err != nil {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	got := srv.got()
	if len(got) != 1 {
		t.Fatalf("%d mails", len(got))
	}
	checkMail(t, got[0], true, user)
}

func TestImplicitTLSWithAuth(t *testing.T) {
	tlsConf, caFile := selfSigned(t)
	srv := startServer(t, tlsConf, true)
	n := newNotifier(t, func(c *Config) {
		c.Mode = ModeTLS
		c.Port = srv.port
		c.CAFile = caFile
		c.Username = user
		c.Password = password
	})
	if retry, err := n.Notify(context.Background(), testMessage()); err != nil {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	got := srv.got()
	if len(got) != 1 {
		t.Fatalf("%d mails", len(got))
	}
	checkMail(t, got[0], true, user)
}

func TestPlainLoopback(t *testing.T) {
	srv := startServer(t, nil, false)
	n := newNotifier(t, func(c *Config) { c.Mode = ModeNone; c.Port = srv.port })
	if retry, err := n.Notify(context.Background(), testMessage()); err != nil {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	checkMail(t, srv.got()[0], false, "")
	// A retried notification carries the same Message-ID.
	if _, err := n.Notify(context.Background(), testMessage()); err != nil {
		t.Fatal(err)
	}
	got := srv.got()
	id := func(r received) string {
		m, _ := mail.ReadMessage(strings.NewReader(r.Data))
		return m.Header.Get("Message-Id")
	}
	if id(got[0]) != id(got[1]) || id(got[0]) == "" {
		t.Errorf("Message-IDs differ: %q %q", id(got[0]), id(got[1]))
	}
}

func TestFailures(t *testing.T) {
	tlsConf, caFile := selfSigned(t)
	srv := startServer(t, tlsConf, false)
	plain := startServer(t, nil, false)
	wrongPW := "wrong-" + password
	tests := []struct {
		name      string
		mut       func(*Config)
		reject    map[string]*gosmtp.SMTPError
		wantRetry bool
		wantText  string
		wantMails int
	}{
		{
			name:      "temporary recipient failure",
			reject:    map[string]*gosmtp.SMTPError{"jo@example.org": {Code: 451, Message: "greylisted, try later"}},
			wantRetry: true, wantText: "451",
		},
		{
			name: "every recipient refused",
			reject: map[string]*gosmtp.SMTPError{
				"jo@example.org":  {Code: 550, Message: "no such user"},
				"ops@example.org": {Code: 550, Message: "no such user"},
			},
			wantRetry: false, wantText: "every recipient refused",
		},
		{
			name:      "one recipient refused for good",
			reject:    map[string]*gosmtp.SMTPError{"jo@example.org": {Code: 550, Message: "no such user"}},
			wantRetry: false, wantText: "jo@example.org (550", wantMails: 1,
		},
		{
			name:      "bad password",
			mut:       func(c *Config) { c.Password = wrongPW },
			wantRetry: false, wantText: "535",
		},
		{
			name:      "untrusted certificate",
			mut:       func(c *Config) { c.CAFile = "" },
			wantRetry: false, wantText: "certificate",
		},
		{
			name:      "no STARTTLS offered",
			mut:       func(c *Config) { c.Port = plain.port },
			wantRetry: false, wantText: "STARTTLS",
		},
		{
			name:      "wrong TLS mode against a STARTTLS port",
			mut:       func(c *Config) { c.Mode = ModeTLS; c.Timeout = 2 * time.Second },
			wantRetry: false, wantText: "tls",
		},
		{
			name:      "nothing listening",
			mut:       func(c *Config) { c.Port = closedPort(t) },
			wantRetry: true, wantText: "connect",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.mu.Lock()
			srv.reject = tt.reject
			before := len(srv.mails)
			srv.mu.Unlock()
			n := newNotifier(t, func(c *Config) {
				c.Port = srv.port
				c.CAFile = caFile
				c.Username = user
				c.Password = password
				if tt.mut != nil {
					tt.mut(c)
				}
			})
			retry, err := n.Notify(context.Background(), testMessage())
			if err == nil || retry != tt.wantRetry || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("retry=%v err=%v", retry, err)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("password in error: %v", err)
			}
			if got := len(srv.got()) - before; got != tt.wantMails {
				t.Errorf("%d mails delivered, want %d", got, tt.wantMails)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	// A server that accepts and never greets.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	n := newNotifier(t, func(c *Config) { c.Mode = ModeNone; c.Port = l.Addr().(*net.TCPAddr).Port; c.Timeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	retry, err := n.Notify(ctx, testMessage())
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
}

func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"no host", func(c *Config) { c.Host = "" }, "host"},
		{"bad port", func(c *Config) { c.Port = 70000 }, "port"},
		{"bad mode", func(c *Config) { c.Mode = "ssl" }, "mode"},
		{"none to remote", func(c *Config) { c.Mode = ModeNone; c.Host = "mail.example.org" }, "mode"},
		{"two passwords", func(c *Config) { c.PasswordFile = "x" }, "password and password_file"},
		{"user without password", func(c *Config) { c.Password = "" }, "password_file"},
		{"password without user", func(c *Config) { c.Username = "" }, "username"},
		{"bad from", func(c *Config) { c.From = "not an address" }, "from"},
		{"no to", func(c *Config) { c.To = nil }, "to"},
		{"bad to", func(c *Config) { c.To = []string{"x"} }, "to[0]"},
		{"hello", func(c *Config) { c.HelloName = "a b" }, "hello_name"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Host = "mail.example.org"
			c.From = "w@example.org"
			c.To = []string{"o@example.org"}
			c.Username = "u"
			c.Password = "p"
			tt.mut(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
			if strings.Contains(err.Error(), "p\"") {
				t.Errorf("password in error: %v", err)
			}
		})
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "127.1.2.3"} {
		c := DefaultConfig()
		c.Host, c.Mode, c.From, c.To = host, ModeNone, "w@example.org", []string{"o@example.org"}
		if err := c.Validate(); err != nil {
			t.Errorf("mode none to %s: %v", host, err)
		}
	}
	for mode, want := range map[string]int{ModeStartTLS: 587, ModeTLS: 465, ModeNone: 25} {
		if got := (Config{Mode: mode}).port(); got != want {
			t.Errorf("default port for %s = %d", mode, got)
		}
	}
	c := DefaultConfig()
	c.Host, c.From, c.To, c.CAFile = "h", "w@example.org", []string{"o@example.org"}, "/nonexistent.pem"
	if _, err := New(c); err == nil || !strings.HasPrefix(err.Error(), "ca_file") {
		t.Errorf("missing CA file: %v", err)
	}
}
