package pki

import (
	"encoding/base64"
	"encoding/pem"
	"os"
	"strings"
	"testing"
)

func FuzzEdgeIDFromUserName(f *testing.F) {
	for _, s := range []string{"warren://edge/edge-1", "warren://edge/", "warren://edge/a.b", "CN=x", "warren://edge/" + strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, err := EdgeIDFromUserName(name)
		if err != nil {
			return
		}
		if ValidateEdgeID(id) != nil {
			t.Fatalf("accepted invalid id %q", id)
		}
		if EdgeUserName(id) != name {
			t.Fatalf("round trip: %q -> %q -> %q", name, id, EdgeUserName(id))
		}
		if strings.ContainsAny(id, ".*> \t\r\n/:") {
			t.Fatalf("id %q is not a single subject token", id)
		}
	})
}

func FuzzParseCertsPEM(f *testing.F) {
	l, err := Init(f.TempDir(), InitOptions{})
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range []string{l.CACert, l.HubCert, l.HubKey} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseCertsPEM(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		if err != nil && len(err.Error()) > 1024 {
			t.Fatalf("error message of %d bytes", len(err.Error()))
		}
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	l, err := Init(f.TempDir(), InitOptions{})
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range []string{l.CAKey, l.HubCert} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parseKeyPEM(data)
		if err == nil {
			if key == nil {
				t.Fatal("no error and no key")
			}
			return
		}
		// Whatever the input, the message never quotes the key body.
		if block, _ := pem.Decode(data); block != nil && len(block.Bytes) >= 12 {
			b64 := base64.StdEncoding.EncodeToString(block.Bytes)
			if strings.Contains(err.Error(), b64[:16]) {
				t.Fatalf("error quotes key material: %q", err)
			}
			if strings.Contains(err.Error(), string(block.Bytes)) {
				t.Fatalf("error quotes raw key bytes: %q", err)
			}
		}
	})
}
