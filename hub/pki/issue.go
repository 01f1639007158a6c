package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Default validity periods.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour // CA: 10 years
	DefaultLeafValidity = 2 * 365 * 24 * time.Hour  // hub and edge certificates: 2 years
)

// backdate is how far before "now" a certificate becomes valid, so that a
// peer whose clock is a little behind accepts a certificate made right now.
const backdate = time.Hour

// InitOptions configure Init and IssueHub.
type InitOptions struct {
	// CAName is the CA certificate's common name. Default DefaultCAName.
	// Only Init uses it.
	CAName string
	// ServerName is the fixed TLS server name edges verify the hub with. It
	// is always a DNS SAN of the hub certificate. Default DefaultServerName.
	ServerName string
	// DNSNames are extra DNS SANs for the hub certificate (e.g. the hub's
	// host name, for MQTT clients that verify it). Default none.
	DNSNames []string
	// IPAddresses are IP SANs for the hub certificate. Default none.
	IPAddresses []net.IP
	// CAValidity is how long the CA is valid. Zero means DefaultCAValidity.
	CAValidity time.Duration
	// HubValidity is how long the hub certificate is valid (never past the
	// CA's end). Zero means DefaultLeafValidity.
	HubValidity time.Duration
	// Force replaces existing files. Replacing the CA invalidates every
	// certificate it signed.
	Force bool
	// Now is the issuing time; zero means time.Now(). Tests use it to make
	// expired or not-yet-valid certificates.
	Now time.Time
}

