// Package edge is the edge runtime: an embedded nats-server with JetStream
// and its MQTT gateway, the UDP listener that replaces hared (hare datagrams
// v0 and v1), the MQTT ingest that copies local publishes into the edge
// stream, and the edge's status and metrics.
//
// Every accepted event is in the EDGE stream (file store) before it is
// counted: the publisher waits for JetStream's acknowledgement. The bridge
// (package bridge) forwards the stream to the hub through InProcessConn or
// JetStream; the edge runtime does not start it.
//
// Lifecycle: New validates; Start brings everything up and returns when the
// edge accepts events; Close stops it (draining queued events into the
// store first). Run does all three around a context.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/cfgload"
	"github.com/warren-mesh/warren/internal/natsembed"
	"github.com/warren-mesh/warren/internal/wire"
)

// Names of the embedded server's accounts and users.
const (
	// Account holds every edge user, stream and the MQTT gateway's state.
	Account = "WARREN"
	// internalUser is the edge's own in-process user (random password per
	// start, in-process connections only).
	internalUser = "warren-internal"
	// anonUser is what credential-less MQTT clients (and NATS clients, on a
	// loopback NATS listener without users) become.
	anonUser = "anonymous"
	sysUser  = "sys"
)

// Edge is a running (or startable) edge.
type Edge struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	counters *counters
	started  time.Time

	internalPass string
	opts         *server.Options
	srv          *server.Server
	nc           *nats.Conn // publisher connection
	ncSub        *nats.Conn // MQTT ingest subscriber connection
	ncAPI        *nats.Conn // stream management, status and JetStream()
	pubJS        jetstream.JetStream
	js           jetstream.JetStream
	edgeStream   jetstream.Stream
	epoch        string

	core       *datagramCore
	keyring    atomic.Pointer[wire.Keyring] // udp.keys_file; replaced by ReloadKeys
	replaySize atomic.Int64
	udp        *net.UDPConn
	adminSrv   *admin.Server

	queue      chan record
	stopping   chan struct{} // closed when Close begins: producers stop waiting
	finish     chan struct{} // closed when producers are gone: publisher drains and exits
	pubDone    chan struct{}
	readDone   chan struct{}
	pubRunning bool
	bgCancel   context.CancelFunc
	bgWG       sync.WaitGroup

	subsMu       sync.Mutex
	mqttSubs     []*nats.Subscription
	mqttDropSeen uint64

	linkStatus atomic.Pointer[func() any]
	hooks      auditHooks // see audit.go
	sysPass    string
	auth       *edgeAuth                  // nil unless audit.enabled
	discStatus atomic.Pointer[func() any] // discovery view, see SetDiscoveryStatus
	storeFull  rateLog

	// test hooks
	publishHook   func() // called before each batch is published
	skipNonceLoad bool   // start with an empty replay cache

	mu      sync.Mutex
	state   int // 0 new, 1 started, 2 closed
	closeMu sync.Once
}

// New checks cfg and returns an edge ready to Start. logger may be nil
// (discard); reg may be nil (a private registry is made).
func New(cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e := &Edge{
		cfg:      cfg,
		log:      logger,
		reg:      reg,
		counters: newCounters(),
		queue:    make(chan record, cfg.Ingest.QueueSize),
		stopping: make(chan struct{}),
		finish:   make(chan struct{}),
		pubDone:  make(chan struct{}),
		readDone: make(chan struct{}),
	}
	e.storeFull.every = 10 * time.Second
	if err := reg.Register(newCollector(e)); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return e, nil
}

// Run starts the edge, waits for ctx to end and closes it.
func (e *Edge) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return e.Close()
}

