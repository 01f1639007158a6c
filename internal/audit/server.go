package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/internal/event"
)

// System event subjects the auditor subscribes to (system account).
const (
	subjConnect    = "$SYS.ACCOUNT.*.CONNECT"
	subjDisconnect = "$SYS.ACCOUNT.*.DISCONNECT"
	subjAuthErr    = "$SYS.SERVER.*.CLIENT.AUTH.ERR"
)

// reasonAuthFailure is the disconnect reason nats-server gives a refused
// login; those disconnects are reported as auth_failure, not disconnect.
const reasonAuthFailure = "Authentication Failure"

// maxConnz bounds one connection-list read.
const maxConnz = 1 << 20

// ConnRef identifies a connection for AttachOptions.Describe.
type ConnRef struct {
	CID      uint64
	IP       string // as nats-server sees it
	Port     int    // client source port (0 when unknown)
	Protocol string // "mqtt", "nats", ...
}

// ConnDetail is what the server's owner knows better than nats-server
// about a connection: the hub's MQTT TLS listener relays to a loopback
// plain listener, so nats-server sees 127.0.0.1 without TLS.
type ConnDetail struct {
	Remote   string // real client "ip:port"
	TLS      string // TLS version ("1.3" or "TLS 1.3"), "none"
	Listener string // e.g. "mqtt-tls"
}

// AttachOptions are optional parts of an attachment.
type AttachOptions struct {
	// Tap, when set, is a connection in the clients' account (the edge's
	// or hub's own in-process connection) on which the auditor subscribes
	// to Config.TapSubjects to count publishes per topic. It costs one
	// in-process delivery per message published in that account. Without
	// it, per-topic publish counts are not measured (per-client ones are).
	Tap *nats.Conn
	// Describe, when set, is asked about every connection and login
	// failure; when it answers ok its non-empty fields replace what
	// nats-server reported.
	Describe func(ConnRef) (ConnDetail, bool)
}

type attachment struct {
	srv      *server.Server
	sys      *nats.Conn
	subs     []*nats.Subscription
	tapSubs  []*nats.Subscription
	describe func(ConnRef) (ConnDetail, bool)
	ports    map[string]int // protocol -> listener port

	tapMu      sync.Mutex
	tapDropped map[*nats.Subscription]int
}

// Attach starts watching s: sys must be a connection of s's system
// account (for example nats.Connect("", nats.InProcessServer(s),
// nats.UserInfo(sysUser, sysPass))); the auditor subscribes to the
// connect, disconnect and authentication-error events there. Connections
// open before Attach are taken from the server's connection list without
// events. Give the server's log lines to NATSLogHook for what only the
// log shows. Attach may be called before or after Run; Run's end detaches.
func (a *Auditor) Attach(s *server.Server, sys *nats.Conn, o AttachOptions) error {
	if s == nil || sys == nil {
		return errors.New("audit: attach needs a server and a system-account connection")
	}
	att := &attachment{srv: s, sys: sys, describe: o.Describe, ports: map[string]int{}, tapDropped: map[*nats.Subscription]int{}}
	if vz, err := s.Varz(nil); err == nil {
		att.ports["nats"] = vz.Port
		att.ports["mqtt"] = vz.MQTT.Port
		att.ports["websocket"] = vz.Websocket.Port
		att.ports["leafnode"] = vz.LeafNode.Port
	}
	a.mu.Lock()
	if a.att != nil {
		a.mu.Unlock()
		return errors.New("audit: already attached to a server")
	}
	a.att = att
	a.mu.Unlock()

	fail := func(err error) error {
		a.detach()
		return err
	}
	for subj, kind := range map[string]inputKind{subjConnect: inConnect, subjDisconnect: inDisconnect, subjAuthErr: inAuthErr} {
		kind := kind
		sub, err := sys.Subscribe(subj, func(m *nats.Msg) { a.enqueue(input{kind: kind, data: m.Data}) })
		if err != nil {
			return fail(fmt.Errorf("audit: subscribe %s: %w", subj, err))
		}
		_ = sub.SetPendingLimits(-1, 64<<20)
		att.subs = append(att.subs, sub)
	}
	if err := sys.Flush(); err != nil {
		return fail(fmt.Errorf("audit: system events: %w", err))
	}
	if o.Tap != nil {
		for _, subj := range a.cfg.TapSubjects {
			sub, err := o.Tap.Subscribe(subj, a.tapMsg)
			if err != nil {
				return fail(fmt.Errorf("audit: tap %s: %w", subj, err))
			}
			_ = sub.SetPendingLimits(1<<16, 64<<20)
			att.tapSubs = append(att.tapSubs, sub)
		}
		if err := o.Tap.Flush(); err != nil {
			return fail(fmt.Errorf("audit: tap: %w", err))
		}
	}
	a.seed(att)
	return nil
}

