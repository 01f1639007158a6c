// Package mqtt is the notifier target that republishes notifications to an
// MQTT broker with paho: one connection per target, reused and reconnected
// in the background; the topic is a template over the message.
package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// ErrNotConnected is returned (retryable) while the broker is unreachable.
var ErrNotConnected = errors.New("not connected to the broker")

// Notifier publishes notifications to an MQTT broker. Safe for concurrent
// use. Close it when the target is dropped (e.g. on reload).
type Notifier struct {
	cfg    Config
	topic  *target.Template
	client paho.Client
	red    *target.Redactor
	logger *slog.Logger

	connect sync.Once // the first Notify starts the connection
	started bool      // set under connect: Connect was called

	mu sync.Mutex
	up chan struct{} // closed while connected
}

// New returns an MQTT target. It connects with its first notification,
// not before, so building targets to check a configuration (`hub
// check-config`, the start-up check) dials nothing. logger receives
// connection state changes.
func New(cfg Config, logger *slog.Logger) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.URL == "" {
		return nil, errors.New("url: missing; set the broker URL, e.g. tcp://127.0.0.1:1883")
	}
	if logger == nil {
		return nil, errors.New("mqtt target: nil logger")
	}
	tpl, err := target.ParseTemplate("topic", cfg.Topic)
	if err != nil {
		return nil, err
	}
	password, err := target.Secret("password", cfg.Password, cfg.PasswordFile)
	if err != nil {
		return nil, err
	}
	clientID := cfg.ClientID
	if clientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		clientID = "warren-notify-" + hex.EncodeToString(b[:])
	}
	n := &Notifier{
		cfg:    cfg,
		topic:  tpl,
		red:    target.NewRedactor(append(target.URLSecrets(cfg.URL), password)...),
		logger: logger,
		up:     make(chan struct{}),
	}
	opts := paho.NewClientOptions().
		AddBroker(cfg.URL).
		SetClientID(clientID).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(min(time.Second, cfg.ReconnectMax)).
		SetMaxReconnectInterval(cfg.ReconnectMax).
		SetConnectTimeout(cfg.Timeout).
		SetWriteTimeout(cfg.Timeout).
		SetOnConnectHandler(func(paho.Client) { n.setUp(true) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			n.setUp(false)
			n.logger.Warn("mqtt target: connection lost", "broker", target.RedactURL(cfg.URL), "err", n.red.Error(err))
		})
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username)
		opts.SetPassword(password)
	}
	if cfg.CAFile != "" || cfg.TLSServerName != "" {
		tc := &tls.Config{ServerName: cfg.TLSServerName, MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pool, err := target.LoadCAPool(cfg.CAFile)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = pool
		}
		opts.SetTLSConfig(tc)
	}
	n.client = paho.NewClient(opts)
	return n, nil
}

func (n *Notifier) setUp(up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.up:
		if !up {
			n.up = make(chan struct{})
		}
	default:
		if up {
			close(n.up)
		}
	}
}

func (n *Notifier) upChan() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up
}

// Notify publishes m and, for QoS 1 and 2, waits for the broker's
// acknowledgement. Not being connected, a lost connection and timeouts are
// retryable; a topic that cannot be rendered or is not a valid publish
// topic is not.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	topic, err := n.topic.Execute(m)
	if err != nil {
		return false, err
	}
	if err := checkTopic(topic); err != nil {
		return false, fmt.Errorf("topic %q: %w", topic, err)
	}
	payload, err := target.Content(n.cfg.Content, m)
	if err != nil {
		return false, err
	}
	// With ConnectRetry the token completes only once connected (or on
	// Disconnect); nothing waits on it, the up channel says when.
	n.connect.Do(func() { n.started = true; n.client.Connect() })
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	select {
	case <-n.upChan():
	case <-ctx.Done():
		return true, fmt.Errorf("mqtt %s: %w", target.RedactURL(n.cfg.URL), ErrNotConnected)
	}
	tok := n.client.Publish(topic, byte(n.cfg.QoS), n.cfg.Retained, payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return true, fmt.Errorf("mqtt %s: publish to %q: no acknowledgement: %w", target.RedactURL(n.cfg.URL), topic, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return true, n.red.Error(fmt.Errorf("mqtt %s: publish to %q: %w", target.RedactURL(n.cfg.URL), topic, err))
	}
	return false, nil
}

// Close disconnects from the broker, waiting up to 250 ms for in-flight
// work.
func (n *Notifier) Close() error {
	n.connect.Do(func() {}) // a later Notify must not connect
	if n.started {          // read after Do: ordered by the Once
		n.client.Disconnect(250)
	}
	return nil
}

// checkTopic refuses topics MQTT forbids for publishing (wildcards, NUL,
// invalid UTF-8, empty, too long) and those with whitespace or control
// characters, which nats-server's MQTT gateway answers by closing the
// connection.
func checkTopic(t string) error {
	switch {
	case t == "":
		return errors.New("empty")
	case len(t) > 65535:
		return errors.New("longer than 65535 bytes")
	case !utf8.ValidString(t):
		return errors.New("not valid UTF-8")
	case strings.ContainsAny(t, "+#"):
		return errors.New("contains a wildcard (+ or #)")
	case hasSpaceOrControl(t):
		return errors.New("contains whitespace or a control character")
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}

var _ target.Notifier = (*Notifier)(nil)
