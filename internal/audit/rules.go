package audit

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Block is a temporary block of an address or a user by a brute-force rule.
type Block struct {
	Scope      string    `json:"scope"` // "addr" or "user"
	Key        string    `json:"key"`   // the address (IP, no port) or the user name
	Since      time.Time `json:"since"`
	Until      time.Time `json:"until"`
	Suppressed int       `json:"suppressed"` // failures and refused logins while blocked
	Lifted     bool      `json:"lifted,omitempty"`
}

// Block scopes.
const (
	ScopeAddr = "addr"
	ScopeUser = "user"
)

// rules is the alert rules' state. It is not safe for concurrent use; the
// auditor guards it with its mutex. Every method takes the current time.
type rules struct {
	cfg        Config
	trusted    []netip.Prefix
	neverBlock []netip.Prefix
	minVer     map[string]string

	addrFails  map[string]*failWindow
	userFails  map[string]*failWindow
	addrBlocks map[string]*Block
	userBlocks map[string]*Block
	cool       map[string]*cooldown
}

type failWindow struct {
	times []time.Time // failures within the window, oldest first, at most Threshold
}

type cooldown struct {
	until      time.Time
	suppressed int
}

func newRules(cfg Config) *rules {
	minVer, _ := parseMinVersions(cfg.MinVersions) // validated
	return &rules{
		cfg:        cfg,
		trusted:    parsePrefixes(cfg.Trusted),
		neverBlock: parsePrefixes(cfg.NeverBlock),
		minVer:     minVer,
		addrFails:  map[string]*failWindow{},
		userFails:  map[string]*failWindow{},
		addrBlocks: map[string]*Block{},
		userBlocks: map[string]*Block{},
		cool:       map[string]*cooldown{},
	}
}

// hostOf returns the IP of "ip:port", "[v6]:port" or "ip", normalised;
// "" when s holds no IP.
func hostOf(s string) string {
	if s == "" {
		return ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Unmap().String()
		}
	}
	return ""
}

// room makes space for one more entry in a bounded table.
func room[V any](m map[string]V, max int, expired func(V) bool) {
	if len(m) < max {
		return
	}
	for k, v := range m {
		if expired(v) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) < max {
			return
		}
		delete(m, k)
	}
}

// fail records one failure for key; it returns true when the threshold is
// reached (and starts the window again).
func (r *rules) fail(m map[string]*failWindow, b BruteForce, key string, now time.Time) bool {
	if b.Threshold <= 0 || key == "" {
		return false
	}
	w := m[key]
	if w == nil {
		room(m, r.cfg.MaxTracked, func(w *failWindow) bool {
			return len(w.times) == 0 || now.Sub(w.times[len(w.times)-1]) > b.Window
		})
		w = &failWindow{}
		m[key] = w
	}
	cut := 0
	for cut < len(w.times) && now.Sub(w.times[cut]) > b.Window {
		cut++
	}
	w.times = append(w.times[:0], w.times[cut:]...)
	w.times = append(w.times, now)
	if len(w.times) >= b.Threshold {
		delete(m, key)
		return true
	}
	return false
}

// active returns the block of key when it still holds.
func active(m map[string]*Block, key string, now time.Time) *Block {
	b := m[key]
	if b == nil || !now.Before(b.Until) {
		return nil
	}
	return b
}

func (r *rules) addrBlocked(ip string, now time.Time) bool {
	return ip != "" && active(r.addrBlocks, ip, now) != nil
}

func (r *rules) userBlocked(user string, now time.Time) bool {
	return user != "" && active(r.userBlocks, user, now) != nil
}

