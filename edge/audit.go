package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The edge's hooks for the security audit (internal/audit, wired by
// cmd/edge): a system-account connection, the server's log lines, the
// unsigned datagrams the UDP ingest refuses, and a login guard asked by
// the edge's authenticator.

// LoginGuard is asked before a client's password is checked
// (internal/audit.Auditor fits): a blocked source address or user is
// refused without looking at the password.
type LoginGuard interface {
	Blocked(addr string) bool
	BlockedUser(user string) bool
}

// auditHooks are set by the audit service after Start.
type auditHooks struct {
	guard    atomic.Pointer[LoginGuard]
	log      atomic.Pointer[func(slog.Level, string)]
	unsigned atomic.Pointer[func(remote string)]
}

// SetLoginGuard makes the edge refuse MQTT and NATS logins g blocks. It
// works when audit.enabled was set at New (the edge then authenticates
// clients itself); nil removes the guard.
func (e *Edge) SetLoginGuard(g LoginGuard) {
	if g == nil {
		e.hooks.guard.Store(nil)
		return
	}
	e.hooks.guard.Store(&g)
}

// SetNATSLogHook gives f every line the embedded server logs from now on
// (nil removes it). f must be cheap and must not block.
func (e *Edge) SetNATSLogHook(f func(level slog.Level, msg string)) {
	if f == nil {
		e.hooks.log.Store(nil)
		return
	}
	e.hooks.log.Store(&f)
}

// OnUnsignedDatagram sets f, called with the source address of every
// unsigned hare datagram the UDP ingest refuses because signed ones are
// required (udp.require_signed, or a source outside udp.allow_unsigned).
// f runs on the UDP reader and must not block.
func (e *Edge) OnUnsignedDatagram(f func(remote string)) {
	if f == nil {
		e.hooks.unsigned.Store(nil)
		return
	}
	e.hooks.unsigned.Store(&f)
}

// SystemConn opens an in-process connection in the embedded server's
// system account (for its connect, disconnect and auth-error events). The
// caller closes it.
func (e *Edge) SystemConn(name string) (*nats.Conn, error) {
	if e.srv == nil {
		return nil, errors.New("edge: not started")
	}
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.UserInfo(sysUser, e.sysPass),
		nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("in-process system connection: %w", err)
	}
	return nc, nil
}

func (e *Edge) natsLogHook(level slog.Level, msg string) {
	if f := e.hooks.log.Load(); f != nil {
		(*f)(level, msg)
	}
}

func (e *Edge) unsignedDatagram(remote netip.AddrPort) {
	if f := e.hooks.unsigned.Load(); f != nil {
		(*f)(remote.String())
	}
}

// edgeAuth authenticates every client of the embedded server when the
// audit is on, so a blocked address can be refused before its password is
// checked (nats-server's own user check has no such hook). It grants
// exactly what the static users in serverOptions grant: the internal and
// system users in-process only, configured users (or, without any,
// anonymous clients) on the MQTT and NATS listeners.
type edgeAuth struct {
	e        *Edge
	internal [sha256.Size]byte
	sys      [sha256.Size]byte
	users    map[string]edgeLogin // configured MQTT/NATS users
	anon     *server.Permissions  // anonymous clients' permissions; nil: not allowed
	acc, sa  atomic.Pointer[server.Account]
}

type edgeLogin struct {
	hash  [sha256.Size]byte
	perms *server.Permissions
}

// newEdgeAuth takes the static users serverOptions made (their names,
// passwords and permissions) and anon, whether anonymous clients are
// allowed.
func newEdgeAuth(e *Edge, users []*server.User, anon bool) *edgeAuth {
	a := &edgeAuth{e: e, users: map[string]edgeLogin{}}
	for _, u := range users {
		switch u.Username {
		case internalUser:
			a.internal = sha256.Sum256([]byte(u.Password))
		case sysUser:
			a.sys = sha256.Sum256([]byte(u.Password))
		case anonUser:
			if anon {
				a.anon = u.Permissions
				if a.anon == nil {
					a.anon = &server.Permissions{}
				}
			}
		default:
			a.users[u.Username] = edgeLogin{hash: sha256.Sum256([]byte(u.Password)), perms: u.Permissions}
		}
	}
	return a
}

// bind looks the server's accounts up (the server copies the configured
// ones, so it must run after the server started).
func (a *edgeAuth) bind(s *server.Server) error {
	acc, err := s.LookupAccount(Account)
	if err != nil {
		return fmt.Errorf("account %s: %w", Account, err)
	}
	sa := s.SystemAccount()
	if sa == nil {
		return errors.New("no system account")
	}
	a.acc.Store(acc)
	a.sa.Store(sa)
	return nil
}

func hashEq(pw string, h [sha256.Size]byte) bool {
	got := sha256.Sum256([]byte(pw))
	return subtle.ConstantTimeCompare(got[:], h[:]) == 1
}

// Check implements server.Authentication.
func (a *edgeAuth) Check(c server.ClientAuthentication) bool {
	acc, sa := a.acc.Load(), a.sa.Load()
	remote := c.RemoteAddress()
	if acc == nil || sa == nil || c.Kind() != server.CLIENT || remote == nil {
		return false
	}
	o := c.GetOpts()
	if remote.Network() == "pipe" {
		switch o.Username {
		case internalUser:
			if hashEq(o.Password, a.internal) {
				c.RegisterUser(&server.User{Username: internalUser, Account: acc})
				return true
			}
		case sysUser:
			if hashEq(o.Password, a.sys) {
				c.RegisterUser(&server.User{Username: sysUser, Account: sa})
				return true
			}
		}
		return false
	}
	if g := a.e.hooks.guard.Load(); g != nil && ((*g).Blocked(remote.String()) || o.Username != "" && (*g).BlockedUser(o.Username)) {
		a.e.log.Debug("login refused: blocked by the audit", "remote", remote.String(), "user", o.Username)
		return false
	}
	if o.Username == "" {
		if a.anon == nil {
			return false
		}
		c.RegisterUser(&server.User{Username: anonUser, Account: acc, Permissions: a.anon})
		return true
	}
	u, ok := a.users[o.Username]
	if !ok || !hashEq(o.Password, u.hash) {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Username, Account: acc, Permissions: u.perms})
	return true
}

var _ server.Authentication = (*edgeAuth)(nil)
