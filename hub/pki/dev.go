package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DevPKI makes sure dir holds a usable development PKI and returns its
// layout: a CA, a hub certificate for DefaultServerName, "localhost",
// 127.0.0.1 and ::1, and a client certificate for each of edgeIDs. It is
// idempotent: what exists and is usable is reused; a missing, unreadable,
// mismatched or expiring (within ExpiringSoonWindow) hub or edge
// certificate is made again. A CA that is missing, half written or expiring
// is made again together with the hub certificate and every edge
// certificate in dir; a CA that exists but cannot be parsed is an error
// (DevPKI never destroys what it does not understand). Calls from several processes on the same dir are serialised
// with a lock file (dir/.lock) where the system supports it.
//
// It is meant for the embedded-defaults demo and tests, not production.
func DevPKI(dir string, edgeIDs ...string) (Layout, error) {
	l := LayoutOf(dir)
	for _, id := range edgeIDs {
		if err := ValidateEdgeID(id); err != nil {
			return l, fmt.Errorf("dev pki: %w", err)
		}
	}
	if err := ensureDir(dir); err != nil {
		return l, fmt.Errorf("dev pki: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, ".lock"))
	if err != nil {
		return l, fmt.Errorf("dev pki: %w", err)
	}
	defer unlock()

	now := time.Now()
	devOpts := InitOptions{
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Now:         now,
	}

	ca, remade, err := devCA(l, devOpts, now)
	if err != nil {
		return l, fmt.Errorf("dev pki: %w", err)
	}
	if remade {
		// Edges signed by the old CA are useless: issue them again too.
		edgeIDs = append(existingEdges(l), edgeIDs...)
	} else if !leafUsable(l.HubCert, l.HubKey, ca, x509.ExtKeyUsageServerAuth, now) {
		opts := devOpts
		opts.Force = true
		if err := issueHub(l, ca, opts.withDefaults()); err != nil {
			return l, fmt.Errorf("dev pki: %w", err)
		}
	}
	seen := map[string]bool{}
	for _, id := range edgeIDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		if !remade && leafUsable(l.EdgeCert(id), l.EdgeKey(id), ca, x509.ExtKeyUsageClientAuth, now) {
			continue
		}
		if _, err := Issue(dir, id, IssueOptions{Force: true, Now: now}); err != nil {
			return l, fmt.Errorf("dev pki: %w", err)
		}
	}
	return l, nil
}

// devCA loads the CA of l, or makes a new CA and hub certificate (remade
// true) when the CA is missing, half written or about to expire.
func devCA(l Layout, opts InitOptions, now time.Time) (ca *authority, remade bool, err error) {
	certThere, err := exists(l.CACert)
	if err != nil {
		return nil, false, err
	}
	keyThere, err := exists(l.CAKey)
	if err != nil {
		return nil, false, err
	}
	if certThere && keyThere {
		ca, err := loadCA(l, now)
		if err != nil && !errors.Is(err, ErrExpired) {
			return nil, false, fmt.Errorf("%w (remove %s to start a new development PKI)", err, l.Dir)
		}
		if err == nil && ca.cert.NotAfter.Sub(now) > ExpiringSoonWindow {
			return ca, false, nil
		}
	}
	opts.Force = true
	if _, err := Init(l.Dir, opts); err != nil {
		return nil, false, err
	}
	ca, err = loadCA(l, now)
	if err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// leafUsable reports whether a certificate and key pair can be used as is.
func leafUsable(certFile, keyFile string, ca *authority, usage x509.ExtKeyUsage, now time.Time) bool {
	pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return false
	}
	if pair.Leaf.NotAfter.Sub(now) < ExpiringSoonWindow || now.Before(pair.Leaf.NotBefore) {
		return false
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	_, err = pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err == nil
}

// existingEdges returns the ids of the edge certificates in l.Edges.
func existingEdges(l Layout) []string {
	entries, _ := os.ReadDir(l.Edges)
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".crt")
		if ok && !e.IsDir() && ValidateEdgeID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}
