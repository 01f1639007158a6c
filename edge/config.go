package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/warren-mesh/warren/bridge"
	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

// Default values of Config; DefaultConfig uses them.
const (
	DefaultDataDir     = "/var/lib/warren/edge"
	DefaultAdminListen = "127.0.0.1:9135"
	DefaultUDPListen   = ":8035"
	DefaultMQTTListen  = "127.0.0.1:1883"
	DefaultMaxSize     = 2048
	DefaultStoreBytes  = 1 << 30
)

// Config is the edge's configuration. Start from DefaultConfig; the YAML keys
// are the mapstructure tags.
type Config struct {
	// ID names this edge in subjects, certificates and message ids: 1-63
	// characters of a-z, 0-9 and '-'. Default: the host name, lower-cased,
	// with other characters replaced by '-'.
	ID string `mapstructure:"id"`
	// DataDir holds the JetStream store (DataDir/jetstream) and the store
	// epoch. Default /var/lib/warren/edge.
	DataDir string `mapstructure:"data_dir"`
	// Log configures the daemon's log output (applied by cmd/edge).
	Log LogConfig `mapstructure:"log"`
	// Admin is the unauthenticated admin listener (/healthz, /metrics,
	// /status): loopback or unix:/path only. Default 127.0.0.1:9135; empty
	// disables it.
	Admin admin.Config `mapstructure:"admin"`
	// UDP configures the hare datagram listener.
	UDP UDPConfig `mapstructure:"udp"`
	// MQTT configures the embedded nats-server's MQTT gateway.
	MQTT MQTTConfig `mapstructure:"mqtt"`
	// NATS configures the optional NATS client listener.
	NATS NATSConfig `mapstructure:"nats"`
	// Ingest configures what enters the edge stream from MQTT and how events
	// are batched into it.
	Ingest IngestConfig `mapstructure:"ingest"`
	// Store bounds the edge stream (the backlog of unforwarded events).
	Store StoreConfig `mapstructure:"store"`
	// Hub configures the bridge to the hub (package bridge; its keys are
	// documented on bridge.Config). The edge runtime only carries it: the
	// caller (cmd/edge) starts the bridge. Empty hub.url: no hub link.
	Hub bridge.Config `mapstructure:"hub"`
	// Discovery finds the hub through gossip (package discovery; keys
	// documented on discovery.Config). Off unless discovery.enabled,
	// seeds, key_files or insecure is set; then every (re)connect of the
	// bridge dials where gossip sees the hub, falling back to hub.url.
	// node_name defaults to the edge id. Run by cmd/edge.
	Discovery discovery.Config `mapstructure:"discovery"`
	// Audit is the security audit of the embedded server and, with
	// audit.mosquitto.log_file, of a mosquitto broker beside it (package
	// internal/audit; keys documented on audit.Config). Its events are
	// stored in the EDGE stream under topic warren/audit/<kind> and reach
	// the hub like any event. With audit.enabled the edge's own
	// authenticator refuses MQTT/NATS logins from addresses the brute-force
	// rule blocks. Run by cmd/edge. Default on.
	Audit audit.Config `mapstructure:"audit"`
}

// DiscoveryConfig is Discovery with node_name defaulted to the edge id.
func (c Config) DiscoveryConfig() discovery.Config {
	d := c.Discovery
	if d.NodeName == "" {
		d.NodeName = c.ID
	}
	return d
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `mapstructure:"level"`
	// Format is text or json. Default text.
	Format string `mapstructure:"format"`
}

// UDPConfig configures the hare datagram listener.
type UDPConfig struct {
	// Listen is the UDP address, "host:port"; ":8035" listens on every
	// address. Empty disables UDP ingest. Default ":8035".
	Listen string `mapstructure:"listen"`
	// MaxSize is the largest datagram accepted, in bytes (64..65507); larger
	// ones are rejected as too_large. Default 2048.
	MaxSize int `mapstructure:"max_size"`
	// Topic is the MQTT topic hare events get (hared's topic); they are
	// stored on "ev." + subject(Topic). Default "logging/hare".
	Topic string `mapstructure:"topic"`
	// AllowUnsigned lists the source networks (CIDRs) unsigned v0 datagrams
	// are accepted from. Default 127.0.0.0/8 and ::1/128; empty refuses v0
	// from everywhere.
	AllowUnsigned []string `mapstructure:"allow_unsigned"`
	// RequireSigned refuses every unsigned v0 datagram, whatever
	// AllowUnsigned says. Requires KeysFile. Default false.
	RequireSigned bool `mapstructure:"require_signed"`
	// KeysFile is the key file of signed v1 datagrams: one
	// "<key-id> <64 hex digits>" line per host, mode 0600. Empty: no key is
	// known and every v1 datagram is rejected as unknown_key.
	KeysFile string `mapstructure:"keys_file"`
	// TSWindow is how far a v1 datagram's timestamp may be from the edge's
	// clock, either way (1s..1h). Nonces are remembered for twice this long.
	// Default 30s.
	TSWindow time.Duration `mapstructure:"ts_window"`
	// RateLimit limits datagrams per source address, before any decoding
	// or cryptography.
	RateLimit RateLimitConfig `mapstructure:"rate_limit"`
}

