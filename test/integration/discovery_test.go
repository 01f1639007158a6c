package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/admin"
)

// Issue 5 end to end: a hub and edges that know nothing of each other but
// a gossip seed and a key. The edges find the hub through discovery, forward
// their events, and the hub lists its fleet from gossip and NATS.

// gossipKeyFile writes a gossip key file (base64 of 32 bytes of b, 0600).
func gossipKeyFile(tb testing.TB, dir, name string, b byte) string {
	tb.Helper()
	key := make([]byte, 32)
	for i := range key {
		key[i] = b
	}
	p := filepath.Join(dir, name)
	writeFile(tb, p, base64.StdEncoding.EncodeToString(key)+"\n", 0o600)
	return p
}

// gossipYAML is a discovery section on loopback with timers for one
// machine.
func gossipYAML(port int, key string, seeds ...string) string {
	q := make([]string, len(seeds))
	for i, s := range seeds {
		q[i] = quote(s)
	}
	return fmt.Sprintf(`discovery:
  bind_addr: 127.0.0.1
  bind_port: %d
  key_files: [%s]
  seeds: [%s]
  profile: local
  rejoin_interval: 500ms
  meta_update_interval: 200ms
`, port, quote(key), strings.Join(q, ", "))
}

func appendConfig(tb testing.TB, path, text string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		tb.Fatal(err)
	}
}

// newGossipEdge is an edge whose only way to the hub is discovery: its
// certificate bundle and a discovery section, no hub.url.
func newGossipEdge(tb testing.TB, root string, h *hubProc, id string, gossipPort int, key, seed string) *edgeProc {
	tb.Helper()
	e := newEdge(tb, root, edgeOptions{id: id})
	ca, cert, k := h.edgeFiles(id)
	appendConfig(tb, e.cfgPath, fmt.Sprintf("hub:\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n  heartbeat: 500ms\n",
		quote(ca), quote(cert), quote(k))+gossipYAML(gossipPort, key, seed))
	return e
}

// fleetEdge is one entry of the hub's /edges.
type fleetEdge struct {
	ID         string   `json:"id"`
	Connected  bool     `json:"connected"`
	Address    string   `json:"address"`
	Version    string   `json:"version"`
	LastSeen   *string  `json:"last_seen"`
	Stored     uint64   `json:"stored"`
	Backlog    uint64   `json:"backlog_msgs"`
	Sources    []string `json:"sources"`
	Link       string   `json:"link"`
	Gossip     string   `json:"gossip"`
	GossipAddr string   `json:"gossip_addr"`
	Mark       string   `json:"mark"`
}

func (h *hubProc) fleet(tb testing.TB) map[string]fleetEdge {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var list []fleetEdge
	if err := admin.Get(ctx, h.admin, "/edges", &list); err != nil {
		tb.Fatalf("hub /edges: %v", err)
	}
	out := map[string]fleetEdge{}
	for _, e := range list {
		out[e.ID] = e
	}
	return out
}