// Start brings the edge up: embedded server, streams, publisher, MQTT
// ingest, UDP listener, admin listener. On error everything started is
// stopped again.
func (e *Edge) Start(ctx context.Context) (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 0 {
		return errors.New("edge: Start called twice")
	}
	e.state = 1
	e.started = time.Now()
	defer func() {
		if err != nil {
			e.shutdown()
		}
	}()

	if err := os.MkdirAll(e.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	keys, err := e.loadKeys()
	if err != nil {
		return err
	}
	opts, err := e.serverOptions()
	if err != nil {
		return err
	}
	// A taken port would only show as a readiness timeout: check first.
	for key, addr := range map[string]string{"mqtt.listen": e.cfg.MQTT.Listen, "nats.listen": e.cfg.NATS.Listen} {
		if err := probeListen(addr); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	e.opts = opts
	nlog := slog.New(quietNATS{e.log.Handler()}).With("component", "nats")
	// The hook passes the server's lines to the audit (see SetNATSLogHook).
	e.srv, err = natsembed.StartLogged(opts, &natsembed.Logger{L: nlog, Hook: e.natsLogHook}, 60*time.Second)
	if err != nil {
		return err
	}
	if e.auth != nil {
		if err := e.auth.bind(e.srv); err != nil {
			return err
		}
	}
	if e.nc, err = e.InProcessConn("warren-edge-publisher"); err != nil {
		return err
	}
	if e.ncSub, err = e.InProcessConn("warren-edge-mqtt-ingest"); err != nil {
		return err
	}
	if e.ncAPI, err = e.InProcessConn("warren-edge"); err != nil {
		return err
	}
	e.pubJS, err = jetstream.New(e.nc,
		jetstream.WithPublishAsyncTimeout(e.cfg.Ingest.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(2*e.cfg.Ingest.BatchSize+16),
	)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if e.js, err = jetstream.New(e.ncAPI); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := e.setupStreams(ctx); err != nil {
		return err
	}

	prefixes, _ := parsePrefixes(e.cfg.UDP.AllowUnsigned) // validated
	e.core = &datagramCore{
		maxSize:       e.cfg.UDP.MaxSize,
		allow:         prefixes,
		requireSigned: e.cfg.UDP.RequireSigned,
		window:        e.cfg.UDP.TSWindow,
		limiter:       newLimiter(e.cfg.UDP.RateLimit),
		replay:        newReplayCache(e.cfg.UDP.TSWindow, maxReplayEntries),
	}
	if keys != nil {
		e.keyring.Store(&keys)
		e.core.keys = e.lookupKey
	}
	if !e.skipNonceLoad {
		if err := e.loadNonces(ctx); err != nil {
			return err
		}
	}

	bg, cancel := context.WithCancel(context.Background())
	e.bgCancel = cancel
	e.pubRunning = true
	go e.publishLoop()
	if err := e.startMQTTIngest(); err != nil {
		return err
	}
	if e.cfg.UDP.Listen != "" {
		if err := e.startUDP(); err != nil {
			return err
		}
	} else {
		close(e.readDone)
	}
	if e.cfg.Store.MaxAge > 0 {
		e.bgWG.Add(1)
		go e.expireLoop(bg)
	}
	if e.cfg.Admin.Listen != "" {
		e.adminSrv, err = admin.Listen(e.cfg.Admin, admin.Handlers{
			Registry: e.reg,
			Health:   e.Health,
			Status:   func() any { return e.Status() },
		}, e.log.With("component", "admin"))
		if err != nil {
			return err
		}
	}
	e.log.Info("edge started", "id", e.cfg.ID, "epoch", e.epoch,
		"udp", e.UDPAddr(), "mqtt", e.MQTTAddr(), "nats", e.NATSURL(), "admin", e.AdminAddr(),
		"startup", time.Since(e.started).Round(time.Millisecond))
	return nil
}

// Close stops the edge: listeners first, then the queued events are stored,
// then the server stops. It is safe to call more than once.
func (e *Edge) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == 2 {
		return nil
	}
	e.state = 2
	e.shutdown()
	e.log.Info("edge stopped", "id", e.cfg.ID)
	return nil
}

// shutdown undoes whatever Start did; callers hold e.mu.
func (e *Edge) shutdown() {
	e.closeMu.Do(func() {
		if e.adminSrv != nil {
			_ = e.adminSrv.Close()
		}
		close(e.stopping)
		if e.udp != nil {
			_ = e.udp.Close()
			<-e.readDone
		}
		if e.ncSub != nil {
			e.drainSub()
		}
		if e.bgCancel != nil {
			e.bgCancel()
			e.bgWG.Wait()
		}
		close(e.finish)
		if e.pubRunning {
			<-e.pubDone
		}
		if e.nc != nil {
			e.nc.Close()
		}
		if e.ncAPI != nil {
			e.ncAPI.Close()
		}
		natsembed.Stop(e.srv)
	})
}

// drainSub stops the MQTT ingest connection, letting messages already
// received reach the queue.
func (e *Edge) drainSub() {
	closed := make(chan struct{})
	e.ncSub.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := e.ncSub.Drain(); err != nil {
		e.ncSub.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		e.ncSub.Close()
	}
}

// loadKeys reads udp.keys_file; nil without one.
func (e *Edge) loadKeys() (wire.Keyring, error) {
	path := e.cfg.UDP.KeysFile
	if path == "" {
		return nil, nil
	}
	keys, err := wire.LoadKeys(path)
	if err != nil {
		return nil, fmt.Errorf("udp.keys_file: %w", err)
	}
	if err := wire.CheckKeyFileMode(path); err != nil {
		e.log.Warn("key file mode", "key", "udp.keys_file", "err", err)
	}
	return wire.NewKeyring(keys), nil
}

// serverOptions builds the embedded server's options: one JetStream
// account for everything, users for the edge itself, MQTT/NATS clients.
func (e *Edge) serverOptions() (*server.Options, error) {
	c := e.cfg
	opts := &server.Options{}
	// Accounts made in code lack JetStream (PITFALLS); parse them instead.
	if err := opts.ProcessConfigString(`accounts { ` + Account + ` { jetstream: enabled }, SYS {} }` + "\nsystem_account: SYS\n"); err != nil {
		return nil, fmt.Errorf("nats accounts: %w", err)
	}
	var acc, sysAcc *server.Account
	for _, a := range opts.Accounts {
		switch a.Name {
		case Account:
			acc = a
		case "SYS":
			sysAcc = a
		}
	}
	if acc == nil || sysAcc == nil {
		return nil, errors.New("nats accounts: account missing after parse")
	}
	opts.ServerName = c.ID
	opts.JetStream = true
	opts.JetStreamDomain = jsDomain
	opts.StoreDir = c.DataDir
	opts.SyncAlways = c.Store.SyncAlways
	opts.MaxPayload = 1 << 20

	pass := make([]byte, 24)
	if _, err := rand.Read(pass); err != nil {
		return nil, err
	}
	e.internalPass = hex.EncodeToString(pass)
	if _, err := rand.Read(pass); err != nil {
		return nil, err
	}
	e.sysPass = hex.EncodeToString(pass)
	clientDeny := &server.Permissions{Publish: &server.SubjectPermission{
		Deny: clientPublishDeny,
	}}
	users := []*server.User{{
		Username:               internalUser,
		Password:               e.internalPass,
		Account:                acc,
		AllowedConnectionTypes: map[string]struct{}{"IN_PROCESS": {}},
	}, {
		// the audit's system events
		Username:               sysUser,
		Password:               e.sysPass,
		Account:                sysAcc,
		AllowedConnectionTypes: map[string]struct{}{"IN_PROCESS": {}},
	}}
	for i, u := range c.MQTT.Users {
		pw, err := cfgload.ReadSecret(fmt.Sprintf("mqtt.users[%d].password_file", i), u.PasswordFile)
		if err != nil {
			return nil, err
		}
		users = append(users, &server.User{
			Username: u.Name, Password: pw, Account: acc, Permissions: clientDeny,
			AllowedConnectionTypes: map[string]struct{}{"MQTT": {}, "STANDARD": {}},
		})
	}
	anon := len(c.MQTT.Users) == 0
	if anon {
		types := map[string]struct{}{"MQTT": {}}
		if c.NATS.Listen != "" {
			types["STANDARD"] = struct{}{}
		}
		users = append(users, &server.User{Username: anonUser, Account: acc, Permissions: clientDeny, AllowedConnectionTypes: types})
	}
	opts.Users = users
	if c.Audit.Enabled {
		// The edge authenticates clients itself, so the audit's brute-force
		// block can refuse a login before its password is checked.
		e.auth = newEdgeAuth(e, users, anon)
		opts.CustomClientAuthentication = e.auth
	}

	if c.NATS.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, _ := splitHostPort(c.NATS.Listen)
		opts.Host, opts.Port = host, port
		if port == 0 {
			opts.Port = server.RANDOM_PORT
		}
		if anon {
			opts.NoAuthUser = anonUser
		}
	}
	if c.MQTT.Listen != "" {
		host, port, _ := splitHostPort(c.MQTT.Listen)
		opts.MQTT.Host, opts.MQTT.Port = host, port
		if port == 0 {
			opts.MQTT.Port = server.RANDOM_PORT
		}
		if anon {
			opts.MQTT.NoAuthUser = anonUser
		}
		if c.MQTT.TLS.CertFile != "" {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.MQTT.TLS.CertFile, KeyFile: c.MQTT.TLS.KeyFile})
			if err != nil {
				return nil, fmt.Errorf("mqtt.tls: %w", err)
			}
			opts.MQTT.TLSConfig = tc
			opts.MQTT.TLSTimeout = 5
		}
	}
	return opts, nil
}

