package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/warren-mesh/warren/hub"
)

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	since := now.Add(-90 * time.Second)
	seen := now.Add(-time.Hour)
	dead := now.Add(-2 * time.Hour)
	st := hub.Status{
		ServerName: "home",
		Version:    "v1 (abc)",
		Uptime:     "2h0m0s",
		Listeners:  hub.Addrs{NATS: "0.0.0.0:4222", MQTT: "127.0.0.1:1883", Admin: "127.0.0.1:9136"},
		Stream:     hub.StreamStatus{Name: "HUB", Messages: 12, Bytes: 3 << 20, DuplicateWindow: "24h0m0s", MaxBytes: 8 << 30, Discard: "old"},
		Ingest:     map[string]uint64{"stored": 12, "duplicate": 2, "forged_msg_id": 0},
		Refused:    map[string]uint64{"nats/untrusted-certificate": 3},
		Edges: []hub.EdgeStatus{
			{ID: "site-a", Connected: true, Connections: 1, Version: "v1", TLSVersion: "TLS 1.3", Since: &since, Listed: true,
				BacklogMsgs: 5, BacklogBytes: 2048, OldestAgeMS: 4000, Stored: 12, Address: "198.51.100.7:50000"},
			{ID: "site-b", LastSeen: &seen},
			{ID: "site-c", LastSeen: &dead, Version: "v2", BacklogMsgs: 7, Address: "127.0.0.1:7946", Link: "down", Mark: hub.MarkDead,
				Gossip: "dead", GossipAddr: "127.0.0.1:7946", Sources: []string{"gossip"}},
		},
		MQTT: hub.MQTTStatus{Clients: []hub.MQTTClient{{ClientID: "mqttwarn", User: "w", Via: "mqtt-tls", Address: "203.0.113.9:4000", Since: since}}},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	out := b.String()
	for _, re := range []string{
		`(?m)^hub home  version v1 \(abc\)  up 2h0m0s$`,
		`listeners  nats 0.0.0.0:4222  mqtt 127.0.0.1:1883  mqtt-tls off  admin 127.0.0.1:9136`,
		`stream HUB  12 events, 3.0 MiB  dedup window 24h0m0s  max 8.0 GiB \(discard old\)`,
		`ingest  duplicate 2, stored 12  republished 0`,
		`refused connections  nats/untrusted-certificate 3`,
		`(?m)^  site-a\s+up\s+v1\s+TLS 1.3\s+1m30s ago\s+5 \(2.0 KiB\)\s+4s\s+12\s+198.51.100.7:50000\s+-$`,
		`(?m)^  site-b\s+down\s+-\s+-\s+last seen 1h0m0s ago\s+0 \(0 B\)\s+-\s+0\s+-\s+-$`,
		`(?m)^  site-c\s+down DEAD\s+v2\s+-\s+last seen 2h0m0s ago\s+7 \(0 B\)\s+-\s+0\s+127.0.0.1:7946\s+dead 127.0.0.1:7946$`,
		`(?m)^  mqttwarn\s+w\s+mqtt-tls\s+203.0.113.9:4000\s+1m30s ago$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
}