func (a *Auditor) detach() {
	a.mu.Lock()
	att := a.att
	a.att = nil
	a.mu.Unlock()
	if att == nil {
		return
	}
	for _, s := range append(att.subs, att.tapSubs...) {
		_ = s.Unsubscribe()
	}
}

func (a *Auditor) attached() *attachment {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.att
}

// NATSLogHook takes one nats-server log line (natsembed.Logger.Hook has
// this signature). It is cheap for uninteresting lines and never blocks.
func (a *Auditor) NATSLogHook(_ slog.Level, msg string) {
	if !interestingLog(msg) {
		return
	}
	l, ok := ParseLogLine(msg)
	if !ok {
		return
	}
	ev, ok := ClassifyLogLine(l)
	if !ok {
		return
	}
	a.enqueue(input{kind: inLogLine, ev: ev})
}

// logLine completes a classified log line from the connection table.
func (a *Auditor) logLine(ev Event) {
	a.mu.Lock()
	att := a.att
	if ev.Kind == KindAuthFail && att != nil {
		// The system event follows with user and client id; keep the port.
		if len(a.lineRemote) >= 4096 {
			for k := range a.lineRemote {
				delete(a.lineRemote, k)
				break
			}
		}
		a.lineRemote[ev.CID] = ev.Remote
		a.mu.Unlock()
		return
	}
	var base *Event
	if c := a.conns["nats|"+strconv.FormatUint(ev.CID, 10)]; c != nil && ev.CID != 0 {
		b := c.ev
		base = &b
	}
	a.mu.Unlock()
	if base == nil && att != nil && ev.CID != 0 && ev.Kind != KindTLSFailure {
		// Not in the table yet: a takeover or a violation right after the
		// CONNECT, before its connect event arrived.
		if cz, err := att.srv.Connz(&server.ConnzOptions{CID: ev.CID, State: server.ConnAll, Username: true}); err == nil && len(cz.Conns) == 1 {
			b := connInfoEvent(cz.Conns[0], att)
			base = &b
		}
	}
	if base != nil && ev.Kind != KindTLSFailure {
		if base.Remote != "" {
			ev.Remote = base.Remote
		}
		ev.User, ev.Account, ev.Listener, ev.Port, ev.TLS = base.User, base.Account, base.Listener, base.Port, base.TLS
		ev.Lang, ev.Version = base.Lang, base.Version
		if ev.ClientID == "" {
			ev.ClientID = base.ClientID
		}
	}
	if att != nil && ev.Port == 0 {
		ev.Port = att.ports[ev.Protocol]
	}
	if ev.Listener == "" {
		ev.Listener = ev.Protocol
	}
	if ev.Subject != "" && ev.Protocol == "mqtt" {
		ev.Topic = subjectToFilter(ev.Subject, false)
	}
	a.observe(ev)
}

