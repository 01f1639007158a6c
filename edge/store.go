package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/wire"
)

const (
	jsDomain = event.EdgeDomain
	// NonceStream keeps one record per accepted signed datagram for two
	// timestamp windows, so replays are refused across restarts.
	NonceStream = "HARE_NONCES"
	nonceToken  = "nonce"
	// nonceSubject is where nonce records are stored.
	nonceSubject = nonceToken + ".hare"
	// epochFile is the store epoch's file, inside the account's JetStream
	// directory (DataDir/jetstream/WARREN/): removing the store removes it.
	epochFile = "warren-epoch"
	// maxReplayEntries bounds the in-memory replay cache; beyond it the
	// nonce stream's duplicate detection alone refuses replays.
	maxReplayEntries = 1 << 20
	// maxMsgSize is the largest event the edge stream takes (MQTT payloads
	// included); nats-server's max_payload is set to the same.
	maxMsgSize = 1 << 20
)

// EdgeStreamConfig is the edge stream's configuration for store limits sc.
// WorkQueue retention: a message leaves the store when the bridge acks it,
// so the stream holds exactly the backlog. DiscardNew: a full store refuses
// new events instead of dropping stored ones.
func EdgeStreamConfig(sc StoreConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        event.EdgeStream,
		Description: "warren edge: accepted events awaiting forwarding to the hub",
		Subjects:    []string{event.EdgeSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    limitOrUnbounded(sc.MaxBytes),
		MaxMsgs:     limitOrUnbounded(sc.MaxMsgs),
		MaxMsgSize:  maxMsgSize,
		Replicas:    1,
	}
}

func nonceStreamConfig(window time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        NonceStream,
		Description: "warren edge: nonces of accepted signed hare datagrams (replay protection)",
		Subjects:    []string{nonceToken + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      2 * window,
		Duplicates:  2 * window,
		Replicas:    1,
	}
}

// setupStreams creates or updates both streams and settles the epoch.
func (e *Edge) setupStreams(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	created := false
	cfg := EdgeStreamConfig(e.cfg.Store)
	var s jetstream.Stream
	_, err := e.js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s, err = e.js.CreateStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		created = true
	case err != nil:
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	default:
		s, err = e.js.UpdateStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("update stream %s (store.* settings): %w", cfg.Name, err)
		}
	}
	e.edgeStream = s
	if _, err := e.js.CreateOrUpdateStream(ctx, nonceStreamConfig(e.cfg.UDP.TSWindow)); err != nil {
		return fmt.Errorf("stream %s: %w", NonceStream, err)
	}
	e.epoch, err = settleEpoch(e.epochPath(), created)
	if err != nil {
		return err
	}
	return nil
}

func (e *Edge) epochPath() string {
	return filepath.Join(e.cfg.DataDir, "jetstream", Account, epochFile)
}

// settleEpoch returns the store epoch kept at path, making a new one when
// the edge stream was just created or the file is missing or unreadable.
// The file sits inside the JetStream store, so wiping the store also
// wipes the epoch.
func settleEpoch(path string, fresh bool) (string, error) {
	if !fresh {
		b, err := os.ReadFile(path)
		if err == nil {
			if ep := strings.TrimSpace(string(b)); validEpoch(ep) {
				return ep, nil
			}
		}
	}
	raw := make([]byte, 8)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	ep := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("store epoch: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(ep+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store epoch: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("store epoch: %w", err)
	}
	return ep, nil
}

func validEpoch(s string) bool {
	if len(s) != 16 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// nonceRecord is the payload of a nonce record: "<ts-ms> <key-id> <nonce-hex>".
func nonceRecord(keyID string, nonce [wire.NonceSize]byte, tsMillis int64) []byte {
	b := strconv.AppendInt(nil, tsMillis, 10)
	b = append(b, ' ')
	b = append(b, keyID...)
	b = append(b, ' ')
	return hex.AppendEncode(b, nonce[:])
}

func parseNonceRecord(b []byte) (replayKey, int64, bool) {
	f := strings.Fields(string(b))
	if len(f) != 3 || !wire.ValidKeyID(f[1]) {
		return replayKey{}, 0, false
	}
	ts, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return replayKey{}, 0, false
	}
	raw, err := hex.DecodeString(f[2])
	if err != nil || len(raw) != wire.NonceSize {
		return replayKey{}, 0, false
	}
	k := replayKey{kid: f[1]}
	copy(k.nonce[:], raw)
	return k, ts, true
}

