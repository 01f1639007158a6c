package hub

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/warren-mesh/warren/hub/mqttproxy"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/cfgload"
	"github.com/warren-mesh/warren/internal/event"
)

// role is an in-process connection's job; each has its own user with a
// random password made at New.
type role int

const (
	roleHub       role = iota // account HUB, no limits: stream, status, notifier
	roleRepublish             // account HUB, publish only outside internal subjects
	roleIngest                // account EDGES: receives edge events, answers them
	roleSys                   // system account: connect/disconnect events
)

func (r role) user() string {
	switch r {
	case roleHub:
		return "warren-hub"
	case roleRepublish:
		return "warren-republish"
	case roleIngest:
		return "warren-ingest"
	default:
		return "warren-sys"
	}
}

// localUser is the user name of anonymous clients on the loopback MQTT
// listener.
const localUser = "local"

// Refusal reasons decided by the authenticator.
const (
	reasonBadIdentity = "bad-edge-identity"
	reasonUnlisted    = "unlisted-edge"
	reasonSuperseded  = "superseded-certificate"
	reasonNoUser      = "no-username"
	reasonBadLogin    = "bad-login"
	reasonNotLoopback = "not-loopback"
	reasonInternal    = "bad-internal-login"
	reasonBlocked     = "blocked"
	reasonStarting    = "hub-starting"
)

// Subjects no MQTT client and no republished event may publish to: the
// JetStream, KV, object store and system APIs, MQTT internals, the hub's
// stream subjects (only the ingest writes there) and reply inboxes.
var internalPubDeny = []string{
	"$JS.>", "$KV.>", "$O.>", "$SYS.>", "$NRG.>", "$MQTT.>",
	event.HubSubjectPrefix + ">", "_INBOX.>", "_WARREN.>",
}

// Subjects no MQTT client may subscribe to. "$MQTT.sub.>" and
// "$MQTT.deliver.pubrel.>" stay open: the gateway subscribes to them on the
// client's behalf for QoS 1 and 2.
var internalSubDeny = []string{
	"$JS.>", "$KV.>", "$O.>", "$SYS.>", "$NRG.>",
	"$MQTT.JSA.>", "$MQTT.sess.>", "$MQTT.msgs.>", "$MQTT.rmsgs.>", "$MQTT.qos2.>", "$MQTT.out.>",
	"_INBOX.>", "_WARREN.>",
}

var mqttInternalSubAllow = []string{"$MQTT.sub.>", "$MQTT.deliver.pubrel.>"}

// edgePermissions are an edge's rights: publish its own events and
// heartbeats, receive the answers on its own inbox prefix.
func edgePermissions(id string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{event.IngestPrefix + id + ".>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_" + id + ".>"}},
	}
}

// mqttLogin is a configured MQTT user.
type mqttLogin struct {
	name  string
	hash  [sha256.Size]byte
	perms *server.Permissions
}

func (u *mqttLogin) check(password string) bool {
	h := sha256.Sum256([]byte(password))
	return subtle.ConstantTimeCompare(h[:], u.hash[:]) == 1
}

func loadMQTTUsers(users []MQTTUser) (map[string]*mqttLogin, error) {
	out := map[string]*mqttLogin{}
	var errs []error
	for i, u := range users {
		pw, err := cfgload.ReadSecret(fmt.Sprintf("mqtt.users[%d].password_file", i), u.PasswordFile)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		perms, err := mqttPermissions(u.Publish, u.Subscribe)
		if err != nil {
			errs = append(errs, fmt.Errorf("mqtt.users[%d]: %w", i, err))
			continue
		}
		out[u.Name] = &mqttLogin{name: u.Name, hash: sha256.Sum256([]byte(pw)), perms: perms}
	}
	return out, errors.Join(errs...)
}