// fire applies the cooldown of (rule, key): ok is true when an alert may
// go out now, and count is how many occurrences it stands for (this one
// and those suppressed since the last alert).
func (r *rules) fire(rule Rule, key string, now time.Time) (count int, ok bool) {
	k := string(rule) + "|" + key
	c := r.cool[k]
	if c != nil && now.Before(c.until) {
		c.suppressed++
		return 0, false
	}
	if c == nil {
		room(r.cool, r.cfg.MaxTracked, func(c *cooldown) bool { return !now.Before(c.until) })
		c = &cooldown{}
		r.cool[k] = c
	}
	count = c.suppressed + 1
	c.suppressed = 0
	c.until = now.Add(r.cfg.AlertCooldown)
	return count, true
}

// cooling reports whether (rule, key) is within its cooldown.
func (r *rules) cooling(rule Rule, key string, now time.Time) bool {
	c := r.cool[string(rule)+"|"+key]
	return c != nil && now.Before(c.until)
}

func alert(rule Rule, severity, key string, count int, now time.Time, from Event, msg string) Event {
	a := Event{
		Kind: KindAlert, Time: now, Source: SourceRules, Rule: rule, Severity: severity, Key: key, Count: count,
		Protocol: from.Protocol, Listener: from.Listener, Port: from.Port, Remote: from.Remote,
		ClientID: from.ClientID, User: from.User, Account: from.Account, TLS: from.TLS,
		Lang: from.Lang, Version: from.Version, CID: from.CID, Edge: from.Edge, Message: msg,
	}
	return a
}

// authFailure applies the brute-force rules. suppress is true when the
// failure should not be emitted as its own event (its address is blocked,
// or its user was just alerted on): 1,000 failures give a handful of
// events and one alert, not 1,000 notifications.
func (r *rules) authFailure(ev Event, now time.Time) (alerts []Event, blocks []Block, suppress bool) {
	ip := hostOf(ev.Remote)
	if b := active(r.addrBlocks, ip, now); b != nil {
		b.Suppressed++
		return nil, nil, true
	}
	if ip != "" && r.cooling(RuleBruteAddr, ip, now) {
		suppress = true // alerted on already (an address that is never blocked)
	}
	if ev.User != "" {
		if b := active(r.userBlocks, ev.User, now); b != nil {
			b.Suppressed++
			suppress = true
		} else if r.cooling(RuleBruteUser, ev.User, now) {
			suppress = true
		}
	}
	ab := r.cfg.AddrBruteForce
	if ip != "" && r.fail(r.addrFails, ab, ip, now) {
		count, ok := r.fire(RuleBruteAddr, ip, now)
		msg := fmt.Sprintf("%d failed logins from %s within %s", ab.Threshold, ip, ab.Window)
		if ab.Block > 0 && !inPrefixes(r.neverBlock, netip.MustParseAddr(ip)) {
			b := r.block(r.addrBlocks, ScopeAddr, ip, ab.Block, now)
			blocks = append(blocks, *b)
			msg += fmt.Sprintf("; address blocked until %s", b.Until.UTC().Format(time.RFC3339))
			ok = true // a new block is always announced
			if count == 0 {
				count = 1
			}
		}
		if ok {
			a := alert(RuleBruteAddr, SeverityCritical, ip, count*ab.Threshold, now, ev, msg)
			if len(blocks) > 0 {
				u := blocks[0].Until
				a.Until = &u
			}
			alerts = append(alerts, a)
		}
		return alerts, blocks, suppress
	}
	ub := r.cfg.UserBruteForce
	if ev.User != "" && !suppress && r.fail(r.userFails, ub, ev.User, now) {
		count, ok := r.fire(RuleBruteUser, ev.User, now)
		msg := fmt.Sprintf("%d failed logins for user %q within %s", ub.Threshold, ev.User, ub.Window)
		var until *time.Time
		if ub.Block > 0 {
			b := r.block(r.userBlocks, ScopeUser, ev.User, ub.Block, now)
			blocks = append(blocks, *b)
			u := b.Until
			until = &u
			msg += fmt.Sprintf("; user blocked until %s", u.UTC().Format(time.RFC3339))
			ok = true
			if count == 0 {
				count = 1
			}
		}
		if ok {
			a := alert(RuleBruteUser, SeverityCritical, ev.User, count*ub.Threshold, now, ev, msg)
			a.Until = until
			alerts = append(alerts, a)
		}
	}
	return alerts, blocks, suppress
}

