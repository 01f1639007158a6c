package mqttproxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// connectPacket encodes a CONNECT packet the way a client would.
func connectPacket(name string, level, flags byte, clientID string, will [2]string, user, pass string) []byte {
	var body []byte
	str := func(s string) {
		body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
		body = append(body, s...)
	}
	str(name)
	body = append(body, level, flags, 0, 60)
	str(clientID)
	if flags&0x04 != 0 {
		str(will[0])
		str(will[1])
	}
	if flags&0x80 != 0 {
		str(user)
	}
	if flags&0x40 != 0 {
		str(pass)
	}
	return append(header(typeConnect<<4, len(body)), body...)
}

func header(first byte, n int) []byte {
	h := []byte{first}
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		h = append(h, b)
		if n == 0 {
			return h
		}
	}
}

func TestParseConnect(t *testing.T) {
	cases := []struct {
		name string
		pkt  []byte
		want Connect
		err  string
	}{
		{
			name: "user and password",
			pkt:  connectPacket("MQTT", 4, 0xC2, "mqttwarn", [2]string{}, "alice", "secret"),
			want: Connect{ProtocolName: "MQTT", Level: 4, CleanSession: true, KeepAlive: 60, ClientID: "mqttwarn", HasUsername: true, Username: "alice", HasPassword: true},
		},
		{
			name: "anonymous",
			pkt:  connectPacket("MQTT", 4, 0x02, "sub", [2]string{}, "", ""),
			want: Connect{ProtocolName: "MQTT", Level: 4, CleanSession: true, KeepAlive: 60, ClientID: "sub"},
		},
		{
			name: "mqtt 3.1 with will",
			pkt:  connectPacket("MQIsdp", 3, 0x80|0x04|0x08, "c", [2]string{"status/c", "gone"}, "bob", ""),
			want: Connect{ProtocolName: "MQIsdp", Level: 3, KeepAlive: 60, ClientID: "c", Will: true, HasUsername: true, Username: "bob"},
		},
		{name: "not connect", pkt: append(header(0x30, 2), 0, 0), err: "not an MQTT CONNECT"},
		{name: "reserved header flags", pkt: append([]byte{0x11}, connectPacket("MQTT", 4, 2, "x", [2]string{}, "", "")[1:]...), err: "reserved flags"},
		{name: "reserved connect flag", pkt: connectPacket("MQTT", 4, 0x03, "x", [2]string{}, "", ""), err: "reserved bit"},
		{name: "will qos without will", pkt: connectPacket("MQTT", 4, 0x08, "x", [2]string{}, "", ""), err: "without will"},
		{name: "will qos 3", pkt: connectPacket("MQTT", 4, 0x1C, "x", [2]string{"a", "b"}, "", ""), err: "QoS 3"},
		{name: "truncated", pkt: connectPacket("MQTT", 4, 0xC2, "x", [2]string{}, "u", "p")[:12], err: "truncated"},
		{name: "trailing", pkt: append(header(0x10, 15), append(connectPacket("MQTT", 4, 0x02, "x", [2]string{}, "", "")[2:], 0xFF)...), err: "after the CONNECT"},
		{name: "bad utf8 user", pkt: connectPacket("MQTT", 4, 0x80, "x", [2]string{}, "\xff", ""), err: "not UTF-8"},
		{name: "nul in client id", pkt: connectPacket("MQTT", 4, 0x00, "a\x00b", [2]string{}, "", ""), err: "NUL"},
		{name: "empty", pkt: []byte{0x10}, err: "short"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseConnect(c.pkt)
			if c.err != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.err)) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestReadPacket(t *testing.T) {
	pkt := connectPacket("MQTT", 4, 0xC2, "c", [2]string{}, "u", "p")
	next := []byte{0xC0, 0x00} // PINGREQ right behind it
	br := bufio.NewReader(bytes.NewReader(append(append([]byte{}, pkt...), next...)))
	got, err := ReadPacket(br, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pkt) {
		t.Fatalf("got %x, want %x", got, pkt)
	}
	got, err = ReadPacket(br, 1024)
	if err != nil || !bytes.Equal(got, next) {
		t.Fatalf("second packet %x %v", got, err)
	}

	if _, err := ReadPacket(bufio.NewReader(bytes.NewReader(pkt)), 10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("limit: err = %v", err)
	}
	if _, err := ReadPacket(bufio.NewReader(bytes.NewReader([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01})), 1<<30); err == nil {
		t.Error("5-byte remaining length accepted")
	}
	if _, err := ReadPacket(bufio.NewReader(bytes.NewReader(pkt[:len(pkt)-1])), 1024); err == nil {
		t.Error("truncated packet accepted")
	}
}

func FuzzConnect(f *testing.F) {
	f.Add(connectPacket("MQTT", 4, 0xC2, "mqttwarn", [2]string{}, "alice", "secret"))
	f.Add(connectPacket("MQIsdp", 3, 0x84, "c", [2]string{"t", "m"}, "bob", ""))
	f.Add([]byte{0x10, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		pkt, err := ReadPacket(bufio.NewReader(bytes.NewReader(data)), 1<<16)
		if err != nil {
			return
		}
		if len(pkt) > len(data) {
			t.Fatalf("packet longer than input")
		}
		c, err := ParseConnect(pkt)
		if err != nil {
			return
		}
		if c.Username != "" && !c.HasUsername {
			t.Fatalf("user name without flag: %+v", c)
		}
		// A parsed CONNECT re-encodes to the same username and client id.
		if c.HasUsername && !bytes.Contains(pkt, []byte(c.Username)) {
			t.Fatalf("user name %q not in packet", c.Username)
		}
	})
}
