package pki

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestList(t *testing.T) {
	now := time.Now()
	l := mustInit(t, InitOptions{Now: now.Add(-72 * time.Hour), IPAddresses: nil, DNSNames: []string{"home.example"}})
	mustIssue(t, l.Dir, "b-edge", IssueOptions{})
	mustIssue(t, l.Dir, "a-edge", IssueOptions{Validity: 10 * 24 * time.Hour})                   // expiring soon
	mustIssue(t, l.Dir, "old", IssueOptions{Now: now.Add(-48 * time.Hour), Validity: time.Hour}) // expired
	// A certificate of another CA copied in, a key that went missing, a
	// garbage file, and an edge cert under the wrong name.
	rogue := mustInit(t, InitOptions{})
	rf := mustIssue(t, rogue.Dir, "rogue", IssueOptions{})
	copyFile(t, rf.Cert, l.EdgeCert("rogue"))
	copyFile(t, rf.Key, l.EdgeKey("rogue"))
	mustIssue(t, l.Dir, "nokey", IssueOptions{})
	os.Remove(l.EdgeKey("nokey"))
	if err := os.WriteFile(l.EdgeCert("junk"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile(t, l.EdgeCert("b-edge"), l.EdgeCert("renamed"))
	copyFile(t, l.EdgeKey("b-edge"), l.EdgeKey("renamed"))
	// Files that are not certificates are ignored.
	os.WriteFile(filepath.Join(l.Edges, "notes.txt"), []byte("x"), 0o644)

	infos, err := listAt(l.Dir, now)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Kind     Kind
		ID       string
		Expired  bool
		Soon     bool
		Problem  string // substring
		URIs     []string
		DNSNames []string
	}
	var got []row
	for _, ci := range infos {
		r := row{Kind: ci.Kind, ID: ci.ID, Expired: ci.Expired, Soon: ci.ExpiringSoon, URIs: ci.URIs, DNSNames: ci.DNSNames, Problem: ci.Problem}
		got = append(got, r)
	}
	want := []row{
		{Kind: KindCA},
		{Kind: KindHub, DNSNames: []string{"hub.warren", "home.example"}},
		{Kind: KindEdge, ID: "a-edge", Soon: true, URIs: []string{"warren://edge/a-edge"}},
		{Kind: KindEdge, ID: "b-edge", URIs: []string{"warren://edge/b-edge"}},
		{Kind: KindEdge, ID: "junk", Problem: "not a PEM certificate"},
		{Kind: KindEdge, ID: "nokey", URIs: []string{"warren://edge/nokey"}, Problem: "does not exist"},
		{Kind: KindEdge, ID: "old", Expired: true, URIs: []string{"warren://edge/old"}},
		{Kind: KindEdge, ID: "renamed", URIs: []string{"warren://edge/b-edge"}, Problem: `file name says edge "renamed"`},
		{Kind: KindEdge, ID: "rogue", URIs: []string{"warren://edge/rogue"}, Problem: "not signed by the CA"},
	}
	// Compare problems by substring.
	opt := cmp.Comparer(func(a, b row) bool {
		pa, pb := a.Problem, b.Problem
		a.Problem, b.Problem = "", ""
		if !cmp.Equal(a, b) {
			return false
		}
		if pa == "" || pb == "" {
			return pa == pb
		}
		return strings.Contains(pa, pb) || strings.Contains(pb, pa)
	})
	if diff := cmp.Diff(want, got, opt); diff != "" {
		t.Fatalf("List (-want +got):\n%s", diff)
	}

	// Details of one entry.
	b := infos[3]
	c := readCert(t, l.EdgeCert("b-edge"))
	sum := sha256.Sum256(c.Raw)
	if fp := strings.ReplaceAll(b.FingerprintSHA256, ":", ""); !strings.EqualFold(fp, hex.EncodeToString(sum[:])) || len(b.FingerprintSHA256) != 95 {
		t.Errorf("fingerprint %q", b.FingerprintSHA256)
	}
	if b.Serial != strings.ToUpper(c.SerialNumber.Text(16)) || b.Serial == "" {
		t.Errorf("serial %q", b.Serial)
	}
	if !b.NotAfter.Equal(c.NotAfter) || !b.NotBefore.Equal(c.NotBefore) || b.Path != l.EdgeCert("b-edge") {
		t.Errorf("dates/path: %+v", b)
	}
	if !strings.Contains(b.Subject, "CN=b-edge") || !strings.Contains(b.Issuer, "CN=warren CA") {
		t.Errorf("subject %q issuer %q", b.Subject, b.Issuer)
	}
}

func TestListEdgeCases(t *testing.T) {
	if _, err := List(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List of a missing dir = %v", err)
	}
	// Leaves without a CA are listed, each with the reason they cannot be
	// checked.
	l := mustInit(t, InitOptions{})
	mustIssue(t, l.Dir, "e", IssueOptions{})
	os.Remove(l.CACert)
	infos, err := List(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("got %d entries, want hub and edge", len(infos))
	}
	for _, ci := range infos {
		if !strings.Contains(ci.Problem, "ca certificate") {
			t.Errorf("%s: problem %q, want one about the missing CA", ci.Kind, ci.Problem)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
