package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Edges and hubs as the tests see them: a config file written the way an
// operator would, a daemon, and the few status fields the tests read. The
// status structs are deliberately partial: they name exactly what these
// tests depend on in edge and hub /status.

// edgeStatus is the part of the edge's /status the tests read.
type edgeStatus struct {
	ID        string `json:"id"`
	Epoch     string `json:"epoch"`
	Listeners struct {
		UDP  string `json:"udp"`
		NATS string `json:"nats"`
	} `json:"listeners"`
	Accepted         map[string]uint64 `json:"accepted"`
	Rejected         map[string]uint64 `json:"rejected"`
	Datagrams        map[string]uint64 `json:"datagrams"`
	UnsignedAccepted uint64            `json:"unsigned_accepted"`
	Stream           struct {
		Messages uint64 `json:"messages"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
		Error    string `json:"error"`
	} `json:"stream"`
	Hub struct {
		State      string `json:"state"`
		TLSVersion string `json:"tls_version"`
		Forwarded  uint64 `json:"forwarded"`
		Duplicates uint64 `json:"duplicates"`
		LastError  string `json:"last_error"`
	} `json:"hub"`
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// received is the number of datagrams the edge read from its socket.
func (s edgeStatus) received() uint64 { return sum(s.Datagrams) }

// settled is the number of events the edge has decided on (stored or
// refused).
func (s edgeStatus) settled() uint64 { return sum(s.Accepted) + sum(s.Rejected) }

// hubStatus is the part of the hub's /status the tests read.
type hubStatus struct {
	Edges  []hubEdge `json:"edges"`
	Stream struct {
		Messages uint64 `json:"messages"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"stream"`
	Ingest map[string]uint64 `json:"ingest"`
}

// hubEdge is one edge in the hub's /status.
type hubEdge struct {
	ID         string `json:"id"`
	Connected  bool   `json:"connected"`
	TLSVersion string `json:"tls_version"`
	Stored     uint64 `json:"stored"`
	Duplicates uint64 `json:"duplicates"`
	Epoch      string `json:"epoch"`
}

// edge returns the entry of edge id, if listed.
func (s hubStatus) edge(id string) (hubEdge, bool) {
	for _, e := range s.Edges {
		if e.ID == id {
			return e, true
		}
	}
	return hubEdge{}, false
}

// quote makes a YAML double-quoted scalar (JSON string syntax is valid
// YAML).
func quote(s string) string { return strconv.Quote(s) }

// hubProc is a hub daemon with its own data directory and PKI.
type hubProc struct {
	*daemon
	dataDir  string
	pkiDir   string
	bundles  string // hub pki issue --out: <bundles>/<edge-id>/{ca.crt,edge.crt,edge.key}
	natsAddr string // 127.0.0.1:port edges dial
	mqttAddr string // loopback MQTT listener, "" when off
}

// edgeFiles are the TLS files an edge gets from the hub's PKI bundle.
func (h *hubProc) edgeFiles(id string) (ca, cert, key string) {
	dir := filepath.Join(h.bundles, id)
	return filepath.Join(dir, "ca.crt"), filepath.Join(dir, "edge.crt"), filepath.Join(dir, "edge.key")
}

// hubOptions shape a hub's config.
type hubOptions struct {
	mqtt  bool   // open the loopback MQTT listener (republish to MQTT clients)
	extra string // YAML appended to the config (top-level keys, e.g. notify:)
}

// newHub writes a hub config under root/hub, makes its PKI the way an
// operator does (`hub pki init`, then `hub pki issue ID --out DIR` for each
// of edgeIDs, whose bundles the edges use) and returns the (stopped) hub.
func newHub(tb testing.TB, root string, opts hubOptions, edgeIDs ...string) *hubProc {
	tb.Helper()
	bin := binary(tb, "hub")
	dir := filepath.Join(root, "hub")
	h := &hubProc{
		dataDir:  filepath.Join(dir, "data"),
		pkiDir:   filepath.Join(root, "pki"),
		bundles:  filepath.Join(root, "bundles"),
		natsAddr: loopback(freePort(tb, "tcp")),
	}
	if opts.mqtt {
		h.mqttAddr = loopback(freePort(tb, "tcp"))
	}
	adminAddr := "unix:" + filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`# written by test/integration
server_name: it-hub
data_dir: %s
pki_dir: %s
dev_pki: false
nats:
  listen: %s
mqtt:
  listen: %s
  tls_listen: ""
admin:
  listen: %s
log:
  level: info
  format: text
`, quote(h.dataDir), quote(h.pkiDir), quote(h.natsAddr), quote(h.mqttAddr), quote(adminAddr)) + opts.extra
	path := filepath.Join(dir, "hub.yaml")
	writeFile(tb, path, cfg, 0o600)
	runTool(tb, bin, "pki", "init", "--config", path)
	for _, id := range edgeIDs {
		runTool(tb, bin, "pki", "issue", id, "--out", h.bundles, "--config", path)
	}
	h.daemon = newDaemon(tb, "hub", bin, dir, adminAddr, "run", "--config", path)
	return h
}

// runTool runs a one-shot command (e.g. hub pki init) and fails the test
// unless it exits 0.
func runTool(tb testing.TB, bin string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = daemonEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// status reads the hub's /status, failing the test on error.
func (h *hubProc) status(tb testing.TB) hubStatus {
	tb.Helper()
	var st hubStatus
	if err := h.Status(&st); err != nil {
		tb.Fatalf("hub status: %v", err)
	}
	return st
}

// edgeProc is an edge daemon.
type edgeProc struct {
	*daemon
	id       string
	cfgPath  string
	dataDir  string
	udpAddr  string
	natsAddr string // loopback NATS listener, "" when off
}

// edgeOptions shape an edge's config.
type edgeOptions struct {
	id       string
	keysFile string   // udp.keys_file, "" for none
	nats     bool     // open the loopback NATS listener (tests read the EDGE stream through it)
	mqtt     bool     // open the loopback MQTT listener (off unless asked)
	hub      *hubProc // hub to forward to; nil leaves the link unconfigured
}

// newEdge writes an edge config under root/edge-<id> and returns the
// (stopped) edge. UDP has no rate limit (the tests flood it on purpose).
func newEdge(tb testing.TB, root string, opts edgeOptions) *edgeProc {
	tb.Helper()
	bin := binary(tb, "edge")
	dir := filepath.Join(root, "edge-"+opts.id)
	e := &edgeProc{id: opts.id, dataDir: filepath.Join(dir, "data"), udpAddr: loopback(freePort(tb, "udp"))}
	adminAddr := "unix:" + filepath.Join(dir, "admin.sock")
	var b strings.Builder
	fmt.Fprintf(&b, `# written by test/integration
id: %s
data_dir: %s
admin:
  listen: %s
log:
  level: info
  format: text
udp:
  listen: %s
  rate_limit:
    rate: 0
`, quote(opts.id), quote(e.dataDir), quote(adminAddr), quote(e.udpAddr))
	if opts.keysFile != "" {
		fmt.Fprintf(&b, "  keys_file: %s\n", quote(opts.keysFile))
	}
	mqttListen := ""
	if opts.mqtt {
		mqttListen = loopback(freePort(tb, "tcp"))
	}
	fmt.Fprintf(&b, "mqtt:\n  listen: %s\n", quote(mqttListen))
	if opts.nats {
		e.natsAddr = loopback(freePort(tb, "tcp"))
		fmt.Fprintf(&b, "nats:\n  listen: %s\n", quote(e.natsAddr))
	}
	if h := opts.hub; h != nil {
		ca, cert, key := h.edgeFiles(opts.id)
		fmt.Fprintf(&b, "hub:\n  url: %s\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n  server_name: hub.warren\n",
			quote("tls://"+h.natsAddr), quote(ca), quote(cert), quote(key))
	}
	e.cfgPath = filepath.Join(dir, "edge.yaml")
	writeFile(tb, e.cfgPath, b.String(), 0o600)
	e.daemon = newDaemon(tb, "edge-"+opts.id, bin, dir, adminAddr, "run", "--config", e.cfgPath)
	return e
}

// status reads the edge's /status, failing the test on error.
func (e *edgeProc) status(tb testing.TB) edgeStatus {
	tb.Helper()
	var st edgeStatus
	if err := e.Status(&st); err != nil {
		tb.Fatalf("edge %s status: %v", e.id, err)
	}
	return st
}

// waitConnected waits until the edge's bridge reports a connected hub link.
func (e *edgeProc) waitConnected(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	waitFor(tb, timeout, "edge "+e.id+" connected to the hub", func() (bool, string) {
		st := e.status(tb)
		return st.Hub.State == "connected", fmt.Sprintf("hub link %q, last error %q", st.Hub.State, st.Hub.LastError)
	})
}

// waitDrained waits until the edge stream is empty (every event confirmed
// by the hub: the stream has WorkQueue retention) and returns how long it
// took.
func (e *edgeProc) waitDrained(tb testing.TB, timeout time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	waitFor(tb, timeout, "edge "+e.id+" backlog drained", func() (bool, string) {
		st := e.status(tb)
		return st.Stream.Messages == 0 && st.Stream.Error == "",
			fmt.Sprintf("%d events in the edge stream (error %q), hub link %q, forwarded %d, last error %q",
				st.Stream.Messages, st.Stream.Error, st.Hub.State, st.Hub.Forwarded, st.Hub.LastError)
	})
	return time.Since(start)
}