func clientEvent(kind Kind, ci *server.ClientInfo) Event {
	proto := ci.ClientType
	if proto == "" {
		proto = "nats"
	}
	ev := Event{
		Kind: kind, Source: SourceNATS, Protocol: proto, Listener: proto,
		Remote: ci.Host, User: ci.User, Account: ci.Account, Lang: ci.Lang, Version: ci.Version, CID: ci.ID,
		ClientID: ci.MQTTClient,
	}
	if ev.ClientID == "" {
		ev.ClientID = ci.Name
	}
	return ev
}

// describe applies the attachment's Describe hook.
func (att *attachment) describeInto(ev *Event) {
	if att == nil || att.describe == nil {
		return
	}
	ref := ConnRef{CID: ev.CID, IP: hostOf(ev.Remote), Protocol: ev.Protocol}
	if _, p, err := net.SplitHostPort(ev.Remote); err == nil {
		ref.Port, _ = strconv.Atoi(p)
	}
	d, ok := att.describe(ref)
	if !ok {
		return
	}
	if d.Remote != "" {
		ev.Remote = d.Remote
	}
	if d.TLS != "" {
		ev.TLS = normTLS(d.TLS)
	}
	if d.Listener != "" {
		ev.Listener = d.Listener
	}
}

// normTLS turns "TLS 1.3" (crypto/tls names) into "1.3" (nats-server's).
func normTLS(v string) string {
	return strings.TrimPrefix(strings.TrimSpace(v), "TLS ")
}

func (a *Auditor) sysConnect(data []byte) {
	var m server.ConnectEventMsg
	if err := json.Unmarshal(data, &m); err != nil {
		a.log.Debug("audit: bad connect event", "err", err)
		return
	}
	ci := &m.Client
	if ci.Host == "" && !a.cfg.InProcess {
		return
	}
	ev := clientEvent(KindConnect, ci)
	ev.Time = m.Time
	att := a.attached()
	if att != nil {
		ev.Port = att.ports[ev.Protocol]
		if cz, err := att.srv.Connz(&server.ConnzOptions{CID: ci.ID, State: server.ConnAll}); err == nil && len(cz.Conns) == 1 {
			c := cz.Conns[0]
			if c.IP != "" {
				ev.Remote = net.JoinHostPort(c.IP, strconv.Itoa(c.Port))
			}
			ev.TLS = "none"
			if c.TLSVersion != "" {
				ev.TLS = normTLS(c.TLSVersion)
			}
		}
		att.describeInto(&ev)
	}
	a.observe(ev)
}

func (a *Auditor) sysDisconnect(data []byte) {
	var m server.DisconnectEventMsg
	if err := json.Unmarshal(data, &m); err != nil {
		a.log.Debug("audit: bad disconnect event", "err", err)
		return
	}
	ci := &m.Client
	if (ci.Host == "" && !a.cfg.InProcess) || m.Reason == reasonAuthFailure {
		return
	}
	key := "nats|" + strconv.FormatUint(ci.ID, 10)
	a.mu.Lock()
	c := a.conns[key]
	if c == nil {
		c = a.vanished[ci.ID]
	}
	delete(a.vanished, ci.ID)
	if len(a.closed) >= a.cfg.MaxTracked {
		a.pruneClosed(a.now())
	}
	if len(a.closed) < a.cfg.MaxTracked {
		a.closed[ci.ID] = a.now()
	}
	var dIn, dOut uint64
	var device string
	var proto string
	if c != nil {
		device, proto = c.device, c.ev.Protocol
		if n := int64(m.Sent.Msgs) - c.lastIn; n > 0 {
			dIn = uint64(n)
		}
		if proto != "mqtt" {
			if n := int64(m.Received.Msgs) - c.lastOut; n > 0 {
				dOut = uint64(n)
			}
		}
	}
	a.mu.Unlock()
	if c == nil {
		return // never logged in (protocol errors) or already gone
	}
	a.countClient(device, dIn, dOut)
	ev := c.ev
	ev.Kind, ev.Time, ev.Reason = KindDisconnect, m.Time, m.Reason
	a.observe(ev)
}

