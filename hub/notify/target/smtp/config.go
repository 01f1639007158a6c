package smtp

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strings"
	"time"
)

// Transport security modes.
const (
	// ModeStartTLS connects in clear and upgrades with STARTTLS, which
	// the server must offer (submission, port 587).
	ModeStartTLS = "starttls"
	// ModeTLS speaks TLS from the first byte (submissions, port 465).
	ModeTLS = "tls"
	// ModeNone sends in clear; allowed only to a loopback host.
	ModeNone = "none"
)

// Config configures an SMTP target.
type Config struct {
	// Host is the mail server's name or IP. Required.
	Host string `mapstructure:"host"`
	// Port is the server port. Default 0: 587 for starttls, 465 for tls,
	// 25 for none.
	Port int `mapstructure:"port"`
	// Mode is the transport security: "starttls" (default), "tls" or
	// "none" (loopback hosts only: a relay on the same machine).
	Mode string `mapstructure:"mode"`
	// Username enables SMTP AUTH PLAIN (only over TLS, or in clear to
	// localhost).
	Username string `mapstructure:"username"`
	// Password is the AUTH password. Prefer PasswordFile.
	Password string `mapstructure:"password"`
	// PasswordFile holds the AUTH password.
	PasswordFile string `mapstructure:"password_file"`
	// From is the sender, e.g. "warren <warren@example.com>". Required.
	From string `mapstructure:"from"`
	// To lists the recipients. At least one is required.
	To []string `mapstructure:"to"`
	// HelloName is the name sent with EHLO. Default: this host's name.
	HelloName string `mapstructure:"hello_name"`
	// TLSServerName is the name the server certificate must carry.
	// Default: Host.
	TLSServerName string `mapstructure:"tls_server_name"`
	// CAFile is a PEM bundle of CAs to trust instead of the system roots
	// (for a private mail server).
	CAFile string `mapstructure:"ca_file"`
	// Timeout bounds one delivery (connect to QUIT). Default 30s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns mode starttls and a 30s timeout. Host, From and To
// must be set.
func DefaultConfig() Config {
	return Config{Mode: ModeStartTLS, Timeout: 30 * time.Second}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if c.Host == "" || strings.ContainsAny(c.Host, " /:\r\n") && net.ParseIP(c.Host) == nil {
		errs = append(errs, errors.New("host: missing or not a host name or IP"))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port: %d is outside 0..65535", c.Port))
	}
	switch c.Mode {
	case ModeStartTLS, ModeTLS:
	case ModeNone:
		if c.Host != "" && !isLoopback(c.Host) {
			errs = append(errs, fmt.Errorf("mode: none sends in clear and is allowed only to localhost or a loopback IP, not %q; use starttls or tls", c.Host))
		}
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not one of starttls, tls, none", c.Mode))
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("password and password_file: set only one"))
	}
	if (c.Password != "" || c.PasswordFile != "") && c.Username == "" {
		errs = append(errs, errors.New("username: missing; a password needs a username"))
	}
	if c.Username != "" && c.Password == "" && c.PasswordFile == "" {
		errs = append(errs, errors.New("password_file: missing; AUTH needs a password"))
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		errs = append(errs, fmt.Errorf("from: %q is not a mail address: %w", c.From, err))
	}
	if len(c.To) == 0 {
		errs = append(errs, errors.New("to: missing; list at least one recipient"))
	}
	for i, to := range c.To {
		if _, err := mail.ParseAddress(to); err != nil {
			errs = append(errs, fmt.Errorf("to[%d]: %q is not a mail address: %w", i, to, err))
		}
	}
	if strings.ContainsAny(c.HelloName, " \r\n") {
		errs = append(errs, errors.New("hello_name: must be a single host name"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// port returns the configured port or the mode's default.
func (c Config) port() int {
	if c.Port != 0 {
		return c.Port
	}
	switch c.Mode {
	case ModeTLS:
		return 465
	case ModeNone:
		return 25
	}
	return 587
}
