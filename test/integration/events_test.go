package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/natsembed"
	"github.com/warren-mesh/warren/internal/wire"
)

// Events the tests send, and the readers and checker of what the stores
// hold. Every event carries a unique id in its "user" field, so the checker
// can follow each one from the sender to the hub.

// testHost is the hostname field of the datagrams the tests make.
const testHost = "it-host"

// login returns a v0 datagram (the C hare's bytes) whose user is id.
func login(id string) []byte {
	return wire.AppendV0(nil, wire.Login{
		Tst:      time.Now().Unix(),
		Hostname: testHost,
		User:     wire.Some(id),
		Service:  wire.Some("sshd"),
		RHost:    wire.Some("198.51.100.7"),
		TTY:      wire.Some("pts/1"),
	})
}

// hareKey is a hare/edge key pair as a key file line describes it.
type hareKey struct {
	id  string
	key []byte
}

func newHareKey(tb testing.TB, id string) hareKey {
	k := hareKey{id: id, key: make([]byte, wire.KeySize)}
	if _, err := rand.Read(k.key); err != nil {
		tb.Fatal(err)
	}
	return k
}

// line is the key file line of k.
func (k hareKey) line() string { return k.id + " " + hex.EncodeToString(k.key) + "\n" }

// signedLogin returns a v1 datagram signed with k whose user is id.
func signedLogin(tb testing.TB, k hareKey, id string) []byte {
	tb.Helper()
	var nonce [wire.NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		tb.Fatal(err)
	}
	b, err := wire.Seal(k.id, k.key, uint64(time.Now().UnixMilli()), nonce, login(id))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// ids returns n event ids prefix-000001 ...
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%06d", prefix, i+1)
	}
	return out
}

