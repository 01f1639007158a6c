package notify

import (
	"sync"
	"time"
)

// dedupState remembers, per route and rendered key, when a notification
// last went out and how many repeats were suppressed since. It lives on
// the Engine, not on a configuration, so it survives reloads.
type dedupState struct {
	mu      sync.Mutex
	entries map[dedupKey]*dedupEntry
	// maxEntries bounds memory; expired entries are swept when it is hit.
	maxEntries int
}

type dedupKey struct{ route, key string }

type dedupEntry struct {
	passed        time.Time // when the last notification went out
	window        time.Duration
	eventID       string // the event that went out, so its redelivery is not suppressed
	suppressed    int
	suppressedIDs map[string]struct{} // events already counted (redeliveries count once)
}

// dedupReportFor is how long after its window a suppressed count waits
// for the next notification to report it.
const dedupReportFor = 24 * time.Hour

func newDedupState() *dedupState {
	return &dedupState{entries: make(map[dedupKey]*dedupEntry), maxEntries: 100_000}
}

// dedupDecision is the outcome of one check.
type dedupDecision struct {
	suppress bool
	// suppressedBefore is, for a notification that goes out, how many
	// repeats were suppressed in the window that just ended.
	suppressedBefore int
	// until is when the current window ends (for reports).
	until time.Time
}

// check decides for one event and records the decision.
func (s *dedupState) check(route, key, eventID string, window time.Duration, now time.Time) dedupDecision {
	return s.decide(route, key, eventID, window, now, true)
}

// peek decides without recording (dry runs).
func (s *dedupState) peek(route, key, eventID string, window time.Duration, now time.Time) dedupDecision {
	return s.decide(route, key, eventID, window, now, false)
}

func (s *dedupState) decide(route, key, eventID string, window time.Duration, now time.Time, record bool) dedupDecision {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := dedupKey{route, key}
	e := s.entries[k]
	if e != nil && now.Before(e.passed.Add(window)) {
		if eventID != "" && e.eventID == eventID {
			// A redelivery of the event that went out: let it through
			// again (the outbox deduplicates the copy).
			return dedupDecision{until: e.passed.Add(window)}
		}
		if record {
			if eventID == "" {
				e.suppressed++
			} else if _, seen := e.suppressedIDs[eventID]; !seen {
				e.suppressed++
				if len(e.suppressedIDs) < 1024 {
					if e.suppressedIDs == nil {
						e.suppressedIDs = map[string]struct{}{}
					}
					e.suppressedIDs[eventID] = struct{}{}
				}
			}
		}
		return dedupDecision{suppress: true, until: e.passed.Add(window)}
	}
	d := dedupDecision{until: now.Add(window)}
	if e != nil {
		d.suppressedBefore = e.suppressed
	}
	if record {
		if e == nil {
			if len(s.entries) >= s.maxEntries {
				s.sweepLocked(now)
			}
			e = &dedupEntry{}
			s.entries[k] = e
		}
		*e = dedupEntry{passed: now, window: window, eventID: eventID}
	}
	return d
}

// sweepLocked drops expired entries; if that frees nothing it drops an
// arbitrary half, so memory stays bounded under a flood of distinct keys.
func (s *dedupState) sweepLocked(now time.Time) {
	for k, e := range s.entries {
		if !now.Before(e.passed.Add(e.window)) {
			delete(s.entries, k)
		}
	}
	if len(s.entries) < s.maxEntries {
		return
	}
	n := len(s.entries) / 2
	for k := range s.entries {
		if n == 0 {
			break
		}
		delete(s.entries, k)
		n--
	}
}

// sweep drops expired entries; called periodically.
func (s *dedupState) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		// An entry with suppressed repeats is kept a while past its
		// window, so the next notification can still report them.
		keep := e.window
		if e.suppressed > 0 {
			keep += dedupReportFor
		}
		if !now.Before(e.passed.Add(keep)) {
			delete(s.entries, k)
		}
	}
}
