package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// parseMinTLS maps the min_tls setting to a tls.Version constant.
func parseMinTLS(s string) (uint16, error) {
	switch s {
	case "", "1.3":
		return tls.VersionTLS13, nil
	case "1.2":
		return tls.VersionTLS12, nil
	default:
		return 0, fmt.Errorf("%q: want \"1.3\" or \"1.2\"", truncate(s))
	}
}

// tlsVersionName is "1.2" or "1.3" (what Status shows).
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "1.3"
	case tls.VersionTLS12:
		return "1.2"
	case 0:
		return ""
	default:
		return tls.VersionName(v)
	}
}

// maxPEM bounds what is read from a certificate or key file.
const maxPEM = 1 << 20

// checkIdentity refuses a client certificate issued for another edge: one
// whose warren://edge/<id> URI names a different id. (A certificate without
// such a URI is left to the hub to judge.)
func checkIdentity(cfg *tls.Config, edgeID string) error {
	if len(cfg.Certificates) == 0 || cfg.Certificates[0].Leaf == nil {
		return nil
	}
	for _, u := range cfg.Certificates[0].Leaf.URIs {
		if u.Scheme != "warren" || u.Host != "edge" {
			continue
		}
		if id := strings.TrimPrefix(u.Path, "/"); id != edgeID {
			return fmt.Errorf("%s.cert_file: the certificate is for edge %q, this edge is %q", KeyPrefix, truncate(id), edgeID)
		}
	}
	return nil
}

// loadTLS builds the client TLS configuration from the files in cfg: the
// CA file is the only root, the server name is fixed, the edge presents its
// certificate. Errors name the key and the file, never key material.
func loadTLS(cfg Config) (*tls.Config, error) {
	minV, err := parseMinTLS(cfg.MinTLS)
	if err != nil {
		return nil, fmt.Errorf("%s.min_tls: %w", KeyPrefix, err)
	}
	caPEM, err := readPEM(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s.ca_file: %w", KeyPrefix, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", KeyPrefix, cfg.CAFile)
	}
	certPEM, err := readPEM(cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file: %w", KeyPrefix, err)
	}
	keyPEM, err := readPEM(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.key_file: %w", KeyPrefix, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls.X509KeyPair's messages describe the problem, not the key.
		return nil, fmt.Errorf("%s.cert_file/%s.key_file: %s and %s: %w", KeyPrefix, KeyPrefix, cfg.CertFile, cfg.KeyFile, err)
	}
	return &tls.Config{
		MinVersion:   minV,
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		ServerName:   cfg.ServerName,
	}, nil
}

func readPEM(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("missing")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxPEM {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a PEM file", path, maxPEM)
	}
	return b, nil
}

// dialer is the nats.CustomDialer of one connect attempt. It ignores the
// address nats.go passes (a placeholder or the static URL) and dials the
// addresses the hook returns now, then the static one, recording which
// answered.
type dialer struct {
	ctx     context.Context
	hook    func() []string
	static  string // host:port from Config.URL, or empty
	timeout time.Duration

	mu     sync.Mutex
	dialed string // the address that answered
	err    error  // why the last dial failed
}

// targets lists the dial targets: hook addresses (parsed, deduplicated),
// then the static address.
func targets(hook []string, static string) []string {
	var out []string
	seen := map[string]bool{}
	for _, raw := range hook {
		a, err := parseAddr(raw)
		if err != nil || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	if static != "" && !seen[static] {
		out = append(out, static)
	}
	return out
}

// Dial implements nats.CustomDialer.
func (d *dialer) Dial(network, _ string) (net.Conn, error) {
	var hooked []string
	if d.hook != nil {
		hooked = d.hook()
	}
	ts := targets(hooked, d.static)
	if len(ts) == 0 {
		err := errors.New("dial hub: no address (hub.url is empty and discovery knows no hub yet)")
		d.setErr(err)
		return nil, err
	}
	var errs []error
	for _, t := range ts {
		nd := net.Dialer{Timeout: d.timeout}
		c, err := nd.DialContext(d.ctx, network, t)
		if err == nil {
			// Closing a connection the bridge gave up on must not leave its
			// unsent bytes to trickle to the hub after a new connection's:
			// linger 0 discards them and resets the connection.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			d.mu.Lock()
			d.dialed, d.err = t, nil
			d.mu.Unlock()
			return c, nil
		}
		errs = append(errs, err)
		if d.ctx.Err() != nil {
			break
		}
	}
	err := fmt.Errorf("dial hub: %w", errors.Join(errs...))
	d.setErr(err)
	return nil, err
}

func (d *dialer) setErr(err error) {
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
}

// lastErr is why the last dial failed (nats.go reports only "no servers").
func (d *dialer) lastErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *dialer) addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dialed
}
