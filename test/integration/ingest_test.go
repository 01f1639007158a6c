package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/event"
)

// Issue 3 end to end: the built hare binary and raw datagrams into a running
// edge process, read back from the EDGE stream through the edge's own NATS
// listener.

// runHare runs the hare binary with exactly env (plus PATH) and args, and
// fails the test unless it exits 0 and prints nothing (hare is silent
// without -v, whatever happens to the datagram).
func runHare(tb testing.TB, bin string, env map[string]string, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("hare %s (env %v): %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), env, err, stdout.String(), stderr.String())
	}
	if stdout.Len()+stderr.Len() > 0 {
		tb.Fatalf("hare %s (env %v) printed output; want none\nstdout: %s\nstderr: %s", strings.Join(args, " "), env, stdout.String(), stderr.String())
	}
}

// TestHareLoginReachesEdgeStream runs the built hare binary the way PAM
// does (Linux-PAM and OpenPAM variables, unsigned v0 from loopback, signed
// v1 with a key file the edge knows, a wrong key, a session close) against
// a running edge process, and reads the EDGE stream back through the edge's
// NATS listener: exactly the two valid logins are stored, each in hared's
// published shape with the provenance headers of the event contract, and
// the forged one is refused and counted under its reason.
func TestHareLoginReachesEdgeStream(t *testing.T) {
	hare := binary(t, "hare")
	root := testDir(t)
	key := newHareKey(t, "host-a")
	forged := newHareKey(t, "host-a") // right key id, wrong key
	edgeKeys := filepath.Join(root, "edge.keys")
	writeFile(t, edgeKeys, "# hosts allowed to sign\n"+key.line(), 0o600)
	hareKeyFile := filepath.Join(root, "hare.key")
	writeFile(t, hareKeyFile, key.line(), 0o600)
	forgedKeyFile := filepath.Join(root, "forged.key")
	writeFile(t, forgedKeyFile, forged.line(), 0o600)

	e := newEdge(t, root, edgeOptions{id: "site-a", keysFile: edgeKeys, nats: true})
	e.StartReady()
	_, port := splitPort(t, e.udpAddr)
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// Not a session open: hare sends nothing (and still exits 0).
	runHare(t, hare, map[string]string{"PAM_TYPE": "close_session", "PAM_USER": "nobody", "PAM_SERVICE": "sshd"},
		"-port", port, "-key", "none", "127.0.0.1")
	// Unsigned v0 from loopback (Linux-PAM); PAM_TTY unset must become null.
	runHare(t, hare, map[string]string{"PAM_TYPE": "open_session", "PAM_USER": "jjolie", "PAM_SERVICE": "sshd", "PAM_RHOST": "198.51.100.7"},
		"-port", port, "-key", "none", "127.0.0.1")
	// Signed v1 (OpenPAM's variable); PAM_RHOST set but empty stays "".
	runHare(t, hare, map[string]string{"PAM_SM_FUNC": "pam_sm_open_session", "PAM_USER": "alice", "PAM_SERVICE": "login", "PAM_RHOST": "", "PAM_TTY": "pts/3"},
		"-port", port, "-key", hareKeyFile, "127.0.0.1")
	// Signed with a key the edge does not have under that id.
	runHare(t, hare, map[string]string{"PAM_TYPE": "open_session", "PAM_USER": "mallory", "PAM_SERVICE": "sshd", "PAM_TTY": "pts/4"},
		"-port", port, "-key", forgedKeyFile, "127.0.0.1")

	var st edgeStatus
	waitFor(t, 30*time.Second, "the edge to decide on 3 datagrams", func() (bool, string) {
		st = e.status(t)
		return st.received() >= 3 && st.settled() >= 3, fmt.Sprintf("datagrams %v, accepted %v, rejected %v", st.Datagrams, st.Accepted, nonZero(st.Rejected))
	})
	end := time.Now()
	if st.received() != 3 || st.Datagrams["v0"] != 1 || st.Datagrams["v1"] != 2 {
		t.Errorf("datagrams %v; want exactly 1 v0 and 2 v1 (the session close must send nothing)", st.Datagrams)
	}
	if st.Accepted["udp"] != 2 || st.UnsignedAccepted != 1 {
		t.Errorf("accepted %v, unsigned %d; want udp 2, unsigned 1", st.Accepted, st.UnsignedAccepted)
	}
	if got := nonZero(st.Rejected); len(got) != 1 || got["bad_tag"] != 1 {
		t.Errorf("rejected %v; want only bad_tag 1", got)
	}

	// /metrics says the same as /status.
	metrics := e.metrics(t)
	for _, line := range []string{
		`warren_edge_events_accepted_total{source="udp"} 2`,
		`warren_edge_events_rejected_total{reason="bad_tag"} 1`,
		`warren_edge_udp_datagrams_total{format="v1"} 2`,
	} {
		if !strings.Contains(metrics, "\n"+line+"\n") {
			t.Errorf("/metrics lacks the line %s", line)
		}
	}

	msgs := readEdgeStream(t, e.natsAddr)
	if len(msgs) != 2 {
		t.Fatalf("the edge stream holds %d events; want 2", len(msgs))
	}
	want := map[string]struct {
		auth string
		body map[string]any
	}{
		"jjolie": {"unsigned", map[string]any{"hostname": hostname, "remote": "127.0.0.1", "rhost": "198.51.100.7", "service": "sshd", "tty": nil, "user": "jjolie"}},
		"alice":  {"signed:host-a", map[string]any{"hostname": hostname, "remote": "127.0.0.1", "rhost": "", "service": "login", "tty": "pts/3", "user": "alice"}},
	}
	for _, m := range msgs {
		var p harePayload
		if err := json.Unmarshal(m.Data, &p); err != nil || p.Tst == nil {
			t.Errorf("stored payload %s: not hared's shape (%v)", m.Data, err)
			continue
		}
		w, ok := want[p.User]
		if !ok {
			t.Errorf("unexpected event in the edge stream: %s", m.Data)
			continue
		}
		delete(want, p.User)
		if *p.Tst < start.Unix() || *p.Tst > end.Unix() {
			t.Errorf("%s: tst %d outside the test's run %d..%d", p.User, *p.Tst, start.Unix(), end.Unix())
		}
		// hared's shape: the datagram's keys plus remote, sorted, compact,
		// integer tst. encoding/json writes maps exactly so.
		w.body["tst"] = *p.Tst
		wantBody, _ := json.Marshal(w.body)
		if !bytes.Equal(m.Data, wantBody) {
			t.Errorf("%s: stored payload\n  %s\nwant hared's shape\n  %s", p.User, m.Data, wantBody)
		}
		if m.Subject != event.EdgeSubjectPrefix+"logging.hare" {
			t.Errorf("%s: subject %q, want %q", p.User, m.Subject, event.EdgeSubjectPrefix+"logging.hare")
		}
		hdr := map[string]string{
			event.HdrEdge:   "site-a",
			event.HdrSource: event.SourceUDP,
			event.HdrAuth:   w.auth,
			event.HdrTopic:  event.HareTopic,
			event.HdrEpoch:  st.Epoch,
		}
		for k, v := range hdr {
			if got := m.Header.Get(k); got != v {
				t.Errorf("%s: header %s = %q, want %q", p.User, k, got, v)
			}
		}
		if host, _, err := net.SplitHostPort(m.Header.Get(event.HdrRemote)); err != nil || host != "127.0.0.1" {
			t.Errorf("%s: header %s = %q, want 127.0.0.1:<port>", p.User, event.HdrRemote, m.Header.Get(event.HdrRemote))
		}
		recv, err := time.Parse(time.RFC3339Nano, m.Header.Get(event.HdrReceived))
		if err != nil || recv.Before(start.Add(-time.Second)) || recv.After(end.Add(time.Second)) {
			t.Errorf("%s: header %s = %q, want an RFC 3339 time within the test's run", p.User, event.HdrReceived, m.Header.Get(event.HdrReceived))
		}
	}
	if st.Epoch == "" {
		t.Error("edge status shows no store epoch")
	}
}

