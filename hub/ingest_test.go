package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
)

func TestIngestStoresAndDeduplicates(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a")
	nc := th.connectEdge(t, "site-a")

	payload := []byte(`{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384609,"tty":"pts/3","user":"jjolie"}`)
	hdr := nats.Header{}
	hdr.Set(event.HdrSource, event.SourceUDP)
	hdr.Set(event.HdrTopic, event.HareTopic)
	for seq := uint64(1); seq <= 3; seq++ {
		a, err := send(t, nc, "site-a", "logging.hare", event.MsgID("site-a", "ep1", seq), payload, hdr)
		if err != nil {
			t.Fatal(err)
		}
		if a.Error != nil || a.Duplicate || a.Seq != seq || a.Stream != event.HubStream || a.Domain != event.HubDomain {
			t.Fatalf("seq %d: answer %+v", seq, a)
		}
	}
	// a resend of seq 2 is a duplicate and stores nothing
	a, err := send(t, nc, "site-a", "logging.hare", event.MsgID("site-a", "ep1", 2), payload, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Duplicate || a.Seq != 2 {
		t.Fatalf("resend: answer %+v, want duplicate of seq 2", a)
	}
	msgs := th.stored(t)
	if len(msgs) != 3 {
		t.Fatalf("stream holds %d events, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.Subject != "hub.ev.site-a.logging.hare" {
			t.Errorf("event %d subject %q", i, m.Subject)
		}
		if got, want := m.Header.Get(event.HdrMsgID), event.MsgID("site-a", "ep1", uint64(i+1)); got != want {
			t.Errorf("event %d msg id %q, want %q", i, got, want)
		}
		if m.Header.Get(event.HdrEdge) != "site-a" || m.Header.Get(event.HdrSource) != event.SourceUDP || m.Header.Get(event.HdrTopic) != event.HareTopic {
			t.Errorf("event %d headers %v", i, m.Header)
		}
		if string(m.Data) != string(payload) {
			t.Errorf("event %d payload %q", i, m.Data)
		}
	}
	st := th.Status()
	if st.Ingest[resStored] != 3 || st.Ingest[resDuplicate] != 1 {
		t.Errorf("ingest counters %v", st.Ingest)
	}
}

// pipeline sends events as edge id with up to window requests in flight and
// returns the answers by request number.
type pipeline struct {
	nc     *nats.Conn
	id     string
	mu     sync.Mutex
	ans    map[int]answer
	sem    chan struct{}
	prefix string
}

func newPipeline(t testing.TB, nc *nats.Conn, id string, window int) *pipeline {
	p := &pipeline{nc: nc, id: id, ans: map[int]answer{}, sem: make(chan struct{}, window), prefix: "_INBOX_" + id + ".p."}
	_, err := nc.Subscribe(p.prefix+"*", func(m *nats.Msg) {
		n, _ := strconv.Atoi(strings.TrimPrefix(m.Subject, p.prefix))
		var a answer
		if err := json.Unmarshal(m.Data, &a); err != nil {
			a.Error = &struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			}{Code: -1, Description: string(m.Data)}
		}
		p.mu.Lock()
		p.ans[n] = a
		p.mu.Unlock()
		<-p.sem
	})
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	return p
}

func (p *pipeline) send(t testing.TB, n int, msgID string, data []byte) {
	p.sem <- struct{}{}
	m := nats.NewMsg(event.IngestSubject(p.id, "ev.logging.hare"))
	m.Reply = p.prefix + strconv.Itoa(n)
	m.Header.Set(event.HdrMsgID, msgID)
	m.Data = data
	if err := p.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
}

func (p *pipeline) wait(t testing.TB, n int) map[int]answer {
	waitFor(t, "all answers", 20*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ans) == n
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ans
}