// RateLimitConfig is a per-source token bucket.
type RateLimitConfig struct {
	// Rate is the sustained datagrams per second allowed from one source
	// address. 0 disables the limit. Default 200.
	Rate float64 `mapstructure:"rate"`
	// Burst is how many datagrams one source may send at once above Rate.
	// Default 1000.
	Burst int `mapstructure:"burst"`
	// MaxSources bounds how many source addresses are tracked; when the
	// table is full, sources not in it share one bucket. Default 16384.
	MaxSources int `mapstructure:"max_sources"`
}

// MQTTConfig configures the MQTT gateway of the embedded nats-server.
type MQTTConfig struct {
	// Listen is the MQTT address, "host:port". Empty disables MQTT. When it
	// is not a loopback address, Users must be set. Default 127.0.0.1:1883.
	Listen string `mapstructure:"listen"`
	// Users are the MQTT (and NATS) users. Without users, clients on a
	// loopback listener connect without credentials. Default none.
	Users []UserConfig `mapstructure:"users"`
	// TLS, when CertFile and KeyFile are set, makes the MQTT listener speak
	// TLS only. Default off.
	TLS TLSConfig `mapstructure:"tls"`
}

// UserConfig is one MQTT/NATS user.
type UserConfig struct {
	// Name is the user name.
	Name string `mapstructure:"name"`
	// PasswordFile holds the password (one line). Never logged.
	PasswordFile string `mapstructure:"password_file"`
}

// TLSConfig names a server certificate and key.
type TLSConfig struct {
	// CertFile is the PEM certificate (chain). Default none.
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the PEM private key. Default none.
	KeyFile string `mapstructure:"key_file"`
}

// NATSConfig configures the NATS client listener.
type NATSConfig struct {
	// Listen is the NATS client address, "host:port". Empty (the default)
	// opens no NATS port: the edge's own clients connect in-process. The
	// listener uses MQTT.Users; without users it must be loopback.
	Listen string `mapstructure:"listen"`
}

// IngestConfig configures how events enter the edge stream.
type IngestConfig struct {
	// Filters are the MQTT topic filters whose publishes are copied into the
	// edge stream. Filters starting with '$' or covering the edge's own
	// subjects (ev, nonce, _INBOX) are refused. Default hare/# and logging/#.
	Filters []string `mapstructure:"filters"`
	// QueueSize is the number of decoded events that may wait for the
	// store; UDP datagrams arriving while it is full are rejected as
	// overload. Default 65536.
	QueueSize int `mapstructure:"queue_size"`
	// BatchSize is the most events published to JetStream before waiting for
	// their acknowledgements. Default 1024.
	BatchSize int `mapstructure:"batch_size"`
	// PublishTimeout bounds the wait for one JetStream acknowledgement;
	// events not acknowledged in time are rejected as store_error.
	// Default 5s.
	PublishTimeout time.Duration `mapstructure:"publish_timeout"`
}

// StoreConfig bounds the edge stream. When a bound is reached, new events
// are refused (store_full) and stored ones are kept.
type StoreConfig struct {
	// MaxBytes bounds the stream's size in bytes; 0 means no bound besides
	// the disk. Default 1 GiB.
	MaxBytes int64 `mapstructure:"max_bytes"`
	// MaxMsgs bounds the number of stored events; 0 means no bound.
	// Default 0.
	MaxMsgs int64 `mapstructure:"max_msgs"`
	// MaxAge, when set, deletes events older than this even if they were
	// never forwarded (counted as expired and logged). 0 (the default)
	// keeps events until the bridge has forwarded them.
	MaxAge time.Duration `mapstructure:"max_age"`
	// SyncAlways makes JetStream fsync every write before it acknowledges
	// it, so an accepted event survives a power loss or kernel crash, not
	// only a crash of the edge (JetStream's default syncs every 2 minutes;
	// the page cache covers a SIGKILL). It costs throughput: the disk's
	// fsync rate bounds the batches per second. Default false.
	SyncAlways bool `mapstructure:"sync_always"`
}

