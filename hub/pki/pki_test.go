package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/warren-mesh/warren/internal/event"
)

// mustInit makes a PKI in a fresh temporary directory.
func mustInit(t *testing.T, opts InitOptions) Layout {
	t.Helper()
	l, err := Init(filepath.Join(t.TempDir(), "pki"), opts)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return l
}

func mustIssue(t *testing.T, dir, id string, opts IssueOptions) EdgeFiles {
	t.Helper()
	f, err := Issue(dir, id, opts)
	if err != nil {
		t.Fatalf("Issue(%s): %v", id, err)
	}
	return f
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := readCerts("cert", path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestValidateEdgeID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"edge-1", true},
		{"0", true},
		{"site42-b", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-edge", false},
		{"Edge", false},
		{"edge.1", false},
		{"edge*", false},
		{"edge>", false},
		{"ed ge", false},
		{"edge\t", false},
		{"edge_1", false},
		{"edge/1", false},
		{"edge:1", false},
		{"édge", false},
		{"..", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := ValidateEdgeID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateEdgeID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadEdgeID) {
				t.Fatalf("error %v does not wrap ErrBadEdgeID", err)
			}
			// The hub's subject layout uses internal/event's rule: both
			// must agree or an issued certificate could be unusable.
			if evOK := event.ValidID(tt.id) == nil; evOK != tt.ok {
				t.Fatalf("event.ValidID(%q) ok=%v, pki says %v", tt.id, evOK, tt.ok)
			}
		})
	}
}

func TestEdgeUserName(t *testing.T) {
	if got, want := EdgeUserName("edge-1"), "warren://edge/edge-1"; got != want {
		t.Fatalf("EdgeUserName = %q, want %q", got, want)
	}
	id, err := EdgeIDFromUserName("warren://edge/edge-1")
	if err != nil || id != "edge-1" {
		t.Fatalf("EdgeIDFromUserName = %q, %v", id, err)
	}
	for _, bad := range []string{"", "edge-1", "warren://edge/", "warren://edge/a.b", "warren://edge/a/b", "WARREN://edge/a", "warren://hub/a", "CN=edge-1"} {
		if _, err := EdgeIDFromUserName(bad); err == nil {
			t.Errorf("EdgeIDFromUserName(%q) succeeded", bad)
		}
	}
}

func TestInitFilesAndModes(t *testing.T) {
	l := mustInit(t, InitOptions{})
	want := map[string]fs.FileMode{
		l.Dir:     DirMode,
		l.CACert:  CertMode,
		l.CAKey:   KeyMode,
		l.HubCert: CertMode,
		l.HubKey:  KeyMode,
	}
	for p, m := range want {
		if got := mode(t, p); got != m {
			t.Errorf("%s: mode %v, want %v", p, got, m)
		}
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"ca.crt", "ca.key", "hub.crt", "hub.key"}, names); diff != "" {
		t.Errorf("directory content (-want +got):\n%s", diff)
	}
	f := mustIssue(t, l.Dir, "edge-1", IssueOptions{})
	for p, m := range map[string]fs.FileMode{l.Edges: DirMode, f.Cert: CertMode, f.Key: KeyMode} {
		if got := mode(t, p); got != m {
			t.Errorf("%s: mode %v, want %v", p, got, m)
		}
	}
}

