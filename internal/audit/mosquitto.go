package audit

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/warren-mesh/warren/internal/mosqlog"
)

// MosquittoOptions configure following a mosquitto broker's log.
type MosquittoOptions struct {
	// Path is the log file (mosquitto's log_dest file ...). The broker
	// needs connection_messages true (its default).
	Path string
	// Listener labels the events and metrics. Default "mosquitto".
	Listener string
	// TLSPorts are the broker's listener ports that use TLS; connections
	// on other ports are plain ("none"). The log does not say, so without
	// this every connection counts as plain.
	TLSPorts []int
	// FromStart reads what the file already holds first; default only
	// lines written after the follower starts.
	FromStart bool
	// Poll is how often the file is checked (default 250ms).
	Poll time.Duration
	// Location of timestamps without a zone (default time.Local).
	Location *time.Location
}

// FollowMosquitto follows a mosquitto log (formats of 1.4, 1.6 and 2.x,
// across rotation) until ctx ends and turns its connection, disconnect,
// authentication, takeover, TLS and version lines into audit events. What
// a mosquitto log cannot tell: the user of a refused login (brute force per
// user does not apply), the client's software version (MQTT carries only
// the protocol level, reported as mqtt_level), and the TLS version.
func (a *Auditor) FollowMosquitto(ctx context.Context, o MosquittoOptions) error {
	if o.Path == "" {
		return errors.New("audit: mosquitto log path is empty")
	}
	conv := newMosqConverter(o)
	return mosqlog.Follow(ctx, o.Path, mosqlog.FollowOptions{FromStart: o.FromStart, Poll: o.Poll, Location: o.Location},
		func(r mosqlog.Record) {
			for _, ev := range conv.convert(r, a.now()) {
				a.enqueue(input{kind: inObserve, ev: ev})
			}
		})
}

// mosqConverter turns mosquitto log records into events. mosquitto writes
// a connection's lines apart ("New connection from A on port P", then
// "New client connected from A as ID" or "Client <unknown> disconnected,
// not authorised"), so it keeps the sockets not yet logged in and the
// clients connected.
type mosqConverter struct {
	listener string
	tls      map[int]bool
	pending  []mosqPending         // accepted sockets without a login yet, oldest first
	clients  map[string]mosqClient // by client id
	version  string                // last broker version reported
}

type mosqPending struct {
	addr    string
	srcPort int
	port    int
	at      time.Time
}

type mosqClient struct {
	remote string
	port   int
	user   string
}

const (
	maxMosqPending = 256
	maxMosqClients = 65536
	mosqPendingAge = time.Minute
)

func newMosqConverter(o MosquittoOptions) *mosqConverter {
	c := &mosqConverter{listener: o.Listener, tls: map[int]bool{}, clients: map[string]mosqClient{}}
	if c.listener == "" {
		c.listener = "mosquitto"
	}
	for _, p := range o.TLSPorts {
		c.tls[p] = true
	}
	return c
}

func joinRemote(addr string, port int) string {
	if port > 0 {
		return net.JoinHostPort(addr, strconv.Itoa(port))
	}
	return addr
}

// takePending removes and returns the pending socket of addr (and srcPort
// when the line has one, 2.x); with addr "" the newest of any address.
func (c *mosqConverter) takePending(addr string, srcPort int) (mosqPending, bool) {
	for i := len(c.pending) - 1; i >= 0; i-- {
		p := c.pending[i]
		if addr != "" && p.addr != addr || srcPort > 0 && p.srcPort > 0 && p.srcPort != srcPort {
			continue
		}
		c.pending = append(c.pending[:i], c.pending[i+1:]...)
		return p, true
	}
	return mosqPending{}, false
}

func (c *mosqConverter) tlsOf(port int) string {
	switch {
	case port == 0:
		return ""
	case c.tls[port]:
		return "tls"
	}
	return "none"
}

func (c *mosqConverter) convert(r mosqlog.Record, now time.Time) []Event {
	at := r.Time
	if at.IsZero() {
		at = now
	}
	// forget sockets that never logged in
	for len(c.pending) > 0 && (len(c.pending) > maxMosqPending || at.Sub(c.pending[0].at) > mosqPendingAge) {
		c.pending = c.pending[1:]
	}
	base := Event{Time: at, Source: SourceMosquitto, Protocol: "mqtt", Listener: c.listener}
	switch r.Kind {
	case mosqlog.KindServer:
		if r.Version == "" || r.Version == c.version || r.Reason == "terminating" {
			return nil
		}
		c.version = r.Version
		ev := base
		ev.Kind, ev.Lang, ev.Version, ev.Protocol = KindVersion, "mosquitto", r.Version, ""
		ev.Reason = "broker " + r.Reason
		return []Event{ev}
	case mosqlog.KindNewConnection:
		c.pending = append(c.pending, mosqPending{addr: r.Addr, srcPort: r.SrcPort, port: r.Port, at: at})
		return nil
	case mosqlog.KindConnected:
		p, _ := c.takePending(r.Addr, r.SrcPort)
		ev := base
		ev.Kind, ev.ClientID, ev.User, ev.MQTTLevel = KindConnect, r.ClientID, r.Username, r.Protocol
		ev.Remote, ev.Port, ev.TLS = joinRemote(r.Addr, r.SrcPort), p.port, c.tlsOf(p.port)
		if r.Bridge {
			ev.Reason = "bridge"
		}
		if len(c.clients) >= maxMosqClients {
			for k := range c.clients {
				delete(c.clients, k)
				break
			}
		}
		c.clients[r.ClientID] = mosqClient{remote: ev.Remote, port: ev.Port, user: ev.User}
		return []Event{ev}
	case mosqlog.KindDisconnected:
		cl, ok := c.clients[r.ClientID]
		if !ok {
			// A socket that never logged in (a probe, a protocol or TLS
			// error). The line does not say which: its pending entry ages out.
			return nil
		}
		delete(c.clients, r.ClientID)
		ev := base
		ev.Kind, ev.ClientID, ev.User, ev.Remote, ev.Port, ev.TLS = KindDisconnect, r.ClientID, cl.user, cl.remote, cl.port, c.tlsOf(cl.port)
		ev.Reason = r.Reason
		if ev.Reason == "" {
			ev.Reason = "client disconnected"
		}
		return []Event{ev}
	case mosqlog.KindAuthFailed:
		// The line names no address: it belongs to the newest socket that
		// has not logged in (mosquitto handles a CONNECT right after
		// accepting its socket).
		p, _ := c.takePending("", 0)
		ev := base
		ev.Kind, ev.ClientID, ev.Reason = KindAuthFail, r.ClientID, "not authorised"
		ev.Remote, ev.Port, ev.TLS = joinRemote(p.addr, p.srcPort), p.port, c.tlsOf(p.port)
		return []Event{ev}
	case mosqlog.KindTakeover:
		ev := base
		ev.Kind, ev.ClientID = KindTakeover, r.ClientID
		if cl, ok := c.clients[r.ClientID]; ok {
			ev.Reason, ev.User = "replaced "+cl.remote, cl.user
		}
		return []Event{ev}
	case mosqlog.KindTLSFailed:
		p, _ := c.takePending(r.Addr, 0)
		ev := base
		ev.Kind, ev.Remote, ev.Port, ev.Reason = KindTLSFailure, r.Addr, p.port, r.Reason
		return []Event{ev}
	}
	return nil
}
