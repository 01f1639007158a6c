// Package mqttproxy is the hub's MQTT-over-TLS front door. nats-server has a
// single MQTT listener; the hub runs it in plain text on loopback for local
// tools, and this package accepts remote MQTT clients on a TLS listener,
// refuses any CONNECT without a user name and password, and relays the
// connection to the loopback listener. It records which local port each
// relayed connection uses, so the broker side can tell a relayed (remote)
// client from a local one, and the audit can map the broker's view back to
// the real remote address.
package mqttproxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/warren-mesh/warren/hub/internal/refusal"
)

// Refusal reasons of this package (besides the TLS ones of refusal.Classify).
const (
	ReasonTooMany    = "too-many-connections"
	ReasonBadConnect = "bad-connect"
	ReasonNoUser     = "no-username"
)

// Config configures a Proxy.
type Config struct {
	// Listen is the TCP address of the TLS listener, e.g. ":8883".
	Listen string
	// TLS is the server TLS configuration (certificate, minimum version).
	TLS *tls.Config
	// Upstream is the plain MQTT listener to relay to, e.g. "127.0.0.1:1883".
	Upstream string
	// MaxConns bounds concurrent connections; 0 means 1024.
	MaxConns int
	// HandshakeTimeout bounds the TLS handshake plus the CONNECT packet;
	// 0 means 10 s.
	HandshakeTimeout time.Duration
	// MaxConnect bounds the size of the CONNECT packet; 0 means 64 KiB.
	MaxConnect int
	// OnRefused, when set, is called for every refused connection with the
	// remote address, a short reason and a detail text (never a password).
	OnRefused func(remote, reason, detail string)
	// Logger receives connection lines; nil means slog.Default().
	Logger *slog.Logger
}

// Peer is one relayed connection.
type Peer struct {
	Remote     string    `json:"remote"`      // the client's address as seen by the TLS listener
	LocalPort  int       `json:"local_port"`  // the relay's source port towards the upstream listener
	User       string    `json:"user"`        // user name from CONNECT
	ClientID   string    `json:"client_id"`   // client id from CONNECT
	TLSVersion string    `json:"tls_version"` // negotiated TLS version
	Since      time.Time `json:"since"`
}

// Proxy is a running TLS listener.
type Proxy struct {
	cfg  Config
	ln   net.Listener
	log  *slog.Logger
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	byPt map[int]Peer
	open map[net.Conn]struct{}
	done bool
}

// Listen starts the TLS listener.
func Listen(cfg Config) (*Proxy, error) {
	if cfg.TLS == nil {
		return nil, errors.New("mqttproxy: no TLS configuration")
	}
	if cfg.Upstream == "" {
		return nil, errors.New("mqttproxy: no upstream address")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxConnect <= 0 {
		cfg.MaxConnect = 64 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("mqtt tls listener %s: %w", cfg.Listen, err)
	}
	p := &Proxy{
		cfg:  cfg,
		ln:   ln,
		log:  cfg.Logger,
		sem:  make(chan struct{}, cfg.MaxConns),
		byPt: map[int]Peer{},
		open: map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the listening address.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Lookup returns the relayed connection whose source port towards the
// upstream listener is localPort.
func (p *Proxy) Lookup(localPort int) (Peer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	peer, ok := p.byPt[localPort]
	return peer, ok
}

// Peers lists the relayed connections, oldest first.
func (p *Proxy) Peers() []Peer {
	p.mu.Lock()
	out := make([]Peer, 0, len(p.byPt))
	for _, peer := range p.byPt {
		out = append(out, peer)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Close stops the listener, closes every relayed connection and waits for
// their goroutines.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	p.done = true
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	var delay time.Duration
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE...): back off, bounded.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("mqtt tls accept", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case p.sem <- struct{}{}:
		default:
			p.refuse(conn.RemoteAddr().String(), ReasonTooMany, fmt.Sprintf("limit %d", p.cfg.MaxConns))
			conn.Close()
			continue
		}
		if !p.track(conn) {
			conn.Close()
			<-p.sem
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.sem }()
			defer p.untrack(conn)
			p.serve(conn)
		}()
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) refuse(remote, reason, detail string) {
	p.log.Warn("refused connection", "listener", "mqtt-tls", "remote", remote, "reason", reason, "detail", detail)
	if p.cfg.OnRefused != nil {
		p.cfg.OnRefused(remote, reason, detail)
	}
}

func (p *Proxy) serve(raw net.Conn) {
	remote := raw.RemoteAddr().String()
	conn := tls.Server(raw, p.cfg.TLS)
	deadline := time.Now().Add(p.cfg.HandshakeTimeout)
	conn.SetDeadline(deadline)
	if err := conn.Handshake(); err != nil {
		p.refuse(remote, refusal.Classify(err.Error()), err.Error())
		return
	}
	br := bufio.NewReader(conn)
	pkt, err := ReadPacket(br, p.cfg.MaxConnect)
	if err != nil {
		p.refuse(remote, ReasonBadConnect, err.Error())
		return
	}
	cp, err := ParseConnect(pkt)
	if err != nil {
		p.refuse(remote, ReasonBadConnect, err.Error())
		return
	}
	if !cp.HasUsername || cp.Username == "" || !cp.HasPassword {
		conn.Write(ConnAck(ConnAckNotAuthorized))
		p.refuse(remote, ReasonNoUser, fmt.Sprintf("client id %q sent no user name and password", cp.ClientID))
		return
	}
	d := net.Dialer{Deadline: deadline}
	up, err := d.Dial("tcp", p.cfg.Upstream)
	if err != nil {
		p.log.Error("mqtt tls relay: upstream", "remote", remote, "err", err)
		conn.Write(ConnAck(0x03)) // server unavailable
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	port := up.LocalAddr().(*net.TCPAddr).Port
	peer := Peer{
		Remote:     remote,
		LocalPort:  port,
		User:       cp.Username,
		ClientID:   cp.ClientID,
		TLSVersion: tls.VersionName(conn.ConnectionState().Version),
		Since:      time.Now().UTC(),
	}
	// Register before the CONNECT reaches the broker: its authenticator
	// looks the port up.
	p.mu.Lock()
	p.byPt[port] = peer
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.byPt, port)
		p.mu.Unlock()
	}()
	conn.SetDeadline(time.Time{})
	if _, err := up.Write(pkt); err != nil {
		return
	}
	p.log.Info("mqtt tls client relayed", "remote", remote, "local_port", port, "user", cp.Username, "client_id", cp.ClientID, "tls", peer.TLSVersion)
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(conn, up)
		conn.Close()
		done <- struct{}{}
	}()
	io.Copy(up, br)
	up.Close()
	<-done
	p.log.Info("mqtt tls client gone", "remote", remote, "local_port", port, "user", cp.Username)
}