func (o InitOptions) withDefaults() InitOptions {
	if o.CAName == "" {
		o.CAName = DefaultCAName
	}
	if o.ServerName == "" {
		o.ServerName = DefaultServerName
	}
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.HubValidity == 0 {
		o.HubValidity = DefaultLeafValidity
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	return o
}

// Validate checks the options (after defaults are applied) and names the
// field at fault.
func (o InitOptions) Validate() error {
	o = o.withDefaults()
	var errs []error
	if err := validCommonName(o.CAName); err != nil {
		errs = append(errs, fmt.Errorf("ca name: %w", err))
	}
	if err := validDNSName(o.ServerName); err != nil {
		errs = append(errs, fmt.Errorf("server name: %w", err))
	}
	for _, n := range o.DNSNames {
		if err := validDNSName(n); err != nil {
			errs = append(errs, fmt.Errorf("dns names: %w", err))
		}
	}
	for i, ip := range o.IPAddresses {
		if ip == nil || (ip.To4() == nil && ip.To16() == nil) {
			errs = append(errs, fmt.Errorf("ip addresses[%d]: not an IP address", i))
		}
	}
	if o.CAValidity < 0 {
		errs = append(errs, errors.New("ca validity: must be positive"))
	}
	if o.HubValidity < 0 {
		errs = append(errs, errors.New("hub validity: must be positive"))
	}
	return errors.Join(errs...)
}

// IssueOptions configure Issue.
type IssueOptions struct {
	// Validity is how long the edge certificate is valid (never past the
	// CA's end). Zero means DefaultLeafValidity.
	Validity time.Duration
	// Force replaces existing files of this edge (in the PKI directory and
	// in OutDir).
	Force bool
	// OutDir, when set, also receives a bundle for the edge in
	// OutDir/<edge-id>/: ca.crt, edge.crt and edge.key, ready for Ansible to
	// copy. The directory is made with DirMode. Default: no bundle.
	OutDir string
	// Now is the issuing time; zero means time.Now(). It must fall inside
	// the CA's validity: to make an already expired edge certificate, make
	// the CA with an earlier InitOptions.Now too.
	Now time.Time
}

// Bundle file names inside IssueOptions.OutDir/<edge-id>/.
const (
	BundleCACert = "ca.crt"
	BundleCert   = "edge.crt"
	BundleKey    = "edge.key"
)

// Init makes a new PKI in dir: a CA and the hub's server certificate signed
// by it. dir is created with mode 0700 if missing. Without opts.Force it
// refuses (ErrExists) if any of the four files already exists, and writes
// nothing.
func Init(dir string, opts InitOptions) (Layout, error) {
	l := LayoutOf(dir)
	if err := opts.Validate(); err != nil {
		return l, fmt.Errorf("pki init: %w", err)
	}
	opts = opts.withDefaults()
	if err := refuseExisting(opts.Force, l.CACert, l.CAKey, l.HubCert, l.HubKey); err != nil {
		return l, fmt.Errorf("pki init: %w", err)
	}
	if err := ensureDir(dir); err != nil {
		return l, fmt.Errorf("pki init: %w", err)
	}
	ca, err := newCA(opts.CAName, opts.Now, opts.CAValidity)
	if err != nil {
		return l, fmt.Errorf("pki init: %w", err)
	}
	// Key before certificate: whoever sees a certificate finds its key.
	if err := writeKey(l.CAKey, ca.key, opts.Force); err != nil {
		return l, fmt.Errorf("pki init: %w", err)
	}
	if err := writeFile(l.CACert, encodeCert(ca.cert), CertMode, opts.Force); err != nil {
		return l, fmt.Errorf("pki init: %w", err)
	}
	if err := issueHub(l, ca, opts); err != nil {
		return l, fmt.Errorf("pki init: %w", err)
	}
	return l, nil
}

// IssueHub makes a new hub server certificate in dir with the existing CA,
// e.g. to add a SAN or renew it without touching the CA or the edges.
// opts.CAName and opts.CAValidity are ignored. Without opts.Force it refuses
// if hub.crt or hub.key exists.
func IssueHub(dir string, opts InitOptions) (Layout, error) {
	l := LayoutOf(dir)
	if err := opts.Validate(); err != nil {
		return l, fmt.Errorf("pki issue hub: %w", err)
	}
	opts = opts.withDefaults()
	if err := refuseExisting(opts.Force, l.HubCert, l.HubKey); err != nil {
		return l, fmt.Errorf("pki issue hub: %w", err)
	}
	ca, err := loadCA(l, opts.Now)
	if err != nil {
		return l, fmt.Errorf("pki issue hub: %w", err)
	}
	if err := issueHub(l, ca, opts); err != nil {
		return l, fmt.Errorf("pki issue hub: %w", err)
	}
	return l, nil
}

func issueHub(l Layout, ca *authority, opts InitOptions) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	dns := []string{opts.ServerName}
	for _, n := range opts.DNSNames {
		if !containsFold(dns, n) {
			dns = append(dns, n)
		}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: opts.ServerName, Organization: []string{"warren"}, OrganizationalUnit: []string{"hub"}},
		DNSNames:    dns,
		IPAddresses: opts.IPAddresses,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert, err := ca.sign(tmpl, key.Public(), opts.Now, opts.HubValidity)
	if err != nil {
		return fmt.Errorf("sign hub certificate: %w", err)
	}
	if err := writeKey(l.HubKey, key, opts.Force); err != nil {
		return err
	}
	return writeFile(l.HubCert, encodeCert(cert), CertMode, opts.Force)
}