// metricValue is the value of one sample line of a /metrics text, -1 when
// absent.
func metricValue(text, sample string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

func TestDiscoveryHubAndTwoEdgesFromSeedsAndKeys(t *testing.T) {
	root := testDir(t)
	key := gossipKeyFile(t, root, "gossip.key", 7)
	wrongKey := gossipKeyFile(t, root, "wrong.key", 8)
	h := newHub(t, root, hubOptions{}, "d1", "d2", "d3")
	hubGossip := freePort(t, "tcp")
	hubCfg := filepath.Join(root, "hub", "hub.yaml")
	appendConfig(t, hubCfg, gossipYAML(hubGossip, key))
	seed := loopback(hubGossip)

	e1 := newGossipEdge(t, root, h, "d1", freePort(t, "tcp"), key, seed)
	e2 := newGossipEdge(t, root, h, "d2", freePort(t, "tcp"), key, seed)

	// The edges start first: no hub to find yet; they keep re-joining the
	// seed and keep accepting events meanwhile.
	e1.StartReady()
	e2.StartReady()
	sendAccepted(t, e1, [][]byte{login("d1-early")})
	if st := e1.status(t); st.Hub.State == "connected" {
		t.Fatalf("d1 connected with no hub running: %+v", st.Hub)
	}
	h.StartReady()
	e1.waitConnected(t, time.Minute)
	e2.waitConnected(t, time.Minute)

	sendAccepted(t, e1, [][]byte{login("d1-a"), login("d1-b")})
	sendAccepted(t, e2, [][]byte{login("d2-a"), login("d2-b")})
	e1.waitDrained(t, time.Minute)
	e2.waitDrained(t, time.Minute)
	waitFor(t, time.Minute, "the 5 events stored at the hub", func() (bool, string) {
		st := h.status(t)
		return st.Ingest["stored"] == 5, fmt.Sprintf("ingest %v", st.Ingest)
	})
	hs := h.status(t)
	for id, want := range map[string]uint64{"d1": 3, "d2": 2} {
		if e, ok := hs.edge(id); !ok || e.Stored != want || !e.Connected {
			t.Errorf("hub status for %s: %+v; want connected with %d stored", id, e, want)
		}
	}

	// The fleet: both edges from NATS and gossip, alive, link up.
	waitFor(t, 30*time.Second, "the hub's fleet view of d1 and d2", func() (bool, string) {
		f := h.fleet(t)
		for _, id := range []string{"d1", "d2"} {
			e := f[id]
			if !e.Connected || !slices.Equal(e.Sources, []string{"nats", "gossip"}) || e.Gossip != "alive" || e.Link != "up" ||
				e.Mark != "" || e.Version != "integration-test" || e.LastSeen == nil || e.Address == "" {
				return false, fmt.Sprintf("%+v", f)
			}
		}
		return true, ""
	})
	out := runTool(t, binary(t, "hub"), "edges", "--config", hubCfg)
	for _, id := range []string{"d1", "d2"} {
		if !regexp.MustCompile(`(?m)^  ` + id + `\s+up\s+integration-test\s.*\salive 127\.0\.0\.1:\d+$`).MatchString(out) {
			t.Errorf("hub edges lacks a line for %s:\n%s", id, out)
		}
	}
	if js := runTool(t, binary(t, "hub"), "edges", "--json", "--config", hubCfg); !json.Valid([]byte(js)) || !strings.Contains(js, `"gossip": "alive"`) {
		t.Errorf("hub edges --json:\n%s", js)
	}

	// `edge status` shows the discovery view: the hub chosen, and why.
	st := runTool(t, binary(t, "edge"), "status", "--config", e1.cfgPath)
	if !regexp.MustCompile(`(?m)^  hub\s+it-hub at 127\.0\.0\.1:` + strconv.Itoa(hubGossip) + ` \(only alive hub\)  dials tls://` + regexp.QuoteMeta(h.natsAddr)).MatchString(st) {
		t.Errorf("edge status lacks the chosen hub:\n%s", st)
	}
	var raw struct {
		Discovery struct {
			Hub *struct {
				Name       string `json:"name"`
				ServerName string `json:"tls_server_name"`
			} `json:"hub"`
			Members []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"members"`
		} `json:"discovery"`
	}
	if err := e1.Status(&raw); err != nil {
		t.Fatal(err)
	}
	if d := raw.Discovery; d.Hub == nil || d.Hub.Name != "it-hub" || d.Hub.ServerName != "hub.warren" || len(d.Members) != 3 {
		t.Errorf("edge status discovery: %+v", d)
	}

	// A node with the wrong key is refused; the hub logs and counts it.
	e3 := newEdge(t, root, edgeOptions{id: "d3"})
	ca, cert, k := h.edgeFiles("d3")
	appendConfig(t, e3.cfgPath, fmt.Sprintf("hub:\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n", quote(ca), quote(cert), quote(k))+
		gossipYAML(freePort(t, "tcp"), wrongKey, seed))
	e3.StartReady()
	waitFor(t, 30*time.Second, "the hub to count a wrong-key refusal", func() (bool, string) {
		v := metricValue(h.metrics(t), `warren_discovery_refused_total{reason="wrong_key"}`)
		return v > 0, fmt.Sprintf("warren_discovery_refused_total{reason=\"wrong_key\"} = %v", v)
	})
	waitFor(t, 10*time.Second, "the refusal in the hub's log", func() (bool, string) {
		b, _ := os.ReadFile(h.logPath("stderr"))
		return regexp.MustCompile(`msg="gossip refused" .*reason=wrong-key from=127\.0\.0\.1:`).Match(b), "no such line"
	})
	if _, ok := h.fleet(t)["d3"]; ok {
		t.Errorf("the hub lists the edge with the wrong key")
	}
	if st := e3.status(t); st.Hub.State == "connected" {
		t.Errorf("d3 (wrong gossip key, no hub.url) connected: %+v", st.Hub)
	}
	e3.Stop()

	// A graceful stop shows as "left".
	e2.Stop()
	waitFor(t, 30*time.Second, "d2 marked left", func() (bool, string) {
		e := h.fleet(t)["d2"]
		return !e.Connected && e.Gossip == "left" && e.Mark == "left", fmt.Sprintf("%+v", e)
	})
	e1.Stop()
	h.Stop()
}
