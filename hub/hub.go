// Package hub is warren's hub runtime: an embedded nats-server that edges
// reach over mutual TLS only, with per-edge identities and permissions
// decided by a custom authenticator; the ingest service that stores every
// edge event exactly once, in per-edge order, in the JetStream stream HUB
// (domain "hub"); the MQTT gateway (plain on loopback for local tools, TLS
// with users for remote clients) with every stored event republished on
// its MQTT topic; and the status, metrics and admin endpoints.
//
// cmd/hub is a thin shell around New and Run. The notifier (hub/notify) is
// wired by its caller through Conn, JetStream, Go and OnEdgeLink.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/hub/mqttproxy"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/natsembed"
)

// Account names inside the embedded server. Edges live in their own
// account, so nothing an edge can publish or subscribe to is shared with
// MQTT clients or the JetStream API; only the ingest service bridges the two.
const (
	AccountHub   = "HUB"   // JetStream (stream HUB, MQTT state), MQTT clients, the hub's own connections
	AccountEdges = "EDGES" // edge connections and the ingest service's edge side
	AccountSys   = "SYS"   // nats-server system account
)

// StatusSubjectRest is the subject suffix of an edge's status heartbeat
// (event.StatusSubject).
const StatusSubjectRest = event.StatusSubject

// ErrNotRunning is returned by accessors used before Run is ready.
var ErrNotRunning = errors.New("hub is not running")

// Addrs are the addresses the hub listens on (empty when off).
type Addrs struct {
	NATS    string `json:"nats"`
	MQTT    string `json:"mqtt,omitempty"`
	MQTTTLS string `json:"mqtt_tls,omitempty"`
	Admin   string `json:"admin,omitempty"`
}

// Hub is one hub runtime. Make it with New, start it with Run.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	users   map[string]*mqttLogin
	tlsMin  uint16
	layout  pki.Layout
	secrets map[role]string

	ready   chan struct{}
	started time.Time

	mu       sync.Mutex
	ran      bool
	srv      *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	addrs    Addrs
	ingest   *ingest
	edges    *edgeTracker
	auth     *authenticator
	services []service
	extra    map[string]http.Handler

	// audit hooks (see SetLoginGuard, AddNATSLogHook, OnUnknownEdge,
	// OnHeartbeat); set before Run
	logHooks    []func(slog.Level, string)
	unknownEdge []func(id, remote, reason string)
	hbHooks     []func(Heartbeat)
}

type service struct {
	name string
	fn   func(context.Context) error
}

// New checks cfg, reads the MQTT users' password files and, when the PKI
// exists, the certificates; it starts nothing. reg receives the hub's
// metrics (nil makes a private registry).
func New(cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	h := &Hub{
		cfg:     cfg,
		log:     logger,
		reg:     reg,
		layout:  pki.LayoutOf(cfg.PKIPath()),
		ready:   make(chan struct{}),
		secrets: map[role]string{},
		extra:   map[string]http.Handler{},
	}
	h.tlsMin, _ = pki.ParseTLSVersion(cfg.NATS.TLSMinVersion)
	users, err := loadMQTTUsers(cfg.MQTT.Users)
	if err != nil {
		return nil, err
	}
	h.users = users
	if err := h.checkPKI(); err != nil {
		return nil, err
	}
	for _, r := range []role{roleHub, roleRepublish, roleIngest, roleSys} {
		h.secrets[r] = randomSecret()
	}
	h.auth = newAuthenticator(h)
	h.edges = newEdgeTracker(h)
	h.m = newMetrics(h)
	if err := h.m.register(reg); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return h, nil
}

// checkPKI verifies the PKI files when they exist; when the CA is missing
// it is an error unless dev_pki will make one at Run.
func (h *Hub) checkPKI() error {
	_, err := os.Stat(h.layout.CACert)
	if errors.Is(err, fs.ErrNotExist) {
		if h.cfg.DevPKI {
			return nil
		}
		return fmt.Errorf("pki_dir: %s has no CA (%s); run `hub pki init` or set dev_pki: true", h.layout.Dir, h.layout.CACert)
	}
	if _, err := h.serverTLS(); err != nil {
		return fmt.Errorf("pki_dir: %w", err)
	}
	return nil
}

