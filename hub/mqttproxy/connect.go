package mqttproxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MQTT control packet types used here.
const (
	typeConnect = 1
	typeConnAck = 2
)

// CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
const (
	ConnAckBadUserPass   = 0x04
	ConnAckNotAuthorized = 0x05
)

// maxRemaining is the largest remaining length MQTT can encode.
const maxRemaining = 268435455

// ErrNotConnect is returned (wrapped) when the first packet is not a CONNECT.
var ErrNotConnect = errors.New("first packet is not an MQTT CONNECT")

// ErrTooLarge is returned (wrapped) when a packet exceeds the reader's limit.
var ErrTooLarge = errors.New("packet too large")

// Connect is what the proxy needs from an MQTT CONNECT packet. The
// password itself is never kept.
type Connect struct {
	ProtocolName string // "MQTT" (3.1.1) or "MQIsdp" (3.1)
	Level        byte   // 4 for 3.1.1, 3 for 3.1
	CleanSession bool
	KeepAlive    uint16
	ClientID     string
	Will         bool
	HasUsername  bool
	Username     string
	HasPassword  bool
}

// ReadPacket reads one MQTT control packet (fixed header and remaining
// bytes) and returns it whole. Packets larger than max bytes are refused
// with ErrTooLarge before their body is read.
func ReadPacket(r *bufio.Reader, max int) ([]byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	hdr := []byte{first}
	remaining := 0
	for i := 0; ; i++ {
		if i == 4 {
			return nil, errors.New("malformed remaining length (more than 4 bytes)")
		}
		b, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("remaining length: %w", noEOF(err))
		}
		hdr = append(hdr, b)
		remaining |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
	}
	if remaining > maxRemaining {
		return nil, errors.New("malformed remaining length")
	}
	if len(hdr)+remaining > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(hdr)+remaining, max)
	}
	pkt := make([]byte, len(hdr)+remaining)
	copy(pkt, hdr)
	if _, err := io.ReadFull(r, pkt[len(hdr):]); err != nil {
		return nil, fmt.Errorf("packet body: %w", noEOF(err))
	}
	return pkt, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ParseConnect decodes a whole CONNECT packet as read by ReadPacket. It
// checks the structure (MQTT 3.1 and 3.1.1) strictly enough that the
// username it reports is the one the broker will see; semantic checks
// (supported protocol level, client id rules) are the broker's.
func ParseConnect(pkt []byte) (Connect, error) {
	var c Connect
	if len(pkt) < 2 {
		return c, errors.New("short packet")
	}
	if pkt[0]>>4 != typeConnect {
		return c, fmt.Errorf("%w (packet type %d)", ErrNotConnect, pkt[0]>>4)
	}
	if pkt[0]&0x0f != 0 {
		return c, errors.New("CONNECT with reserved flags set")
	}
	// skip the remaining length
	i := 1
	for ; i < len(pkt) && i <= 4; i++ {
		if pkt[i]&0x80 == 0 {
			break
		}
	}
	if i >= len(pkt) || i > 4 {
		return c, errors.New("malformed remaining length")
	}
	r := reader{b: pkt[i+1:]}
	name, err := r.str("protocol name")
	if err != nil {
		return c, err
	}
	c.ProtocolName = name
	if c.Level, err = r.byte("protocol level"); err != nil {
		return c, err
	}
	flags, err := r.byte("connect flags")
	if err != nil {
		return c, err
	}
	if flags&0x01 != 0 {
		return c, errors.New("CONNECT flags: reserved bit set")
	}
	c.CleanSession = flags&0x02 != 0
	c.Will = flags&0x04 != 0
	willQoS := flags >> 3 & 0x03
	willRetain := flags&0x20 != 0
	c.HasPassword = flags&0x40 != 0
	c.HasUsername = flags&0x80 != 0
	if !c.Will && (willQoS != 0 || willRetain) {
		return c, errors.New("CONNECT flags: will QoS or retain without will")
	}
	if willQoS == 3 {
		return c, errors.New("CONNECT flags: will QoS 3")
	}
	if c.KeepAlive, err = r.uint16("keep alive"); err != nil {
		return c, err
	}
	if c.ClientID, err = r.str("client id"); err != nil {
		return c, err
	}
	if c.Will {
		if _, err := r.str("will topic"); err != nil {
			return c, err
		}
		if _, err := r.bin("will message"); err != nil {
			return c, err
		}
	}
	if c.HasUsername {
		if c.Username, err = r.str("user name"); err != nil {
			return c, err
		}
	}
	if c.HasPassword {
		if _, err := r.bin("password"); err != nil {
			return c, err
		}
	}
	if len(r.b) != 0 {
		return c, fmt.Errorf("%d bytes after the CONNECT payload", len(r.b))
	}
	return c, nil
}

// ConnAck is a CONNACK packet with return code rc and no session present.
func ConnAck(rc byte) []byte {
	return []byte{typeConnAck << 4, 2, 0, rc}
}

type reader struct{ b []byte }

func (r *reader) byte(what string) (byte, error) {
	if len(r.b) < 1 {
		return 0, fmt.Errorf("%s: truncated", what)
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v, nil
}

func (r *reader) uint16(what string) (uint16, error) {
	if len(r.b) < 2 {
		return 0, fmt.Errorf("%s: truncated", what)
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v, nil
}

func (r *reader) bin(what string) ([]byte, error) {
	n, err := r.uint16(what + " length")
	if err != nil {
		return nil, err
	}
	if len(r.b) < int(n) {
		return nil, fmt.Errorf("%s: truncated", what)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) str(what string) (string, error) {
	b, err := r.bin(what)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%s: not UTF-8", what)
	}
	for _, c := range b {
		if c == 0 {
			return "", fmt.Errorf("%s: contains NUL", what)
		}
	}
	return string(b), nil
}
