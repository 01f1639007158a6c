package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/internal/event"
)

// The checker is what the real-process tests rest on, so it is tested
// itself (without processes, so this also runs under -short): each way of
// getting delivery wrong must be reported.

// recorder is a testing.TB that collects errors instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}

// hubEvent builds a stored hub message as the hub writes it.
func hubEvent(streamSeq uint64, edgeID, epoch string, seq uint64, user string) storedMsg {
	h := nats.Header{}
	h.Set(event.HdrMsgID, event.MsgID(edgeID, epoch, seq))
	h.Set(event.HdrEdge, edgeID)
	h.Set(event.HdrEpoch, epoch)
	h.Set(event.HdrSeq, strconv.FormatUint(seq, 10))
	return storedMsg{
		Seq:     streamSeq,
		Subject: event.HubSubject(edgeID, "logging.hare"),
		Header:  h,
		Data:    fmt.Appendf(nil, `{"hostname":"h","remote":"127.0.0.1","rhost":null,"service":"sshd","tst":1,"tty":null,"user":%q}`, user),
	}
}

func TestCheckerReportsEveryDeliveryFault(t *testing.T) {
	want := ledger{"u1": "a", "u2": "a", "u3": "a"}
	want4 := ledger{"u1": "a", "u2": "a", "u3": "a", "u4": "a"}
	// good returns a fresh correct stream (headers are maps: never share).
	good := func() []storedMsg {
		return []storedMsg{
			hubEvent(1, "a", "e1", 1, "u1"),
			hubEvent(2, "a", "e1", 2, "u2"),
			hubEvent(3, "a", "e1", 3, "u3"),
		}
	}
	edit := func(f func([]storedMsg)) []storedMsg {
		m := good()
		f(m)
		return m
	}
	cases := []struct {
		name string
		msgs []storedMsg
		want ledger
		err  string // substring of the report; "" = none
	}{
		{"exact", good(), want, ""},
		{"new epoch restarts sequences", append(good(), hubEvent(4, "a", "e2", 1, "u4")), want4, ""},
		{"lost", good()[:2], want, "1 missing"},
		{"stored twice", append(good(), hubEvent(4, "a", "e1", 4, "u3")), want, "event u3 stored twice"},
		{"msg id twice", append(good(), hubEvent(4, "a", "e1", 3, "u4")), want4, "stored twice: hub seq 3 and 4"},
		{"order lost", edit(func(m []storedMsg) {
			m[1], m[2] = hubEvent(2, "a", "e1", 3, "u3"), hubEvent(3, "a", "e1", 2, "u2")
		}), want, "order lost"},
		{"never accepted", append(good(), hubEvent(4, "a", "e1", 4, "zz")), want, "never accepted"},
		{"another edge's event", edit(func(m []storedMsg) { m[2] = hubEvent(3, "b", "e9", 1, "u3") }), want, "accepted by edge a but stored as edge b"},
		{"msg id names another edge", edit(func(m []storedMsg) { m[0].Header.Set(event.HdrMsgID, event.MsgID("b", "e1", 1)) }), want, "disagree"},
		{"seq header disagrees", edit(func(m []storedMsg) { m[0].Header.Set(event.HdrSeq, "7") }), want, "Warren-Seq"},
		{"not hared's shape", edit(func(m []storedMsg) { m[0].Data = []byte(`{"user":"u1"}`) }), want, "not a hare event"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			checkExactlyOnce(r, c.msgs, c.want)
			got := strings.Join(r.errs, "\n")
			switch {
			case c.err == "" && got != "":
				t.Errorf("reported a fault in a correct stream:\n%s", got)
			case c.err != "" && !strings.Contains(got, c.err):
				t.Errorf("report does not mention %q:\n%s", c.err, got)
			}
		})
	}
}