// dialUDP opens a UDP socket to addr.
func dialUDP(tb testing.TB, addr string) *net.UDPConn {
	tb.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// maxChunk caps how many datagrams are sent before waiting for the edge to
// have read them (see burstChunk): well inside the socket buffer, so the
// kernel drops none and every datagram sent is one the edge decided on.
const maxChunk = 2000

// send delivers datagrams to the edge in chunks, waiting after each chunk
// until the edge has read it, then until it has decided on all of them
// (stored or refused). It returns the edge's status before and after.
func send(tb testing.TB, e *edgeProc, dgrams [][]byte) (before, after edgeStatus) {
	tb.Helper()
	before = e.status(tb)
	conn := dialUDP(tb, e.udpAddr)
	chunk := burstChunk()
	for i := 0; i < len(dgrams); i += chunk {
		j := min(i+chunk, len(dgrams))
		for _, d := range dgrams[i:j] {
			if _, err := conn.Write(d); err != nil {
				tb.Fatalf("send datagram %d to edge %s: %v", i, e.id, err)
			}
		}
		want := before.received() + uint64(j)
		waitFor(tb, 60*time.Second, fmt.Sprintf("edge %s to read %d datagrams", e.id, j), func() (bool, string) {
			st := e.status(tb)
			return st.received() >= want, fmt.Sprintf("read %d of %d (datagrams %v)", st.received()-before.received(), j, st.Datagrams)
		})
	}
	want := before.settled() + uint64(len(dgrams))
	waitFor(tb, 60*time.Second, fmt.Sprintf("edge %s to store or refuse %d events", e.id, len(dgrams)), func() (bool, string) {
		after = e.status(tb)
		return after.settled() >= want, fmt.Sprintf("settled %d of %d (accepted %v, rejected %v)",
			after.settled()-before.settled(), len(dgrams), after.Accepted, nonZero(after.Rejected))
	})
	return before, after
}

// sendAccepted sends datagrams and fails the test unless the edge stored
// every one of them.
func sendAccepted(tb testing.TB, e *edgeProc, dgrams [][]byte) edgeStatus {
	tb.Helper()
	before, after := send(tb, e, dgrams)
	acc := sum(after.Accepted) - sum(before.Accepted)
	rej := sum(after.Rejected) - sum(before.Rejected)
	if acc != uint64(len(dgrams)) || rej != 0 {
		tb.Fatalf("edge %s accepted %d and refused %d of %d events (rejected now %v)", e.id, acc, rej, len(dgrams), nonZero(after.Rejected))
	}
	return after
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// storedMsg is one message of a JetStream stream.
type storedMsg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
}

// readEdgeStream reads every message of the EDGE stream through the edge's
// NATS listener, by sequence (the stream has WorkQueue retention, so no
// second consumer may read it; a direct get per message leaves it as it
// is).
func readEdgeStream(tb testing.TB, natsAddr string) []storedMsg {
	tb.Helper()
	nc, err := nats.Connect("nats://"+natsAddr, nats.Name("warren-it-reader"), nats.Timeout(10*time.Second))
	if err != nil {
		tb.Fatalf("connect to the edge's NATS listener: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, event.EdgeStream)
	if err != nil {
		tb.Fatalf("edge stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatalf("edge stream info: %v", err)
	}
	var out []storedMsg
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			tb.Fatalf("edge stream message %d: %v", seq, err)
		}
		out = append(out, storedMsg{Seq: m.Sequence, Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	if uint64(len(out)) != info.State.Msgs {
		tb.Fatalf("read %d messages from the edge stream, its state says %d", len(out), info.State.Msgs)
	}
	return withoutAudit(out)
}

// withoutAudit drops the daemons' own audit events (every client
// connection, including the tests' readers, makes one) so the checkers
// see exactly the events the tests sent.
func withoutAudit(msgs []storedMsg) []storedMsg {
	out := msgs[:0]
	for _, m := range msgs {
		if m.Header.Get(event.HdrSource) != event.SourceAudit {
			out = append(out, m)
		}
	}
	return out
}

// readHubStore reads the whole HUB stream from a stopped hub's data
// directory: it copies the JetStream store, opens the copy with an
// embedded nats-server (account HUB, JetStream domain "hub", as the hub
// runs it) and reads the stream with an ordered consumer. The hub's own
// files are never opened for writing.
func readHubStore(tb testing.TB, hubDataDir string) []storedMsg {
	tb.Helper()
	src := filepath.Join(hubDataDir, "nats")
	if _, err := os.Stat(filepath.Join(src, "jetstream")); err != nil {
		tb.Fatalf("hub store: %v (has the hub's store layout changed from data_dir/nats/jetstream?)", err)
	}
	dst, err := os.MkdirTemp(filepath.Dir(hubDataDir), "store-copy-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(dst)
	if err := copyTree(src, dst); err != nil {
		tb.Fatalf("copy hub store: %v", err)
	}

	pw := hex.EncodeToString([]byte(time.Now().String()))
	opts := &server.Options{}
	conf := fmt.Sprintf(`accounts { HUB { jetstream: enabled, users: [ {user: checker, password: %q} ] } }`, pw)
	if err := opts.ProcessConfigString(conf); err != nil {
		tb.Fatal(err)
	}
	opts.ServerName = "warren-it-checker"
	opts.JetStream = true
	opts.JetStreamDomain = event.HubDomain
	opts.StoreDir = dst
	opts.DontListen = true
	s, err := natsembed.Start(opts, slog.New(slog.DiscardHandler), time.Minute)
	if err != nil {
		tb.Fatalf("open hub store: %v", err)
	}
	defer natsembed.Stop(s)
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.UserInfo("checker", pw))
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stream, err := js.Stream(ctx, event.HubStream)
	if err != nil {
		tb.Fatalf("hub stream %s in the store: %v", event.HubStream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	total := info.State.Msgs
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]storedMsg, 0, total)
	for empty := 0; uint64(len(out)) < total; {
		batch, err := cons.Fetch(int(min(1000, total-uint64(len(out)))), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatalf("read hub stream: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, storedMsg{Seq: md.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			tb.Fatalf("read hub stream: %v", err)
		}
		if n == 0 {
			if empty++; empty == 3 {
				tb.Fatalf("reading the hub stream stalled at %d of %d messages", len(out), total)
			}
		}
	}
	return withoutAudit(out)
}

// copyTree copies regular files and directories from src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// harePayload is the part of hared's published shape the checker reads.
type harePayload struct {
	User   string `json:"user"`
	Remote string `json:"remote"`
	Tst    *int64 `json:"tst"`
}

// hubReport summarises a checked hub stream.
type hubReport struct {
	events int
	epochs map[string][]string // edge -> epochs in order of first appearance
}

// checkExactlyOnce proves that the hub stream msgs holds every event of
// want (event id -> edge id) exactly once and nothing else, that each
// event's subject, Msg-Id and provenance headers agree on its edge, and
// that within each edge store epoch the edge sequence (Warren-Seq, the
// Msg-Id's last part) strictly increases in stream order, i.e. per-edge
// order was kept through every outage and kill.
func checkExactlyOnce(tb testing.TB, msgs []storedMsg, want map[string]string) hubReport {
	tb.Helper()
	rep := hubReport{events: len(msgs), epochs: map[string][]string{}}
	var problems []string
	report := func(format string, a ...any) {
		if len(problems) < 40 {
			problems = append(problems, fmt.Sprintf(format, a...))
		}
	}
	seen := map[string]uint64{}   // event id -> hub stream seq
	msgIDs := map[string]uint64{} // Msg-Id -> hub stream seq
	last := map[string]uint64{}   // edge/epoch -> last edge seq
	lastAt := map[string]uint64{} // edge/epoch -> hub stream seq of it
	dups, unknown, disorder := 0, 0, 0
	for _, m := range msgs {
		edgeID, rest, err := event.SplitHub(m.Subject)
		if err != nil {
			report("hub seq %d: subject %q: %v", m.Seq, m.Subject, err)
			continue
		}
		msgID := m.Header.Get(event.HdrMsgID)
		mEdge, epoch, seq, err := event.ParseMsgID(msgID)
		if err != nil {
			report("hub seq %d: Msg-Id %q: %v", m.Seq, msgID, err)
			continue
		}
		if mEdge != edgeID || m.Header.Get(event.HdrEdge) != edgeID {
			report("hub seq %d: subject edge %q, Msg-Id edge %q, %s %q disagree", m.Seq, edgeID, mEdge, event.HdrEdge, m.Header.Get(event.HdrEdge))
		}
		if m.Header.Get(event.HdrEpoch) != epoch || m.Header.Get(event.HdrSeq) != strconv.FormatUint(seq, 10) {
			report("hub seq %d: Msg-Id %q but %s %q, %s %q", m.Seq, msgID, event.HdrEpoch, m.Header.Get(event.HdrEpoch), event.HdrSeq, m.Header.Get(event.HdrSeq))
		}
		if rest != "logging.hare" {
			report("hub seq %d: subject %q, want hub.ev.%s.logging.hare", m.Seq, m.Subject, edgeID)
		}
		if prev, ok := msgIDs[msgID]; ok {
			report("Msg-Id %q stored twice: hub seq %d and %d", msgID, prev, m.Seq)
		}
		msgIDs[msgID] = m.Seq

		key := edgeID + "/" + epoch
		if _, ok := last[key]; !ok {
			rep.epochs[edgeID] = append(rep.epochs[edgeID], epoch)
		} else if seq <= last[key] {
			disorder++
			report("edge %s epoch %s: edge seq %d at hub seq %d after edge seq %d at hub seq %d (order lost)", edgeID, epoch, seq, m.Seq, last[key], lastAt[key])
		}
		last[key], lastAt[key] = seq, m.Seq

		var p harePayload
		if err := json.Unmarshal(m.Data, &p); err != nil || p.User == "" || p.Tst == nil || p.Remote == "" {
			report("hub seq %d: payload %q is not a hare event in hared's shape (%v)", m.Seq, m.Data, err)
			continue
		}
		if prev, ok := seen[p.User]; ok {
			dups++
			report("event %s stored twice: hub seq %d and %d", p.User, prev, m.Seq)
			continue
		}
		seen[p.User] = m.Seq
		wantEdge, ok := want[p.User]
		switch {
		case !ok:
			unknown++
			report("hub seq %d: event %s was never accepted by any edge", m.Seq, p.User)
		case wantEdge != edgeID:
			report("event %s accepted by edge %s but stored as edge %s's", p.User, wantEdge, edgeID)
		}
	}
	var missing []string
	for id := range want {
		if _, ok := seen[id]; !ok {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		report("%d accepted events missing at the hub, first: %s", len(missing), strings.Join(missing[:min(10, len(missing))], ", "))
	}
	if len(problems) > 0 {
		tb.Errorf("hub stream check failed: %d events stored, %d expected, %d missing, %d duplicated, %d unknown, %d out of order:\n  %s",
			len(msgs), len(want), len(missing), dups, unknown, disorder, strings.Join(problems, "\n  "))
	}
	return rep
}