func TestIngestPipelinedOrderExactlyOnce(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a", "site-b")
	const n = 1500
	type sent struct {
		edge string
		seq  uint64
		dup  bool
	}
	var wg sync.WaitGroup
	results := map[string][]sent{}
	pipes := map[string]*pipeline{}
	for _, id := range []string{"site-a", "site-b"} {
		pipes[id] = newPipeline(t, th.connectEdge(t, id), id, 256)
	}
	var mu sync.Mutex
	for _, id := range []string{"site-a", "site-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := pipes[id]
			var list []sent
			req := 0
			for seq := uint64(1); seq <= n; seq++ {
				p.send(t, req, event.MsgID(id, "ep1", seq), []byte(fmt.Sprintf("%s-%d", id, seq)))
				list = append(list, sent{id, seq, false})
				req++
				if seq%7 == 0 { // a bridge resending after a lost answer
					p.send(t, req, event.MsgID(id, "ep1", seq-3), []byte(fmt.Sprintf("%s-%d", id, seq-3)))
					list = append(list, sent{id, seq - 3, true})
					req++
				}
			}
			mu.Lock()
			results[id] = list
			mu.Unlock()
		}()
	}
	wg.Wait()
	for id, list := range results {
		ans := pipes[id].wait(t, len(list))
		for i, s := range list {
			a := ans[i]
			if a.Error != nil {
				t.Fatalf("%s request %d: error %+v", id, i, a.Error)
			}
			if a.Duplicate != s.dup {
				t.Errorf("%s request %d (seq %d): duplicate=%v, want %v", id, i, s.seq, a.Duplicate, s.dup)
			}
		}
	}
	msgs := th.stored(t)
	if len(msgs) != 2*n {
		t.Fatalf("stream holds %d events, want %d", len(msgs), 2*n)
	}
	next := map[string]uint64{"site-a": 1, "site-b": 1}
	for _, m := range msgs {
		id, _, seq, err := event.ParseMsgID(m.Header.Get(event.HdrMsgID))
		if err != nil {
			t.Fatal(err)
		}
		if seq != next[id] {
			t.Fatalf("%s: stored seq %d, want %d (order or exactly-once broken)", id, seq, next[id])
		}
		if want := fmt.Sprintf("%s-%d", id, seq); string(m.Data) != want {
			t.Fatalf("payload %q, want %q", m.Data, want)
		}
		next[id]++
	}
	es := th.Edges()
	if len(es) != 2 || es[0].Stored != n || es[0].Duplicates != n/7 {
		t.Errorf("edge counters %+v", es)
	}
}

func TestIngestGateKeepsOrderAfterFailure(t *testing.T) {
	cfg := testConfig(t)
	cfg.Stream.Discard = "new"
	cfg.Stream.MaxBytes = 4096
	th := startHub(t, cfg, "site-a")
	nc := th.connectEdge(t, "site-a")

	big := []byte(strings.Repeat("x", 8000))
	small := []byte("small")
	ans, err := send(t, nc, "site-a", "logging.hare", "site-a:ep1:1", small, nil)
	if err != nil || ans.Error != nil {
		t.Fatalf("seq 1: %+v %v", ans, err)
	}
	// seq 2 does not fit: refused by the stream
	ans, err = send(t, nc, "site-a", "logging.hare", "site-a:ep1:2", big, nil)
	if err != nil || ans.Error == nil {
		t.Fatalf("seq 2: %+v %v, want a store error", ans, err)
	}
	// seq 3 would fit, but must not overtake seq 2
	ans, err = send(t, nc, "site-a", "logging.hare", "site-a:ep1:3", small, nil)
	if err != nil || ans.Error == nil || ans.Error.Code != 503 || !strings.Contains(ans.Error.Description, "site-a:ep1:2") {
		t.Fatalf("seq 3: %+v %v, want 503 waiting for seq 2", ans, err)
	}
	// another epoch (a wiped edge store) is not held back by the old one
	ans, err = send(t, nc, "site-a", "logging.hare", "site-a:ep2:1", small, nil)
	if err != nil || ans.Error != nil {
		t.Fatalf("new epoch: %+v %v", ans, err)
	}
	ans, err = send(t, nc, "site-a", "logging.hare", "site-a:ep1:3", small, nil)
	if err != nil || ans.Error == nil || ans.Error.Code != 503 {
		t.Fatalf("seq 3 after the other epoch: %+v %v, want still refused", ans, err)
	}
	// the operator makes room; the retry of seq 2 goes through, then seq 3
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := th.JetStream().Stream(ctx, event.HubStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	sc := info.Config
	sc.MaxBytes = 1 << 20
	if _, err := th.JetStream().UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"site-a:ep1:2", "site-a:ep1:3"} {
		data := small
		if id == "site-a:ep1:2" {
			data = big
		}
		if ans, err := send(t, nc, "site-a", "logging.hare", id, data, nil); err != nil || ans.Error != nil {
			t.Fatalf("%s: %+v %v", id, ans, err)
		}
	}
	var order []string
	for _, m := range th.stored(t) {
		order = append(order, m.Header.Get(event.HdrMsgID))
	}
	want := []string{"site-a:ep1:1", "site-a:ep2:1", "site-a:ep1:2", "site-a:ep1:3"}
	if d := cmp.Diff(want, order); d != "" {
		t.Errorf("stored order (-want +got):\n%s", d)
	}
	st := th.Status()
	if st.Ingest[resStoreError] != 1 || st.Ingest[resOutOfOrder] < 1 {
		t.Errorf("counters %v", st.Ingest)
	}
}

