package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultServerName is the TLS server name the hub's certificate carries
// (hub/pki.DefaultServerName). It is fixed, not the hub's address, so the hub
// may move without new certificates.
const DefaultServerName = "hub.warren"

// DefaultPort is the hub's NATS client port when an address names none.
const DefaultPort = "4222"

// KeyPrefix is where the edge's configuration nests Config; Validate names
// keys with it ("hub.url").
const KeyPrefix = "hub"

// Config configures the bridge. Start from DefaultConfig.
type Config struct {
	// URL is the hub's static NATS address, e.g. "tls://hub.example:4222"
	// ("nats://" and a bare "host:port" are accepted; TLS is always used;
	// port 4222 when missing). Every (re)connect first asks the address hook
	// (discovery) and falls back to this URL. Empty with no hook means the
	// link is not configured and the edge only stores. Default empty.
	URL string `mapstructure:"url"`
	// CAFile is the PEM file of the CA the hub's certificate must chain to
	// (the only trusted roots). Required when the link is configured.
	CAFile string `mapstructure:"ca_file"`
	// CertFile is the edge's client certificate (PEM), issued by
	// "hub pki issue <edge-id>". Required when the link is configured.
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the private key of CertFile (PEM, mode 0600). Required
	// when the link is configured. The three files are read again at every
	// connect, so renewed certificates take effect without a restart.
	KeyFile string `mapstructure:"key_file"`
	// ServerName is the TLS server name verified in the hub's certificate,
	// whatever address is dialled. Default "hub.warren".
	ServerName string `mapstructure:"server_name"`
	// MinTLS is the lowest TLS version offered: "1.3" (default) or "1.2".
	MinTLS string `mapstructure:"min_tls"`
	// Batch is how many events one pull from the edge stream asks for (the
	// client-side prefetch buffer). 1..65536. Default 256.
	Batch int `mapstructure:"batch"`
	// Inflight is how many publishes may await the hub's PubAck at once.
	// 1..65536. Default 1024.
	Inflight int `mapstructure:"inflight"`
	// AckWait is the edge consumer's ack wait: an event delivered to the
	// bridge and neither acked nor rewound within it is delivered again.
	// Must exceed PublishTimeout. Default 30 s.
	AckWait time.Duration `mapstructure:"ack_wait"`
	// BackoffMin is the first delay before reconnecting (and before resending
	// after a refused publish); it doubles per failed attempt up to
	// BackoffMax, with a random half of it as jitter. Default 100 ms.
	BackoffMin time.Duration `mapstructure:"backoff_min"`
	// BackoffMax caps the reconnect/resend delay. It bounds how long after
	// the hub comes back the edge notices. Default 1 s.
	BackoffMax time.Duration `mapstructure:"backoff_max"`
	// Heartbeat is the interval of the status heartbeat sent to the hub (one
	// is also sent right after every connect) and of RTT measurements; the
	// NATS ping interval follows it. Default 5 s.
	Heartbeat time.Duration `mapstructure:"heartbeat"`
	// PublishTimeout bounds the wait for one hub PubAck; a publish without
	// an answer by then counts as failed and is resent. Default 5 s.
	PublishTimeout time.Duration `mapstructure:"publish_timeout"`
	// DialTimeout bounds each TCP connection attempt and the TLS and NATS
	// handshake that follows. Default 5 s.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		ServerName:     DefaultServerName,
		MinTLS:         "1.3",
		Batch:          256,
		Inflight:       1024,
		AckWait:        30 * time.Second,
		BackoffMin:     100 * time.Millisecond,
		BackoffMax:     time.Second,
		Heartbeat:      5 * time.Second,
		PublishTimeout: 5 * time.Second,
		DialTimeout:    5 * time.Second,
	}
}

// maxWindow bounds Batch and Inflight; the edge consumer's MaxAckPending is
// set above their sum.
const maxWindow = 1 << 16