// InProcessConn opens a new in-process connection to the embedded server
// as the edge's internal user (the bridge uses one). name labels it in the
// server's connection list. The caller closes it.
func (e *Edge) InProcessConn(name string) (*nats.Conn, error) {
	if e.srv == nil {
		return nil, errors.New("edge: not started")
	}
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.UserInfo(internalUser, e.internalPass),
		nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	if err != nil {
		return nil, fmt.Errorf("in-process connection: %w", err)
	}
	return nc, nil
}

// Server is the embedded nats-server (nil before Start).
func (e *Edge) Server() *server.Server { return e.srv }

// JetStream is a JetStream context on an in-process connection of its own
// (not the ingest publisher's): the bridge reads the EDGE stream through
// it. Valid between Start and Close.
func (e *Edge) JetStream() jetstream.JetStream { return e.js }

// Epoch is the store epoch: a random id made when the edge stream was
// created. It changes when the store is wiped, so message ids
// <edge-id>:<epoch>:<seq> never repeat.
func (e *Edge) Epoch() string { return e.epoch }

// ID is the edge id.
func (e *Edge) ID() string { return e.cfg.ID }

// EdgeID is the edge id (the name bridge.Source asks for).
func (e *Edge) EdgeID() string { return e.cfg.ID }

// Config returns the configuration the edge runs with.
func (e *Edge) Config() Config { return e.cfg }

