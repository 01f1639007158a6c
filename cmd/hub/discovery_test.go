package main

import (
	"slices"
	"testing"

	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/hub"
)

func TestHubNATSURLs(t *testing.T) {
	cases := []struct {
		listen, bound string
		advertise     []string
		want          string
	}{
		{":4222", "[::]:4222", nil, "tls://0.0.0.0:4222"},
		{"0.0.0.0:4222", "0.0.0.0:4222", nil, "tls://0.0.0.0:4222"},
		{"127.0.0.1:0", "127.0.0.1:39001", nil, "tls://127.0.0.1:39001"},
		{"127.0.0.1:0", "127.0.0.1:0", nil, "tls://127.0.0.1:4222"},
		{"localhost:4222", "127.0.0.1:4222", nil, "tls://127.0.0.1:4222"},
		{"[2001:db8::1]:4222", "[2001:db8::1]:4222", nil, "tls://[2001:db8::1]:4222"},
		{":4222", "[::]:4222", []string{"tls://203.0.113.5:14222"}, "tls://203.0.113.5:14222"},
	}
	for _, c := range cases {
		cfg := hub.DefaultConfig()
		cfg.NATS.Listen = c.listen
		cfg.Discovery.AdvertiseNATS = c.advertise
		got, err := hubNATSURLs(cfg, c.bound)
		if err != nil || !slices.Equal(got, []string{c.want}) {
			t.Errorf("listen %q bound %q: %v, %v; want %s", c.listen, c.bound, got, err, c.want)
		}
		m := hubMeta(cfg, got)
		if _, _, err := discovery.EncodeMeta(m); err != nil || m.TLSServerName != "hub.warren" || m.Role != discovery.RoleHub {
			t.Errorf("hub meta %+v: %v", m, err)
		}
	}
}
