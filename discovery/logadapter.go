package discovery

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// refusal classifies a gossip message memberlist refused.
type refusal int

const (
	refusalNone refusal = iota
	// refusalKey: encrypted with a key this node does not have, or
	// encrypted while this node runs without encryption.
	refusalKey
	// refusalPlaintext: not encrypted while this node requires encryption.
	refusalPlaintext
	// refusalLabel: carries another cluster label (or a broken label header).
	refusalLabel
)

func (r refusal) String() string {
	switch r {
	case refusalKey:
		return "wrong-key"
	case refusalPlaintext:
		return "unencrypted"
	case refusalLabel:
		return "wrong-label"
	default:
		return "none"
	}
}

func (r refusal) hint() string {
	switch r {
	case refusalKey:
		return "the peer's gossip key is not in this node's keyring (or keys differ in encryption mode)"
	case refusalPlaintext:
		return "the peer sends unencrypted gossip; give it the cluster key"
	case refusalLabel:
		return "the peer belongs to a cluster with another label"
	default:
		return ""
	}
}

// logLine is one parsed memberlist log entry.
type logLine struct {
	level   slog.Level
	msg     string
	from    string // peer address from memberlist's "from=" suffix, if any
	refusal refusal
}

// parseLogLine parses memberlist's log format: "[LEVEL] memberlist: text
// from=addr". Every part is optional; anything unrecognised is an Info
// message with the text as it came.
func parseLogLine(line string) logLine {
	l := logLine{level: slog.LevelInfo}
	s := strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 && end <= 8 {
			switch s[1:end] {
			case "DEBUG", "TRACE":
				l.level = slog.LevelDebug
			case "INFO":
				l.level = slog.LevelInfo
			case "WARN", "WARNING":
				l.level = slog.LevelWarn
			case "ERR", "ERROR":
				l.level = slog.LevelError
			}
			s = strings.TrimLeft(s[end+1:], " ")
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	if i := strings.LastIndex(s, " from="); i >= 0 {
		from := s[i+len(" from="):]
		if from != "" && !strings.ContainsAny(from, " \t\n") {
			l.from = from
			s = s[:i]
		}
	}
	l.msg = s
	l.refusal = classify(strings.ToLower(s))
	return l
}

func classify(lower string) refusal {
	if strings.HasPrefix(lower, "failed to join ") {
		// This node's own join attempt failed; Join reports and counts that.
		return refusalNone
	}
	switch {
	case strings.Contains(lower, "no installed keys could decrypt"),
		strings.Contains(lower, "remote state is encrypted and encryption is not configured"):
		return refusalKey
	case strings.Contains(lower, "encryption is configured but remote state is not encrypted"),
		strings.Contains(lower, "decrypt packet failed"):
		return refusalPlaintext
	case strings.Contains(lower, "unacceptable label"),
		strings.Contains(lower, "unexpected double"),
		strings.Contains(lower, "label header cannot be empty"):
		// Not "failed to receive and remove the stream label header" by
		// itself: that is usually an I/O error (timeout, reset).
		return refusalLabel
	}
	return refusalNone
}

// refusalCounters counts refused gossip by kind.
type refusalCounters struct {
	key, plaintext, label atomic.Uint64
}

func (c *refusalCounters) add(r refusal) {
	switch r {
	case refusalKey:
		c.key.Add(1)
	case refusalPlaintext:
		c.plaintext.Add(1)
	case refusalLabel:
		c.label.Add(1)
	}
}

// refusalLogEvery bounds refusal warnings to one per kind and peer IP per
// period; the counters still see every refusal.
const refusalLogEvery = time.Minute

// logWriter turns memberlist's log output into slog records and counts
// refused gossip. memberlist writes one entry per Write call.
type logWriter struct {
	logger   *slog.Logger // memberlist's lines
	warn     *slog.Logger // "gossip refused" warnings
	counters *refusalCounters
	now      func() time.Time

	mu         sync.Mutex
	lastWarned map[string]time.Time
	suppressed map[string]uint64
}

func newLogWriter(logger, warn *slog.Logger, counters *refusalCounters) *logWriter {
	return &logWriter{
		logger:     logger,
		warn:       warn,
		counters:   counters,
		now:        time.Now,
		lastWarned: make(map[string]time.Time),
		suppressed: make(map[string]uint64),
	}
}

func (w *logWriter) Write(p []byte) (int, error) {
	l := parseLogLine(string(p))
	if l.refusal != refusalNone {
		w.counters.add(l.refusal)
		w.warnRefusal(l)
		return len(p), nil
	}
	ctx := context.Background()
	if !w.logger.Enabled(ctx, l.level) {
		return len(p), nil
	}
	if l.from != "" {
		w.logger.Log(ctx, l.level, l.msg, "from", l.from)
	} else {
		w.logger.Log(ctx, l.level, l.msg)
	}
	return len(p), nil
}

func (w *logWriter) warnRefusal(l logLine) {
	host := l.from
	if h, _, err := net.SplitHostPort(l.from); err == nil {
		host = h
	}
	k := l.refusal.String() + " " + host
	now := w.now()
	w.mu.Lock()
	last, seen := w.lastWarned[k]
	if seen && now.Sub(last) < refusalLogEvery {
		w.suppressed[k]++
		w.mu.Unlock()
		return
	}
	if len(w.lastWarned) >= 1024 { // bound memory under a spray of sources
		clear(w.lastWarned)
		clear(w.suppressed)
	}
	w.lastWarned[k] = now
	n := w.suppressed[k]
	delete(w.suppressed, k)
	w.mu.Unlock()
	w.warn.Warn("gossip refused", "reason", l.refusal.String(), "from", l.from,
		"hint", l.refusal.hint(), "detail", l.msg, "suppressed_since_last", n)
}