func TestIngestRefusesBadMsgIDs(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a")
	nc := th.connectEdge(t, "site-a")
	for _, c := range []struct{ id, result string }{
		{"", resMissingMsgID},
		{"site-a:ep", resBadMsgID},
		{"site-a:ep:x", resBadMsgID},
		{"other:ep:1", resForgedMsgID},
	} {
		ans, err := send(t, nc, "site-a", "logging.hare", c.id, []byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if ans.Error == nil || ans.Error.Code != 400 {
			t.Errorf("msg id %q: answer %+v, want 400", c.id, ans)
		}
		if th.Status().Ingest[c.result] == 0 {
			t.Errorf("msg id %q: counter %s not counted", c.id, c.result)
		}
	}
	if n := len(th.stored(t)); n != 0 {
		t.Errorf("stream holds %d events", n)
	}
}

func TestHeartbeatAndLinkEvents(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a", "site-b")
	type link struct {
		id string
		up bool
	}
	links := make(chan link, 10)
	th.OnEdgeLink(func(id string, up bool, at time.Time) {
		if at.IsZero() {
			t.Errorf("link event without time")
		}
		links <- link{id, up}
	})
	nc := th.connectEdge(t, "site-a")
	select {
	case l := <-links:
		if l != (link{"site-a", true}) {
			t.Fatalf("link event %+v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no link-up event")
	}
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hb := Heartbeat{ID: "site-a", Version: "v1.2.3", Epoch: "ep1", Started: started, BacklogMsgs: 42, BacklogBytes: 4200, OldestAgeMS: 1500, Forwarded: 7, LinkSince: started.Add(time.Minute)}
	data, _ := json.Marshal(hb)
	reply, err := nc.Request(event.IngestPrefix+"site-a."+StatusSubjectRest, data, 5*time.Second)
	if err != nil || string(reply.Data) != "ok" {
		t.Fatalf("heartbeat reply %v %v", reply, err)
	}
	// a heartbeat claiming another edge is refused
	forged, _ := json.Marshal(Heartbeat{ID: "site-b", BacklogMsgs: 1})
	reply, err = nc.Request(event.IngestPrefix+"site-a."+StatusSubjectRest, forged, 5*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"code":400`) {
		t.Fatalf("forged heartbeat reply %s %v", reply.Data, err)
	}
	reply, err = nc.Request(event.IngestPrefix+"site-a."+StatusSubjectRest, []byte("{not json"), 5*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"code":400`) {
		t.Fatalf("bad heartbeat reply %s %v", reply.Data, err)
	}
	es := th.Edges()
	if len(es) != 1 {
		t.Fatalf("edges %+v", es)
	}
	e := es[0]
	if !e.Connected || e.Version != "v1.2.3" || e.Epoch != "ep1" || e.BacklogMsgs != 42 || e.BacklogBytes != 4200 ||
		e.OldestAgeMS != 1500 || e.Forwarded != 7 || !e.Started.Equal(started) || e.LastHeartbeat == nil ||
		e.TLSVersion != "TLS 1.3" || !e.Listed || !strings.HasPrefix(e.Address, "127.0.0.1:") || e.Since == nil {
		t.Errorf("edge status %+v", e)
	}
	if n := len(th.stored(t)); n != 0 {
		t.Errorf("heartbeats stored as events: %d", n)
	}
	nc.Close()
	select {
	case l := <-links:
		if l != (link{"site-a", false}) {
			t.Fatalf("link event %+v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no link-down event")
	}
	if e := th.Edges()[0]; e.Connected || e.LastSeen == nil || e.Version != "v1.2.3" {
		t.Errorf("after disconnect: %+v", e)
	}
}

func TestDedupSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.MQTT.TLSListen = ""
	if _, err := pki.DevPKI(cfg.PKIPath(), "site-a"); err != nil {
		t.Fatal(err)
	}
	runOnce := func(fn func(th *testHub)) {
		logs := &logBuf{}
		h, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx) }()
		select {
		case <-h.Ready():
		case err := <-done:
			t.Fatalf("run: %v\n%s", err, logs)
		}
		fn(&testHub{Hub: h, logs: logs, dir: cfg.PKIPath()})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	runOnce(func(th *testHub) {
		nc := th.connectEdge(t, "site-a")
		for seq := uint64(1); seq <= 3; seq++ {
			if ans, err := send(t, nc, "site-a", "logging.hare", event.MsgID("site-a", "ep", seq), []byte("x"), nil); err != nil || ans.Error != nil {
				t.Fatalf("%+v %v", ans, err)
			}
		}
		nc.Close()
	})
	runOnce(func(th *testHub) {
		nc := th.connectEdge(t, "site-a")
		// an edge resending after the hub restarted: duplicates, then new
		for seq := uint64(2); seq <= 4; seq++ {
			ans, err := send(t, nc, "site-a", "logging.hare", event.MsgID("site-a", "ep", seq), []byte("x"), nil)
			if err != nil || ans.Error != nil || ans.Duplicate != (seq <= 3) || ans.Seq != seq {
				t.Fatalf("seq %d after restart: %+v %v", seq, ans, err)
			}
		}
		if n := len(th.stored(t)); n != 4 {
			t.Fatalf("stream holds %d events, want 4", n)
		}
		nc.Close()
	})
}
