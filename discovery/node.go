package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Lifecycle errors.
var (
	ErrNotStarted = errors.New("discovery node not started")
	ErrStarted    = errors.New("discovery node already started")
	ErrShutdown   = errors.New("discovery node shut down")
)

// Node is one member of the gossip cluster: a hub or an edge.
// All methods are safe for concurrent use.
type Node struct {
	cfg      Config
	timers   Tuning
	logger   *slog.Logger
	mlLogger *slog.Logger        // memberlist's own log lines
	keyring  *memberlist.Keyring // nil in insecure mode

	del      *delegate
	meta     atomic.Pointer[[]byte] // what memberlist advertises
	refusals refusalCounters
	traffic  trafficCounters

	joins, joinFailures, rejoins, metaUpdates atomic.Uint64
	left                                      atomic.Bool

	mlRef atomic.Pointer[memberlist.Memberlist] // for the broadcast queue

	mu        sync.Mutex // lifecycle
	ml        *memberlist.Memberlist
	started   bool
	shut      bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startedAt time.Time

	metaMu      sync.Mutex
	current     Meta
	pending     []byte // encoded metadata not yet broadcast; nil when none
	metaKick    chan struct{}
	lastMetaPub time.Time

	keyMu    sync.Mutex // serialises keyring changes
	keyFiles []string
}

// New checks cfg and meta and loads the gossip keys. It does not touch the
// network; Start does. meta.ID defaults to cfg.NodeName.
func New(cfg Config, meta Meta, logger *slog.Logger) (*Node, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("discovery config: %w", err)
	}
	mlLogger := logger.With("component", "memberlist")
	logger = logger.With("component", "discovery")
	n := &Node{
		cfg:      cfg,
		timers:   cfg.timers(),
		logger:   logger,
		mlLogger: mlLogger,
		metaKick: make(chan struct{}, 1),
		keyFiles: append([]string(nil), cfg.KeyFiles...),
	}
	meta, b, err := n.encode(meta)
	if err != nil {
		return nil, err
	}
	n.current = meta
	n.meta.Store(&b)
	if len(cfg.KeyFiles) > 0 {
		keys, err := loadKeys(cfg.KeyFiles)
		if err != nil {
			return nil, err
		}
		kr, err := memberlist.NewKeyring(keys[1:], keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		n.keyring = kr
		n.warnKeyFileModes(cfg.KeyFiles)
	}
	bcast := &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if ml := n.mlRef.Load(); ml != nil {
				return ml.NumMembers()
			}
			return 1
		},
		RetransmitMult: cfg.memberlistConfig().RetransmitMult,
	}
	n.del = newDelegate(cfg.NodeName, cfg.EventBuffer, &n.meta, bcast, logger)
	return n, nil
}

func (n *Node) warnKeyFileModes(files []string) {
	for _, f := range files {
		if keyFileWorldReadable(f) {
			n.logger.Warn("gossip key file is readable by group or others; chmod 0600", "file", f)
		}
	}
}

// encode fills in the id, checks what a node may advertise about itself and
// encodes it.
func (n *Node) encode(m Meta) (Meta, []byte, error) {
	if m.ID == "" {
		m.ID = n.cfg.NodeName
	}
	if m.Role == RoleHub && len(m.NATSURLs) == 0 {
		return m, nil, errors.New("discovery metadata: nats_urls: a hub must advertise at least one NATS URL")
	}
	b, dropped, err := EncodeMeta(m)
	if err != nil {
		return m, nil, fmt.Errorf("discovery metadata: %w", err)
	}
	if dropped > 0 {
		n.logger.Warn("metadata over 512 bytes; advertising fewer NATS URLs", "dropped", dropped, "kept", len(m.NATSURLs)-dropped)
	}
	return m, b, nil
}

