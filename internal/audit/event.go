package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Kind is what an audit event reports.
type Kind string

// Kinds of audit events.
const (
	KindConnect    Kind = "connect"              // a client connected (after authentication)
	KindDisconnect Kind = "disconnect"           // a client went away; Reason says why
	KindAuthFail   Kind = "auth_failure"         // a login was refused
	KindPermission Kind = "permission_violation" // a publish or subscribe was denied
	KindTakeover   Kind = "takeover"             // a client id was taken over by a new connection
	KindTLSFailure Kind = "tls_failure"          // a TLS handshake failed
	KindUnknown    Kind = "unknown_edge"         // an edge identity the hub does not know
	KindUnsigned   Kind = "unsigned_datagram"    // an unsigned hare datagram where signed ones are required
	KindVersion    Kind = "version"              // a software version was reported (edge, broker)
	KindStoreFull  Kind = "store_full"           // an edge refused events because its store is full
	KindTraffic    Kind = "traffic"              // periodic per-client and per-topic message counts
	KindUnblock    Kind = "unblock"              // a temporary block was lifted
	KindAlert      Kind = "alert"                // a rule fired; Rule says which
)

// Kinds lists every kind, for validation and documentation.
var Kinds = []Kind{KindConnect, KindDisconnect, KindAuthFail, KindPermission, KindTakeover,
	KindTLSFailure, KindUnknown, KindUnsigned, KindVersion, KindStoreFull, KindTraffic, KindUnblock, KindAlert}

// Rule names an alert rule.
type Rule string

// Alert rules.
const (
	RulePlain      Rule = "plain_remote"      // connection on a non-TLS listener from an untrusted address
	RuleOldVersion Rule = "old_version"       // reported version below the configured minimum
	RuleBruteAddr  Rule = "brute_force_addr"  // too many failed logins from one address
	RuleBruteUser  Rule = "brute_force_user"  // too many failed logins for one user
	RuleUnknown    Rule = "unknown_edge"      // an unknown edge identity tried to connect
	RuleUnsigned   Rule = "unsigned_datagram" // unsigned hare datagrams where signed ones are required
	RuleStoreFull  Rule = "edge_store_full"   // an edge refuses new events: its store is full
)

// Rules lists every rule.
var Rules = []Rule{RulePlain, RuleOldVersion, RuleBruteAddr, RuleBruteUser, RuleUnknown, RuleUnsigned, RuleStoreFull}

// Severities of alerts.
const (
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Sources of audit observations (Event.Source).
const (
	SourceNATS      = "nats"      // the embedded nats-server (system events, log, monitoring)
	SourceMosquitto = "mosquitto" // a followed mosquitto log
	SourceOwner     = "warren"    // reported by the edge or hub itself
	SourceRules     = "rules"     // made by the alert rules
)

// TopicPrefix starts the MQTT topic of every audit event: an event of
// kind K has topic warren/audit/K, an alert of rule R warren/audit/alert/R,
// so notifier routes can take all alerts with warren/audit/alert/#.
const TopicPrefix = "warren/audit/"

// Event is one audit event. Its JSON form (Encode) is the payload of the
// event stored in the EDGE or HUB stream. Empty fields are left out.
type Event struct {
	Kind     Kind      `json:"kind"`
	Time     time.Time `json:"time"`
	Observer string    `json:"observer,omitempty"` // edge id or hub server name that saw it
	Source   string    `json:"source,omitempty"`   // SourceNATS, SourceMosquitto, SourceOwner, SourceRules

	Protocol  string `json:"protocol,omitempty"`   // "mqtt", "nats", "websocket", "leafnode"
	Listener  string `json:"listener,omitempty"`   // "mqtt", "nats", "mqtt-tls", "mosquitto", ...
	Port      int    `json:"port,omitempty"`       // listener port, when known
	Remote    string `json:"remote,omitempty"`     // client "ip:port", or "ip" when the port is unknown
	ClientID  string `json:"client_id,omitempty"`  // MQTT client id, or NATS connection name
	User      string `json:"user,omitempty"`       // authenticated (or, for failures, attempted) user
	Account   string `json:"account,omitempty"`    // NATS account
	TLS       string `json:"tls,omitempty"`        // TLS version ("1.3"), "none" for plain; empty when unknown
	Lang      string `json:"lang,omitempty"`       // NATS client library language, "mosquitto", "edge"
	Version   string `json:"version,omitempty"`    // client library, edge or broker version
	MQTTLevel int    `json:"mqtt_level,omitempty"` // MQTT protocol level (3 = 3.1, 4 = 3.1.1, 5 = 5.0), when known
	CID       uint64 `json:"cid,omitempty"`        // nats-server connection id
	Reason    string `json:"reason,omitempty"`     // disconnect reason, failure detail, violation kind
	Subject   string `json:"subject,omitempty"`    // denied NATS subject
	Topic     string `json:"topic,omitempty"`      // denied MQTT topic (from Subject)
	Edge      string `json:"edge,omitempty"`       // edge id (unknown_edge, version of an edge)

	Rule     Rule       `json:"rule,omitempty"`     // alerts only
	Severity string     `json:"severity,omitempty"` // alerts only: SeverityWarning or SeverityCritical
	Key      string     `json:"key,omitempty"`      // what the alert is about (address, user, edge id, ...)
	Count    int        `json:"count,omitempty"`    // occurrences this event stands for
	Until    *time.Time `json:"until,omitempty"`    // end of a block
	Message  string     `json:"message,omitempty"`  // one line for people

	Clients []Traffic `json:"clients,omitempty"` // traffic events: per client id
	Topics  []Traffic `json:"topics,omitempty"`  // traffic events: per topic
}

// Traffic is a message count of one client or topic over a traffic
// event's interval. In counts publishes, Out deliveries.
type Traffic struct {
	Name string `json:"name"`
	In   uint64 `json:"in,omitempty"`
	Out  uint64 `json:"out,omitempty"`
}

// StoreTopic is the MQTT topic the event is stored under (its Topic
// field is something else: the topic of a denied publish).
func (e Event) StoreTopic() string {
	if e.Kind == KindAlert && e.Rule != "" {
		return TopicPrefix + string(KindAlert) + "/" + string(e.Rule)
	}
	return TopicPrefix + string(e.Kind)
}

// Encode is the JSON payload of an event.
func Encode(e Event) ([]byte, error) {
	if e.Kind == "" {
		return nil, errors.New("audit event without kind")
	}
	return json.Marshal(e)
}

// maxPayload bounds what Decode accepts.
const maxPayload = 1 << 20

// Decode parses an audit event payload. Unknown fields are ignored (newer
// producers may add some); a missing kind is an error.
func Decode(b []byte) (Event, error) {
	var e Event
	if len(b) > maxPayload {
		return e, fmt.Errorf("audit event: %d bytes, more than %d", len(b), maxPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil {
		return Event{}, fmt.Errorf("audit event: %w", err)
	}
	if e.Kind == "" {
		return Event{}, errors.New("audit event: no kind")
	}
	return e, nil
}