// DefaultConfig returns the configuration of an edge with no config file.
func DefaultConfig() Config {
	return Config{
		ID:      DefaultID(),
		DataDir: DefaultDataDir,
		Log:     LogConfig{Level: "info", Format: "text"},
		Admin:   admin.Config{Listen: DefaultAdminListen},
		UDP: UDPConfig{
			Listen:        DefaultUDPListen,
			MaxSize:       DefaultMaxSize,
			Topic:         event.HareTopic,
			AllowUnsigned: []string{"127.0.0.0/8", "::1/128"},
			TSWindow:      30 * time.Second,
			RateLimit:     RateLimitConfig{Rate: 200, Burst: 1000, MaxSources: 16384},
		},
		MQTT: MQTTConfig{Listen: DefaultMQTTListen, Users: []UserConfig{}},
		Ingest: IngestConfig{
			Filters:        []string{"hare/#", "logging/#"},
			QueueSize:      65536,
			BatchSize:      1024,
			PublishTimeout: 5 * time.Second,
		},
		Store: StoreConfig{MaxBytes: DefaultStoreBytes},
		Hub:   bridge.DefaultConfig(),
		Discovery: func() discovery.Config {
			d := discovery.DefaultConfig()
			d.NodeName = "" // the edge id
			return d
		}(),
		Audit: audit.DefaultConfig(),
	}
}

// DefaultID derives an edge id from the host name: lower-cased, characters
// outside [a-z0-9-] replaced by '-', leading '-' removed, at most 63
// characters; "edge" when nothing usable is left.
func DefaultID() string {
	h, _ := os.Hostname()
	return SanitizeID(h)
}

// SanitizeID turns any string into a valid edge id (see DefaultID).
func SanitizeID(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	id := strings.TrimLeft(b.String(), "-")
	if len(id) > 63 {
		id = id[:63]
	}
	if event.ValidID(id) != nil {
		return "edge"
	}
	return id
}

// reservedTokens are first subject tokens the edge uses itself; MQTT ingest
// filters must not cover them (they would feed the stream back into itself).
var reservedTokens = []string{"ev", nonceToken, "_INBOX"}

