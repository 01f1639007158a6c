package discovery

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Timer profiles, after memberlist's default configurations.
const (
	// ProfileWAN suits members spread over the internet: probe every 5 s,
	// 3 s probe timeout, push/pull every 60 s. The default.
	ProfileWAN = "wan"
	// ProfileLAN suits one data centre: probe every 1 s, 500 ms timeout.
	ProfileLAN = "lan"
	// ProfileLocal suits one machine: probe every 1 s, 200 ms timeout.
	ProfileLocal = "local"
)

// DefaultPort is memberlist's customary port, used for UDP and TCP.
const DefaultPort = 7946

// Config configures a discovery node. The zero value is not usable; start
// from DefaultConfig.
type Config struct {
	// Enabled turns discovery on. It is also on whenever Seeds, KeyFiles or
	// Insecure is set, so an edge configured with only seeds and keys
	// gossips. Default false: with no configuration at all (the embedded
	// defaults, the README demo) no gossip port is opened.
	Enabled bool `mapstructure:"enabled"`
	// NodeName is the node's unique name in the gossip cluster: the edge id
	// for an edge, e.g. "hub" for the hub. A node that comes back with the
	// same name on another address replaces its old entry (see
	// Tuning.DeadNodeReclaimTime). Default: the host name.
	NodeName string `mapstructure:"node_name"`
	// BindAddr is the IP address gossip listens on, UDP and TCP. Default
	// "0.0.0.0".
	BindAddr string `mapstructure:"bind_addr"`
	// BindPort is the gossip port, UDP and TCP. 0 picks a free port (tests).
	// Default 7946.
	BindPort int `mapstructure:"bind_port"`
	// AdvertiseAddr is the IP other members should reach this node on.
	// Empty: the bound address, or a private address of this host when bound
	// to 0.0.0.0.
	AdvertiseAddr string `mapstructure:"advertise_addr"`
	// AdvertisePort is the port other members should reach this node on.
	// 0: the bound port.
	AdvertisePort int `mapstructure:"advertise_port"`
	// Seeds are members to join at start and to re-join while no hub (or no
	// other member) is known: "host:port", "host" (this node's bind port) or
	// a DNS name, resolved again at every attempt. Edges list the hub here.
	// Default: none.
	Seeds []string `mapstructure:"seeds"`
	// KeyFiles are gossip key files, one base64 key (16, 24 or 32 bytes) per
	// file. The first file's key encrypts; every listed key decrypts, which
	// is how keys are rotated. Required unless Insecure. Default: none.
	KeyFiles []string `mapstructure:"key_files"`
	// Label names the cluster; packets and streams carrying another label are
	// refused, and with encryption the label is authenticated. At most 255
	// bytes. Default "warren".
	Label string `mapstructure:"label"`
	// Insecure allows gossip without encryption when KeyFiles is empty. For
	// development only (the daemons' --insecure-gossip flag). Default false.
	Insecure bool `mapstructure:"insecure"`
	// Profile selects memberlist's timer defaults: "wan", "lan" or "local".
	// Default "wan".
	Profile string `mapstructure:"profile"`
	// Tuning overrides single timers of the profile; zero fields keep the
	// profile's value.
	Tuning Tuning `mapstructure:"tuning"`
	// RejoinInterval is how often seeds are joined again while no hub is
	// known or no other member is alive; the first re-joins come sooner
	// (1 s, 2 s, 4 s, ... up to it). A random ±20 % is added. Default 30 s.
	RejoinInterval time.Duration `mapstructure:"rejoin_interval"`
	// MetaUpdateInterval is the least time between two metadata broadcasts;
	// changes in between are coalesced into the next one. 0 broadcasts every
	// change. Default 2 s.
	MetaUpdateInterval time.Duration `mapstructure:"meta_update_interval"`
	// EventBuffer is the capacity of the Events channel. When it is full the
	// oldest event is dropped (and counted) so memberlist never waits on a
	// slow reader. Default 256.
	EventBuffer int `mapstructure:"event_buffer"`
	// ForgetAfter is how long a dead or departed member stays in Members.
	// Default 24 h.
	ForgetAfter time.Duration `mapstructure:"forget_after"`
	// AdvertiseNATS (hub only) are the NATS URLs the hub advertises to
	// edges, most preferred first, e.g. "tls://203.0.113.5:4222" behind a
	// port forward. Empty: tls://<nats.listen host>:<nats port>, where an
	// unspecified host (":4222", "0.0.0.0") means "the address you see my
	// gossip on". Default none.
	AdvertiseNATS []string `mapstructure:"advertise_nats"`
}

