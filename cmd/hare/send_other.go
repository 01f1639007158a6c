//go:build !unix

package main

import (
	"fmt"
	"net"
	"net/netip"
)

// sendUDP sends b as one datagram to ap.
func sendUDP(ap netip.AddrPort, b []byte) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	n, err := c.Write(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("send to %s: short write %d of %d bytes", ap, n, len(b))
	}
	return nil
}