// nonceMsgID is the Nats-Msg-Id of a nonce record.
func nonceMsgID(keyID string, nonce [wire.NonceSize]byte) string {
	return keyID + ":" + hex.EncodeToString(nonce[:])
}

// loadNonces fills the replay cache from the nonce stream, so a replay
// right after a restart is refused without a store round trip (the stream's
// duplicate window refuses it anyway).
func (e *Edge) loadNonces(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, NonceStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", NonceStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", NonceStream, err)
	}
	total := info.State.Msgs
	if total == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("read %s: %w", NonceStream, err)
	}
	nowMs := time.Now().UnixMilli()
	var read uint64
	for read < total && e.core.replay.size < maxReplayEntries {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", NonceStream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if k, ts, ok := parseNonceRecord(m.Data()); ok {
				e.core.replay.add(k, ts)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read %s: %w", NonceStream, err)
		}
		if n == 0 {
			break // the rest expired meanwhile
		}
		read += uint64(n)
		if ctx.Err() != nil {
			return fmt.Errorf("read %s: %w", NonceStream, ctx.Err())
		}
	}
	e.core.replay.expire(nowMs)
	e.replaySize.Store(int64(e.core.replay.size))
	e.log.Info("replay cache loaded", "nonces", e.core.replay.size)
	return nil
}

// StreamStatus is the edge stream's state.
type StreamStatus struct {
	// Name is the stream name (EDGE).
	Name string `json:"name"`
	// Messages is the number of stored events: the backlog.
	Messages uint64 `json:"messages"`
	// Bytes is the stream's size.
	Bytes uint64 `json:"bytes"`
	// FirstSeq and LastSeq bound the stored sequence numbers.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Oldest is the store time of the oldest event (absent when empty).
	Oldest *time.Time `json:"oldest,omitempty"`
	// OldestAgeSeconds is how long the oldest event has waited; 0 when empty.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// MaxBytes and MaxMsgs are the store limits; -1 is unbounded.
	MaxBytes int64 `json:"max_bytes"`
	MaxMsgs  int64 `json:"max_msgs"`
	// MaxAge is store.max_age; "0s" when events never expire.
	MaxAge string `json:"max_age"`
	// Consumers is the number of consumers (the bridge's durable one).
	Consumers int `json:"consumers"`
	// Error is set when the stream could not be read.
	Error string `json:"error,omitempty"`
}

func (e *Edge) streamStatus(ctx context.Context) (StreamStatus, error) {
	st := StreamStatus{
		Name:     event.EdgeStream,
		MaxBytes: limitOrUnbounded(e.cfg.Store.MaxBytes),
		MaxMsgs:  limitOrUnbounded(e.cfg.Store.MaxMsgs),
		MaxAge:   e.cfg.Store.MaxAge.String(),
	}
	if e.edgeStream == nil {
		st.Error = "not started"
		return st, errors.New("edge: not started")
	}
	info, err := e.edgeStream.Info(ctx)
	if err != nil {
		st.Error = err.Error()
		return st, err
	}
	s := info.State
	st.Messages, st.Bytes, st.FirstSeq, st.LastSeq, st.Consumers = s.Msgs, s.Bytes, s.FirstSeq, s.LastSeq, s.Consumers
	if s.Msgs > 0 && !s.FirstTime.IsZero() {
		t := s.FirstTime.UTC()
		st.Oldest = &t
		st.OldestAgeSeconds = max(0, time.Since(t).Seconds())
	}
	return st, nil
}

// expireLoop deletes events older than store.max_age, counting each. Only
// runs when an operator set max_age: it trades unforwarded events for room.
func (e *Edge) expireLoop(ctx context.Context) {
	defer e.bgWG.Done()
	every := min(max(e.cfg.Store.MaxAge/10, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := e.expireOnce(ctx, time.Now())
			if err != nil && ctx.Err() == nil {
				e.log.Warn("store expiry", "err", err)
			}
			if n > 0 {
				e.log.Warn("deleted unforwarded events older than store.max_age", "events", n, "max_age", e.cfg.Store.MaxAge)
			}
		}
	}
}

// expireOnce deletes up to 10000 events stored before now − max_age.
func (e *Edge) expireOnce(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-e.cfg.Store.MaxAge)
	n := 0
	var seq uint64 = 1
	for n < 10000 {
		m, err := e.edgeStream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(event.EdgeSubjectPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if !m.Time.Before(cutoff) {
			return n, nil
		}
		if err := e.edgeStream.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, err
		}
		e.counters.expired.Add(1)
		n++
		seq = m.Sequence + 1
	}
	return n, nil
}
