package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ content, want, err string }{
		{"pw\n", "pw", ""},
		{"pw\r\n", "pw", ""},
		{"pw", "pw", ""},
		{"pw\n\n", "pw\n", ""}, // one newline is the file's end; the rest is the secret's
		{"  spaced  \n", "  spaced  ", ""},
		{"\n", "", "is empty"},
		{strings.Repeat("x", Max+1), "", "larger than"},
	} {
		p := filepath.Join(dir, "s")
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Read("password_file", p)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "password_file: ") {
				t.Errorf("%q: err %v, want %q", tt.content, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %q, %v; want %q", tt.content, got, err, tt.want)
		}
	}
	if _, err := Read("k", filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), "k: ") {
		t.Errorf("missing file: %v", err)
	}
}
