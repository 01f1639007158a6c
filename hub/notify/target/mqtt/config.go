package mqtt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Config configures an MQTT republish target.
type Config struct {
	// URL is the broker, e.g. "tcp://127.0.0.1:1883" or
	// "ssl://broker.example.org:8883" (schemes tcp, mqtt, ssl, tls, mqtts,
	// ws, wss). Credentials in it are redacted from errors. Empty: the
	// hub's own MQTT listener (the notifier passes it in; New refuses an
	// empty URL), so `mosquitto_sub` and mqttwarn clients of the hub get
	// the notifications.
	URL string `mapstructure:"url"`
	// ClientID is the MQTT client id. Default "warren-notify-" plus random
	// hex. No whitespace, '.', '*' or '>' (nats-server's MQTT gateway
	// refuses those).
	ClientID string `mapstructure:"client_id"`
	// Username is the MQTT user name.
	Username string `mapstructure:"username"`
	// Password is the MQTT password. Prefer PasswordFile.
	Password string `mapstructure:"password"`
	// PasswordFile holds the MQTT password.
	PasswordFile string `mapstructure:"password_file"`
	// Topic is the topic to publish to, a Go template over the message,
	// e.g. "warren/{{.Edge}}/{{.Topic}}". Required. A rendered topic
	// holding a wildcard (+ #), whitespace or a control character is
	// refused (not retryable).
	Topic string `mapstructure:"topic"`
	// QoS is the publish quality of service, 0, 1 (default) or 2.
	QoS int `mapstructure:"qos"`
	// Retained sets the retain flag.
	Retained bool `mapstructure:"retained"`
	// Content selects the payload: "body" (default), "payload" or "json".
	Content string `mapstructure:"content"`
	// CAFile is a PEM bundle of CAs to trust for ssl/tls brokers instead
	// of the system roots.
	CAFile string `mapstructure:"ca_file"`
	// TLSServerName overrides the name the broker certificate must carry.
	TLSServerName string `mapstructure:"tls_server_name"`
	// Timeout bounds waiting for the connection and for the publish to be
	// acknowledged. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
	// ReconnectMax caps the back-off between reconnect attempts. Default
	// 30s.
	ReconnectMax time.Duration `mapstructure:"reconnect_max"`
}

// DefaultConfig returns QoS 1, body content, 10s timeout and a 30s
// reconnect cap. Topic must be set; URL defaults to the hub's listener.
func DefaultConfig() Config {
	return Config{QoS: 1, Content: target.ContentBody, Timeout: 10 * time.Second, ReconnectMax: 30 * time.Second}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		// The hub's own listener; New checks that one was given.
	case err != nil || u.Host == "":
		errs = append(errs, errors.New("url: not a broker URL like tcp://host:1883"))
	default:
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			errs = append(errs, fmt.Errorf("url: scheme %q is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss", u.Scheme))
		}
	}
	if c.ClientID != "" && (strings.ContainsAny(c.ClientID, ".*>") || hasSpaceOrControl(c.ClientID)) {
		errs = append(errs, errors.New("client_id: must not contain whitespace, '.', '*' or '>'"))
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("password and password_file: set only one"))
	}
	if (c.Password != "" || c.PasswordFile != "") && c.Username == "" {
		errs = append(errs, errors.New("username: missing; a password needs a username"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: missing; set the topic to publish to"))
	} else if _, err := target.ParseTemplate("topic", c.Topic); err != nil {
		errs = append(errs, err)
	} else if !strings.Contains(c.Topic, "{{") {
		if err := checkTopic(c.Topic); err != nil {
			errs = append(errs, fmt.Errorf("topic: %w", err))
		}
	}
	if c.QoS < 0 || c.QoS > 2 {
		errs = append(errs, fmt.Errorf("qos: %d is not 0, 1 or 2", c.QoS))
	}
	if err := target.ValidateContent("content", c.Content); err != nil {
		errs = append(errs, err)
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	if c.ReconnectMax <= 0 {
		errs = append(errs, fmt.Errorf("reconnect_max: %s must be positive", c.ReconnectMax))
	}
	return errors.Join(errs...)
}