// Start binds the gossip port (UDP and TCP), then joins the seeds in the
// background and keeps re-joining them while no hub or no other member is
// known. It returns once the node is listening; an unreachable seed is not an
// error. The background work stops when ctx is cancelled or on Shutdown.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.shut:
		return ErrShutdown
	case n.started:
		return ErrStarted
	}

	mlLogger := log.New(newLogWriter(n.mlLogger, n.logger, &n.refusals), "", 0)
	tr, err := newCountingTransport(n.cfg.BindAddr, n.cfg.BindPort, n.timers.TCPTimeout, mlLogger, &n.traffic)
	if err != nil {
		return err
	}
	mc := n.cfg.memberlistConfig()
	mc.Transport = tr
	mc.BindPort = tr.port()
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = tr.port()
	}
	if n.keyring != nil {
		mc.Keyring = n.keyring
	}
	mc.Logger = mlLogger
	mc.Delegate = n.del
	mc.Events = n.del
	mc.Ping = n.del
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown()
		if strings.Contains(err.Error(), "advertise") {
			return fmt.Errorf("start gossip: %w (set advertise_addr)", err)
		}
		return fmt.Errorf("start gossip: %w", err)
	}
	n.ml = ml
	n.mlRef.Store(ml)
	n.started = true
	n.startedAt = time.Now()

	local := ml.LocalNode()
	attrs := []any{"node", n.cfg.NodeName, "addr", local.Address(), "label", n.cfg.Label,
		"profile", n.cfg.Profile, "seeds", n.cfg.Seeds, "encrypted", n.keyring != nil}
	if n.keyring != nil {
		attrs = append(attrs, "primary_key", KeyFingerprint(n.keyring.GetPrimaryKey()))
	}
	n.logger.Info("gossip started", attrs...)
	if n.keyring == nil {
		n.logger.Warn("gossip is NOT encrypted (insecure mode): anyone who can reach the gossip port can join and read metadata; development only")
	}

	loopCtx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	n.wg.Add(2)
	go n.rejoinLoop(loopCtx)
	go n.metaLoop(loopCtx)
	return nil
}

// LocalAddr is the advertised gossip address, "ip:port"; empty before Start.
func (n *Node) LocalAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ml == nil {
		return ""
	}
	return n.ml.LocalNode().Address()
}

// Join contacts the given members (or the configured seeds when none are
// given) and merges their view of the cluster. It returns how many answered.
func (n *Node) Join(seeds ...string) (int, error) {
	ml, err := n.running()
	if err != nil {
		return 0, err
	}
	if len(seeds) == 0 {
		seeds = n.cfg.Seeds
	}
	if len(seeds) == 0 {
		return 0, errors.New("join: no seeds given or configured")
	}
	count, err := ml.Join(seeds)
	if err != nil {
		n.joinFailures.Add(1)
		// memberlist's multierror spans lines; keep the log line one line.
		attrs := []any{"seeds", seeds, "err", oneLine(err.Error())}
		if strings.Contains(strings.ToLower(err.Error()), "encrypt") {
			attrs = append(attrs, "hint", "the seed uses another gossip key (or encryption mode)")
		}
		n.logger.Warn("join failed", attrs...)
		return count, fmt.Errorf("join %v: %w", seeds, err)
	}
	n.joins.Add(1)
	n.logger.Debug("joined", "seeds", seeds, "answered", count)
	return count, nil
}

func (n *Node) running() (*memberlist.Memberlist, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.shut:
		return nil, ErrShutdown
	case !n.started:
		return nil, ErrNotStarted
	}
	return n.ml, nil
}

// needsRejoin: seeds are configured, the node has not left, and it knows no
// hub or no other alive member.
func (n *Node) needsRejoin() bool {
	if len(n.cfg.Seeds) == 0 || n.left.Load() {
		return false
	}
	_, hasHub, members := n.del.hubChoice()
	others := 0
	for _, m := range members {
		if !m.Self && m.State == StateAlive {
			others++
		}
	}
	return !hasHub || others == 0
}

func (n *Node) rejoinLoop(ctx context.Context) {
	defer n.wg.Done()
	if len(n.cfg.Seeds) > 0 {
		_, _ = n.Join()
	}
	// While re-joins are needed, they start fast and back off to
	// RejoinInterval: 1 s, 2 s, 4 s, ... (an edge started just before its
	// hub finds it within seconds, not a whole interval later).
	fast := time.Second
	for {
		d := n.cfg.RejoinInterval
		if n.needsRejoin() && fast < d {
			d = fast
			fast *= 2
		} else if !n.needsRejoin() {
			fast = time.Second
		}
		// ±20 % jitter so a fleet restarted together does not rejoin in step.
		d = d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-n.del.hubLost:
			// Start the fast re-joins now rather than at the end of a
			// whole interval.
			t.Stop()
			fast = time.Second
			continue
		}
		n.del.forget(n.cfg.ForgetAfter)
		if n.needsRejoin() {
			n.rejoins.Add(1)
			n.logger.Debug("re-joining seeds", "seeds", n.cfg.Seeds)
			_, _ = n.Join()
		}
	}
}

