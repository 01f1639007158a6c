package natspub

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Config configures a NATS publish target on the hub's own connection.
type Config struct {
	// Subject is the subject to publish to, a Go template over the
	// message, e.g. "notify.{{.Edge}}". Required. A rendered subject with
	// whitespace, an empty token, a wildcard token (* >) or a leading '$'
	// (system and JetStream API subjects) is refused, not retryable.
	Subject string `mapstructure:"subject"`
	// JetStream publishes through JetStream and waits for the stream's
	// PubAck, with Nats-Msg-Id set to the notification id so a retry is
	// stored once. A stream must capture Subject. Default false: a core
	// NATS publish (at most once).
	JetStream bool `mapstructure:"jetstream"`
	// Domain is the JetStream domain to publish into. Default "" (the
	// connection's own).
	Domain string `mapstructure:"domain"`
	// Content selects the data: "body" (default), "payload" or "json".
	Content string `mapstructure:"content"`
	// Timeout bounds waiting for the PubAck. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns core publish, body content and a 10s timeout.
// Subject must be set.
func DefaultConfig() Config {
	return Config{Content: target.ContentBody, Timeout: 10 * time.Second}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if c.Subject == "" {
		errs = append(errs, errors.New("subject: missing; set the subject to publish to"))
	} else if _, err := target.ParseTemplate("subject", c.Subject); err != nil {
		errs = append(errs, err)
	} else if !strings.Contains(c.Subject, "{{") {
		if err := checkSubject(c.Subject); err != nil {
			errs = append(errs, fmt.Errorf("subject: %w", err))
		}
	}
	if c.Domain != "" && (c.Domain != strings.TrimSpace(c.Domain) || strings.ContainsAny(c.Domain, ".*> \t")) {
		errs = append(errs, fmt.Errorf("domain: %q is not a JetStream domain name", c.Domain))
	}
	if c.Domain != "" && !c.JetStream {
		errs = append(errs, errors.New("domain: set only with jetstream: true"))
	}
	if err := target.ValidateContent("content", c.Content); err != nil {
		errs = append(errs, err)
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}