// Go registers a service (the notifier, the audit...) that Run starts once
// the hub is ready, with a context cancelled at shutdown; Run waits for it
// before closing the hub's connections. A service that returns an error
// other than context.Canceled stops the hub, and Run returns that error.
// Call before Run.
func (h *Hub) Go(name string, fn func(ctx context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.services = append(h.services, service{name, fn})
}

// HandleAdmin adds a handler to the admin listener (e.g. a dashboard).
// Call before Run.
func (h *Hub) HandleAdmin(pattern string, handler http.Handler) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.extra[pattern] = handler
}

// OnEdgeLink registers f to be called when an edge's link comes up (its
// first connection) or goes down (its last connection closed). f runs on
// the hub's event goroutine and must not block.
func (h *Hub) OnEdgeLink(f func(id string, up bool, at time.Time)) {
	h.edges.onLink(f)
}

// Ready is closed when Run has started every listener. If Run fails before
// that, Ready is never closed: wait for Run's return too.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Addrs returns the listening addresses (valid after Ready).
func (h *Hub) Addrs() Addrs {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addrs
}

// Config returns the hub's configuration (its Notify section is the
// notifier's).
func (h *Hub) Config() Config { return h.cfg }

// Conn returns the hub's own in-process connection (account HUB, no
// permission limits), valid after Ready and until Run returns.
func (h *Hub) Conn() *nats.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nc
}

// JetStream returns the JetStream context of Conn (the HUB stream lives
// there), valid after Ready.
func (h *Hub) JetStream() jetstream.JetStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.js
}

// Server returns the embedded nats-server (valid after Ready), for
// monitoring calls such as Connz and Jsz.
func (h *Hub) Server() *server.Server {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.srv
}

// Connect opens a new in-process connection in account HUB with the same
// rights as Conn (a service that wants its own connection). The caller
// closes it before Run returns.
func (h *Hub) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	s := h.Server()
	if s == nil {
		return nil, ErrNotRunning
	}
	return h.connect(s, roleHub, name, opts...)
}

func (h *Hub) connect(s *server.Server, r role, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.InProcessServer(s),
		nats.UserInfo(r.user(), h.secrets[r]),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				h.log.Error("nats async error", "conn", name, "subject", sub.Subject, "err", err)
				return
			}
			h.log.Error("nats async error", "conn", name, "err", err)
		}),
	}
	nc, err := nats.Connect("", append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("in-process connection %s: %w", name, err)
	}
	return nc, nil
}

// Healthy returns nil while the hub serves: the server accepts connections
// and the ingest service is subscribed.
func (h *Hub) Healthy() error {
	h.mu.Lock()
	s, ing := h.srv, h.ingest
	h.mu.Unlock()
	if s == nil || ing == nil {
		return ErrNotRunning
	}
	if !s.Running() {
		return errors.New("nats-server not running")
	}
	if !ing.subscribed() {
		return errors.New("ingest service not subscribed")
	}
	return nil
}