// UpdateMeta changes the advertised metadata. Before Start it only replaces
// what will be advertised (e.g. a hub's NATS URL once its port is known).
// Unchanged metadata is a no-op;
// changes are broadcast at most once per MetaUpdateInterval, the latest one
// winning. It fails only when m is invalid or does not fit in 512 bytes.
// m.ID defaults to the node name.
func (n *Node) UpdateMeta(m Meta) error {
	m, b, err := n.encode(m)
	if err != nil {
		return err
	}
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	n.current = m
	if n.mlRef.Load() == nil {
		// Not started: advertise it from the first packet on.
		n.meta.Store(&b)
		n.pending = nil
		return nil
	}
	if n.pending == nil && bytes.Equal(*n.meta.Load(), b) {
		return nil
	}
	n.pending = b
	select {
	case n.metaKick <- struct{}{}:
	default:
	}
	return nil
}

// Meta returns the metadata last given to New or UpdateMeta.
func (n *Node) Meta() Meta {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.current
}

func (n *Node) metaLoop(ctx context.Context) {
	defer n.wg.Done()
	timeout := min(max(2*n.timers.GossipInterval, 50*time.Millisecond), 2*time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.metaKick:
		}
		n.metaMu.Lock()
		wait := time.Until(n.lastMetaPub.Add(n.cfg.MetaUpdateInterval))
		n.metaMu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		n.metaMu.Lock()
		b := n.pending
		n.pending = nil
		n.lastMetaPub = time.Now()
		n.metaMu.Unlock()
		if b == nil || n.left.Load() {
			continue
		}
		n.meta.Store(&b)
		ml, err := n.running()
		if err != nil {
			return
		}
		n.metaUpdates.Add(1)
		if err := ml.UpdateNode(timeout); err != nil {
			// The update stays queued and goes out with the next gossip.
			n.logger.Debug("metadata broadcast not confirmed yet", "err", err)
		}
	}
}

// Events delivers membership changes, including this node's own join. The
// channel never blocks memberlist: when the reader falls behind by
// EventBuffer events the oldest is dropped (Stats.EventsDropped). It is never
// closed.
func (n *Node) Events() <-chan Event { return n.del.events }

// Members lists every member this node knows, itself included, sorted by
// name: alive ones and, for ForgetAfter, dead and departed ones.
func (n *Node) Members() []Member { return n.del.snapshot() }

// Hub returns the hub this node would dial now and why; false when no alive
// hub with valid metadata is known.
func (n *Node) Hub() (HubChoice, bool) {
	h, ok, _ := n.del.hubChoice()
	return h, ok
}

// HubURLs lists NATS URLs to dial, best first: the chosen hub's, then the
// other alive hubs'. Empty when no hub is known; callers then use their
// static hub URL.
func (n *Node) HubURLs() []string {
	h, ok, members := n.del.hubChoice()
	if !ok {
		return nil
	}
	return hubURLs(members, h)
}

// Leave tells the cluster this node is going away, so that others record it
// as left rather than failed, and waits up to timeout (default 5 s) for the
// messages to go out. The node stops re-joining and stops broadcasting
// metadata; call Shutdown afterwards.
func (n *Node) Leave(timeout time.Duration) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.shut:
		return ErrShutdown
	case !n.started:
		return ErrNotStarted
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	first := !n.left.Swap(true)
	if first && n.ml.NumMembers() > 1 {
		// The intent first, on its own: receivers must have it before the
		// departure itself reaches them.
		intent := newLeaveIntent(n.cfg.NodeName)
		n.del.bcast.QueueBroadcast(intent)
		// And straight to every member, so it does not depend on relays.
		for _, m := range n.del.snapshot() {
			if !m.Self && m.State == StateAlive {
				_ = n.ml.SendToAddress(memberlist.Address{Addr: m.Addr, Name: m.Name}, intent.msg)
			}
		}
		t := time.NewTimer(timeout / 2)
		select {
		case <-intent.done:
		case <-t.C:
			n.logger.Debug("leave intent not fully gossiped before the timeout")
		}
		t.Stop()
	}
	if err := n.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	// memberlist returns once one member has the departure; keep gossiping
	// a few rounds so it spreads even if that member goes away too.
	if first {
		t := time.NewTimer(min(4*n.timers.GossipInterval, max(time.Until(deadline), 0)))
		<-t.C
	}
	n.logger.Info("left the gossip cluster")
	return nil
}