func (a *Auditor) sysAuthErr(data []byte) {
	var m server.DisconnectEventMsg
	if err := json.Unmarshal(data, &m); err != nil {
		a.log.Debug("audit: bad auth error event", "err", err)
		return
	}
	ci := &m.Client
	if ci.Host == "" && !a.cfg.InProcess {
		return
	}
	ev := clientEvent(KindAuthFail, ci)
	ev.Time, ev.Reason = m.Time, m.Reason
	a.mu.Lock()
	if r, ok := a.lineRemote[ci.ID]; ok {
		ev.Remote = r
		delete(a.lineRemote, ci.ID)
	}
	att := a.att
	a.mu.Unlock()
	if att != nil {
		ev.Port = att.ports[ev.Protocol]
		att.describeInto(&ev)
	}
	a.observe(ev)
}

// seed adds the connections open at attach time to the table.
func (a *Auditor) seed(att *attachment) {
	cz, err := att.srv.Connz(&server.ConnzOptions{Username: true, Limit: maxConnz})
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ci := range cz.Conns {
		if ci.IP == "" && !a.cfg.InProcess {
			continue
		}
		ev := connInfoEvent(ci, att)
		k := connKey(ev)
		if _, ok := a.conns[k]; !ok {
			a.conns[k] = &conn{key: k, ev: ev, device: deviceName(ev), subs: map[string]subCount{}}
		}
	}
}

func connInfoEvent(ci *server.ConnInfo, att *attachment) Event {
	proto := ci.Type
	if proto == "" {
		proto = "nats"
	}
	ev := Event{
		Kind: KindConnect, Time: ci.Start.UTC(), Source: SourceNATS, Protocol: proto, Listener: proto,
		Port: att.ports[proto], Remote: net.JoinHostPort(ci.IP, strconv.Itoa(ci.Port)), ClientID: ci.MQTTClient,
		User: ci.AuthorizedUser, Account: ci.Account, Lang: ci.Lang, Version: ci.Version, CID: ci.Cid, TLS: "none",
	}
	if ci.IP == "" {
		ev.Remote = ""
	}
	if ev.ClientID == "" {
		ev.ClientID = ci.Name
	}
	if ci.TLSVersion != "" {
		ev.TLS = normTLS(ci.TLSVersion)
	}
	att.describeInto(&ev)
	return ev
}

