// Package event is the event contract shared by the edge, the bridge, the hub
// and the notifier: header names, stream names, subject layout, message ids
// and the mapping between MQTT topics and NATS subjects.
package event

import (
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Provenance headers set by the edge and kept through the hub.
const (
	HdrEdge     = "Warren-Edge"     // edge id that accepted the event
	HdrSource   = "Warren-Source"   // SourceUDP, SourceMQTT, SourceAudit
	HdrReceived = "Warren-Received" // RFC 3339 (nanoseconds, UTC) receive time at the edge
	HdrRemote   = "Warren-Remote"   // sender address (ip:port) where known
	HdrAuth     = "Warren-Auth"     // "signed:<key-id>", "unsigned", "mqtt"
	HdrTopic    = "Warren-Topic"    // the event's MQTT topic
	HdrEpoch    = "Warren-Epoch"    // edge store epoch
	HdrSeq      = "Warren-Seq"      // edge stream sequence
	HdrMsgID    = "Nats-Msg-Id"     // JetStream deduplication id
)

// Sources of events.
const (
	SourceUDP   = "udp"
	SourceMQTT  = "mqtt"
	SourceAudit = "audit"
)

// Stream names and subject prefixes. Edge and hub use different names and
// JetStream domains on purpose (see PITFALLS: identical names across domains).
const (
	EdgeDomain        = "edge"
	EdgeStream        = "EDGE"
	EdgeSubjectPrefix = "ev." // edge stream subjects: ev.<subject(topic)>
	HubDomain         = "hub"
	HubStream         = "HUB"
	HubSubjectPrefix  = "hub.ev." // hub stream subjects: hub.ev.<edge-id>.<subject(topic)>
	IngestPrefix      = "edge."   // edges publish to edge.<edge-id>.<subject(topic)>
	HareTopic         = "logging/hare"
)

// EdgeSubject is the edge stream subject of an event with MQTT topic t.
func EdgeSubject(topic string) (string, error) {
	s, err := TopicToSubject(topic)
	if err != nil {
		return "", err
	}
	return EdgeSubjectPrefix + s, nil
}

// IngestSubject is the subject an edge publishes an edge-stream subject to at the hub.
func IngestSubject(edgeID, edgeSubject string) string {
	return IngestPrefix + edgeID + "." + strings.TrimPrefix(edgeSubject, EdgeSubjectPrefix)
}

// HubSubject is the hub stream subject for an event of edge edgeID whose
// subject (without any prefix) is s.
func HubSubject(edgeID, s string) string {
	return HubSubjectPrefix + edgeID + "." + s
}

// SplitIngest splits an ingest subject edge.<id>.<rest> into id and rest.
func SplitIngest(subject string) (edgeID, rest string, err error) {
	return splitPrefixed(subject, IngestPrefix)
}

// SplitHub splits a hub stream subject hub.ev.<id>.<rest> into id and rest.
func SplitHub(subject string) (edgeID, rest string, err error) {
	return splitPrefixed(subject, HubSubjectPrefix)
}

func splitPrefixed(subject, prefix string) (string, string, error) {
	if !strings.HasPrefix(subject, prefix) {
		return "", "", fmt.Errorf("subject %q: want prefix %q", subject, prefix)
	}
	id, rest, ok := strings.Cut(subject[len(prefix):], ".")
	if !ok || id == "" || rest == "" {
		return "", "", fmt.Errorf("subject %q: want %s<edge-id>.<subject>", subject, prefix)
	}
	return id, rest, nil
}

// MsgID is the hub deduplication id of an edge event: <edge-id>:<epoch>:<seq>.
func MsgID(edgeID, epoch string, seq uint64) string {
	return edgeID + ":" + epoch + ":" + strconv.FormatUint(seq, 10)
}

// ParseMsgID splits a hub Msg-Id into its parts.
func ParseMsgID(id string) (edgeID, epoch string, seq uint64, err error) {
	parts := strings.Split(id, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", 0, fmt.Errorf("msg id %q: want <edge-id>:<epoch>:<seq>", id)
	}
	seq, err = strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return "", "", 0, fmt.Errorf("msg id %q: bad sequence: %w", id, err)
	}
	return parts[0], parts[1], seq, nil
}

// ErrBadID is returned by ValidID for ids that cannot be a subject token.
var ErrBadID = errors.New("must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit")

// ValidID checks an edge id: it is used as a NATS subject token, a TLS
// identity and a file name, so the alphabet is small.
func ValidID(id string) error {
	if len(id) == 0 || len(id) > 63 {
		return ErrBadID
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return ErrBadID
		}
	}
	return nil
}

// WithoutControl copies headers h without the NATS/JetStream control
// headers (Nats-*, any case), leaving room for extra more. Forwarded events
// must not carry them: JetStream acts on them (expected stream or sequence,
// rollups, TTLs, Msg-Id), and only warren chooses those at each hop.
func WithoutControl[H ~map[string][]string](h H, extra int) H {
	out := make(H, len(h)+extra)
	for k, v := range h {
		if len(k) >= 5 && strings.EqualFold(k[:5], "nats-") {
			continue
		}
		out[k] = v
	}
	return out
}

// HubOrigin reads a HUB-stream message's edge and topic from its subject
// hub.ev.<edge>.<subject>, which is authoritative (an edge publishes only
// under its own id, and a header cannot move its event to another topic),
// and its receive time from Warren-Received (zero when missing or bad).
func HubOrigin(subject string, h map[string][]string) (edgeID, topic string, received time.Time, err error) {
	edgeID, rest, err := SplitHub(subject)
	if err != nil {
		return "", "", time.Time{}, err
	}
	if r := textproto.MIMEHeader(h).Get(HdrReceived); r != "" {
		received, _ = time.Parse(time.RFC3339Nano, r)
	}
	return edgeID, SubjectToTopic(rest), received, nil
}

// StatusSubject is the subject token, after edge.<edge-id>., of the status
// heartbeat an edge's bridge sends to the hub; the hub answers "ok".
const StatusSubject = "$warren.status"

// Heartbeat is the JSON body of the status heartbeat: the bridge sends it
// every bridge.heartbeat and after every connect; the hub keeps the latest
// one per edge for status and the audit. Heartbeats are not events and are
// not stored. Times are RFC 3339; an omitted or zero time is unknown.
type Heartbeat struct {
	ID           string    `json:"id"`            // edge id; must be the publishing edge
	Version      string    `json:"version"`       // edge build version
	Epoch        string    `json:"epoch"`         // edge store epoch
	Started      time.Time `json:"started"`       // edge start (when its bridge was made)
	BacklogMsgs  uint64    `json:"backlog_msgs"`  // events stored at the edge, not yet confirmed by the hub
	BacklogBytes uint64    `json:"backlog_bytes"` // their size
	OldestAgeMS  int64     `json:"oldest_age_ms"` // age of the oldest of them, 0 when none
	Forwarded    uint64    `json:"forwarded"`     // events confirmed by the hub since the edge started
	LinkSince    time.Time `json:"link_since"`    // when the current hub connection was made
	StoreFull    uint64    `json:"store_full"`    // events refused since start because the edge store was full
}
