//go:build unix

package main

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// sendUDP sends b as one datagram to ap with a plain socket and sendto(2).
// It bypasses net.Conn on purpose: setting up the runtime's network poller
// for a single non-blocking send costs ~0.2 ms of hare's start-up.
func sendUDP(ap netip.AddrPort, b []byte) error {
	a := ap.Addr()
	var (
		sa  syscall.Sockaddr
		fam = syscall.AF_INET
	)
	if a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		zone, err := zoneID(a.Zone())
		if err != nil {
			return err
		}
		fam = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16(), ZoneId: zone}
	}
	fd, err := syscall.Socket(fam, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return &net.OpError{Op: "socket", Net: "udp", Err: err}
	}
	defer syscall.Close(fd)
	syscall.CloseOnExec(fd)
	for try := 0; ; try++ {
		err = syscall.Sendto(fd, b, 0, sa)
		if err != syscall.EINTR || try == 3 {
			break
		}
	}
	if err != nil {
		return &net.OpError{Op: "sendto", Net: "udp", Addr: net.UDPAddrFromAddrPort(ap), Err: err}
	}
	return nil
}

// zoneID maps an IPv6 zone ("eth0" or "2") to an interface index.
func zoneID(zone string) (uint32, error) {
	if zone == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}