// Shutdown stops gossip without a leave message (others will see this node
// fail) and stops the background work. Safe to call more than once.
func (n *Node) Shutdown() error {
	n.mu.Lock()
	if n.shut {
		n.mu.Unlock()
		return nil
	}
	n.shut = true
	ml, cancel := n.ml, n.cancel
	n.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	var err error
	if ml != nil {
		err = ml.Shutdown()
	}
	n.wg.Wait()
	if ml != nil {
		n.logger.Info("gossip stopped")
	}
	return err
}

// Stats are counters and gauges for metrics and status output.
type Stats struct {
	// Alive members, this node included; of them hubs and edges with valid
	// metadata.
	Alive, Hubs, Edges int
	// Dead and Left members still remembered.
	Dead, Left int
	// RefusedWrongKey counts gossip this node could not decrypt with any
	// installed key (a peer with a wrong key), or encrypted gossip sent to
	// this node while it runs without encryption.
	RefusedWrongKey uint64
	// RefusedUnencrypted counts unencrypted gossip sent to this encrypted node.
	RefusedUnencrypted uint64
	// RefusedLabel counts gossip carrying another cluster label.
	RefusedLabel uint64
	// Joins and JoinFailures count join attempts (the initial one, Join
	// calls and re-joins); Rejoins counts the periodic re-join attempts.
	Joins, JoinFailures, Rejoins uint64
	// MetaInvalid counts membership records with unusable metadata.
	MetaInvalid uint64
	// MetaUpdates counts metadata broadcasts by this node.
	MetaUpdates uint64
	// EventsDropped counts events dropped because Events' reader was slow.
	EventsDropped uint64
	// Bytes and packets on the wire (UDP datagrams plus TCP stream bytes),
	// after encryption.
	BytesSent, BytesReceived, PacketsSent, PacketsReceived uint64
	// StreamBytesSent and StreamBytesReceived are the part of the bytes
	// carried by TCP streams (joins, push/pull state syncs, TCP pings).
	StreamBytesSent, StreamBytesReceived uint64
	// EmptyStreams counts TCP connections to the gossip port closed before
	// sending a byte (port scans, health checks, peers' abandoned TCP pings).
	EmptyStreams uint64
	// HealthScore is memberlist's awareness score: 0 is healthy, higher
	// means this node is slow to answer probes.
	HealthScore int
	// Uptime since Start.
	Uptime time.Duration
}

// Refused is the total of refused gossip messages of any kind.
func (s Stats) Refused() uint64 { return s.RefusedWrongKey + s.RefusedUnencrypted + s.RefusedLabel }

// Stats returns the current counters.
func (n *Node) Stats() Stats {
	s := Stats{
		RefusedWrongKey:     n.refusals.key.Load(),
		RefusedUnencrypted:  n.refusals.plaintext.Load(),
		RefusedLabel:        n.refusals.label.Load(),
		Joins:               n.joins.Load(),
		JoinFailures:        n.joinFailures.Load(),
		Rejoins:             n.rejoins.Load(),
		MetaInvalid:         n.del.metaInvalid.Load(),
		MetaUpdates:         n.metaUpdates.Load(),
		EventsDropped:       n.del.dropped.Load(),
		BytesSent:           n.traffic.bytesSent.Load(),
		BytesReceived:       n.traffic.bytesReceived.Load(),
		PacketsSent:         n.traffic.packetsSent.Load(),
		PacketsReceived:     n.traffic.packetsReceived.Load(),
		EmptyStreams:        n.traffic.emptyStreams.Load(),
		StreamBytesSent:     n.traffic.streamBytesSent.Load(),
		StreamBytesReceived: n.traffic.streamBytesReceived.Load(),
	}
	for _, m := range n.del.snapshot() {
		switch m.State {
		case StateAlive:
			s.Alive++
			if m.MetaErr == "" && m.Meta.Role == RoleHub {
				s.Hubs++
			}
			if m.MetaErr == "" && m.Meta.Role == RoleEdge {
				s.Edges++
			}
		case StateDead:
			s.Dead++
		case StateLeft:
			s.Left++
		}
	}
	n.mu.Lock()
	if n.ml != nil && !n.shut {
		s.HealthScore = n.ml.GetHealthScore()
		s.Uptime = time.Since(n.startedAt)
	}
	n.mu.Unlock()
	return s
}