// mqttPermissions turns MQTT topic filters into NATS permissions, always
// minus the internal subjects. No publish filters means read-only; no
// subscribe filters means everything.
func mqttPermissions(publish, subscribe []string) (*server.Permissions, error) {
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: internalPubDeny},
		Subscribe: &server.SubjectPermission{Deny: internalSubDeny},
	}
	if len(publish) == 0 {
		p.Publish.Deny = []string{">"}
	}
	for _, f := range publish {
		s, err := event.FilterToSubjects(f)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		p.Publish.Allow = append(p.Publish.Allow, s...)
	}
	for _, f := range subscribe {
		s, err := event.FilterToSubjects(f)
		if err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		p.Subscribe.Allow = append(p.Subscribe.Allow, s...)
	}
	if len(p.Subscribe.Allow) > 0 {
		p.Subscribe.Allow = append(p.Subscribe.Allow, mqttInternalSubAllow...)
	}
	return p, nil
}

func localPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: internalPubDeny},
		Subscribe: &server.SubjectPermission{Deny: internalSubDeny},
	}
}

// accounts are the server's accounts, known once it runs.
type accounts struct {
	hub, edges, sys *server.Account
}

// authenticator is the embedded server's only authentication: it sees
// every client connection (NATS and MQTT) and decides who it is.
//
//   - in-process connections (net.Pipe) are the hub's own, with a random
//     per-process password per role;
//   - TLS connections come from the NATS listener, where the handshake has
//     already verified the client certificate against the CA: the edge id
//     comes from the certificate's warren://edge/<id> URI SAN, and the
//     certificate must be the one in pki_dir/edges/<id>.crt;
//   - anything else is the loopback MQTT listener: connections relayed by
//     the TLS proxy must log in as a configured user, direct local ones may
//     be anonymous.
type authenticator struct {
	h     *Hub
	accts atomic.Pointer[accounts]
	proxy atomic.Pointer[mqttproxy.Proxy]
	guard atomic.Pointer[LoginGuard]
	// edgesOpen is set once the ingest subscribes and cleared when it
	// stops: an edge that logged in earlier would publish into no
	// responders, and a later event of its pipeline could then be stored
	// before the refused one once the ingest is up.
	edgesOpen atomic.Bool
	opened    chan struct{} // closed by openEdges
	openOnce  sync.Once

	mu    sync.Mutex
	conns map[uint64]authInfo // by nats connection id, while connected
}

// authInfo is what the authenticator learnt about an accepted connection.
type authInfo struct {
	Kind       string // "edge", "mqtt", "mqtt-tls"
	User       string // edge id or MQTT user
	Remote     string // real remote address (for relayed MQTT: the TLS peer)
	TLSVersion string
	Listed     bool
}

func newAuthenticator(h *Hub) *authenticator {
	return &authenticator{h: h, conns: map[uint64]authInfo{}, opened: make(chan struct{})}
}

func (a *authenticator) bind(s *server.Server) error {
	var ac accounts
	var err error
	if ac.hub, err = s.LookupAccount(AccountHub); err != nil {
		return fmt.Errorf("account %s: %w", AccountHub, err)
	}
	if ac.edges, err = s.LookupAccount(AccountEdges); err != nil {
		return fmt.Errorf("account %s: %w", AccountEdges, err)
	}
	if ac.sys = s.SystemAccount(); ac.sys == nil {
		return errors.New("no system account")
	}
	a.accts.Store(&ac)
	return nil
}

func (a *authenticator) info(cid uint64) (authInfo, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.conns[cid]
	return i, ok
}

func (a *authenticator) forget(cid uint64) {
	a.mu.Lock()
	delete(a.conns, cid)
	a.mu.Unlock()
}

func (a *authenticator) remember(cid uint64, i authInfo) {
	a.mu.Lock()
	a.conns[cid] = i
	a.mu.Unlock()
}

// Check implements server.Authentication.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	ac := a.accts.Load()
	if ac == nil || c.Kind() != server.CLIENT {
		return false
	}
	remote := c.RemoteAddress()
	if remote == nil {
		return false
	}
	if remote.Network() == "pipe" {
		return a.internal(c, ac)
	}
	if st := c.GetTLSConnectionState(); st != nil {
		return a.edge(c, st, remote.String(), ac)
	}
	return a.mqtt(c, remote, ac)
}

