package discovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/hashicorp/memberlist"
)

// Role says what a node is in the mesh.
type Role string

// Roles a node can advertise.
const (
	RoleHub  Role = "hub"
	RoleEdge Role = "edge"
)

// LinkState is an edge's view of its connection to the hub, as it
// advertises it. Decoders accept any short token so that a newer edge with a
// new state is still listed.
type LinkState string

// Link states an edge advertises.
const (
	LinkUnknown    LinkState = ""
	LinkConnecting LinkState = "connecting"
	LinkUp         LinkState = "up"
	LinkDown       LinkState = "down"
	// LinkNotConfigured: the edge has no hub address (no hub.url and no
	// discovery hook).
	LinkNotConfigured LinkState = "not-configured"
)

// MaxMetaSize is the largest encoded Meta memberlist carries (its
// MetaMaxSize).
const MaxMetaSize = memberlist.MetaMaxSize

// Limits on Meta fields, checked on encode and decode.
const (
	maxIDLen      = 64
	maxVersionLen = 64
	maxTLSNameLen = 253
	maxURLLen     = 256
	maxURLs       = 16
	maxLinkLen    = 16
)

// ErrMetaTooLarge is returned when metadata does not fit in MaxMetaSize even
// with its NATS URL list cut to one entry.
var ErrMetaTooLarge = errors.New("metadata does not fit in 512 bytes")

// Meta is what a node advertises about itself through gossip.
//
// Wire format: one compact JSON object with short keys, at most 512 bytes:
//
//	{"r":"hub","id":"home","v":"v0.3.0","u":["tls://10.0.0.5:4222"],"tls":"hub.warren"}
//	{"r":"edge","id":"vps1","v":"v0.3.0","bl":17,"l":"up"}
//
// Empty fields are left out; decoders ignore keys they do not know, so a
// field can be added without breaking older nodes.
type Meta struct {
	// Role is RoleHub or RoleEdge. Required.
	Role Role `json:"r"`
	// ID is the node's identity in warren: the edge id, or the hub's name.
	ID string `json:"id,omitempty"`
	// Version is the warren version the node runs.
	Version string `json:"v,omitempty"`
	// NATSURLs are the hub's NATS client URLs (nats://, tls://, ws://,
	// wss://), most preferred first. A URL whose host is empty or
	// unspecified (0.0.0.0, [::]) means "my gossip address": readers
	// substitute the address they see the hub on. Hub only.
	NATSURLs []string `json:"u,omitempty"`
	// TLSServerName is the name on the hub's server certificate. Hub only.
	TLSServerName string `json:"tls,omitempty"`
	// Backlog is the number of events waiting to be forwarded. Edge only.
	Backlog uint64 `json:"bl,omitempty"`
	// Link is the edge's hub-link state. Edge only.
	Link LinkState `json:"l,omitempty"`
}

// Validate checks every field against the limits of the wire format.
func (m Meta) Validate() error {
	var errs []error
	switch m.Role {
	case RoleHub, RoleEdge:
	case "":
		errs = append(errs, errors.New("role: missing; want hub or edge"))
	default:
		errs = append(errs, fmt.Errorf("role: %q unknown; want hub or edge", string(m.Role)))
	}
	if err := checkToken(m.ID, maxIDLen); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
	}
	if err := checkToken(m.Version, maxVersionLen); err != nil {
		errs = append(errs, fmt.Errorf("version: %w", err))
	}
	if err := checkToken(m.TLSServerName, maxTLSNameLen); err != nil {
		errs = append(errs, fmt.Errorf("tls_server_name: %w", err))
	}
	if len(m.NATSURLs) > maxURLs {
		errs = append(errs, fmt.Errorf("nats_urls: %d entries, at most %d", len(m.NATSURLs), maxURLs))
	}
	for i, u := range m.NATSURLs {
		if err := checkNATSURL(u); err != nil {
			errs = append(errs, fmt.Errorf("nats_urls[%d]: %w", i, err))
		}
	}
	if len(m.Link) > maxLinkLen {
		errs = append(errs, fmt.Errorf("link: longer than %d bytes", maxLinkLen))
	}
	for _, c := range []byte(m.Link) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			errs = append(errs, errors.New("link: only a-z, 0-9, '-' and '_' allowed"))
			break
		}
	}
	return errors.Join(errs...)
}

// checkToken accepts up to max bytes of visible ASCII (no spaces, no control
// characters), which keeps log lines and status output safe.
func checkToken(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d bytes", max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("byte %d is not visible ASCII", i)
		}
	}
	return nil
}

func checkNATSURL(s string) error {
	if len(s) > maxURLLen {
		return fmt.Errorf("longer than %d bytes", maxURLLen)
	}
	if err := checkToken(s, maxURLLen); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q not allowed; want nats, tls, ws or wss", u.Scheme)
	}
	if u.User != nil {
		return errors.New("credentials are not allowed in gossiped URLs")
	}
	if u.Host == "" {
		return errors.New("missing host:port")
	}
	if u.Port() == "" && u.Hostname() == "" {
		return errors.New("missing host:port")
	}
	return nil
}

// EncodeMeta validates m and encodes it in the wire format. When the result
// would exceed MaxMetaSize it drops NATS URLs from the end of the list (never
// the first one) and reports how many it dropped; if it still does not fit it
// returns ErrMetaTooLarge.
func EncodeMeta(m Meta) (b []byte, dropped int, err error) {
	if err := m.Validate(); err != nil {
		return nil, 0, fmt.Errorf("invalid metadata: %w", err)
	}
	urls := m.NATSURLs
	for {
		m.NATSURLs = urls
		b, err = marshalCompact(m)
		if err != nil {
			return nil, 0, fmt.Errorf("encode metadata: %w", err)
		}
		if len(b) <= MaxMetaSize {
			return b, dropped, nil
		}
		if len(urls) <= 1 {
			return nil, 0, fmt.Errorf("%w: %d bytes", ErrMetaTooLarge, len(b))
		}
		urls = urls[:len(urls)-1]
		dropped++
	}
}

func marshalCompact(m Meta) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeMeta parses metadata received from a peer. It never panics; anything
// that is not one valid JSON object within the limits is an error.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("empty metadata")
	}
	if len(b) > MaxMetaSize {
		return Meta{}, fmt.Errorf("metadata is %d bytes, over the %d-byte limit", len(b), MaxMetaSize)
	}
	if b[0] != '{' {
		return Meta{}, errors.New("metadata is not a JSON object")
	}
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("decode metadata: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Meta{}, errors.New("decode metadata: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return Meta{}, fmt.Errorf("invalid metadata: %w", err)
	}
	return m, nil
}

// Token makes s fit a Meta token field (ID, Version): bytes that are not
// visible ASCII become '_' and the result is cut to 64 bytes.
func Token(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	if len(b) > maxVersionLen {
		b = b[:maxVersionLen]
	}
	return string(b)
}

// LinkFromBridge maps the bridge's link state ("connected", "connecting",
// "disconnected", "not configured") to what an edge advertises.
func LinkFromBridge(state string) LinkState {
	switch state {
	case "connected":
		return LinkUp
	case "connecting":
		return LinkConnecting
	case "disconnected":
		return LinkDown
	case "not configured":
		return LinkNotConfigured
	default:
		return LinkUnknown
	}
}