// KeyringStatus describes the installed gossip keys without revealing them.
type KeyringStatus struct {
	// Encrypted is false in insecure mode.
	Encrypted bool
	// Primary is the fingerprint of the key that encrypts.
	Primary string
	// Keys are the fingerprints of all installed keys, primary first.
	Keys []string
}

// Keyring returns the fingerprints of the installed keys (see KeyFingerprint).
func (n *Node) Keyring() KeyringStatus {
	if n.keyring == nil {
		return KeyringStatus{}
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	st := KeyringStatus{Encrypted: true, Primary: KeyFingerprint(n.keyring.GetPrimaryKey())}
	for _, k := range n.keyring.GetKeys() {
		st.Keys = append(st.Keys, KeyFingerprint(k))
	}
	return st
}

// InstallKey adds a key for decryption (step 1 of a rotation, on every node).
func (n *Node) InstallKey(key []byte) error {
	if n.keyring == nil {
		return ErrInsecure
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	if err := n.keyring.AddKey(key); err != nil {
		return fmt.Errorf("install gossip key: %w", err)
	}
	n.logger.Info("gossip key installed", "key", KeyFingerprint(key))
	return nil
}

// UseKey makes an installed key the one that encrypts (step 2, once every
// node has it).
func (n *Node) UseKey(key []byte) error {
	if n.keyring == nil {
		return ErrInsecure
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	if err := n.keyring.UseKey(key); err != nil {
		return fmt.Errorf("use gossip key %s: %w", KeyFingerprint(key), err)
	}
	n.logger.Info("gossip primary key changed", "key", KeyFingerprint(key))
	return nil
}

// RemoveKey removes a key that is not the primary (step 3, once every node
// encrypts with the new key).
func (n *Node) RemoveKey(key []byte) error {
	if n.keyring == nil {
		return ErrInsecure
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	if err := n.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("remove gossip key %s: %w", KeyFingerprint(key), err)
	}
	n.logger.Info("gossip key removed", "key", KeyFingerprint(key))
	return nil
}

// ReloadKeys reads the configured key files again and makes the keyring
// match them: the first file's key encrypts, keys no longer listed are
// removed. If any file is unreadable or invalid nothing changes.
func (n *Node) ReloadKeys() error {
	n.keyMu.Lock()
	files := append([]string(nil), n.keyFiles...)
	n.keyMu.Unlock()
	return n.SetKeyFiles(files)
}

// SetKeyFiles replaces the list of key files and applies it like ReloadKeys.
func (n *Node) SetKeyFiles(files []string) error {
	if n.keyring == nil {
		return ErrInsecure
	}
	if len(files) == 0 {
		return errors.New("key_files: empty; a running encrypted node cannot drop encryption")
	}
	keys, err := loadKeys(files)
	if err != nil {
		return err
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	for _, k := range keys {
		if err := n.keyring.AddKey(k); err != nil {
			return fmt.Errorf("install gossip key: %w", err)
		}
	}
	if err := n.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("use gossip key: %w", err)
	}
	// Copy: memberlist's RemoveKey rewrites the slice GetKeys returned.
	installed := append([][]byte(nil), n.keyring.GetKeys()...)
	removed := 0
	for _, have := range installed {
		keep := false
		for _, k := range keys {
			if bytes.Equal(have, k) {
				keep = true
				break
			}
		}
		if !keep {
			if err := n.keyring.RemoveKey(have); err != nil {
				return fmt.Errorf("remove gossip key: %w", err)
			}
			removed++
		}
	}
	n.keyFiles = append([]string(nil), files...)
	n.warnKeyFileModes(files)
	n.logger.Info("gossip keyring loaded from files", "primary_key", KeyFingerprint(keys[0]), "keys", len(keys), "removed", removed)
	return nil
}

var _ HubLocator = (*Node)(nil)

// oneLine folds memberlist's multi-line error texts ("1 error occurred:\n\t*
// failed to join ...") into one line.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n\t* ", " ")
	return strings.Join(strings.Fields(s), " ")
}
