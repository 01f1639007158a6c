package discovery

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestActiveAndValidateKeys(t *testing.T) {
	c := DefaultConfig()
	if c.Active() {
		t.Error("the default configuration is active; discovery must stay off with no configuration")
	}
	for name, set := range map[string]func(*Config){
		"enabled":   func(c *Config) { c.Enabled = true },
		"seeds":     func(c *Config) { c.Seeds = []string{"hub:7946"} },
		"key_files": func(c *Config) { c.KeyFiles = []string{"k"} },
		"insecure":  func(c *Config) { c.Insecure = true },
	} {
		c := DefaultConfig()
		set(&c)
		if !c.Active() {
			t.Errorf("%s set: not active", name)
		}
	}
	c = DefaultConfig()
	c.Seeds = []string{"hub"}
	c.Tuning.ProbeTimeout = -1
	c.AdvertiseNATS = []string{"http://x:1"}
	err := c.ValidateKeys("discovery.")
	if !errors.Is(err, ErrNoKey) {
		t.Errorf("no key: %v", err)
	}
	for _, want := range []string{"discovery.key_files: no gossip key", "--insecure-gossip", "discovery.tuning.probe_timeout", "discovery.advertise_nats[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateKeys: %v; want %q", err, want)
		}
	}
}

func TestUpdateMetaBeforeStartAndView(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "k", testKey(11))
	n, err := New(testConfig("hub", key), hubMeta("tls://0.0.0.0:4222"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Before Start, UpdateMeta replaces what the first packet carries.
	if err := n.UpdateMeta(hubMeta("tls://0.0.0.0:4999")); err != nil {
		t.Fatal(err)
	}
	if m, err := DecodeMeta(*n.meta.Load()); err != nil || !slices.Equal(m.NATSURLs, []string{"tls://0.0.0.0:4999"}) {
		t.Fatalf("advertised before start: %+v, %v", m, err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	ec := testConfig("e1", key)
	ec.Seeds = []string{n.LocalAddr()}
	e := startNode(t, ec, edgeMeta())
	waitFor(t, waitLong, "the edge to choose the hub", func() bool { _, ok := e.Hub(); return ok })

	v := e.View()
	if v.Node != "e1" || v.Hub == nil || v.Hub.Name != "hub" || v.HubWhy != "only alive hub" ||
		!slices.Equal(v.HubURLs, []string{"tls://127.0.0.1:4999"}) || !v.Keyring.Encrypted || len(v.Members) != 2 {
		t.Errorf("view: %+v", v)
	}
	if v.Keyring.Primary != KeyFingerprint(testKey(11)) {
		t.Errorf("keyring: %+v", v.Keyring)
	}
	lone, err := New(testConfig("lone", key), edgeMeta(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := lone.View(); v.Hub != nil || v.HubWhy != "no alive hub known" || v.HubURLs == nil {
		t.Errorf("view without a hub: %+v", v)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(e.Node))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			got[name] = v
		}
	}
	for name, want := range map[string]float64{
		"warren_discovery_hub_known":                       1,
		"warren_discovery_members{state=alive}":            2,
		"warren_discovery_members{state=dead}":             0,
		"warren_discovery_refused_total{reason=wrong_key}": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if got["warren_discovery_bytes_total{dir=sent}"] <= 0 {
		t.Errorf("no gossip bytes counted: %v", got)
	}
}

func TestTokenAndLinkFromBridge(t *testing.T) {
	if got := Token("v1 (abc, go1.26)\x00é"); got != "v1_(abc,_go1.26)___" {
		t.Errorf("Token = %q", got)
	}
	if got := Token(strings.Repeat("x", 100)); len(got) != 64 {
		t.Errorf("Token length %d", len(got))
	}
	for in, want := range map[string]LinkState{"connected": LinkUp, "connecting": LinkConnecting, "disconnected": LinkDown,
		"not configured": LinkNotConfigured, "weird": LinkUnknown} {
		if got := LinkFromBridge(in); got != want {
			t.Errorf("LinkFromBridge(%q) = %q", in, got)
		}
		if _, _, err := EncodeMeta(Meta{Role: RoleEdge, Link: LinkFromBridge(in)}); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// TestHubLostStartsFastRejoins: with a re-join interval of an hour, an edge
// that loses its hub still re-joins its seed within seconds (1 s, 2 s, ...),
// so a hub restarted on the same address without seeds of its own is found
// again quickly.
func TestHubLostStartsFastRejoins(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "gossip.key", testKey(12))
	hub := startNode(t, testConfig("hub", key), hubMeta("tls://127.0.0.1:4222"))
	hubAddr := hub.LocalAddr()
	_, portStr, _ := net.SplitHostPort(hubAddr)
	port, _ := strconv.Atoi(portStr)

	ec := testConfig("e1", key)
	ec.Seeds = []string{hubAddr}
	ec.RejoinInterval = time.Hour
	edge := startNode(t, ec, edgeMeta())
	waitConverged(t, waitLong, []*testNode{hub, edge}, "e1", "hub")

	_ = hub.Shutdown() // a crash: no leave
	waitFor(t, waitLong, "the edge to lose the hub", func() bool { _, ok := edge.Hub(); return !ok })
	hc := testConfig("hub", key)
	hc.BindPort = port
	hub2 := startNode(t, hc, hubMeta("tls://127.0.0.1:4223")) // no seeds: it cannot find the edge
	waitFor(t, waitLong, "the edge to find the restarted hub by re-joining", func() bool {
		return slices.Equal(edge.HubURLs(), []string{"tls://127.0.0.1:4223"})
	})
	if edge.Stats().Rejoins == 0 {
		t.Error("found without a re-join?")
	}
	_ = hub2
}