// poll reads the connection list: message counts per client and per
// subscription filter, and connections the events missed.
func (a *Auditor) poll() {
	att := a.attached()
	if att == nil {
		return
	}
	a.pollTapDrops(att)
	cz, err := att.srv.Connz(&server.ConnzOptions{Username: true, SubscriptionsDetail: true, Limit: maxConnz})
	if err != nil {
		a.log.Debug("audit: connection list", "err", err)
		return
	}
	type clientDelta struct {
		device  string
		in, out uint64
	}
	var clients []clientDelta
	topics := map[string]uint64{}
	a.mu.Lock()
	seen := map[string]bool{}
	for _, ci := range cz.Conns {
		if ci.IP == "" && !a.cfg.InProcess {
			continue
		}
		k := "nats|" + strconv.FormatUint(ci.Cid, 10)
		if _, gone := a.closed[ci.Cid]; gone {
			continue // its disconnect event was handled; the list is behind
		}
		c := a.conns[k]
		if c == nil {
			c = a.vanished[ci.Cid]
			delete(a.vanished, ci.Cid)
		}
		if c != nil && a.conns[k] == nil {
			a.conns[k] = c // listed again after a poll missed it
		} else if c == nil {
			ev := connInfoEvent(ci, att)
			c = &conn{key: k, ev: ev, device: deviceName(ev), subs: map[string]subCount{}}
			a.conns[k] = c
		}
		seen[k] = true
		c.missing = 0
		var d clientDelta
		d.device = c.device
		if n := ci.InMsgs - c.lastIn; n > 0 {
			d.in = uint64(n)
		}
		c.lastIn = ci.InMsgs
		mqtt := ci.MQTTClient != "" || c.ev.Protocol == "mqtt"
		if !mqtt {
			if n := ci.OutMsgs - c.lastOut; n > 0 {
				d.out = uint64(n)
			}
			c.lastOut = ci.OutMsgs
		}
		subs := make(map[string]subCount, len(ci.SubsDetail))
		for _, sd := range ci.SubsDetail {
			if skipSubject(sd.Subject) {
				continue
			}
			filter := subjectToFilter(sd.Subject, strings.HasSuffix(sd.Sid, " fwc"))
			n := sd.Msgs - c.subs[sd.Sid].msgs
			if n > 0 {
				topics[filter] += uint64(n)
				if mqtt {
					d.out += uint64(n)
				}
			}
			subs[sd.Sid] = subCount{filter: filter, msgs: sd.Msgs}
		}
		c.subs = subs
		if d.in > 0 || d.out > 0 {
			clients = append(clients, d)
		}
	}
	for k, c := range a.conns {
		if strings.HasPrefix(k, "nats|") && !seen[k] {
			// Gone without a disconnect event yet: wait one more poll for
			// the event before forgetting it.
			c.missing++
			if c.missing > 1 {
				delete(a.conns, k)
				c.gone = a.now()
				if len(a.vanished) < a.cfg.MaxTracked {
					a.vanished[c.ev.CID] = c
				}
			}
		}
	}
	a.mu.Unlock()
	for _, d := range clients {
		a.countClient(d.device, d.in, d.out)
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		a.m.topics.add(t, DirDeliver, topics[t])
		a.traffic.add(false, t, 0, topics[t])
	}
}

func (a *Auditor) countClient(device string, in, out uint64) {
	a.m.clients.add(device, DirPublish, in)
	a.m.clients.add(device, DirDeliver, out)
	a.traffic.add(true, device, in, out)
}

func (a *Auditor) pollTapDrops(att *attachment) {
	att.tapMu.Lock()
	defer att.tapMu.Unlock()
	for _, s := range att.tapSubs {
		n, err := s.Dropped()
		if err != nil {
			continue
		}
		if d := n - att.tapDropped[s]; d > 0 {
			a.m.dropped.WithLabelValues("tap").Add(float64(d))
		}
		att.tapDropped[s] = n
	}
}

// tapMsg counts one publish seen by the tap.
func (a *Auditor) tapMsg(m *nats.Msg) {
	for _, p := range a.cfg.TapSkip {
		if strings.HasPrefix(m.Subject, p) {
			return
		}
	}
	topic := event.SubjectToTopic(m.Subject)
	a.m.topics.add(topic, DirPublish, 1)
	a.traffic.add(false, topic, 1, 0)
}

// skipSubject tells subscriptions that are not client topics: internal
// ($...), reply inboxes.
func skipSubject(s string) bool {
	return s == "" || s[0] == '$' || strings.HasPrefix(s, "_INBOX") || strings.HasPrefix(s, "_R_") || strings.HasPrefix(s, "_WARREN")
}

// subjectToFilter turns a subscription subject into an MQTT topic filter:
// "a.>" is "a/#", "a.*.b" is "a/+/b". fwc marks the parent-level
// subscription the MQTT gateway adds for "a/#" (subject "a"), which is
// reported under "a/#" too.
func subjectToFilter(s string, fwc bool) string {
	if fwc {
		s += ".>"
	}
	t := event.SubjectToTopic(s)
	levels := strings.Split(t, "/")
	for i, l := range levels {
		switch l {
		case ">":
			levels[i] = "#"
		case "*":
			levels[i] = "+"
		}
	}
	return strings.Join(levels, "/")
}