// TestEdgeSIGKILLAfterBurstKeepsEveryAcceptedEvent floods a running edge
// with a burst of unsigned, signed and garbage datagrams, reads /status
// until every datagram is decided (stored or refused), SIGKILLs the edge
// at once, and restarts it: every event the edge counted as accepted is in
// the EDGE stream exactly once, none of the refused ones is, the store
// epoch is unchanged, and a replay of signed datagrams accepted before the
// kill is refused as a replay (replay state survives a crash).
func TestEdgeSIGKILLAfterBurstKeepsEveryAcceptedEvent(t *testing.T) {
	root := testDir(t)
	key := newHareKey(t, "burst-host")
	keys := filepath.Join(root, "edge.keys")
	writeFile(t, keys, key.line(), 0o600)
	e := newEdge(t, root, edgeOptions{id: "site-k", keysFile: keys, nats: true})
	e.StartReady()

	const total = 4000
	var dgrams, signed [][]byte
	sent := map[string]bool{}
	garbage := 0
	for i, id := range ids("burst", total) {
		sent[id] = true
		if i%4 == 3 {
			d := signedLogin(t, key, id)
			signed = append(signed, d)
			dgrams = append(dgrams, d)
		} else {
			dgrams = append(dgrams, login(id))
		}
		if i%100 == 50 {
			dgrams = append(dgrams, []byte(`{"tst":1,"user":"cut-`)) // truncated JSON
			garbage++
		}
	}

	before := e.status(t)
	conn := dialUDP(t, e.udpAddr)
	chunk := burstChunk()
	for i := 0; i < len(dgrams); i += chunk {
		j := min(i+chunk, len(dgrams))
		for _, d := range dgrams[i:j] {
			if _, err := conn.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		// Only the socket's capacity paces the burst: the edge must have
		// read a chunk before the next one could overflow the buffer.
		want := before.received() + uint64(j)
		waitFor(t, 60*time.Second, "the edge to read the burst", func() (bool, string) {
			st := e.status(t)
			return st.received() >= want, fmt.Sprintf("read %d of %d", st.received()-before.received(), j)
		})
	}
	var last edgeStatus
	for deadline := time.Now().Add(60 * time.Second); ; {
		last = e.status(t)
		if last.settled()-before.settled() >= uint64(len(dgrams)) {
			e.Kill() // right away: nothing happens between this read and the kill
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge decided on %d of %d datagrams within 60 s", last.settled()-before.settled(), len(dgrams))
		}
		time.Sleep(time.Millisecond)
	}
	accepted := last.Accepted["udp"]
	t.Logf("SIGKILL with %d accepted, rejected %v, %d in the stream", accepted, nonZero(last.Rejected), last.Stream.Messages)
	if accepted != total || last.Rejected["bad_json"] != uint64(garbage) || sum(last.Rejected) != uint64(garbage) {
		t.Errorf("before the kill: accepted %d (want %d), rejected %v (want bad_json %d only)", accepted, total, nonZero(last.Rejected), garbage)
	}

	e.StartReady()
	after := e.status(t)
	if after.Epoch != last.Epoch {
		t.Errorf("store epoch changed across the restart: %q -> %q", last.Epoch, after.Epoch)
	}
	msgs := readEdgeStream(t, e.natsAddr)
	if uint64(len(msgs)) != accepted {
		t.Errorf("after the restart the edge stream holds %d events; %d were accepted before the SIGKILL", len(msgs), accepted)
	}
	got := map[string]int{}
	for _, m := range msgs {
		var p harePayload
		if err := json.Unmarshal(m.Data, &p); err != nil || !sent[p.User] {
			t.Errorf("edge seq %d: %s is none of the events sent (%v)", m.Seq, m.Data, err)
			continue
		}
		got[p.User]++
	}
	missing, dup := 0, 0
	for id := range sent {
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		t.Errorf("after the restart: %d accepted events missing, %d stored more than once", missing, dup)
	}

	// The nonces of the signed events survived too: replays are refused.
	replays := signed[:20]
	b, a := send(t, e, replays)
	if acc, rep := a.Accepted["udp"]-b.Accepted["udp"], a.Rejected["replay"]-b.Rejected["replay"]; acc != 0 || rep != uint64(len(replays)) {
		t.Errorf("replaying %d signed datagrams accepted before the SIGKILL: %d accepted, %d refused as replay (rejected %v)", len(replays), acc, rep, nonZero(a.Rejected))
	}
}

// burstChunk is how many datagrams may be in flight to the edge at once
// without overflowing its socket buffer: the edge asks for 8 MiB, the kernel
// grants up to twice net.core.rmem_max, and a small datagram costs about
// 1-2 KiB of buffer.
func burstChunk() int {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		return 200
	}
	var rmem int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &rmem); err != nil {
		return 200
	}
	return max(64, min(maxChunk, min(rmem, 8<<20)*2/2048/2))
}
