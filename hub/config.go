package hub

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

// Config is the hub's configuration. Keys are the mapstructure tags; the
// zero value is not useful, start from DefaultConfig.
type Config struct {
	// ServerName names this hub: the embedded nats-server's name and the
	// hub's id in status output. Letters, digits, '-', '_' and '.'.
	// Default "warren-hub".
	ServerName string `mapstructure:"server_name"`
	// DataDir holds the JetStream store (DataDir/nats) and, by default, the
	// PKI. Created with mode 0700 if missing. Default /var/lib/warren/hub.
	DataDir string `mapstructure:"data_dir"`
	// PKIDir is the PKI directory (see package hub/pki): ca.crt, hub.crt,
	// hub.key and edges/. Empty means DataDir/pki.
	PKIDir string `mapstructure:"pki_dir"`
	// PKISANs are extra DNS names or IP addresses put into the hub
	// certificate by `hub pki init` (the fixed name hub.warren is always
	// there). Default none.
	PKISANs []string `mapstructure:"pki_sans"`
	// DevPKI makes a development PKI in PKIDir at start when none exists
	// (CA, hub certificate for hub.warren, localhost and loopback), so the
	// hub runs with no setup at all. Production hubs run `hub pki init` and
	// may turn this off to fail loudly on a missing PKI. Default true.
	DevPKI bool `mapstructure:"dev_pki"`
	// NATS is the edge-facing listener.
	NATS NATSConfig `mapstructure:"nats"`
	// Stream is the hub event stream.
	Stream StreamConfig `mapstructure:"stream"`
	// Ingest tunes the service that stores edge events.
	Ingest IngestConfig `mapstructure:"ingest"`
	// MQTT is the MQTT gateway for local tools and remote MQTT clients.
	MQTT MQTTConfig `mapstructure:"mqtt"`
	// Republish copies stored events to MQTT topics.
	Republish RepublishConfig `mapstructure:"republish"`
	// Admin is the loopback admin listener (/healthz, /metrics, /status,
	// /edges). Default listen 127.0.0.1:9136.
	Admin admin.Config `mapstructure:"admin"`
	// Log configures the daemon's log output (used by cmd/hub).
	Log LogConfig `mapstructure:"log"`
	// Notify is the notifier's configuration, passed through untouched to
	// the notifier (see hub/notify). Default empty.
	Notify map[string]any `mapstructure:"notify"`
	// Discovery advertises the hub to edges through gossip and lists the
	// fleet from it (package discovery; keys documented on
	// discovery.Config). Off unless discovery.enabled, seeds, key_files or
	// insecure is set. node_name defaults to server_name; the advertised
	// NATS URL to tls://<nats.listen>, see discovery.advertise_nats.
	Discovery discovery.Config `mapstructure:"discovery"`
	// Audit is the security audit of the embedded server (package
	// internal/audit; keys documented on audit.Config): its events and
	// alerts are stored in the HUB stream under the hub's own edge-id
	// token (EventID), topic warren/audit/<kind>. Run by cmd/hub.
	// Default on.
	Audit audit.Config `mapstructure:"audit"`
	// Dashboard is the dashboard page on the admin listener (package
	// hub/dashboard). Run by cmd/hub.
	Dashboard DashboardConfig `mapstructure:"dashboard"`
}

// DashboardConfig is the dashboard page served by the admin listener.
type DashboardConfig struct {
	// Enabled serves the dashboard (needs admin.listen). Default true.
	Enabled bool `mapstructure:"enabled"`
	// Path is where it is mounted on the admin listener; it starts and
	// ends with "/". Default "/dashboard/".
	Path string `mapstructure:"path"`
	// Title heads the page. Default "warren".
	Title string `mapstructure:"title"`
	// Window is the timeline's default span. Default 6h.
	Window time.Duration `mapstructure:"window"`
	// Step is the timeline's default step. Default 5m.
	Step time.Duration `mapstructure:"step"`
	// Retention is how far back the dashboard reads the HUB stream at
	// start and how long it keeps its per-minute counts (in memory).
	// Default 24h.
	Retention time.Duration `mapstructure:"retention"`
	// Refresh is how often the page reloads its data. Default 15s.
	Refresh time.Duration `mapstructure:"refresh"`
}

