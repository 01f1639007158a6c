package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixture is a PKI with one edge, a second unrelated PKI ("rogue") and a
// few broken files.
type fixture struct {
	l, rogue    Layout
	edge        EdgeFiles
	rogueEdge   EdgeFiles
	expiredEdge EdgeFiles
	dir         string // scratch directory for broken files
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	f := fixture{dir: t.TempDir()}
	// The CA is backdated so it can issue an already expired edge cert.
	f.l = mustInit(t, InitOptions{Now: time.Now().Add(-72 * time.Hour)})
	f.rogue = mustInit(t, InitOptions{CAName: "rogue CA"})
	f.edge = mustIssue(t, f.l.Dir, "edge-1", IssueOptions{})
	f.rogueEdge = mustIssue(t, f.rogue.Dir, "edge-1", IssueOptions{})
	f.expiredEdge = mustIssue(t, f.l.Dir, "old", IssueOptions{Now: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	return f
}

func (f fixture) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServerTLSConfigErrors(t *testing.T) {
	f := newFixture(t)
	keyPEM, err := os.ReadFile(f.l.HubKey)
	if err != nil {
		t.Fatal(err)
	}
	garbage := f.write(t, "garbage", "hello, not PEM\n")
	truncatedKey := f.write(t, "trunc.key", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n")
	expiredHub := Layout{}
	{
		l := mustInit(t, InitOptions{Now: time.Now().Add(-3 * 365 * 24 * time.Hour), HubValidity: 24 * time.Hour})
		expiredHub = l
	}
	tests := []struct {
		name             string
		ca, cert, key    string
		min              uint16
		wantIs           error
		wantIn           []string
		wantNotInMessage []string
	}{
		{name: "ok", ca: f.l.CACert, cert: f.l.HubCert, key: f.l.HubKey},
		{name: "ok tls12", ca: f.l.CACert, cert: f.l.HubCert, key: f.l.HubKey, min: tls.VersionTLS12},
		{name: "tls11 refused", ca: f.l.CACert, cert: f.l.HubCert, key: f.l.HubKey, min: tls.VersionTLS11, wantIn: []string{"TLS 1.1", "1.2"}},
		{name: "missing ca", ca: filepath.Join(f.dir, "nope.crt"), cert: f.l.HubCert, key: f.l.HubKey, wantIs: fs.ErrNotExist, wantIn: []string{"ca certificate", "nope.crt", "does not exist"}},
		{name: "missing key", ca: f.l.CACert, cert: f.l.HubCert, key: filepath.Join(f.dir, "nope.key"), wantIs: fs.ErrNotExist, wantIn: []string{"private key", "nope.key"}},
		{name: "empty path", ca: "", cert: f.l.HubCert, key: f.l.HubKey, wantIn: []string{"ca certificate: no file given"}},
		{name: "directory", ca: f.dir, cert: f.l.HubCert, key: f.l.HubKey, wantIn: []string{"is a directory"}},
		{name: "ca not PEM", ca: garbage, cert: f.l.HubCert, key: f.l.HubKey, wantIn: []string{garbage, "not a PEM certificate"}},
		{name: "key not PEM", ca: f.l.CACert, cert: f.l.HubCert, key: garbage, wantIn: []string{garbage, "not a PEM private key"}},
		{name: "cert and key swapped", ca: f.l.CACert, cert: f.l.HubKey, key: f.l.HubCert, wantIn: []string{"holds a private key"}},
		{name: "key file holds cert", ca: f.l.CACert, cert: f.l.HubCert, key: f.l.HubCert, wantIn: []string{"swapped"}},
		{name: "truncated key", ca: f.l.CACert, cert: f.l.HubCert, key: truncatedKey, wantIn: []string{"does not hold a valid private key"}},
		{name: "key mismatch", ca: f.l.CACert, cert: f.l.HubCert, key: f.l.CAKey, wantIs: ErrKeyMismatch, wantIn: []string{f.l.CAKey, f.l.HubCert}},
		{name: "ca file is a leaf", ca: f.l.HubCert, cert: f.l.HubCert, key: f.l.HubKey, wantIn: []string{"not a CA certificate"}},
		{name: "other CA", ca: f.rogue.CACert, cert: f.l.HubCert, key: f.l.HubKey, wantIs: ErrNotSignedByCA, wantIn: []string{"server certificate", f.l.HubCert}},
		{name: "client cert as server cert", ca: f.l.CACert, cert: f.edge.Cert, key: f.edge.Key, wantIn: []string{"serverAuth"}},
		{name: "expired", ca: expiredHub.CACert, cert: expiredHub.HubCert, key: expiredHub.HubKey, wantIs: ErrExpired, wantIn: []string{"expired on"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ServerTLSConfig(tt.ca, tt.cert, tt.key, tt.min)
			if tt.wantIs == nil && tt.wantIn == nil {
				if err != nil {
					t.Fatalf("ServerTLSConfig: %v", err)
				}
				if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || len(cfg.Certificates) != 1 {
					t.Fatalf("config: ClientAuth=%v ClientCAs=%v certs=%d", cfg.ClientAuth, cfg.ClientCAs, len(cfg.Certificates))
				}
				want := tt.min
				if want == 0 {
					want = tls.VersionTLS13
				}
				if cfg.MinVersion != want {
					t.Fatalf("MinVersion %#x, want %#x", cfg.MinVersion, want)
				}
				return
			}
			if err == nil {
				t.Fatal("ServerTLSConfig succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			assertNoKeyMaterial(t, err, keyPEM)
		})
	}
}

// assertNoKeyMaterial fails if an error message quotes any 16-character run
// of a key file's base64 body.
func assertNoKeyMaterial(t *testing.T, err error, keyPEM []byte) {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	b64 := base64.StdEncoding.EncodeToString(block.Bytes)
	msg := err.Error()
	for i := 0; i+16 <= len(b64); i += 8 {
		if strings.Contains(msg, b64[i:i+16]) {
			t.Fatalf("error message quotes key material: %q", msg)
		}
	}
}

func TestClientTLSConfigErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name          string
		ca, cert, key string
		wantIs        error
		wantIn        string
	}{
		{name: "ok", ca: f.l.CACert, cert: f.edge.Cert, key: f.edge.Key},
		{name: "edge of other CA", ca: f.l.CACert, cert: f.rogueEdge.Cert, key: f.rogueEdge.Key, wantIs: ErrNotSignedByCA, wantIn: "client certificate"},
		{name: "hub cert as edge cert", ca: f.l.CACert, cert: f.l.HubCert, key: f.l.HubKey, wantIn: "DNS or email SANs"},
		{name: "expired edge", ca: f.l.CACert, cert: f.expiredEdge.Cert, key: f.expiredEdge.Key, wantIs: ErrExpired, wantIn: f.expiredEdge.Cert},
		{name: "key of another edge", ca: f.l.CACert, cert: f.edge.Cert, key: f.rogueEdge.Key, wantIs: ErrKeyMismatch},
		{name: "missing cert", ca: f.l.CACert, cert: filepath.Join(f.dir, "x.crt"), key: f.edge.Key, wantIs: fs.ErrNotExist, wantIn: "x.crt"},
	}
	keyPEM, _ := os.ReadFile(f.edge.Key)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ClientTLSConfig(tt.ca, tt.cert, tt.key)
			if tt.wantIs == nil && tt.wantIn == "" {
				if err != nil {
					t.Fatalf("ClientTLSConfig: %v", err)
				}
				if cfg.ServerName != DefaultServerName || cfg.RootCAs == nil || cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 {
					t.Fatalf("config: ServerName=%q RootCAs=%v MinVersion=%#x", cfg.ServerName, cfg.RootCAs, cfg.MinVersion)
				}
				return
			}
			if err == nil {
				t.Fatal("ClientTLSConfig succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not contain %q", err, tt.wantIn)
			}
			assertNoKeyMaterial(t, err, keyPEM)
		})
	}
}