// Active reports whether discovery should run: Enabled, or any of Seeds,
// KeyFiles and Insecure set.
func (c Config) Active() bool {
	return c.Enabled || c.Insecure || len(c.Seeds) > 0 || len(c.KeyFiles) > 0
}

// Tuning holds memberlist timers that override the profile when non-zero.
// The meaning of each is memberlist's.
type Tuning struct {
	// GossipInterval is the time between gossip rounds (wan 500 ms).
	GossipInterval time.Duration `mapstructure:"gossip_interval"`
	// GossipNodes is the number of members gossiped to per round (wan 4).
	GossipNodes int `mapstructure:"gossip_nodes"`
	// ProbeInterval is the time between failure-detection probes (wan 5 s).
	ProbeInterval time.Duration `mapstructure:"probe_interval"`
	// ProbeTimeout is how long a probe waits for its ack (wan 3 s); it must
	// be shorter than ProbeInterval.
	ProbeTimeout time.Duration `mapstructure:"probe_timeout"`
	// PushPullInterval is the time between full state syncs (wan 60 s).
	PushPullInterval time.Duration `mapstructure:"push_pull_interval"`
	// TCPTimeout bounds dialing and each read/write of a stream (wan 30 s).
	TCPTimeout time.Duration `mapstructure:"tcp_timeout"`
	// SuspicionMult scales how long a suspect has to refute before it is
	// declared dead (wan 6).
	SuspicionMult int `mapstructure:"suspicion_mult"`
	// GossipToTheDeadTime is how long dead members are still gossiped to
	// (wan 60 s).
	GossipToTheDeadTime time.Duration `mapstructure:"gossip_to_the_dead_time"`
	// DeadNodeReclaimTime is how long after a member is declared dead another
	// address may take over its name (wan 30 s, lan 10 s, local 2 s). This
	// is what lets edges follow a hub that came back on a new address.
	DeadNodeReclaimTime time.Duration `mapstructure:"dead_node_reclaim_time"`
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:           host,
		BindAddr:           "0.0.0.0",
		BindPort:           DefaultPort,
		Label:              "warren",
		Profile:            ProfileWAN,
		RejoinInterval:     30 * time.Second,
		MetaUpdateInterval: 2 * time.Second,
		EventBuffer:        256,
		ForgetAfter:        24 * time.Hour,
	}
}

// Validate reports every invalid field, by its configuration key.
func (c Config) Validate() error { return c.ValidateKeys("") }

// ValidateKeys is Validate with every key named under prefix (e.g.
// "discovery." gives "discovery.key_files").
func (c Config) ValidateKeys(prefix string) error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, field, fmt.Sprintf(format, a...)))
	}
	if c.NodeName == "" {
		add("node_name", "missing; set a name unique in the cluster (the edge id for an edge)")
	} else if err := checkToken(c.NodeName, 128); err != nil {
		add("node_name", "%v", err)
	}
	if c.BindAddr == "" {
		add("bind_addr", "missing; e.g. 0.0.0.0")
	} else if net.ParseIP(c.BindAddr) == nil {
		add("bind_addr", "%q is not an IP address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		add("bind_port", "%d out of range 0-65535", c.BindPort)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		add("advertise_addr", "%q is not an IP address", c.AdvertiseAddr)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		add("advertise_port", "%d out of range 0-65535", c.AdvertisePort)
	}
	for i, s := range c.Seeds {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			add(fmt.Sprintf("seeds[%d]", i), "%q is not host[:port]", s)
		}
	}
	for i, f := range c.KeyFiles {
		if f == "" {
			add(fmt.Sprintf("key_files[%d]", i), "empty path")
		}
	}
	if len(c.KeyFiles) == 0 && !c.Insecure {
		errs = append(errs, fmt.Errorf("%skey_files: %w", prefix, ErrNoKey))
	}
	for i, u := range c.AdvertiseNATS {
		if err := checkNATSURL(u); err != nil {
			add(fmt.Sprintf("advertise_nats[%d]", i), "%v", err)
		}
	}
	if c.Label == "" {
		add("label", "missing; all members of one mesh share a label, e.g. warren")
	} else if len(c.Label) > memberlist.LabelMaxSize {
		add("label", "longer than %d bytes", memberlist.LabelMaxSize)
	}
	if _, ok := profiles[c.Profile]; !ok {
		add("profile", "%q unknown; want wan, lan or local", c.Profile)
	}
	if c.RejoinInterval <= 0 {
		add("rejoin_interval", "must be positive")
	}
	if c.MetaUpdateInterval < 0 {
		add("meta_update_interval", "must not be negative")
	}
	if c.EventBuffer < 1 {
		add("event_buffer", "must be at least 1")
	}
	if c.ForgetAfter <= 0 {
		add("forget_after", "must be positive")
	}
	for _, err := range c.Tuning.validate() {
		errs = append(errs, fmt.Errorf("%s%w", prefix, err))
	}
	if len(errs) == 0 {
		if t := c.timers(); t.ProbeTimeout >= t.ProbeInterval {
			add("tuning.probe_timeout", "%v must be shorter than probe_interval %v", t.ProbeTimeout, t.ProbeInterval)
		}
	}
	return errors.Join(errs...)
}