// edgeLoginWait is how long an edge's login waits for the ingest while the
// hub starts (the gap is tens of milliseconds), so the usual case is a
// slower login, not a refusal the audit would count as a failed one. It
// stays below nats-server's authentication timeout.
const edgeLoginWait = time.Second

// openEdges lets edges in (the ingest has subscribed) and releases the
// logins waiting for it.
func (a *authenticator) openEdges() {
	a.edgesOpen.Store(true)
	a.openOnce.Do(func() { close(a.opened) })
}

// waitEdgesOpen waits up to d for openEdges; nil when edges may log in.
func (a *authenticator) waitEdgesOpen(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.opened:
	case <-t.C:
	}
	if !a.edgesOpen.Load() {
		return errors.New("the ingest is not subscribed")
	}
	return nil
}

func (a *authenticator) refuse(listener, remote, reason, detail string, attrs ...any) bool {
	a.h.m.refused.WithLabelValues(listener, reason).Inc()
	args := append([]any{"listener", listener, "remote", remote, "reason", reason, "detail", detail}, attrs...)
	a.h.log.Warn("refused connection", args...)
	return false
}

func (a *authenticator) internal(c server.ClientAuthentication, ac *accounts) bool {
	o := c.GetOpts()
	for r, secret := range a.h.secrets {
		if o.Username != r.user() {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(o.Password), []byte(secret)) != 1 {
			return a.refuse("in-process", "pipe", reasonInternal, "wrong password for "+r.user())
		}
		u := &server.User{Username: r.user()}
		switch r {
		case roleHub:
			u.Account = ac.hub
		case roleRepublish:
			u.Account = ac.hub
			u.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Deny: append(append([]string{}, internalPubDeny...), "edge.>")},
				Subscribe: &server.SubjectPermission{Deny: []string{">"}},
			}
		case roleIngest:
			u.Account = ac.edges
		case roleSys:
			u.Account = ac.sys
		}
		c.RegisterUser(u)
		return true
	}
	return a.refuse("in-process", "pipe", reasonInternal, fmt.Sprintf("unknown user %q", o.Username))
}

func (a *authenticator) edge(c server.ClientAuthentication, st *tls.ConnectionState, remote string, ac *accounts) bool {
	if len(st.PeerCertificates) == 0 || len(st.VerifiedChains) == 0 {
		return a.refuse("nats", remote, "no-client-certificate", "no verified client certificate")
	}
	if !a.edgesOpen.Load() && a.waitEdgesOpen(edgeLoginWait) != nil {
		// Benign and short (the edge retries within a second): counted,
		// logged at debug only.
		a.h.m.refused.WithLabelValues("nats", reasonStarting).Inc()
		a.h.log.Debug("refused connection", "listener", "nats", "remote", remote, "reason", reasonStarting,
			"detail", "the ingest is not subscribed yet (hub starting or stopping)")
		return false
	}
	leaf := st.PeerCertificates[0]
	id, err := pki.EdgeIDFromCert(leaf)
	if err != nil {
		a.unknownEdge("", remote, reasonBadIdentity)
		return a.refuse("nats", remote, reasonBadIdentity, err.Error(), "subject", leaf.Subject.String())
	}
	if id == a.h.cfg.EventID() {
		a.unknownEdge(id, remote, reasonBadIdentity)
		return a.refuse("nats", remote, reasonBadIdentity, "edge id is the hub's own event id (server_name)", "edge", id)
	}
	listed, err := a.listed(id, leaf.Raw)
	if err != nil {
		reason := reasonUnlisted
		if errors.Is(err, errSuperseded) {
			reason = reasonSuperseded
		}
		if reason == reasonSuperseded || !a.h.cfg.NATS.AllowUnlistedEdges {
			a.unknownEdge(id, remote, reason)
			return a.refuse("nats", remote, reason, err.Error(), "edge", id, "fingerprint", pki.Fingerprint(leaf))
		}
		a.h.m.unlisted.Inc()
		a.h.log.Warn("unlisted edge accepted (nats.allow_unlisted_edges)", "edge", id, "remote", remote,
			"fingerprint", pki.Fingerprint(leaf), "detail", err.Error())
	}
	c.RegisterUser(&server.User{
		Username:    pki.EdgeUserName(id),
		Account:     ac.edges,
		Permissions: edgePermissions(id),
	})
	tv := tls.VersionName(st.Version)
	a.remember(c.GetID(), authInfo{Kind: "edge", User: id, Remote: remote, TLSVersion: tv, Listed: listed})
	a.h.log.Info("edge authenticated", "edge", id, "remote", remote, "tls", tv, "listed", listed)
	return true
}