func TestLoadCAPoolRollover(t *testing.T) {
	f := newFixture(t)
	old := mustInit(t, InitOptions{Now: time.Now().Add(-48 * time.Hour), CAValidity: time.Hour})
	oldPEM, _ := os.ReadFile(old.CACert)
	curPEM, _ := os.ReadFile(f.l.CACert)
	both := f.write(t, "both.crt", string(oldPEM)+string(curPEM))
	if _, err := LoadCAPool(both); err != nil {
		t.Fatalf("expired CA next to a valid one: %v", err)
	}
	if _, err := ServerTLSConfig(both, f.l.HubCert, f.l.HubKey, 0); err != nil {
		t.Fatalf("hub against rollover bundle: %v", err)
	}
	if _, err := LoadCAPool(old.CACert); !errors.Is(err, ErrExpired) {
		t.Fatalf("only an expired CA: %v, want ErrExpired", err)
	}
}

func TestParseKeyPEMFormats(t *testing.T) {
	l := mustInit(t, InitOptions{})
	key, err := readKey("k", l.HubKey)
	if err != nil {
		t.Fatal(err)
	}
	// SEC 1 "EC PRIVATE KEY" files (openssl ecparam -genkey) load too.
	der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	got, err := parseKeyPEM(sec1)
	if err != nil {
		t.Fatalf("SEC 1 key: %v", err)
	}
	if !got.(*ecdsa.PrivateKey).Equal(key) {
		t.Fatal("SEC 1 key differs")
	}
	for name, in := range map[string]string{
		"encrypted":      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
		"PEM block type": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		"no PEM block":   "",
	} {
		if _, err := parseKeyPEM([]byte(in)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("parseKeyPEM(%q) = %v, want an error about %q", in, err, name)
		}
	}
}