func (t Tuning) validate() []error {
	var errs []error
	neg := func(field string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("tuning.%s: must not be negative", field))
		}
	}
	neg("gossip_interval", t.GossipInterval)
	neg("probe_interval", t.ProbeInterval)
	neg("probe_timeout", t.ProbeTimeout)
	neg("push_pull_interval", t.PushPullInterval)
	neg("tcp_timeout", t.TCPTimeout)
	neg("gossip_to_the_dead_time", t.GossipToTheDeadTime)
	neg("dead_node_reclaim_time", t.DeadNodeReclaimTime)
	if t.GossipNodes < 0 {
		errs = append(errs, errors.New("tuning.gossip_nodes: must not be negative"))
	}
	if t.SuspicionMult < 0 {
		errs = append(errs, errors.New("tuning.suspicion_mult: must not be negative"))
	}
	return errs
}

// profile is a base memberlist configuration plus warren's own defaults.
type profile struct {
	base        func() *memberlist.Config
	reclaimTime time.Duration
}

var profiles = map[string]profile{
	ProfileWAN:   {memberlist.DefaultWANConfig, 30 * time.Second},
	ProfileLAN:   {memberlist.DefaultLANConfig, 10 * time.Second},
	ProfileLocal: {memberlist.DefaultLocalConfig, 2 * time.Second},
}

// timers returns the effective timers: the profile's, overridden by Tuning.
func (c Config) timers() Tuning {
	p := profiles[c.Profile]
	b := p.base()
	eff := Tuning{
		GossipInterval:      b.GossipInterval,
		GossipNodes:         b.GossipNodes,
		ProbeInterval:       b.ProbeInterval,
		ProbeTimeout:        b.ProbeTimeout,
		PushPullInterval:    b.PushPullInterval,
		TCPTimeout:          b.TCPTimeout,
		SuspicionMult:       b.SuspicionMult,
		GossipToTheDeadTime: b.GossipToTheDeadTime,
		DeadNodeReclaimTime: p.reclaimTime,
	}
	t := c.Tuning
	setD := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	setD(&eff.GossipInterval, t.GossipInterval)
	setD(&eff.ProbeInterval, t.ProbeInterval)
	setD(&eff.ProbeTimeout, t.ProbeTimeout)
	setD(&eff.PushPullInterval, t.PushPullInterval)
	setD(&eff.TCPTimeout, t.TCPTimeout)
	setD(&eff.GossipToTheDeadTime, t.GossipToTheDeadTime)
	setD(&eff.DeadNodeReclaimTime, t.DeadNodeReclaimTime)
	if t.GossipNodes > 0 {
		eff.GossipNodes = t.GossipNodes
	}
	if t.SuspicionMult > 0 {
		eff.SuspicionMult = t.SuspicionMult
	}
	return eff
}

// memberlistConfig builds memberlist's configuration, without transport,
// keyring, delegates or logger.
func (c Config) memberlistConfig() *memberlist.Config {
	mc := profiles[c.Profile].base()
	t := c.timers()
	mc.Name = c.NodeName
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	mc.Label = c.Label
	mc.GossipInterval = t.GossipInterval
	mc.GossipNodes = t.GossipNodes
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.PushPullInterval = t.PushPullInterval
	mc.TCPTimeout = t.TCPTimeout
	mc.SuspicionMult = t.SuspicionMult
	mc.GossipToTheDeadTime = t.GossipToTheDeadTime
	mc.DeadNodeReclaimTime = t.DeadNodeReclaimTime
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	return mc
}
