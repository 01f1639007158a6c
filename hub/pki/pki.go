// Package pki is warren's built-in certificate authority: it makes the CA,
// the hub's TLS server certificate and the edges' TLS client certificates,
// lists what it has issued, and builds the *tls.Config values the hub and the
// edges use for mutual TLS.
//
// A PKI directory looks like this (see Layout):
//
//	dir/            0700  (when this package creates it)
//	  ca.crt        0644  CA certificate (ECDSA P-256, self-signed)
//	  ca.key        0600  CA private key (PKCS#8 PEM)
//	  hub.crt       0644  hub server certificate, signed by the CA
//	  hub.key       0600
//	  edges/        0700
//	    <id>.crt    0644  edge client certificate, signed by the CA
//	    <id>.key    0600
//
// An edge certificate carries its identity as exactly one URI SAN,
// warren://edge/<id>, and nothing else nats-server could map to a user: no
// DNS or email SAN. With TLSMap on, nats-server takes the user name from the
// first email SAN, then DNS SAN, then URI SAN that names a configured user, and
// only then from the subject; with a single URI SAN the mapped user is always
// EdgeUserName(id).
//
// The package uses the standard library only (its tests also use
// nats-server, nats.go and go-cmp).
package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// DefaultServerName is the TLS server name every hub certificate carries and
// every edge checks. It is fixed, not the hub's address, so the hub may move
// (discovery hands edges a new address) without new certificates.
const DefaultServerName = "hub.warren"

// DefaultCAName is the common name of a CA made without InitOptions.CAName.
const DefaultCAName = "warren CA"

// EdgeURIScheme and EdgeURIHost form an edge's identity URI:
// warren://edge/<edge-id>.
const (
	EdgeURIScheme = "warren"
	EdgeURIHost   = "edge"
)

// File names inside a PKI directory.
const (
	caCertName  = "ca.crt"
	caKeyName   = "ca.key"
	hubCertName = "hub.crt"
	hubKeyName  = "hub.key"
	edgesDir    = "edges"
)

// Layout holds the paths of the files of one PKI directory.
type Layout struct {
	Dir     string // the PKI directory itself
	CACert  string // Dir/ca.crt
	CAKey   string // Dir/ca.key
	HubCert string // Dir/hub.crt
	HubKey  string // Dir/hub.key
	Edges   string // Dir/edges
}

// LayoutOf returns the file paths of the PKI directory dir. It touches
// nothing on disk.
func LayoutOf(dir string) Layout {
	return Layout{
		Dir:     dir,
		CACert:  filepath.Join(dir, caCertName),
		CAKey:   filepath.Join(dir, caKeyName),
		HubCert: filepath.Join(dir, hubCertName),
		HubKey:  filepath.Join(dir, hubKeyName),
		Edges:   filepath.Join(dir, edgesDir),
	}
}

// EdgeCert returns the path of edge id's certificate in the PKI directory.
func (l Layout) EdgeCert(id string) string { return filepath.Join(l.Edges, id+".crt") }

// EdgeKey returns the path of edge id's private key in the PKI directory.
func (l Layout) EdgeKey(id string) string { return filepath.Join(l.Edges, id+".key") }

// EdgeFiles are the three files an edge needs: the CA certificate to verify
// the hub, and its own certificate and key.
type EdgeFiles struct {
	ID     string // the edge id
	CACert string // CA certificate (PEM)
	Cert   string // edge client certificate (PEM)
	Key    string // edge private key (PEM, 0600)
}

// ErrBadEdgeID is returned (wrapped) for an edge id outside the allowed
// alphabet.
var ErrBadEdgeID = errors.New("must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit")

// ValidateEdgeID checks that id is a valid edge id: 1 to 63 characters of
// a-z, 0-9 and '-', not starting with '-'. Such an id is a single NATS subject
// token (no '.', '*', '>' or whitespace), a file name and a URI path segment.
// The rule is the same as internal/event.ValidID.
func ValidateEdgeID(id string) error {
	if len(id) == 0 || len(id) > 63 {
		return fmt.Errorf("edge id %q: %w", truncate(id), ErrBadEdgeID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return fmt.Errorf("edge id %q: %w", truncate(id), ErrBadEdgeID)
		}
	}
	return nil
}

// EdgeUserName returns the NATS user name nats-server (TLSMap) maps edge
// id's certificate to: the string form of its only identity SAN,
// "warren://edge/<id>". The hub names its per-edge users with it.
func EdgeUserName(id string) string {
	return EdgeURIScheme + "://" + EdgeURIHost + "/" + id
}

// EdgeIDFromUserName is the inverse of EdgeUserName. It fails for names that
// are not an edge user or carry an invalid edge id.
func EdgeIDFromUserName(name string) (string, error) {
	prefix := EdgeURIScheme + "://" + EdgeURIHost + "/"
	id, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return "", fmt.Errorf("user %q is not a warren edge user (want %s<edge-id>)", truncate(name), prefix)
	}
	if err := ValidateEdgeID(id); err != nil {
		return "", err
	}
	return id, nil
}

// EdgeIDFromCert returns the edge id a certificate was issued for. The
// certificate must be a client certificate (ExtKeyUsageClientAuth) with
// exactly one URI SAN of the form warren://edge/<id>, a valid id, and no DNS
// or email SAN (either would be mapped by nats-server before the URI). It
// does not check signatures or dates; the TLS handshake does that.
func EdgeIDFromCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no certificate")
	}
	if len(cert.DNSNames) > 0 || len(cert.EmailAddresses) > 0 {
		return "", errors.New("certificate has DNS or email SANs; a warren edge certificate carries only its warren://edge/<id> URI")
	}
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("certificate has %d URI SANs, want exactly one warren://edge/<id>", len(cert.URIs))
	}
	if !hasExtKeyUsage(cert, x509.ExtKeyUsageClientAuth) {
		return "", errors.New("certificate is not a client certificate (no clientAuth extended key usage)")
	}
	return EdgeIDFromUserName(cert.URIs[0].String())
}

func hasExtKeyUsage(cert *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range cert.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// truncate keeps error messages short when quoting untrusted input.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