func TestInitSANs(t *testing.T) {
	tests := []struct {
		name    string
		opts    InitOptions
		wantDNS []string
		wantIPs []string
		wantCA  string
	}{
		{
			name:    "defaults",
			wantDNS: []string{"hub.warren"},
			wantCA:  "warren CA",
		},
		{
			name: "extra names",
			opts: InitOptions{
				CAName:      "Home CA",
				DNSNames:    []string{"hub.example.net", "HUB.WARREN", "home"},
				IPAddresses: []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::1")},
			},
			wantDNS: []string{"hub.warren", "hub.example.net", "home"},
			wantIPs: []string{"192.0.2.10", "2001:db8::1"},
			wantCA:  "Home CA",
		},
		{
			name:    "custom server name is always present",
			opts:    InitOptions{ServerName: "nats.home.arpa", DNSNames: []string{"x"}},
			wantDNS: []string{"nats.home.arpa", "x"},
			wantCA:  "warren CA",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustInit(t, tt.opts)
			ca := readCert(t, l.CACert)
			if !ca.IsCA || ca.Subject.CommonName != tt.wantCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
				t.Errorf("CA: IsCA=%v CN=%q MaxPathLen=%d", ca.IsCA, ca.Subject.CommonName, ca.MaxPathLen)
			}
			if ca.PublicKeyAlgorithm != x509.ECDSA {
				t.Errorf("CA key algorithm %v", ca.PublicKeyAlgorithm)
			}
			if years := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24 / 365; years < 9.9 {
				t.Errorf("CA valid for %.1f years", years)
			}
			hub := readCert(t, l.HubCert)
			if diff := cmp.Diff(tt.wantDNS, hub.DNSNames); diff != "" {
				t.Errorf("hub DNS SANs (-want +got):\n%s", diff)
			}
			var ips []string
			for _, ip := range hub.IPAddresses {
				ips = append(ips, ip.String())
			}
			if diff := cmp.Diff(tt.wantIPs, ips); diff != "" {
				t.Errorf("hub IP SANs (-want +got):\n%s", diff)
			}
			if len(hub.URIs) != 0 || len(hub.EmailAddresses) != 0 {
				t.Errorf("hub has URI/email SANs: %v %v", hub.URIs, hub.EmailAddresses)
			}
			if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, hub.ExtKeyUsage); diff != "" {
				t.Errorf("hub ext key usage (-want +got):\n%s", diff)
			}
			if hub.IsCA {
				t.Error("hub certificate is a CA")
			}
			if err := hub.CheckSignatureFrom(ca); err != nil {
				t.Errorf("hub not signed by CA: %v", err)
			}
		})
	}
}

func TestInitValidate(t *testing.T) {
	tests := []struct {
		name  string
		opts  InitOptions
		field string // "" = valid
	}{
		{"zero", InitOptions{}, ""},
		{"bad server name", InitOptions{ServerName: "hub warren"}, "server name"},
		{"wildcard dns", InitOptions{DNSNames: []string{"*.warren"}}, "dns names"},
		{"empty dns", InitOptions{DNSNames: []string{""}}, "dns names"},
		{"label ends with dash", InitOptions{DNSNames: []string{"a-.b"}}, "dns names"},
		{"nil ip", InitOptions{IPAddresses: []net.IP{nil}}, "ip addresses[0]"},
		{"ca name control char", InitOptions{CAName: "a\nb"}, "ca name"},
		{"ca name too long", InitOptions{CAName: strings.Repeat("x", 65)}, "ca name"},
		{"negative ca validity", InitOptions{CAValidity: -time.Hour}, "ca validity"},
		{"negative hub validity", InitOptions{HubValidity: -time.Hour}, "hub validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("Validate = %v, want an error naming %q", err, tt.field)
			}
			// Init refuses invalid options before touching the disk.
			dir := filepath.Join(t.TempDir(), "pki")
			if _, err := Init(dir, tt.opts); err == nil {
				t.Fatal("Init accepted invalid options")
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Init with invalid options created %s", dir)
			}
		})
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	for _, name := range []string{"ca.crt", "ca.key", "hub.crt", "hub.key"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			existing := filepath.Join(dir, name)
			if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Init(dir, InitOptions{})
			if !errors.Is(err, ErrExists) {
				t.Fatalf("Init over %s = %v, want ErrExists", name, err)
			}
			if !strings.Contains(err.Error(), existing) {
				t.Errorf("error %q does not name %s", err, existing)
			}
			// Nothing was written.
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("Init wrote files despite refusing: %d entries", len(entries))
			}
			if b, _ := os.ReadFile(existing); string(b) != "keep me" {
				t.Errorf("existing file changed")
			}
		})
	}
}

func TestInitForce(t *testing.T) {
	l := mustInit(t, InitOptions{})
	oldCA := readCert(t, l.CACert)
	oldHub := readCert(t, l.HubCert)
	if _, err := Init(l.Dir, InitOptions{Force: true, CAName: "second"}); err != nil {
		t.Fatalf("Init --force: %v", err)
	}
	newCA := readCert(t, l.CACert)
	newHub := readCert(t, l.HubCert)
	if newCA.Equal(oldCA) || newHub.Equal(oldHub) || newCA.Subject.CommonName != "second" {
		t.Fatal("--force did not replace the CA and hub certificate")
	}
	if err := newHub.CheckSignatureFrom(newCA); err != nil {
		t.Fatalf("new hub not signed by new CA: %v", err)
	}
	if got := mode(t, l.CAKey); got != KeyMode {
		t.Fatalf("replaced key mode %v", got)
	}
	if _, err := LoadKeyPair(l.HubCert, l.HubKey); err != nil {
		t.Fatalf("replaced hub pair: %v", err)
	}
}

