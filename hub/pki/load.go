package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// maxPEMFile bounds what is read from a certificate or key file; real ones
// are a few kilobytes.
const maxPEMFile = 1 << 20

// ErrNotSignedByCA is returned (wrapped) when a certificate does not chain to
// the configured CA.
var ErrNotSignedByCA = errors.New("not signed by the CA")

// ErrExpired is returned (wrapped) when a certificate is outside its
// validity period.
var ErrExpired = errors.New("certificate expired or not yet valid")

// ErrKeyMismatch is returned (wrapped) when a private key does not belong to
// its certificate.
var ErrKeyMismatch = errors.New("private key does not match the certificate")

// ParseTLSVersion turns "1.2" or "1.3" into a tls.Version* constant. The
// empty string means TLS 1.3. Anything older than 1.2 is refused.
func ParseTLSVersion(s string) (uint16, error) {
	switch strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "tls") {
	case "", "1.3", "13":
		return tls.VersionTLS13, nil
	case "1.2", "12":
		return tls.VersionTLS12, nil
	case "1.0", "1.1", "10", "11":
		return 0, fmt.Errorf("tls version %q: too old; the minimum is 1.2", s)
	default:
		return 0, fmt.Errorf("tls version %q: unknown; use 1.2 or 1.3", truncate(s))
	}
}

// checkMinVersion maps 0 to TLS 1.3 and refuses versions below 1.2.
func checkMinVersion(v uint16) (uint16, error) {
	switch v {
	case 0:
		return tls.VersionTLS13, nil
	case tls.VersionTLS12, tls.VersionTLS13:
		return v, nil
	default:
		return 0, fmt.Errorf("tls min version %s: must be TLS 1.2 or TLS 1.3", tls.VersionName(v))
	}
}

// ServerTLSConfig builds the hub's TLS configuration: its certificate and
// key, client certificates required and verified against the CA(s) in
// caFile, and minVersion as the lowest protocol (0 means TLS 1.3; below 1.2
// is an error). Before returning it checks that every file is present and
// PEM, that the key matches the certificate, that the certificate is valid
// now, is a server certificate and chains to the CA; errors name the file
// and the problem, never key material.
func ServerTLSConfig(caFile, certFile, keyFile string, minVersion uint16) (*tls.Config, error) {
	mv, err := checkMinVersion(minVersion)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	pool, err := LoadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if err := verifyLeaf("server certificate", certFile, caFile, pair, pool, x509.ExtKeyUsageServerAuth, now); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   mv,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientTLSConfig builds an edge's TLS configuration for connecting to the
// hub: the edge certificate and key, the CA(s) in caFile as the only roots,
// ServerName DefaultServerName (the caller may change the field if the hub
// certificate was made with another InitOptions.ServerName), and TLS 1.2 as
// the lowest protocol (the hub decides; its default is 1.3). It checks the
// files as ServerTLSConfig does, and also that the certificate carries an
// edge identity (EdgeIDFromCert).
func ClientTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	now := time.Now()
	pool, err := LoadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if _, err := EdgeIDFromCert(pair.Leaf); err != nil {
		return nil, fmt.Errorf("client certificate %s: %w", certFile, err)
	}
	if err := verifyLeaf("client certificate", certFile, caFile, pair, pool, x509.ExtKeyUsageClientAuth, now); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ServerName:   DefaultServerName,
	}, nil
}

// LoadCAPool reads one or more CA certificates (PEM) from path into a pool.
// Every certificate must be a CA certificate. Several CAs in one file allow
// a CA rollover; those outside their validity period are left out, and a
// file without any valid one is an error (ErrExpired).
func LoadCAPool(path string) (*x509.CertPool, error) {
	certs, err := readCerts("ca certificate", path)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	pool := x509.NewCertPool()
	var dateErr error
	valid := 0
	for _, c := range certs {
		if err := checkCA("ca certificate", path, c); err != nil {
			return nil, err
		}
		if err := checkDates("ca certificate", path, c, now); err != nil {
			// An expired CA next to its successor is a finished rollover:
			// leave it out. Only a file with no valid CA is an error.
			dateErr = err
			continue
		}
		pool.AddCert(c)
		valid++
	}
	if valid == 0 {
		return nil, dateErr
	}
	return pool, nil
}

