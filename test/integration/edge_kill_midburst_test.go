package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/event"
)

// TestEdgeSIGKILLMidBurstKeepsEveryAcceptedEvent is the harder half of
// issue 3's kill test: TestEdgeSIGKILLAfterBurstKeepsEveryAcceptedEvent
// kills the edge once every datagram is decided; this one kills it while
// datagrams are still queued or being published (status shows more read
// than decided), so a PubAck counted before the write reached the store
// would show as a missing event. After the restart: the stream holds at
// least as many events as the last status read before the kill counted
// accepted, each one sent and each once; and every signed event that made
// it into the stream is refused as a replay (its nonce record is stored
// before the event, so the stored event implies a stored nonce).
func TestEdgeSIGKILLMidBurstKeepsEveryAcceptedEvent(t *testing.T) {
	root := testDir(t)
	key := newHareKey(t, "mid-host")
	keys := filepath.Join(root, "edge.keys")
	writeFile(t, keys, key.line(), 0o600)
	e := newEdge(t, root, edgeOptions{id: "site-m", keysFile: keys, nats: true})
	e.StartReady()

	const total = 12000
	var dgrams [][]byte
	sent := map[string]bool{}
	signedOf := map[string][]byte{}
	for i, id := range ids("mid", total) {
		sent[id] = true
		if i%3 == 2 {
			d := signedLogin(t, key, id)
			signedOf[id] = d
			dgrams = append(dgrams, d)
		} else {
			dgrams = append(dgrams, login(id))
		}
	}

	conn := dialUDP(t, e.udpAddr)
	chunk := burstChunk()
	var last edgeStatus
	inFlight := false
	for i := 0; i < len(dgrams); i += chunk {
		j := min(i+chunk, len(dgrams))
		for _, d := range dgrams[i:j] {
			if _, err := conn.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 60*time.Second, "the edge to read the chunk", func() (bool, string) {
			last = e.status(t)
			return last.received() >= uint64(j), fmt.Sprintf("read %d of %d", last.received(), j)
		})
		// Past the first chunk, kill as soon as a status read shows events
		// read but not yet decided (in the queue or awaiting their PubAck).
		if i > 0 && udpDecided(last) < last.received() && last.Accepted["udp"] > 0 {
			inFlight = true
			break
		}
		if j == len(dgrams) {
			last = e.status(t)
		}
	}
	e.Kill() // at once: nothing between the last status read and the kill
	accepted := last.Accepted["udp"]
	t.Logf("SIGKILL with %d read, %d accepted, %d decided (events in flight: %v)", last.received(), accepted, udpDecided(last), inFlight)
	if !inFlight {
		t.Logf("no status read caught events in flight; this run only repeats the after-burst case")
	}
	if n := sum(last.Rejected); n != 0 {
		t.Errorf("rejections before the kill: %v", nonZero(last.Rejected))
	}

	e.StartReady()
	after := e.status(t)
	if after.Epoch != last.Epoch {
		t.Errorf("store epoch changed across the restart: %q -> %q", last.Epoch, after.Epoch)
	}
	msgs := readEdgeStream(t, e.natsAddr)
	got := map[string]int{}
	udpStored := 0
	var storedSigned [][]byte
	for _, m := range msgs {
		if m.Header.Get(event.HdrSource) != event.SourceUDP {
			continue // the edge's own events (audit), not ours
		}
		udpStored++
		var p harePayload
		if err := json.Unmarshal(m.Data, &p); err != nil || !sent[p.User] {
			t.Errorf("edge seq %d: %s is none of the events sent (%v)", m.Seq, m.Data, err)
			continue
		}
		if got[p.User]++; got[p.User] == 2 {
			t.Errorf("%s stored twice", p.User)
		}
		if d, ok := signedOf[p.User]; ok && got[p.User] == 1 {
			storedSigned = append(storedSigned, d)
		}
	}
	t.Logf("after the restart: %d hare events stored (%d counted accepted at the last read)", udpStored, accepted)
	if uint64(udpStored) < accepted {
		t.Errorf("after the restart the edge stream holds %d hare events; %d were counted accepted before the SIGKILL", udpStored, accepted)
	}
	if len(storedSigned) == 0 {
		t.Fatal("no signed event in the stream to replay")
	}

	// Stored signed events are replays now, whatever the kill interrupted.
	replays := storedSigned[:min(50, len(storedSigned))]
	b, a := send(t, e, replays)
	if acc, rep := a.Accepted["udp"]-b.Accepted["udp"], a.Rejected["replay"]-b.Rejected["replay"]; acc != 0 || rep != uint64(len(replays)) {
		t.Errorf("replaying %d stored signed datagrams: %d accepted, %d refused as replay (rejected %v)", len(replays), acc, rep, nonZero(a.Rejected))
	}
}

// udpDecided is how many datagrams the edge has decided on: stored hare
// events plus every rejection (the edge's own audit events do not count).
func udpDecided(s edgeStatus) uint64 { return s.Accepted["udp"] + sum(s.Rejected) }