// EventID is the edge-id token under which the hub stores its own events
// (its audit) in the HUB stream: hub.ev.<EventID>.<subject>. It is
// server_name in lower case with every character an edge id cannot hold
// turned into '-'; the authenticator refuses an edge with that id, so no
// edge can pass its events off as the hub's.
func (c Config) EventID() string {
	b := []byte(strings.ToLower(c.ServerName))
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
			b[i] = '-'
		}
	}
	id := strings.TrimLeft(string(b), "-")
	if len(id) > 63 {
		id = id[:63]
	}
	if id == "" {
		id = "hub"
	}
	return id
}

// DiscoveryConfig is Discovery with node_name defaulted to server_name.
func (c Config) DiscoveryConfig() discovery.Config {
	d := c.Discovery
	if d.NodeName == "" {
		d.NodeName = c.ServerName
	}
	return d
}

// NATSConfig is the edge-facing NATS listener.
type NATSConfig struct {
	// Listen is host:port of the NATS client listener edges connect to over
	// mutual TLS. Port 0 picks a free port (tests). Default ":4222".
	Listen string `mapstructure:"listen"`
	// TLSMinVersion is the lowest TLS version accepted from edges and MQTT
	// TLS clients: "1.3" or "1.2". Default "1.3".
	TLSMinVersion string `mapstructure:"tls_min_version"`
	// AllowUnlistedEdges accepts an edge whose certificate is signed by the
	// CA but is not the one in PKIDir/edges/<id>.crt (no such file),
	// flagging it in logs and status instead of refusing it. A certificate
	// superseded by a newer one for the same id is refused either way.
	// Default false.
	AllowUnlistedEdges bool `mapstructure:"allow_unlisted_edges"`
}

// StreamConfig is the hub event stream (event.HubStream).
type StreamConfig struct {
	// DuplicateWindow is how long Msg-Ids are remembered for
	// deduplication; it must cover the longest edge crash/restart you
	// expect. Default 24h.
	DuplicateWindow time.Duration `mapstructure:"duplicate_window"`
	// MaxBytes bounds the stream's size in bytes; 0 means unlimited (the
	// disk is the limit). Default 8 GiB.
	MaxBytes int64 `mapstructure:"max_bytes"`
	// MaxAge bounds how long events are kept; 0 means forever. Default 0.
	MaxAge time.Duration `mapstructure:"max_age"`
	// Discard says what happens at MaxBytes: "old" drops the oldest events,
	// "new" refuses new ones (edges then keep them in their backlog until
	// space is made). Default "old".
	Discard string `mapstructure:"discard"`
	// SyncAlways makes JetStream fsync every write (survives power loss, at
	// a throughput cost). Default false (fsync every 2 minutes; a crash of
	// the process loses nothing).
	SyncAlways bool `mapstructure:"sync_always"`
}

// IngestConfig tunes the ingest service.
type IngestConfig struct {
	// MaxInflight bounds the events being stored at once (all edges
	// together); more wait. Default 4096.
	MaxInflight int `mapstructure:"max_inflight"`
	// StoreTimeout is how long the ingest waits for the stream's
	// acknowledgement before answering the edge with a retryable error.
	// Default 5s.
	StoreTimeout time.Duration `mapstructure:"store_timeout"`
}

// MQTTConfig is the MQTT gateway.
type MQTTConfig struct {
	// Listen is the plain MQTT listener for local tools; it must be a
	// loopback address. Empty turns MQTT off (and TLSListen with it).
	// Port 0 picks a free port. Default "127.0.0.1:1883".
	Listen string `mapstructure:"listen"`
	// TLSListen is the MQTT-over-TLS listener for remote clients, which
	// must log in as one of Users. Empty turns it off. Default ":8883".
	TLSListen string `mapstructure:"tls_listen"`
	// AllowAnonymousLocal lets clients on the loopback listener connect
	// without a user name (as user "local"); with a user name they must
	// log in as one of Users. Default true.
	AllowAnonymousLocal bool `mapstructure:"allow_anonymous_local"`
	// Users are the MQTT logins. Default none.
	Users []MQTTUser `mapstructure:"users"`
}