// LoadKeyPair reads a certificate (PEM, leaf first, then any intermediates)
// and its private key (PEM: PKCS#8, SEC 1 EC or PKCS#1 RSA) and checks that
// they belong together. It checks neither dates nor issuer; tests use it to
// present certificates the other side must refuse. Leaf is set.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certs, err := readCerts("certificate", certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := readKey("private key", keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := checkKeyMatch(keyFile, certFile, certs[0], key); err != nil {
		return tls.Certificate{}, err
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return pair, nil
}

// verifyLeaf checks dates, then the chain to pool with the given usage.
func verifyLeaf(what, path, caFile string, pair tls.Certificate, pool *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) error {
	leaf := pair.Leaf
	if err := checkDates(what, path, leaf, now); err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err == nil {
		return nil
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
		return fmt.Errorf("%s %s: wrong kind of certificate (%s): %w", what, path, usageName(usage), err)
	}
	return fmt.Errorf("%s %s (issuer %q) and ca certificate %s: %w: %w", what, path, leaf.Issuer.String(), caFile, ErrNotSignedByCA, err)
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "needs the serverAuth extended key usage"
	case x509.ExtKeyUsageClientAuth:
		return "needs the clientAuth extended key usage"
	}
	return "wrong extended key usage"
}

// readFile reads a small file and gives errors that say which file and
// what is wrong.
func readFile(what, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%s: no file given", what)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s %s: %w", what, path, fs.ErrNotExist)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%s %s: %w", what, path, fs.ErrPermission)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s %s: is a directory, want a PEM file", what, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read: %w", what, path, err)
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%s %s: larger than %d bytes, not a PEM file", what, path, maxPEMFile)
	}
	return data, nil
}

// readCerts reads every CERTIFICATE block of a PEM file; at least one.
func readCerts(what, path string) ([]*x509.Certificate, error) {
	data, err := readFile(what, path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return certs, nil
}

// parseCertsPEM decodes every CERTIFICATE block of data. It refuses data
// with no certificate, with a private key block (a key in a certificate
// file is a leak waiting to happen) and with blocks it cannot parse. Errors
// never quote the data.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for i := 0; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d: not a valid X.509 certificate: %w", i+1, err)
			}
			certs = append(certs, c)
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("PEM block %d holds a private key; a certificate file must hold certificates only (are the cert and key paths swapped?)", i+1)
		default:
			return nil, fmt.Errorf("PEM block %d has type %q, want CERTIFICATE", i+1, truncate(block.Type))
		}
	}
	if len(certs) == 0 {
		return nil, errors.New("not a PEM certificate file (no CERTIFICATE block found)")
	}
	return certs, nil
}

// readKey reads the single private key of a PEM file.
func readKey(what, path string) (crypto.Signer, error) {
	data, err := readFile(what, path)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return key, nil
}

// parseKeyPEM decodes the first PEM block of data as a private key. Error
// messages are the package's own: the parsers' errors are dropped so no key
// material can reach a log.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM private key file (no PEM block found)")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted private keys are not supported; store it unencrypted with mode 0600")
	case "CERTIFICATE":
		return nil, errors.New("holds a certificate, not a private key (are the cert and key paths swapped?)")
	default:
		return nil, fmt.Errorf("PEM block type %q is not a private key", truncate(block.Type))
	}
	if err != nil {
		return nil, fmt.Errorf("PEM block %q does not hold a valid private key", block.Type)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("unsupported private key type")
	}
	return signer, nil
}

func checkKeyMatch(keyFile, certFile string, cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("private key %s and certificate %s: %w", keyFile, certFile, ErrKeyMismatch)
	}
	return nil
}

func checkCA(what, path string, c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%s %s: %q is not a CA certificate", what, path, truncate(c.Subject.String()))
	}
	return nil
}

func checkDates(what, path string, c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%s %s: expired on %s: %w", what, path, c.NotAfter.UTC().Format(time.RFC3339), ErrExpired)
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%s %s: not valid before %s (check the clock): %w", what, path, c.NotBefore.UTC().Format(time.RFC3339), ErrExpired)
	}
	return nil
}
