//go:build linux || freebsd || darwin || openbsd || netbsd || dragonfly

package pki

import (
	"io/fs"
	"syscall"
	"testing"
)

func setUmask(m int) int { return syscall.Umask(m) }

func TestModesIgnoreUmask(t *testing.T) {
	// Modes are set explicitly, whatever the umask: a restrictive one must
	// not make certificates unreadable or the directory unusable.
	// (The umask is process-wide; this test is not parallel.)
	old := setUmask(0o277)
	defer setUmask(old)
	l := mustInit(t, InitOptions{})
	f := mustIssue(t, l.Dir, "edge-1", IssueOptions{OutDir: l.Dir + "-out"})
	for p, m := range map[string]fs.FileMode{
		l.Dir: DirMode, l.CACert: CertMode, l.CAKey: KeyMode, l.HubCert: CertMode,
		l.Edges: DirMode, l.EdgeCert("edge-1"): CertMode, f.CACert: CertMode, f.Key: KeyMode,
	} {
		if got := mode(t, p); got != m {
			t.Errorf("%s: mode %v with umask 0277, want %v", p, got, m)
		}
	}
}