var errSuperseded = errors.New("the certificate in the PKI directory for this edge is a different one (re-issued or revoked)")

// listed reports whether raw is the certificate in pki_dir/edges/<id>.crt.
// A missing file gives (false, error); a different certificate gives
// errSuperseded. The file is read at every edge login so issuing, re-issuing
// and removing take effect at the next connection without a restart.
func (a *authenticator) listed(id string, raw []byte) (bool, error) {
	path := a.h.layout.EdgeCert(id)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("no certificate issued for this edge in %s", a.h.layout.Edges)
		}
		return false, fmt.Errorf("edge certificate %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return false, fmt.Errorf("edge certificate %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return false, fmt.Errorf("edge certificate %s: not a PEM certificate", path)
	}
	if !bytes.Equal(block.Bytes, raw) {
		return false, errSuperseded
	}
	return true, nil
}

func (a *authenticator) mqtt(c server.ClientAuthentication, remote net.Addr, ac *accounts) bool {
	tcp, ok := remote.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return a.refuse("mqtt", remote.String(), reasonNotLoopback, "plain connections are accepted on loopback only")
	}
	o := c.GetOpts()
	listener, real := "mqtt", remote.String()
	relayed := false
	if p := a.proxy.Load(); p != nil {
		if peer, ok := p.Lookup(tcp.Port); ok {
			listener, real, relayed = "mqtt-tls", peer.Remote, true
		}
	}
	if g := a.guard.Load(); g != nil && ((*g).Blocked(real) || o.Username != "" && (*g).BlockedUser(o.Username)) {
		// Refused before the password is looked at; logged at debug only
		// (the audit reports the block once, not every attempt).
		a.h.m.refused.WithLabelValues(listener, reasonBlocked).Inc()
		a.h.log.Debug("refused connection", "listener", listener, "remote", real, "reason", reasonBlocked, "user", o.Username)
		return false
	}
	if o.Username == "" {
		if relayed || !a.h.cfg.MQTT.AllowAnonymousLocal {
			return a.refuse(listener, real, reasonNoUser, "MQTT CONNECT without a user name")
		}
		c.RegisterUser(&server.User{Username: localUser, Account: ac.hub, Permissions: localPermissions()})
		a.remember(c.GetID(), authInfo{Kind: listener, User: localUser, Remote: real})
		return true
	}
	u, ok := a.h.users[o.Username]
	if !ok || !u.check(o.Password) {
		// the same reason for unknown users and wrong passwords
		return a.refuse(listener, real, reasonBadLogin, "unknown user or wrong password", "user", o.Username)
	}
	c.RegisterUser(&server.User{Username: u.name, Account: ac.hub, Permissions: u.perms})
	info := authInfo{Kind: listener, User: u.name, Remote: real}
	if relayed {
		if peer, ok := a.proxy.Load().Lookup(tcp.Port); ok {
			info.TLSVersion = peer.TLSVersion
		}
	}
	a.remember(c.GetID(), info)
	a.h.log.Info("mqtt login", "listener", listener, "user", u.name, "remote", real)
	return true
}

// unknownEdge tells the OnUnknownEdge hooks.
func (a *authenticator) unknownEdge(id, remote, reason string) {
	for _, f := range a.h.unknownEdge { // fixed once Run started
		f(id, remote, reason)
	}
}

var _ server.Authentication = (*authenticator)(nil)