// Run starts the hub and serves until ctx is cancelled. It may be called
// once.
func (h *Hub) Run(ctx context.Context) (err error) {
	h.mu.Lock()
	if h.ran {
		h.mu.Unlock()
		return errors.New("hub: Run called twice")
	}
	h.ran = true
	services := append([]service(nil), h.services...)
	h.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	svcErr := make(chan error, 1)

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	if err := h.preparePKI(); err != nil {
		return err
	}
	tlsConf, err := h.serverTLS()
	if err != nil {
		return fmt.Errorf("pki_dir: %w", err)
	}
	if err := os.MkdirAll(h.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}

	opts, err := h.serverOptions(tlsConf)
	if err != nil {
		return err
	}
	nlog := h.log.With("component", "nats")
	// The hook sees every line, debug included (opts.Debug: nats-server
	// reports plain-text probes on its TLS port only at debug level), and
	// turns TLS handshake failures into warren-level "refused connection"
	// lines.
	s, err := natsembed.StartLogged(opts, &natsembed.Logger{L: nlog, Hook: h.natsLogHook}, 30*time.Second)
	if err != nil {
		return err
	}
	closers = append(closers, func() { natsembed.Stop(s) })
	if err := h.auth.bind(s); err != nil {
		return err
	}
	h.started = time.Now()

	addrs := Addrs{NATS: s.Addr().String()}
	if h.cfg.MQTT.Listen != "" {
		host, _, _ := net.SplitHostPort(h.cfg.MQTT.Listen)
		addrs.MQTT = net.JoinHostPort(host, strconv.Itoa(opts.MQTT.Port))
	}

	nc, err := h.connect(s, roleHub, "warren-hub")
	if err != nil {
		return err
	}
	closers = append(closers, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := h.ensureStream(ctx, js); err != nil {
		return err
	}
	sysNC, err := h.connect(s, roleSys, "warren-hub-events")
	if err != nil {
		return err
	}
	closers = append(closers, sysNC.Close)
	if err := h.edges.start(sysNC); err != nil {
		return err
	}
	h.mu.Lock()
	h.srv = s
	h.mu.Unlock()
	h.edges.reconcile(s)
	edgeNC, err := h.connect(s, roleIngest, "warren-hub-ingest")
	if err != nil {
		return err
	}
	closers = append(closers, edgeNC.Close)
	repNC, err := h.connect(s, roleRepublish, "warren-hub-republish")
	if err != nil {
		return err
	}
	closers = append(closers, repNC.Close)
	ing, err := startIngest(h, edgeNC, nc, repNC)
	if err != nil {
		return err
	}
	closers = append(closers, ing.stop)
	// Edges may log in from now on (see authenticator.edgesOpen); closers
	// run in reverse, so they are shut out before the ingest stops.
	h.auth.openEdges()
	closers = append(closers, func() { h.auth.edgesOpen.Store(false) })

	h.mu.Lock()
	h.srv, h.nc, h.js, h.ingest = s, nc, js, ing
	h.mu.Unlock()
	closers = append(closers, func() {
		h.mu.Lock()
		h.srv, h.nc, h.js, h.ingest = nil, nil, nil, nil
		h.mu.Unlock()
	})

	if h.cfg.MQTT.TLSListen != "" {
		p, err := h.startProxy(addrs.MQTT)
		if err != nil {
			return err
		}
		closers = append(closers, func() { p.Close() })
		addrs.MQTTTLS = p.Addr().String()
	}

	if h.cfg.Admin.Listen != "" {
		h.mu.Lock()
		extra := map[string]http.Handler{"GET /edges": http.HandlerFunc(h.serveEdges)}
		for k, v := range h.extra {
			extra[k] = v
		}
		h.mu.Unlock()
		a, err := admin.Listen(h.cfg.Admin, admin.Handlers{
			Registry: h.reg,
			Health:   h.Healthy,
			Status:   func() any { return h.Status() },
			Extra:    extra,
		}, h.log.With("component", "admin"))
		if err != nil {
			return err
		}
		closers = append(closers, func() { a.Close() })
		addrs.Admin = a.Addr()
	}

	h.mu.Lock()
	h.addrs = addrs
	h.mu.Unlock()
	h.log.Info("hub ready", "server_name", h.cfg.ServerName, "nats", addrs.NATS, "mqtt", addrs.MQTT,
		"mqtt_tls", addrs.MQTTTLS, "admin", addrs.Admin, "stream", event.HubStream,
		"duplicate_window", h.cfg.Stream.DuplicateWindow, "pki_dir", h.layout.Dir)

	var wg sync.WaitGroup
	svcCtx, svcCancel := context.WithCancel(ctx)
	for _, sv := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sv.fn(svcCtx)
			if err != nil && !errors.Is(err, context.Canceled) {
				h.log.Error("service stopped", "service", sv.name, "err", err)
				select {
				case svcErr <- fmt.Errorf("%s: %w", sv.name, err):
				default:
				}
				cancel()
			}
		}()
	}
	closers = append(closers, func() { svcCancel(); wg.Wait() })
	close(h.ready)

	<-ctx.Done()
	h.log.Info("hub stopping")
	select {
	case err := <-svcErr:
		return err
	default:
		return nil
	}
}

