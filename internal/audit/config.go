package audit

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config tunes the auditor. The zero value is not useful: start from
// DefaultConfig. Keys are snake_case for internal/cfgload (an "audit:"
// block of the edge's or hub's configuration).
type Config struct {
	// Enabled turns the audit on. The owner (edge or hub) checks it before
	// making an Auditor. Default true.
	Enabled bool `mapstructure:"enabled"`
	// QueueSize bounds the observations waiting to be processed (system
	// events, log lines, owner reports); more are dropped and counted in
	// warren_audit_dropped_total{stage="queue"}. Default 8192.
	QueueSize int `mapstructure:"queue_size"`
	// EmitQueue bounds the events waiting for the Sink; more are dropped
	// and counted (stage "emit"). Default 4096.
	EmitQueue int `mapstructure:"emit_queue"`
	// EmitTimeout bounds one Sink.Emit call. Default 5s.
	EmitTimeout time.Duration `mapstructure:"emit_timeout"`
	// PollInterval is how often the server's connection list is read for
	// message counts (per client, per subscription) and to reconcile the
	// connection table. Default 10s.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// TrafficInterval is how often a "traffic" event with the busiest
	// clients and topics of the interval is emitted (so the hub's dashboard
	// sees every edge's devices). 0 turns traffic events off. Default 1m.
	TrafficInterval time.Duration `mapstructure:"traffic_interval"`
	// TrafficTop is how many clients and topics a traffic event lists
	// (the rest are summed as "other"). Default 20.
	TrafficTop int `mapstructure:"traffic_top"`
	// LabelCap is the number of distinct client ids, and separately of
	// topics, that get their own series in the per-client and per-topic
	// message metrics; later ones are counted under "other". Default 200.
	LabelCap int `mapstructure:"label_cap"`
	// LabelIdle frees a client's or topic's series after this long without
	// messages, making room under LabelCap. Default 1h.
	LabelIdle time.Duration `mapstructure:"label_idle"`
	// Trusted are networks (CIDR) from which a connection on a non-TLS
	// listener is not an alert. Default loopback: 127.0.0.0/8, ::1/128.
	Trusted []string `mapstructure:"trusted"`
	// NeverBlock are networks (CIDR) the brute-force rule alerts on but
	// never blocks, so local tools and relays (the hub's MQTT TLS proxy
	// connects from 127.0.0.1) cannot be locked out. Default 127.0.0.1/32,
	// ::1/128.
	NeverBlock []string `mapstructure:"never_block"`
	// MinVersions are minimum versions as "name:version": "edge:0.4.0"
	// (warren edges), "go:1.50.0" (NATS clients by library language, as
	// they report it), "mosquitto:2.0.15" (followed brokers). A reported
	// version below its minimum raises an old_version alert; versions that
	// are not dotted numbers (e.g. "dev") are never below. Default none.
	MinVersions []string `mapstructure:"min_versions"`
	// AddrBruteForce is the failed-login rule per source address.
	// Default: 10 failures within 1m block the address for 15m.
	AddrBruteForce BruteForce `mapstructure:"addr_brute_force"`
	// UserBruteForce is the failed-login rule per user name. Default: 20
	// failures within 5m alert, without a block (a user block would let
	// anyone lock a legitimate user out).
	UserBruteForce BruteForce `mapstructure:"user_brute_force"`
	// DisconnectBlocked closes connections that log in successfully from
	// a blocked address (the auditor sees them in the server's connect
	// events). Default true.
	DisconnectBlocked bool `mapstructure:"disconnect_blocked"`
	// AlertCooldown is the minimum time between two alerts of one rule
	// about one key (address, user, edge, client); occurrences in between
	// are counted into the next alert. Default 15m.
	AlertCooldown time.Duration `mapstructure:"alert_cooldown"`
	// MaxTracked bounds each rule's table (addresses, users, keys); when
	// full, expired entries go first, then arbitrary ones. Default 10000.
	MaxTracked int `mapstructure:"max_tracked"`
	// InProcess audits the daemon's own in-process connections too.
	// Default false.
	InProcess bool `mapstructure:"in_process"`
	// Quiet lists event kinds that are counted and fed to the rules but
	// not emitted to the sink (e.g. "traffic", "connect"). Default none.
	Quiet []string `mapstructure:"quiet"`
	// TapSubjects are what the optional topic tap subscribes to in the
	// client account for per-topic publish counts. Default [">"].
	TapSubjects []string `mapstructure:"tap_subjects"`
	// TapSkip are subject prefixes the tap does not count: internal
	// subjects and warren's own stream subjects (counting "ev.x" as well
	// as "x" would count an ingested publish twice). Default "$",
	// "_INBOX.", "_WARREN.", "_R_.", "ev.", "hub.ev.", "edge.".
	TapSkip []string `mapstructure:"tap_skip"`
	// Mosquitto follows a mosquitto broker's log file (a broker kept
	// beside the daemon, e.g. during a migration) and audits its
	// connections like the embedded server's. Off unless log_file is set.
	Mosquitto MosquittoConfig `mapstructure:"mosquitto"`
}

// MosquittoConfig is the mosquitto log follower (see FollowMosquitto).
type MosquittoConfig struct {
	// LogFile is the broker's log file (log_dest file ...; the broker
	// needs connection_messages true, its default). Empty: off.
	LogFile string `mapstructure:"log_file"`
	// Listener labels its events and metrics. Default "mosquitto".
	Listener string `mapstructure:"listener"`
	// TLSPorts are the broker's listener ports that use TLS (the log does
	// not say); connections on other ports count as plain. Default none.
	TLSPorts []int `mapstructure:"tls_ports"`
	// FromStart reads what the file already holds first; default only
	// lines written after the daemon starts.
	FromStart bool `mapstructure:"from_start"`
}