// MQTTUser is one MQTT login.
type MQTTUser struct {
	// Name is the MQTT user name.
	Name string `mapstructure:"name"`
	// PasswordFile holds the password (first line; mode 0600 advised).
	PasswordFile string `mapstructure:"password_file"`
	// Publish lists MQTT topic filters the user may publish to. Empty
	// (default) means read-only.
	Publish []string `mapstructure:"publish"`
	// Subscribe lists MQTT topic filters the user may subscribe to. Empty
	// (default) means "#".
	Subscribe []string `mapstructure:"subscribe"`
}

// RepublishConfig copies every newly stored event to NATS/MQTT subject of
// its topic, so MQTT subscribers (mosquitto_sub, mqttwarn) see it.
type RepublishConfig struct {
	// Enabled turns republishing on. Default true.
	Enabled bool `mapstructure:"enabled"`
	// TopicPrefix is put in front of every republished topic, e.g.
	// "warren/" gives "warren/logging/hare". Default "" (hared's topics
	// unchanged).
	TopicPrefix string `mapstructure:"topic_prefix"`
}

// LogConfig is the log output of cmd/hub.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `mapstructure:"level"`
	// Format is text or json. Default text.
	Format string `mapstructure:"format"`
}

// DefaultConfig returns the configuration with every default set.
func DefaultConfig() Config {
	return Config{
		ServerName: "warren-hub",
		DataDir:    "/var/lib/warren/hub",
		DevPKI:     true,
		NATS: NATSConfig{
			Listen:        ":4222",
			TLSMinVersion: "1.3",
		},
		Stream: StreamConfig{
			DuplicateWindow: 24 * time.Hour,
			MaxBytes:        8 << 30,
			Discard:         "old",
		},
		Ingest: IngestConfig{
			MaxInflight:  4096,
			StoreTimeout: 5 * time.Second,
		},
		MQTT: MQTTConfig{
			Listen:              "127.0.0.1:1883",
			TLSListen:           ":8883",
			AllowAnonymousLocal: true,
		},
		Republish: RepublishConfig{Enabled: true},
		Admin:     admin.Config{Listen: "127.0.0.1:9136"},
		Log:       LogConfig{Level: "info", Format: "text"},
		Discovery: func() discovery.Config {
			d := discovery.DefaultConfig()
			d.NodeName = "" // server_name
			return d
		}(),
		Audit: audit.DefaultConfig(),
		Dashboard: DashboardConfig{Enabled: true, Path: "/dashboard/", Title: "warren", Window: 6 * time.Hour,
			Step: 5 * time.Minute, Retention: 24 * time.Hour, Refresh: 15 * time.Second},
	}
}

// PKIPath is the PKI directory in effect (PKIDir, or DataDir/pki).
func (c Config) PKIPath() string {
	if c.PKIDir != "" {
		return c.PKIDir
	}
	return filepath.Join(c.DataDir, "pki")
}