func (r *rules) block(m map[string]*Block, scope, key string, d time.Duration, now time.Time) *Block {
	room(m, r.cfg.MaxTracked, func(b *Block) bool { return !now.Before(b.Until) })
	b := &Block{Scope: scope, Key: key, Since: now, Until: now.Add(d)}
	m[key] = b
	return b
}

// connect applies the rules to a successful connection: blocked is true
// when it comes from a blocked address (or user), and the alerts are for
// a plain connection from an untrusted address or an old client version.
func (r *rules) connect(ev Event, now time.Time) (alerts []Event, blocked bool) {
	ip := hostOf(ev.Remote)
	if b := active(r.addrBlocks, ip, now); b != nil {
		b.Suppressed++
		blocked = true
	}
	if b := active(r.userBlocks, ev.User, now); ev.User != "" && b != nil {
		b.Suppressed++
		blocked = true
	}
	if ev.TLS == "none" && ip != "" && !inPrefixes(r.trusted, netip.MustParseAddr(ip)) {
		if count, ok := r.fire(RulePlain, ip, now); ok {
			msg := fmt.Sprintf("plain (non-TLS) %s connection from %s on listener %s", orDash(ev.Protocol), ev.Remote, listenerName(ev))
			alerts = append(alerts, alert(RulePlain, SeverityWarning, ip, count, now, ev, msg))
		}
	}
	if a, ok := r.oldVersion(ev, ev.Lang, now); ok {
		alerts = append(alerts, a)
	}
	return alerts, blocked
}

// oldVersion checks ev.Version against the minimum for name.
func (r *rules) oldVersion(ev Event, name string, now time.Time) (Event, bool) {
	min, ok := r.minVer[strings.ToLower(name)]
	if !ok || ev.Version == "" || !VersionBelow(ev.Version, min) {
		return Event{}, false
	}
	who := ev.Edge
	if who == "" {
		who = ev.ClientID
	}
	if who == "" {
		who = hostOf(ev.Remote)
	}
	key := strings.ToLower(name) + "/" + ev.Version + "/" + who
	count, ok := r.fire(RuleOldVersion, key, now)
	if !ok {
		return Event{}, false
	}
	msg := fmt.Sprintf("%s version %s is below the minimum %s (%s)", name, ev.Version, min, orDash(who))
	return alert(RuleOldVersion, SeverityWarning, key, count, now, ev, msg), true
}

// once applies a cooldown to owner-reported events (unknown edges,
// unsigned datagrams): the first occurrence per key and cooldown is
// emitted with an alert, the rest are counted into the next one.
func (r *rules) once(rule Rule, severity, key string, ev Event, now time.Time, msg string) (Event, bool) {
	count, ok := r.fire(rule, key, now)
	if !ok {
		return Event{}, false
	}
	return alert(rule, severity, key, count, now, ev, msg), true
}

// sweep lifts the blocks whose time is up.
func (r *rules) sweep(now time.Time) []Block {
	var lifted []Block
	for _, m := range []map[string]*Block{r.addrBlocks, r.userBlocks} {
		for k, b := range m {
			if !now.Before(b.Until) {
				delete(m, k)
				c := *b
				c.Lifted = true
				lifted = append(lifted, c)
			}
		}
	}
	return lifted
}

// blocks lists the blocks in force.
func (r *rules) blocks(now time.Time) []Block {
	var out []Block
	for _, m := range []map[string]*Block{r.addrBlocks, r.userBlocks} {
		for _, b := range m {
			if now.Before(b.Until) {
				out = append(out, *b)
			}
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func listenerName(ev Event) string {
	l := ev.Listener
	if l == "" {
		l = ev.Protocol
	}
	if ev.Port > 0 {
		return fmt.Sprintf("%s:%d", orDash(l), ev.Port)
	}
	return orDash(l)
}
