package hub

import (
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/warren-mesh/warren/hub/internal/refusal"
	"github.com/warren-mesh/warren/internal/version"
)

// Status is what `hub status --json` prints.
type Status struct {
	ServerName string       `json:"server_name"`
	Version    string       `json:"version"`
	Started    time.Time    `json:"started"`
	Uptime     string       `json:"uptime"`
	Listeners  Addrs        `json:"listeners"`
	PKIDir     string       `json:"pki_dir"`
	Edges      []EdgeStatus `json:"edges"`
	Stream     StreamStatus `json:"stream"`
	MQTT       MQTTStatus   `json:"mqtt"`
	// Ingest counts edge events by result since start (stored,
	// duplicate, forged_msg_id, out_of_order, ...).
	Ingest      map[string]uint64 `json:"ingest"`
	Republished uint64            `json:"republished"`
	// Refused counts refused connections by "listener/reason".
	Refused map[string]uint64 `json:"refused_connections"`
}

// MQTTStatus lists the MQTT gateway's clients.
type MQTTStatus struct {
	Listen    string       `json:"listen,omitempty"`
	TLSListen string       `json:"tls_listen,omitempty"`
	Clients   []MQTTClient `json:"clients"`
}

// MQTTClient is one connected MQTT client.
type MQTTClient struct {
	ClientID   string    `json:"client_id"`
	User       string    `json:"user"`
	Via        string    `json:"via"`     // "mqtt" (loopback listener) or "mqtt-tls"
	Address    string    `json:"address"` // real remote address (for TLS clients, not the relay's)
	LocalPort  int       `json:"local_port,omitempty"`
	TLSVersion string    `json:"tls_version,omitempty"`
	Since      time.Time `json:"since"`
}

// Status reports the hub's state.
func (h *Hub) Status() Status {
	st := Status{
		ServerName: h.cfg.ServerName,
		Version:    version.String(),
		Listeners:  h.Addrs(),
		PKIDir:     h.layout.Dir,
		Edges:      h.Edges(),
		Stream:     h.streamStatus(),
		MQTT: MQTTStatus{
			Listen:    h.Addrs().MQTT,
			TLSListen: h.Addrs().MQTTTLS,
			Clients:   h.mqttClients(),
		},
		Ingest:  h.m.ingest.snapshot(),
		Refused: h.m.refused.snapshot(),
	}
	if !h.started.IsZero() {
		st.Started = h.started.UTC()
		st.Uptime = time.Since(h.started).Round(time.Second).String()
	}
	st.Republished = h.m.republishedN.Load()
	return st
}

// Edges lists every edge seen since start (connections and heartbeats).
func (h *Hub) Edges() []EdgeStatus { return h.edges.list(h.Server()) }

func (h *Hub) serveEdges(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(h.Edges())
}

// mqttClients lists open MQTT connections, with the real remote address of
// TLS clients (from the relay) instead of the relay's loopback address.
func (h *Hub) mqttClients() []MQTTClient {
	s := h.Server()
	if s == nil {
		return []MQTTClient{}
	}
	cz, err := s.Connz(&server.ConnzOptions{Account: AccountHub, Username: true, Limit: 100000})
	if err != nil {
		return []MQTTClient{}
	}
	out := []MQTTClient{}
	for _, ci := range cz.Conns {
		if ci.MQTTClient == "" {
			continue
		}
		c := MQTTClient{
			ClientID: ci.MQTTClient,
			User:     ci.AuthorizedUser,
			Via:      "mqtt",
			Address:  net.JoinHostPort(ci.IP, strconv.Itoa(ci.Port)),
			Since:    ci.Start.UTC(),
		}
		if p := h.auth.proxy.Load(); p != nil {
			if peer, ok := p.Lookup(ci.Port); ok {
				c.Via, c.Address, c.LocalPort, c.TLSVersion = "mqtt-tls", peer.Remote, ci.Port, peer.TLSVersion
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// classifyNATSLine turns nats-server's TLS handshake failures on the edge
// listener into a warren-level "refused connection" line and a counted
// reason. nats-server logs them as "TLS handshake error" (plain-text
// probes only at debug level, hence the hub runs the server with debug on
// and filters in slog).
func (h *Hub) classifyNATSLine(msg string) {
	if !strings.Contains(msg, "TLS handshake") { // every debug line passes here
		return
	}
	line, ok := refusal.ParseNATSLine(msg)
	if !ok {
		return
	}
	text, ok := refusal.HandshakeError(line.Text)
	if !ok {
		return
	}
	reason := refusal.Classify(text)
	h.m.refused.WithLabelValues("nats", reason).Inc()
	h.log.Warn("refused connection", "listener", "nats", "remote", line.Remote, "reason", reason, "detail", text)
}