// Validate checks every field and returns all problems, each naming its key.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if err := event.ValidID(c.ID); err != nil {
		add("id", "%q %v", c.ID, err)
	}
	if c.DataDir == "" {
		add("data_dir", "missing; set a directory for the event store")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "%q: want text or json", c.Log.Format)
	}
	if err := c.Admin.Validate("admin.listen"); err != nil {
		errs = append(errs, err)
	}

	// udp
	if c.UDP.Listen != "" {
		if _, _, err := splitHostPort(c.UDP.Listen); err != nil {
			add("udp.listen", "%v", err)
		}
	}
	if c.UDP.MaxSize < 64 || c.UDP.MaxSize > 65507 {
		add("udp.max_size", "%d: want 64..65507 bytes", c.UDP.MaxSize)
	}
	if strings.HasPrefix(c.UDP.Topic, "$") {
		add("udp.topic", "%q: topics starting with '$' are reserved", c.UDP.Topic)
	} else if s, err := event.TopicToSubject(c.UDP.Topic); err != nil {
		add("udp.topic", "%v", err)
	} else if len(s) > 200 {
		add("udp.topic", "too long")
	}
	if _, err := parsePrefixes(c.UDP.AllowUnsigned); err != nil {
		add("udp.allow_unsigned", "%v", err)
	}
	if c.UDP.RequireSigned && c.UDP.KeysFile == "" {
		add("udp.require_signed", "needs udp.keys_file (no signed datagram could be accepted)")
	}
	if c.UDP.TSWindow < time.Second || c.UDP.TSWindow > time.Hour {
		add("udp.ts_window", "%s: want 1s..1h", c.UDP.TSWindow)
	}
	rl := c.UDP.RateLimit
	if rl.Rate < 0 {
		add("udp.rate_limit.rate", "%v: must not be negative (0 disables the limit)", rl.Rate)
	}
	if rl.Rate > 0 && rl.Burst < 1 {
		add("udp.rate_limit.burst", "%d: want at least 1 when a rate is set", rl.Burst)
	}
	if rl.MaxSources < 1 || rl.MaxSources > 1<<22 {
		add("udp.rate_limit.max_sources", "%d: want 1..%d", rl.MaxSources, 1<<22)
	}

	// mqtt
	if c.MQTT.Listen != "" {
		host, _, err := splitHostPort(c.MQTT.Listen)
		if err != nil {
			add("mqtt.listen", "%v", err)
		} else if !isLoopback(host) && len(c.MQTT.Users) == 0 {
			add("mqtt.listen", "%q is not a loopback address; set mqtt.users (with password_file) so no anonymous client can connect", c.MQTT.Listen)
		}
	}
	names := map[string]bool{}
	for i, u := range c.MQTT.Users {
		key := fmt.Sprintf("mqtt.users[%d]", i)
		switch {
		case u.Name == "":
			add(key+".name", "missing")
		case strings.ContainsAny(u.Name, " \t\r\n"):
			add(key+".name", "%q contains whitespace", u.Name)
		case u.Name == internalUser || u.Name == anonUser || u.Name == sysUser:
			add(key+".name", "%q is reserved", u.Name)
		case names[u.Name]:
			add(key+".name", "%q listed twice", u.Name)
		}
		names[u.Name] = true
		if u.PasswordFile == "" {
			add(key+".password_file", "missing")
		}
	}
	if (c.MQTT.TLS.CertFile == "") != (c.MQTT.TLS.KeyFile == "") {
		add("mqtt.tls", "set both cert_file and key_file, or neither")
	}

	// nats
	if c.NATS.Listen != "" {
		host, _, err := splitHostPort(c.NATS.Listen)
		if err != nil {
			add("nats.listen", "%v", err)
		} else if !isLoopback(host) && len(c.MQTT.Users) == 0 {
			add("nats.listen", "%q is not a loopback address; set mqtt.users so no anonymous client can connect", c.NATS.Listen)
		}
	}

	// ingest
	for i, f := range c.Ingest.Filters {
		if err := checkFilter(f); err != nil {
			add(fmt.Sprintf("ingest.filters[%d]", i), "%v", err)
		}
	}
	if c.Ingest.QueueSize < 1 || c.Ingest.QueueSize > 1<<22 {
		add("ingest.queue_size", "%d: want 1..%d", c.Ingest.QueueSize, 1<<22)
	}
	if c.Ingest.BatchSize < 1 || c.Ingest.BatchSize > 65536 {
		add("ingest.batch_size", "%d: want 1..65536", c.Ingest.BatchSize)
	}
	if c.Ingest.PublishTimeout < 100*time.Millisecond || c.Ingest.PublishTimeout > 5*time.Minute {
		add("ingest.publish_timeout", "%s: want 100ms..5m", c.Ingest.PublishTimeout)
	}

	// store
	if c.Store.MaxBytes < 0 {
		add("store.max_bytes", "%d: must not be negative (0 = no bound)", c.Store.MaxBytes)
	}
	if c.Store.MaxMsgs < 0 {
		add("store.max_msgs", "%d: must not be negative (0 = no bound)", c.Store.MaxMsgs)
	}
	if c.Store.MaxAge < 0 || c.Store.MaxAge > 0 && c.Store.MaxAge < time.Minute {
		add("store.max_age", "%s: want 0 (off) or at least 1m", c.Store.MaxAge)
	}

	// hub: the bridge's own validation names its keys (hub.url, ...)
	if err := c.Hub.Validate(); err != nil {
		errs = append(errs, err)
	}
	if d := c.DiscoveryConfig(); d.Active() {
		if err := d.ValidateKeys("discovery."); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Audit.Enabled {
		if err := c.Audit.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkFilter validates one MQTT ingest filter.
func checkFilter(f string) error {
	if strings.HasPrefix(f, "$") {
		return fmt.Errorf("%q: filters starting with '$' are reserved", f)
	}
	subs, err := event.FilterToSubjects(f)
	if err != nil {
		return err
	}
	for _, s := range subs {
		first, _, _ := strings.Cut(s, ".")
		for _, r := range reservedTokens {
			if first == r || first == "*" || first == ">" {
				return fmt.Errorf("%q covers the edge's own subjects (%s.>); use a narrower filter", f, r)
			}
		}
	}
	return nil
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for i, s := range cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("[%d] %q: want a CIDR like 10.0.0.0/8", i, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil || p < 0 || p > 65535 || fmt.Sprint(p) != port {
		return "", 0, fmt.Errorf("%q: bad port %q", addr, port)
	}
	return host, p, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