// Issue makes a client certificate for edge edgeID, signed by the CA in dir,
// and writes it with its key to dir/edges/<edge-id>.crt and .key (and, with
// opts.OutDir, a bundle in OutDir/<edge-id>/). The certificate's only SAN is
// the URI EdgeUserName(edgeID). Without opts.Force it refuses (ErrExists) if
// any file it would write exists, and writes nothing. The returned paths
// are the bundle's when OutDir is set, else the PKI directory's.
func Issue(dir, edgeID string, opts IssueOptions) (EdgeFiles, error) {
	l := LayoutOf(dir)
	if err := ValidateEdgeID(edgeID); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue: %w", err)
	}
	if opts.Validity < 0 {
		return EdgeFiles{}, errors.New("pki issue: validity: must be positive")
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultLeafValidity
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	files := EdgeFiles{ID: edgeID, CACert: l.CACert, Cert: l.EdgeCert(edgeID), Key: l.EdgeKey(edgeID)}
	var bundle EdgeFiles
	if opts.OutDir != "" {
		bd := filepath.Join(opts.OutDir, edgeID)
		bundle = EdgeFiles{ID: edgeID, CACert: filepath.Join(bd, BundleCACert), Cert: filepath.Join(bd, BundleCert), Key: filepath.Join(bd, BundleKey)}
	}
	check := []string{files.Cert, files.Key}
	if opts.OutDir != "" {
		check = append(check, bundle.CACert, bundle.Cert, bundle.Key)
	}
	if err := refuseExisting(opts.Force, check...); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	ca, err := loadCA(l, opts.Now)
	if err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	key, err := newKey()
	if err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: edgeID, Organization: []string{"warren"}, OrganizationalUnit: []string{"edge"}},
		URIs:        []*url.URL{{Scheme: EdgeURIScheme, Host: EdgeURIHost, Path: "/" + edgeID}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cert, err := ca.sign(tmpl, key.Public(), opts.Now, opts.Validity)
	if err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: sign: %w", edgeID, err)
	}
	certPEM := encodeCert(cert)
	keyPEM, err := encodeKey(key)
	if err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := ensureDir(l.Edges); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := writeFile(files.Key, keyPEM, KeyMode, opts.Force); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := writeFile(files.Cert, certPEM, CertMode, opts.Force); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if opts.OutDir == "" {
		return files, nil
	}
	caPEM, err := os.ReadFile(l.CACert)
	if err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := ensureDir(opts.OutDir); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := ensureDir(filepath.Dir(bundle.Cert)); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := writeFile(bundle.Key, keyPEM, KeyMode, opts.Force); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := writeFile(bundle.Cert, certPEM, CertMode, opts.Force); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	if err := writeFile(bundle.CACert, caPEM, CertMode, opts.Force); err != nil {
		return EdgeFiles{}, fmt.Errorf("pki issue %s: %w", edgeID, err)
	}
	return bundle, nil
}

// authority is a loaded CA: certificate and key.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(name string, now time.Time, validity time.Duration) (*authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"warren"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	return &authority{cert: cert, key: key}, nil
}

// sign issues a leaf certificate from tmpl valid from now-backdate for
// validity, cut at the CA's own end.
func (a *authority) sign(tmpl *x509.Certificate, pub crypto.PublicKey, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(a.cert.NotAfter) {
		tmpl.NotAfter = a.cert.NotAfter
	}
	if tmpl.NotBefore.Before(a.cert.NotBefore) {
		tmpl.NotBefore = a.cert.NotBefore
	}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// loadCA reads the CA of layout l and checks that it can sign at time now.
func loadCA(l Layout, now time.Time) (*authority, error) {
	certs, err := readCerts("ca certificate", l.CACert)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if err := checkCA("ca certificate", l.CACert, cert); err != nil {
		return nil, err
	}
	if err := checkDates("ca certificate", l.CACert, cert, now); err != nil {
		return nil, err
	}
	key, err := readKey("ca key", l.CAKey)
	if err != nil {
		return nil, err
	}
	if err := checkKeyMatch(l.CAKey, l.CACert, cert, key); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodeCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writeKey(path string, key crypto.Signer, force bool) error {
	data, err := encodeKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, data, KeyMode, force)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// validDNSName accepts host names of letters, digits, '-' and '.', labels of
// 1-63 characters, 253 characters at most. Wildcards are refused.
func validDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q: must be 1-253 characters", truncate(name))
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q: empty or too long label", truncate(name))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
				c == '-' && i > 0 && i < len(label)-1
			if !ok {
				return fmt.Errorf("%q: not a valid DNS name", truncate(name))
			}
		}
	}
	return nil
}

// validCommonName accepts 1-64 printable ASCII characters.
func validCommonName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%q: must be 1-64 characters", truncate(name))
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] > 0x7e {
			return fmt.Errorf("%q: only printable ASCII is allowed", truncate(name))
		}
	}
	return nil
}
