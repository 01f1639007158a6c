package pki

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fingerprints maps each certificate path of a PKI directory to its
// fingerprint.
func fingerprints(t *testing.T, dir string) map[string]string {
	t.Helper()
	infos, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, ci := range infos {
		if ci.Problem != "" || ci.Expired {
			t.Fatalf("%s: problem %q expired=%v", ci.Path, ci.Problem, ci.Expired)
		}
		m[ci.Path] = ci.FingerprintSHA256
	}
	return m
}

func TestDevPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "pki")
	l, err := DevPKI(dir, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	first := fingerprints(t, dir)
	if len(first) != 3 {
		t.Fatalf("got %d certificates, want ca, hub, edge-1", len(first))
	}
	hub := readCert(t, l.HubCert)
	if strings.Join(hub.DNSNames, ",") != "hub.warren,localhost" || len(hub.IPAddresses) != 2 {
		t.Fatalf("dev hub SANs: %v %v", hub.DNSNames, hub.IPAddresses)
	}
	if _, err := ServerTLSConfig(l.CACert, l.HubCert, l.HubKey, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ClientTLSConfig(l.CACert, l.EdgeCert("edge-1"), l.EdgeKey("edge-1")); err != nil {
		t.Fatal(err)
	}

	// Idempotent: a second call changes nothing and adds the new edge.
	if _, err := DevPKI(dir, "edge-1", "edge-2"); err != nil {
		t.Fatal(err)
	}
	second := fingerprints(t, dir)
	for p, fp := range first {
		if second[p] != fp {
			t.Errorf("%s changed on a second DevPKI", p)
		}
	}
	if second[l.EdgeCert("edge-2")] == "" {
		t.Fatal("edge-2 not issued")
	}

	// A lost hub key is repaired without touching the CA or the edges.
	os.Remove(l.HubKey)
	if _, err := DevPKI(dir); err != nil {
		t.Fatal(err)
	}
	third := fingerprints(t, dir)
	if third[l.HubCert] == second[l.HubCert] {
		t.Error("hub certificate not remade after its key was lost")
	}
	if third[l.CACert] != second[l.CACert] || third[l.EdgeCert("edge-1")] != second[l.EdgeCert("edge-1")] {
		t.Error("repairing the hub changed the CA or an edge")
	}

	// A half-written CA (key without certificate) starts over.
	os.Remove(l.CACert)
	if _, err := DevPKI(dir, "edge-1"); err != nil {
		t.Fatal(err)
	}
	fourth := fingerprints(t, dir)
	if fourth[l.CACert] == third[l.CACert] || fourth[l.EdgeCert("edge-1")] == third[l.EdgeCert("edge-1")] {
		t.Error("new CA did not come with new leaves")
	}

	// A CA that exists but cannot be parsed is left alone.
	if err := os.WriteFile(l.CACert, []byte("not a cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DevPKI(dir); err == nil || !strings.Contains(err.Error(), "remove") {
		t.Fatalf("DevPKI over a broken CA = %v, want an error telling to remove the dir", err)
	}
	if b, _ := os.ReadFile(l.CACert); string(b) != "not a cert" {
		t.Fatal("DevPKI overwrote a CA it could not read")
	}

	if _, err := DevPKI(dir, "Bad.ID"); err == nil {
		t.Fatal("DevPKI accepted a bad edge id")
	}
}

func TestDevPKIRenewsExpiringLeaf(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	l := LayoutOf(dir)
	if _, err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	mustIssue(t, dir, "e", IssueOptions{Validity: 24 * time.Hour})
	old := readCert(t, l.EdgeCert("e"))
	if _, err := DevPKI(dir, "e"); err != nil {
		t.Fatal(err)
	}
	if c := readCert(t, l.EdgeCert("e")); c.Equal(old) || time.Until(c.NotAfter) < ExpiringSoonWindow {
		t.Fatal("an edge certificate expiring tomorrow was not renewed")
	}
}

func TestDevPKIConcurrent(t *testing.T) {
	// Several callers at once (a demo starting hub and edge together) end
	// with one consistent PKI.
	dir := filepath.Join(t.TempDir(), "pki")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = DevPKI(dir, "edge-1")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	l := LayoutOf(dir)
	if _, err := ServerTLSConfig(l.CACert, l.HubCert, l.HubKey, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ClientTLSConfig(l.CACert, l.EdgeCert("edge-1"), l.EdgeKey("edge-1")); err != nil {
		t.Fatal(err)
	}
	fingerprints(t, dir)
}