// Options are the FollowMosquitto options of c.
func (c MosquittoConfig) Options() MosquittoOptions {
	return MosquittoOptions{Path: c.LogFile, Listener: c.Listener, TLSPorts: c.TLSPorts, FromStart: c.FromStart}
}

// BruteForce is a failed-login rule: Threshold failures within Window
// raise one alert and, when Block > 0, block the key for Block.
type BruteForce struct {
	// Threshold is the number of failures; 0 turns the rule off.
	Threshold int `mapstructure:"threshold"`
	// Window is the sliding window the failures are counted in.
	Window time.Duration `mapstructure:"window"`
	// Block is how long the key stays blocked after the alert (the block
	// lifts itself); 0 alerts without blocking.
	Block time.Duration `mapstructure:"block"`
}

// DefaultConfig is the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{
		Enabled:           true,
		QueueSize:         8192,
		EmitQueue:         4096,
		EmitTimeout:       5 * time.Second,
		PollInterval:      10 * time.Second,
		TrafficInterval:   time.Minute,
		TrafficTop:        20,
		LabelCap:          200,
		LabelIdle:         time.Hour,
		Trusted:           []string{"127.0.0.0/8", "::1/128"},
		NeverBlock:        []string{"127.0.0.1/32", "::1/128"},
		MinVersions:       []string{},
		AddrBruteForce:    BruteForce{Threshold: 10, Window: time.Minute, Block: 15 * time.Minute},
		UserBruteForce:    BruteForce{Threshold: 20, Window: 5 * time.Minute},
		DisconnectBlocked: true,
		AlertCooldown:     15 * time.Minute,
		MaxTracked:        10000,
		Quiet:             []string{},
		TapSubjects:       []string{">"},
		TapSkip:           []string{"$", "_INBOX.", "_WARREN.", "_R_.", "ev.", "hub.ev.", "edge."},
		Mosquitto:         MosquittoConfig{Listener: "mosquitto", TLSPorts: []int{}},
	}
}

// Validate checks every field and names the bad ones.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("audit.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	positive := func(key string, v int) {
		if v <= 0 {
			add(key, "must be positive, got %d", v)
		}
	}
	positive("queue_size", c.QueueSize)
	positive("emit_queue", c.EmitQueue)
	positive("traffic_top", c.TrafficTop)
	positive("label_cap", c.LabelCap)
	positive("max_tracked", c.MaxTracked)
	if c.EmitTimeout <= 0 {
		add("emit_timeout", "must be positive, got %s", c.EmitTimeout)
	}
	if c.PollInterval < 100*time.Millisecond {
		add("poll_interval", "must be at least 100ms, got %s", c.PollInterval)
	}
	if c.TrafficInterval < 0 {
		add("traffic_interval", "must not be negative (0 turns traffic events off), got %s", c.TrafficInterval)
	}
	if c.LabelIdle <= 0 {
		add("label_idle", "must be positive, got %s", c.LabelIdle)
	}
	if c.AlertCooldown < 0 {
		add("alert_cooldown", "must not be negative, got %s", c.AlertCooldown)
	}
	for key, nets := range map[string][]string{"trusted": c.Trusted, "never_block": c.NeverBlock} {
		for i, n := range nets {
			if _, err := parsePrefix(n); err != nil {
				add(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			}
		}
	}
	if _, err := parseMinVersions(c.MinVersions); err != nil {
		add("min_versions", "%v", err)
	}
	for key, b := range map[string]BruteForce{"addr_brute_force": c.AddrBruteForce, "user_brute_force": c.UserBruteForce} {
		if b.Threshold < 0 {
			add(key+".threshold", "must not be negative (0 turns the rule off), got %d", b.Threshold)
		}
		if b.Threshold > 0 && b.Window <= 0 {
			add(key+".window", "must be positive when threshold is set, got %s", b.Window)
		}
		if b.Block < 0 {
			add(key+".block", "must not be negative (0 alerts without blocking), got %s", b.Block)
		}
		if b.Threshold > 100000 {
			add(key+".threshold", "at most 100000, got %d", b.Threshold)
		}
	}
	for i, q := range c.Quiet {
		if !knownKind(Kind(q)) {
			add(fmt.Sprintf("quiet[%d]", i), "unknown kind %q (one of %s)", q, kindList())
		}
	}
	if len(c.TapSubjects) == 0 {
		add("tap_subjects", "must not be empty (use \">\")")
	}
	for i, s := range c.TapSubjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			add(fmt.Sprintf("tap_subjects[%d]", i), "%q is not a subject", s)
		}
	}
	for i, p := range c.Mosquitto.TLSPorts {
		if p <= 0 || p > 65535 {
			add(fmt.Sprintf("mosquitto.tls_ports[%d]", i), "%d is not a port", p)
		}
	}
	if c.Mosquitto.LogFile != "" && strings.TrimSpace(c.Mosquitto.Listener) == "" {
		add("mosquitto.listener", "must not be empty")
	}
	return errors.Join(errs...)
}

func knownKind(k Kind) bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// parsePrefix accepts a CIDR or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network or an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePrefixes(list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func inPrefixes(ps []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