// SetLinkStatus installs the hub-link status hook the bridge provides; its
// value appears as "hub" in Status. nil means "not configured".
func (e *Edge) SetLinkStatus(f func() any) {
	if f == nil {
		e.linkStatus.Store(nil)
		return
	}
	e.linkStatus.Store(&f)
}

// UDPAddr is the bound UDP address ("" when UDP is off).
func (e *Edge) UDPAddr() string {
	if e.udp == nil {
		return ""
	}
	return e.udp.LocalAddr().String()
}

// MQTTAddr is the bound MQTT address ("" when MQTT is off).
func (e *Edge) MQTTAddr() string {
	if e.srv == nil || e.cfg.MQTT.Listen == "" {
		return ""
	}
	return net.JoinHostPort(e.opts.MQTT.Host, strconv.Itoa(e.opts.MQTT.Port))
}

// NATSURL is the NATS client URL ("" when no NATS listener is configured).
func (e *Edge) NATSURL() string {
	if e.srv == nil || e.cfg.NATS.Listen == "" {
		return ""
	}
	return e.srv.ClientURL()
}

// AdminAddr is the admin listener's address ("" when off).
func (e *Edge) AdminAddr() string {
	if e.adminSrv == nil {
		return ""
	}
	return e.adminSrv.Addr()
}

// Health reports whether the server runs and JetStream answers.
func (e *Edge) Health() error {
	if e.srv == nil || !e.srv.Running() {
		return errors.New("nats-server not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := e.streamStatus(ctx); err != nil {
		return fmt.Errorf("edge stream: %w", err)
	}
	return nil
}

// rateLog logs at most once per interval, counting what it suppressed.
type rateLog struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed uint64
}

// allow reports whether to log now and how many were suppressed since.
func (r *rateLog) allow(now time.Time) (bool, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

// probeListen checks that a TCP address can be bound (fixed ports only).
func probeListen(addr string) error {
	if addr == "" {
		return nil
	}
	if _, port, err := splitHostPort(addr); err != nil || port == 0 {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// quietNATS demotes nats-server log lines that are wrong for an embedded
// server to debug: "Plaintext passwords detected" is about passwords in a
// server config file, and the edge has none (they come from *_file keys or
// are random per start).
type quietNATS struct{ slog.Handler }

func (q quietNATS) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && strings.HasPrefix(r.Message, "Plaintext passwords detected") {
		r.Level = slog.LevelDebug
		if !q.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietNATS) WithAttrs(a []slog.Attr) slog.Handler { return quietNATS{q.Handler.WithAttrs(a)} }
func (q quietNATS) WithGroup(n string) slog.Handler      { return quietNATS{q.Handler.WithGroup(n)} }