// Validate checks every field and names the key at fault.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, a...)...))
	}
	if c.ServerName == "" {
		add("server_name", "empty; set a name such as warren-hub")
	} else {
		for _, r := range c.ServerName {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				add("server_name", "%q: use letters, digits, '-', '_' and '.'", c.ServerName)
				break
			}
		}
	}
	if c.DataDir == "" {
		add("data_dir", "empty; set a directory for the event store")
	}
	for _, s := range c.PKISANs {
		if net.ParseIP(s) == nil && !validDNSName(s) {
			add("pki_sans", "%q is neither an IP address nor a DNS name", s)
		}
	}
	if _, err := listenPort("nats.listen", c.NATS.Listen, false); err != nil {
		errs = append(errs, err)
	}
	if _, err := pki.ParseTLSVersion(c.NATS.TLSMinVersion); err != nil {
		add("nats.tls_min_version", "%v", err)
	}
	if c.Stream.DuplicateWindow <= 0 {
		add("stream.duplicate_window", "must be positive (e.g. 24h)")
	}
	if c.Stream.MaxBytes < 0 {
		add("stream.max_bytes", "must be 0 (unlimited) or positive")
	}
	if c.Stream.MaxAge < 0 {
		add("stream.max_age", "must be 0 (forever) or positive")
	}
	if c.Stream.MaxAge > 0 && c.Stream.DuplicateWindow > c.Stream.MaxAge {
		add("stream.duplicate_window", "%s is longer than stream.max_age %s", c.Stream.DuplicateWindow, c.Stream.MaxAge)
	}
	if c.Stream.Discard != "old" && c.Stream.Discard != "new" {
		add("stream.discard", "%q: want old or new", c.Stream.Discard)
	}
	if c.Ingest.MaxInflight < 1 {
		add("ingest.max_inflight", "must be at least 1")
	}
	if c.Ingest.StoreTimeout <= 0 {
		add("ingest.store_timeout", "must be positive")
	}
	if c.MQTT.Listen != "" {
		if _, err := listenPort("mqtt.listen", c.MQTT.Listen, true); err != nil {
			errs = append(errs, err)
		}
	} else if c.MQTT.TLSListen != "" {
		add("mqtt.tls_listen", "needs mqtt.listen (the TLS listener relays to it); set both or neither")
	}
	if c.MQTT.TLSListen != "" {
		if _, err := listenPort("mqtt.tls_listen", c.MQTT.TLSListen, false); err != nil {
			errs = append(errs, err)
		}
	}
	seen := map[string]bool{}
	for i, u := range c.MQTT.Users {
		key := fmt.Sprintf("mqtt.users[%d]", i)
		switch {
		case u.Name == "":
			add(key+".name", "empty")
		case u.Name == localUser:
			add(key+".name", "%q is reserved for anonymous local clients", u.Name)
		case strings.ContainsAny(u.Name, " \t\r\n"):
			add(key+".name", "%q contains whitespace", u.Name)
		case seen[u.Name]:
			add(key+".name", "%q is listed twice", u.Name)
		}
		seen[u.Name] = true
		if u.PasswordFile == "" {
			add(key+".password_file", "empty; every MQTT user needs a password file")
		}
		for _, f := range u.Publish {
			if _, err := event.FilterToSubjects(f); err != nil {
				add(key+".publish", "%v", err)
			}
		}
		for _, f := range u.Subscribe {
			if _, err := event.FilterToSubjects(f); err != nil {
				add(key+".subscribe", "%v", err)
			}
		}
	}
	if p := c.Republish.TopicPrefix; p != "" {
		if _, err := event.TopicToSubject(p + "x"); err != nil {
			add("republish.topic_prefix", "%v", err)
		}
		if strings.HasPrefix(p, "$") {
			add("republish.topic_prefix", "%q: topics starting with '$' are reserved", p)
		}
	}
	if err := c.Admin.Validate("admin.listen"); err != nil {
		errs = append(errs, err)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "%q: want text or json", c.Log.Format)
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
	if d := c.Dashboard; d.Enabled {
		if !strings.HasPrefix(d.Path, "/") || !strings.HasSuffix(d.Path, "/") || strings.ContainsAny(d.Path, " {}") {
			add("dashboard.path", "%q: must start and end with '/' (e.g. /dashboard/)", d.Path)
		}
		switch {
		case d.Step <= 0 || d.Window <= 0:
			add("dashboard.window", "window %s and step %s must be positive", d.Window, d.Step)
		case d.Window/d.Step > 2000:
			add("dashboard.step", "%s over a %s window makes more than 2000 steps", d.Step, d.Window)
		}
		if d.Retention < time.Minute || d.Retention > 30*24*time.Hour {
			add("dashboard.retention", "%s: from 1m to 720h", d.Retention)
		}
		if d.Refresh < time.Second {
			add("dashboard.refresh", "%s: at least 1s", d.Refresh)
		}
	}
	return errors.Join(errs...)
}

// listenPort checks a host:port listen address and returns the port.
func listenPort(key, addr string, loopback bool) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: %w", key, addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("%s: %q: bad port", key, addr)
	}
	if loopback {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return 0, fmt.Errorf("%s: %q is not a loopback address; the plain MQTT listener is for local tools only (remote clients use mqtt.tls_listen)", key, addr)
		}
	}
	return p, nil
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