// preparePKI makes the development PKI when configured and missing.
func (h *Hub) preparePKI() error {
	if _, err := os.Stat(h.layout.CACert); err == nil || !h.cfg.DevPKI {
		return nil
	}
	if _, err := pki.DevPKI(h.layout.Dir); err != nil {
		return fmt.Errorf("dev_pki: %w", err)
	}
	h.log.Warn("made a development PKI; for production run `hub pki init` and `hub pki issue`", "pki_dir", h.layout.Dir)
	return nil
}

func (h *Hub) serverTLS() (*tlsConfig, error) {
	return loadServerTLS(h.layout, h.tlsMin)
}

func (h *Hub) serverOptions(tc *tlsConfig) (*server.Options, error) {
	opts := &server.Options{}
	accounts := fmt.Sprintf("accounts { %s { jetstream: enabled }, %s {}, %s {} }\nsystem_account: %s\n",
		AccountHub, AccountEdges, AccountSys, AccountSys)
	if err := opts.ProcessConfigString(accounts); err != nil {
		return nil, fmt.Errorf("nats accounts: %w", err)
	}
	host, port, _ := net.SplitHostPort(h.cfg.NATS.Listen)
	p, _ := strconv.Atoi(port)
	if p == 0 {
		p = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	opts.ServerName = h.cfg.ServerName
	opts.Host, opts.Port = host, p
	opts.TLSConfig = tc.nats
	opts.TLS = true
	opts.TLSVerify = true
	opts.TLSTimeout = 5
	opts.JetStream = true
	opts.JetStreamDomain = event.HubDomain
	opts.StoreDir = filepath.Join(h.cfg.DataDir, "nats")
	opts.SyncAlways = h.cfg.Stream.SyncAlways
	opts.HTTPPort = 0
	opts.CustomClientAuthentication = h.auth
	opts.Debug = true
	if h.cfg.MQTT.Listen != "" {
		mh, mp, _ := net.SplitHostPort(h.cfg.MQTT.Listen)
		n, _ := strconv.Atoi(mp)
		if n == 0 {
			n = server.RANDOM_PORT
		}
		opts.MQTT.Host, opts.MQTT.Port = mh, n
	}
	return opts, nil
}

func (h *Hub) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	sc := jetstream.StreamConfig{
		Name:        event.HubStream,
		Description: "warren: every edge event, stored once (Nats-Msg-Id <edge>:<epoch>:<seq>)",
		Subjects:    []string{event.HubSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  h.cfg.Stream.DuplicateWindow,
		MaxBytes:    -1,
		MaxAge:      h.cfg.Stream.MaxAge,
		MaxMsgs:     -1,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
	}
	if h.cfg.Stream.MaxBytes > 0 {
		sc.MaxBytes = h.cfg.Stream.MaxBytes
	}
	if h.cfg.Stream.Discard == "new" {
		sc.Discard = jetstream.DiscardNew
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(cctx, sc); err != nil {
		return fmt.Errorf("stream %s: %w", event.HubStream, err)
	}
	return nil
}

func (h *Hub) startProxy(upstream string) (*mqttproxy.Proxy, error) {
	tc, err := h.serverTLS()
	if err != nil {
		return nil, err
	}
	p, err := mqttproxy.Listen(mqttproxy.Config{
		Listen:   h.cfg.MQTT.TLSListen,
		TLS:      tc.mqtt,
		Upstream: upstream,
		Logger:   h.log.With("component", "mqtt-tls"),
		OnRefused: func(remote, reason, detail string) {
			h.m.refused.WithLabelValues("mqtt-tls", reason).Inc()
		},
	})
	if err != nil {
		return nil, err
	}
	h.auth.proxy.Store(p)
	if len(h.users) == 0 {
		h.log.Warn("mqtt.tls_listen is on but mqtt.users is empty: every remote MQTT client will be refused", "listen", p.Addr().String())
	}
	return p, nil
}

// natsLogHook sees every nats-server log line.
func (h *Hub) natsLogHook(level slog.Level, msg string) {
	h.classifyNATSLine(msg)
	for _, f := range h.logHooks { // fixed once Run started
		f(level, msg)
	}
}

// LoginGuard is asked by the authenticator before it checks an MQTT
// password (internal/audit.Auditor fits): a blocked source address or
// user is refused with reason "blocked" without looking at the password.
// Edges (certificates) and in-process connections are not asked.
type LoginGuard interface {
	Blocked(addr string) bool
	BlockedUser(user string) bool
}

// SetLoginGuard installs g (nil removes it). Safe at any time.
func (h *Hub) SetLoginGuard(g LoginGuard) {
	if g == nil {
		h.auth.guard.Store(nil)
		return
	}
	h.auth.guard.Store(&g)
}

// AddNATSLogHook adds f to the functions that see every line the
// embedded nats-server logs (debug included); f must be cheap and must
// not block. Call before Run.
func (h *Hub) AddNATSLogHook(f func(level slog.Level, msg string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logHooks = append(h.logHooks, f)
}

// OnUnknownEdge registers f, called when the authenticator refuses an
// edge certificate signed by the CA for its identity (reasons
// unlisted-edge, superseded-certificate, bad-edge-identity; id may be
// empty for the last). f runs on the connection's goroutine and must not
// block. Call before Run.
func (h *Hub) OnUnknownEdge(f func(id, remote, reason string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unknownEdge = append(h.unknownEdge, f)
}

// OnHeartbeat registers f, called with every accepted edge heartbeat
// (its Version feeds the audit's minimum-version rule). f runs on the
// ingest goroutine and must not block. Call before Run.
func (h *Hub) OnHeartbeat(f func(Heartbeat)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hbHooks = append(h.hbHooks, f)
}

// EventID is Config().EventID(): the edge-id token of the hub's own
// events in the HUB stream.
func (h *Hub) EventID() string { return h.cfg.EventID() }

// ConnectSystem opens an in-process connection in the system account
// (role warren-sys), for the server's system events ($SYS.>). The caller
// closes it before Run returns.
func (h *Hub) ConnectSystem(name string, opts ...nats.Option) (*nats.Conn, error) {
	s := h.Server()
	if s == nil {
		return nil, ErrNotRunning
	}
	return h.connect(s, roleSys, name, opts...)
}

// DescribeConn says what the authenticator knows better than nats-server
// about a client connection (by connection id, or for a refused login
// relayed by the MQTT TLS listener, by the relay's source port): the real
// remote address, the TLS version and the listener ("mqtt-tls", "nats").
func (h *Hub) DescribeConn(cid uint64, port int) (audit.ConnDetail, bool) {
	if i, ok := h.auth.info(cid); ok {
		switch i.Kind {
		case "mqtt-tls":
			return audit.ConnDetail{Remote: i.Remote, TLS: i.TLSVersion, Listener: "mqtt-tls"}, true
		case "edge":
			return audit.ConnDetail{TLS: i.TLSVersion, Listener: "nats"}, true
		}
		return audit.ConnDetail{}, false
	}
	if p := h.auth.proxy.Load(); p != nil && port > 0 {
		if peer, ok := p.Lookup(port); ok {
			return audit.ConnDetail{Remote: peer.Remote, TLS: peer.TLSVersion, Listener: "mqtt-tls"}, true
		}
	}
	return audit.ConnDetail{}, false
}

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported systems
	}
	return hex.EncodeToString(b)
}
