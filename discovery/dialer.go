package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"
)

// HubLocator is what Dialer asks for the hub's current NATS URLs; *Node
// implements it.
type HubLocator interface {
	HubURLs() []string
}

// Dialer dials the hub where discovery currently sees it, and falls back to
// the address it was asked for (the static hub.url). Its Dial method has the
// shape of nats.go's CustomDialer, so the bridge can pass it to
// nats.SetCustomDialer: nats.go keeps the static URL in its server list, and
// so the TLS server name, while every (re)connect goes where the hub is now.
type Dialer struct {
	// Hubs supplies the discovered URLs; nil means always the fallback.
	Hubs HubLocator
	// Timeout bounds each connection attempt. Default 5 s.
	Timeout time.Duration
	// Logger gets a debug line per attempt; nil discards.
	Logger *slog.Logger
}

// Dial connects to the first reachable discovered hub address, then to
// address. network is normally "tcp".
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var urls []string
	if d.Hubs != nil {
		urls = d.Hubs.HubURLs()
	}
	targets := dialTargets(urls, address)
	var errs []error
	for _, t := range targets {
		nd := net.Dialer{Timeout: timeout}
		c, err := nd.DialContext(ctx, network, t.addr)
		if err == nil {
			logger.Debug("dialed hub", "addr", t.addr, "via", t.via)
			return c, nil
		}
		logger.Debug("hub address did not answer", "addr", t.addr, "via", t.via, "err", err)
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("dial hub: no address from discovery and no fallback")
	}
	return nil, fmt.Errorf("dial hub: %w", errors.Join(errs...))
}

type dialTarget struct {
	addr string
	via  string // "discovery" or "fallback"
}

// dialTargets turns NATS URLs into host:port dial targets (nats:// and
// tls:// only; 4222 when the port is missing), then appends the fallback,
// without duplicates.
func dialTargets(urls []string, fallback string) []dialTarget {
	var out []dialTarget
	seen := map[string]bool{}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "" {
			continue
		}
		port := u.Port()
		if port == "" {
			port = "4222"
		}
		a := net.JoinHostPort(u.Hostname(), port)
		if !seen[a] {
			seen[a] = true
			out = append(out, dialTarget{addr: a, via: "discovery"})
		}
	}
	if fallback != "" && !seen[fallback] {
		out = append(out, dialTarget{addr: fallback, via: "fallback"})
	}
	return out
}
