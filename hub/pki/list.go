package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"
)

// ExpiringSoonWindow is how close to its end a certificate is reported as
// expiring soon.
const ExpiringSoonWindow = 30 * 24 * time.Hour

// Kind says what a certificate is for.
type Kind string

// Kinds of certificates in a PKI directory.
const (
	KindCA   Kind = "ca"
	KindHub  Kind = "hub"
	KindEdge Kind = "edge"
)

// CertInfo describes one certificate of a PKI directory.
type CertInfo struct {
	Kind        Kind      `json:"kind"`
	ID          string    `json:"id,omitempty"` // edge id (edges only)
	Path        string    `json:"path"`
	Subject     string    `json:"subject,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
	Serial      string    `json:"serial,omitempty"` // upper-case hex, as openssl prints it
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	URIs        []string  `json:"uris,omitempty"`
	// FingerprintSHA256 is the SHA-256 of the DER certificate, upper-case
	// hex pairs joined by ':' (the form of openssl x509 -fingerprint -sha256).
	FingerprintSHA256 string `json:"fingerprint_sha256,omitempty"`
	Expired           bool   `json:"expired"`
	ExpiringSoon      bool   `json:"expiring_soon"` // valid, but ends within ExpiringSoonWindow
	// Problem is empty when nothing but the dates (Expired, ExpiringSoon)
	// could be wrong, else a one-line reason: unreadable file, key missing
	// or not matching, not signed by the CA, wrong usage, edge id not
	// matching the file name.
	Problem string `json:"problem,omitempty"`
}

// List describes every certificate in the PKI directory dir: the CA(s),
// the hub certificate and each edge certificate (sorted by id). A file that
// cannot be read or parsed is listed with its Problem set, not skipped. The
// error is non-nil only when dir itself cannot be read.
func List(dir string) ([]CertInfo, error) {
	return listAt(dir, time.Now())
}

func listAt(dir string, now time.Time) ([]CertInfo, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pki list: %s does not exist (run hub pki init): %w", dir, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("pki list: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("pki list: %s is not a directory", dir)
	}
	l := LayoutOf(dir)
	var out []CertInfo

	// CA(s).
	pool := x509.NewCertPool()
	var caErr string
	if _, err := os.Stat(l.CACert); err == nil {
		certs, err := readCerts("ca certificate", l.CACert)
		if err != nil {
			caErr = err.Error()
			out = append(out, CertInfo{Kind: KindCA, Path: l.CACert, Problem: caErr})
		} else {
			for i, c := range certs {
				ci := describe(KindCA, l.CACert, c, now)
				if err := checkCA("ca certificate", l.CACert, c); err != nil {
					ci.Problem = err.Error()
				} else if i == 0 {
					ci.Problem = keyProblem(l.CAKey, l.CACert, c)
				}
				out = append(out, ci)
				pool.AddCert(c)
			}
		}
	} else {
		caErr = "ca certificate " + l.CACert + " is missing"
	}

	// Hub.
	if _, err := os.Stat(l.HubCert); err == nil {
		out = append(out, describeLeaf(KindHub, "", l.HubCert, l.HubKey, l.CACert, pool, caErr, now))
	}

	// Edges.
	entries, err := os.ReadDir(l.Edges)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return out, fmt.Errorf("pki list: %w", err)
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".crt") {
			continue
		}
		ids = append(ids, strings.TrimSuffix(name, ".crt"))
	}
	sort.Strings(ids)
	for _, id := range ids {
		out = append(out, describeLeaf(KindEdge, id, l.EdgeCert(id), l.EdgeKey(id), l.CACert, pool, caErr, now))
	}
	return out, nil
}

func describeLeaf(kind Kind, id, certFile, keyFile, caFile string, pool *x509.CertPool, caErr string, now time.Time) CertInfo {
	certs, err := readCerts("certificate", certFile)
	if err != nil {
		return CertInfo{Kind: kind, ID: id, Path: certFile, Problem: err.Error()}
	}
	c := certs[0]
	ci := describe(kind, certFile, c, now)
	ci.ID = id
	usage := x509.ExtKeyUsageServerAuth
	if kind == KindEdge {
		usage = x509.ExtKeyUsageClientAuth
		got, err := EdgeIDFromCert(c)
		switch {
		case err != nil:
			ci.Problem = err.Error()
			return ci
		case got != id:
			ci.Problem = fmt.Sprintf("file name says edge %q, certificate says %q", id, got)
			return ci
		}
	}
	if p := keyProblem(keyFile, certFile, c); p != "" {
		ci.Problem = p
		return ci
	}
	if caErr != "" {
		ci.Problem = "cannot check the issuer: " + caErr
		return ci
	}
	// Verify at a time inside the validity period so an expired
	// certificate is reported as expired (Expired), not as unsigned.
	at := now
	if at.After(c.NotAfter) || at.Before(c.NotBefore) {
		at = c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
			ci.Problem = "wrong kind of certificate: " + usageName(usage)
		} else {
			ci.Problem = "not signed by the CA in " + caFile
		}
	}
	return ci
}

func keyProblem(keyFile, certFile string, c *x509.Certificate) string {
	key, err := readKey("private key", keyFile)
	if err != nil {
		return err.Error()
	}
	if err := checkKeyMatch(keyFile, certFile, c, key); err != nil {
		return err.Error()
	}
	return ""
}

func describe(kind Kind, path string, c *x509.Certificate, now time.Time) CertInfo {
	ci := CertInfo{
		Kind:              kind,
		Path:              path,
		Subject:           c.Subject.String(),
		Issuer:            c.Issuer.String(),
		Serial:            strings.ToUpper(c.SerialNumber.Text(16)),
		NotBefore:         c.NotBefore.UTC(),
		NotAfter:          c.NotAfter.UTC(),
		DNSNames:          c.DNSNames,
		FingerprintSHA256: Fingerprint(c),
		Expired:           now.After(c.NotAfter) || now.Before(c.NotBefore),
	}
	ci.ExpiringSoon = !ci.Expired && c.NotAfter.Sub(now) < ExpiringSoonWindow
	for _, ip := range c.IPAddresses {
		ci.IPAddresses = append(ci.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		ci.URIs = append(ci.URIs, u.String())
	}
	return ci
}

// Fingerprint returns the SHA-256 fingerprint of a certificate as openssl
// prints it: upper-case hex pairs joined by ':'.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	const hexdigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(sum)*3)
	for i, x := range sum {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexdigits[x>>4], hexdigits[x&0x0f])
	}
	return string(b)
}
