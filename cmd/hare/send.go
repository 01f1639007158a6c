package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// lookupFunc resolves a host name to addresses (net.Resolver.LookupNetIP
// with network "ip").
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

func systemLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// deliver resolves host and sends b to the first address that takes it. It
// sends one datagram only, so that an edge reachable over both IPv4 and
// IPv6 does not see the login twice; a local send error (no route, no IPv6)
// moves on to the next address.
func deliver(ctx context.Context, host string, port int, b []byte, lookup lookupFunc, debugf func(string, ...any)) error {
	addrs, err := resolve(ctx, host, lookup)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, uint16(port))
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("send to %s: %w", ap, err))
			break
		}
		if err := sendUDP(ap, b); err != nil {
			debugf("send to %s: %v", ap, err)
			errs = append(errs, err)
			continue
		}
		debugf("sent %d bytes to %s", len(b), ap)
		return nil
	}
	return errors.Join(errs...)
}

// resolve turns host into addresses: a literal without any lookup, a name
// through lookup (bounded by ctx).
func resolve(ctx context.Context, host string, lookup lookupFunc) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap())
	}
	return out, nil
}