func TestIssueHub(t *testing.T) {
	l := mustInit(t, InitOptions{})
	ca := readCert(t, l.CACert)
	if _, err := IssueHub(l.Dir, InitOptions{DNSNames: []string{"new.example"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("IssueHub without force = %v, want ErrExists", err)
	}
	if _, err := IssueHub(l.Dir, InitOptions{DNSNames: []string{"new.example"}, Force: true}); err != nil {
		t.Fatal(err)
	}
	if !readCert(t, l.CACert).Equal(ca) {
		t.Fatal("IssueHub changed the CA")
	}
	if diff := cmp.Diff([]string{"hub.warren", "new.example"}, readCert(t, l.HubCert).DNSNames); diff != "" {
		t.Fatalf("hub SANs (-want +got):\n%s", diff)
	}
	if _, err := IssueHub(filepath.Join(t.TempDir(), "none"), InitOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("IssueHub without CA = %v, want ErrNotExist", err)
	}
}

func TestIssueEdge(t *testing.T) {
	l := mustInit(t, InitOptions{})
	f := mustIssue(t, l.Dir, "edge-1", IssueOptions{})
	if diff := cmp.Diff(EdgeFiles{ID: "edge-1", CACert: l.CACert, Cert: l.EdgeCert("edge-1"), Key: l.EdgeKey("edge-1")}, f); diff != "" {
		t.Fatalf("paths (-want +got):\n%s", diff)
	}
	c := readCert(t, f.Cert)
	var uris []string
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	if diff := cmp.Diff([]string{"warren://edge/edge-1"}, uris); diff != "" {
		t.Errorf("URI SANs (-want +got):\n%s", diff)
	}
	if len(c.DNSNames) != 0 || len(c.EmailAddresses) != 0 || len(c.IPAddresses) != 0 {
		t.Errorf("edge cert has other SANs: %v %v %v", c.DNSNames, c.EmailAddresses, c.IPAddresses)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, c.ExtKeyUsage); diff != "" {
		t.Errorf("ext key usage (-want +got):\n%s", diff)
	}
	if c.Subject.CommonName != "edge-1" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	id, err := EdgeIDFromCert(c)
	if err != nil || id != "edge-1" {
		t.Errorf("EdgeIDFromCert = %q, %v", id, err)
	}
	if EdgeUserName(id) != c.URIs[0].String() {
		t.Errorf("EdgeUserName %q != URI SAN %q", EdgeUserName(id), c.URIs[0])
	}
	if err := c.CheckSignatureFrom(readCert(t, l.CACert)); err != nil {
		t.Errorf("not signed by CA: %v", err)
	}

	// Refusal and force.
	before, _ := os.ReadFile(f.Cert)
	if _, err := Issue(l.Dir, "edge-1", IssueOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Issue = %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(f.Cert); string(after) != string(before) {
		t.Fatal("refused Issue changed the certificate")
	}
	mustIssue(t, l.Dir, "edge-1", IssueOptions{Force: true})
	if after, _ := os.ReadFile(f.Cert); string(after) == string(before) {
		t.Fatal("Issue --force kept the old certificate")
	}
	if _, err := LoadKeyPair(f.Cert, f.Key); err != nil {
		t.Fatalf("forced pair: %v", err)
	}

	// Bad ids and a missing CA.
	for _, bad := range []string{"", "a.b", "A", "../x", "*"} {
		if _, err := Issue(l.Dir, bad, IssueOptions{}); !errors.Is(err, ErrBadEdgeID) {
			t.Errorf("Issue(%q) = %v, want ErrBadEdgeID", bad, err)
		}
	}
	if _, err := Issue(t.TempDir(), "edge-2", IssueOptions{}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "ca certificate") {
		t.Errorf("Issue without CA = %v", err)
	}
}

func TestIssueValidityCappedByCA(t *testing.T) {
	l := mustInit(t, InitOptions{CAValidity: 48 * time.Hour})
	f := mustIssue(t, l.Dir, "e", IssueOptions{Validity: 1000 * time.Hour})
	if c, ca := readCert(t, f.Cert), readCert(t, l.CACert); c.NotAfter.After(ca.NotAfter) {
		t.Fatalf("edge ends %v after CA %v", c.NotAfter, ca.NotAfter)
	}
}

func TestIssueOutDir(t *testing.T) {
	l := mustInit(t, InitOptions{})
	out := filepath.Join(t.TempDir(), "fetch")
	f := mustIssue(t, l.Dir, "edge-7", IssueOptions{OutDir: out})
	bd := filepath.Join(out, "edge-7")
	want := EdgeFiles{ID: "edge-7", CACert: filepath.Join(bd, "ca.crt"), Cert: filepath.Join(bd, "edge.crt"), Key: filepath.Join(bd, "edge.key")}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Fatalf("bundle paths (-want +got):\n%s", diff)
	}
	for p, m := range map[string]fs.FileMode{out: DirMode, bd: DirMode, f.CACert: CertMode, f.Cert: CertMode, f.Key: KeyMode} {
		if got := mode(t, p); got != m {
			t.Errorf("%s: mode %v, want %v", p, got, m)
		}
	}
	// The bundle and the PKI copy are the same certificate; the bundle's CA
	// is the PKI's CA.
	if !readCert(t, f.Cert).Equal(readCert(t, l.EdgeCert("edge-7"))) || !readCert(t, f.CACert).Equal(readCert(t, l.CACert)) {
		t.Fatal("bundle differs from the PKI directory")
	}
	if _, err := ClientTLSConfig(f.CACert, f.Cert, f.Key); err != nil {
		t.Fatalf("bundle is not usable: %v", err)
	}
	// Remove the PKI copy: the bundle alone still blocks a re-issue.
	os.Remove(l.EdgeCert("edge-7"))
	os.Remove(l.EdgeKey("edge-7"))
	if _, err := Issue(l.Dir, "edge-7", IssueOptions{OutDir: out}); !errors.Is(err, ErrExists) {
		t.Fatalf("Issue over an existing bundle = %v, want ErrExists", err)
	}
	if _, err := os.Stat(l.EdgeCert("edge-7")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("refused Issue wrote the PKI copy")
	}
	mustIssue(t, l.Dir, "edge-7", IssueOptions{OutDir: out, Force: true})
}

func TestEdgeIDFromCert(t *testing.T) {
	u := func(s string) *url.URL {
		p, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name string
		cert *x509.Certificate
		want string // "" = error
	}{
		{"ok", &x509.Certificate{URIs: []*url.URL{u("warren://edge/e1")}, ExtKeyUsage: client}, "e1"},
		{"nil", nil, ""},
		{"no uri", &x509.Certificate{ExtKeyUsage: client}, ""},
		{"two uris", &x509.Certificate{URIs: []*url.URL{u("warren://edge/e1"), u("warren://edge/e2")}, ExtKeyUsage: client}, ""},
		{"dns too", &x509.Certificate{URIs: []*url.URL{u("warren://edge/e1")}, DNSNames: []string{"e1"}, ExtKeyUsage: client}, ""},
		{"email too", &x509.Certificate{URIs: []*url.URL{u("warren://edge/e1")}, EmailAddresses: []string{"a@b"}, ExtKeyUsage: client}, ""},
		{"server usage", &x509.Certificate{URIs: []*url.URL{u("warren://edge/e1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ""},
		{"other scheme", &x509.Certificate{URIs: []*url.URL{u("spiffe://edge/e1")}, ExtKeyUsage: client}, ""},
		{"other host", &x509.Certificate{URIs: []*url.URL{u("warren://hub/e1")}, ExtKeyUsage: client}, ""},
		{"bad id", &x509.Certificate{URIs: []*url.URL{u("warren://edge/e.1")}, ExtKeyUsage: client}, ""},
		{"query", &x509.Certificate{URIs: []*url.URL{u("warren://edge/e1?x=1")}, ExtKeyUsage: client}, ""},
		{"userinfo", &x509.Certificate{URIs: []*url.URL{u("warren://x@edge/e1")}, ExtKeyUsage: client}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EdgeIDFromCert(tt.cert)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("EdgeIDFromCert = %q, want error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("EdgeIDFromCert = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseTLSVersion(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
		ok   bool
	}{
		{"", 0x0304, true},
		{"1.3", 0x0304, true},
		{"TLS1.3", 0x0304, true},
		{"1.2", 0x0303, true},
		{" tls1.2 ", 0x0303, true},
		{"1.1", 0, false},
		{"1.0", 0, false},
		{"ssl3", 0, false},
		{"1.4", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseTLSVersion(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseTLSVersion(%q) = %#x, %v; want %#x ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