// Validate checks every field and names the keys at fault (under
// KeyPrefix). It does not read the certificate files; New does.
func (c Config) Validate() error {
	key := func(k string) string { return KeyPrefix + "." + k }
	var errs []error
	if c.URL != "" {
		if _, err := parseAddr(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key("url"), err))
		}
		for _, f := range []struct{ k, v string }{{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
			if f.v == "" {
				errs = append(errs, fmt.Errorf("%s: missing; the hub link uses mutual TLS (make the files with \"hub pki issue <edge-id>\")", key(f.k)))
			}
		}
	}
	if err := validServerName(c.ServerName); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", key("server_name"), err))
	}
	if _, err := parseMinTLS(c.MinTLS); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", key("min_tls"), err))
	}
	if c.Batch < 1 || c.Batch > maxWindow {
		errs = append(errs, fmt.Errorf("%s: %d out of range 1..%d", key("batch"), c.Batch, maxWindow))
	}
	if c.Inflight < 1 || c.Inflight > maxWindow {
		errs = append(errs, fmt.Errorf("%s: %d out of range 1..%d", key("inflight"), c.Inflight, maxWindow))
	}
	positive := []struct {
		k string
		v time.Duration
	}{
		{"ack_wait", c.AckWait}, {"backoff_min", c.BackoffMin}, {"backoff_max", c.BackoffMax},
		{"heartbeat", c.Heartbeat}, {"publish_timeout", c.PublishTimeout}, {"dial_timeout", c.DialTimeout},
	}
	for _, p := range positive {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", key(p.k), p.v))
		}
	}
	if c.BackoffMin > 0 && c.BackoffMax > 0 && c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("%s: %s is below %s %s", key("backoff_max"), c.BackoffMax, key("backoff_min"), c.BackoffMin))
	}
	if c.AckWait > 0 && c.PublishTimeout > 0 && c.AckWait <= c.PublishTimeout {
		errs = append(errs, fmt.Errorf("%s: %s must exceed %s %s, or events would be redelivered while their publish is still pending", key("ack_wait"), c.AckWait, key("publish_timeout"), c.PublishTimeout))
	}
	return errors.Join(errs...)
}

// parseAddr turns a hub address ("tls://host:port", "nats://host", or
// "host:port") into a dial target "host:port".
func parseAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty address")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("%q is not a URL: %w", truncate(s), err)
		}
		if u.Scheme != "tls" && u.Scheme != "nats" {
			return "", fmt.Errorf("%q: scheme must be tls:// or nats://", truncate(s))
		}
		if u.User != nil {
			return "", errors.New("credentials in the URL are not allowed; the edge authenticates with its certificate")
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("%q: want scheme://host[:port] only", truncate(s))
		}
		s = u.Host
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole thing is the host; an IPv6 literal may be
		// bracketed.
		host, port = s, DefaultPort
		if strings.HasPrefix(s, "[") || strings.HasSuffix(s, "]") {
			inner, ok := strings.CutPrefix(s, "[")
			inner, ok2 := strings.CutSuffix(inner, "]")
			if !ok || !ok2 || net.ParseIP(inner) == nil {
				return "", fmt.Errorf("%q: bad host", truncate(s))
			}
			host = inner
		}
	}
	if host == "" {
		return "", fmt.Errorf("%q: missing host", truncate(s))
	}
	if net.ParseIP(host) == nil && !validHostName(host) {
		return "", fmt.Errorf("%q: bad host (want a DNS name or an IP address; IPv6 literals go in brackets with a port)", truncate(s))
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q: port must be 1..65535", truncate(s))
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// validHostName accepts the characters of DNS names (and the underscore
// some internal names carry).
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

func validServerName(name string) error {
	if name == "" {
		return errors.New("missing; it must match a DNS name in the hub's certificate (default \"hub.warren\")")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.'
		if !ok {
			return fmt.Errorf("%q is not a DNS name", truncate(name))
		}
	}
	return nil
}

func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
