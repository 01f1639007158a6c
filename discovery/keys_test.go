package discovery

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	key32 := bytes.Repeat([]byte{0xA5}, 32)
	b64 := base64.StdEncoding.EncodeToString(key32)
	tests := []struct {
		name    string
		content string
		wantLen int    // 0: expect an error
		wantErr string // substring of the error
	}{
		{"32 bytes", b64, 32, ""},
		{"trailing newline", b64 + "\n", 32, ""},
		{"surrounding space and CRLF", "  " + b64 + "\r\n", 32, ""},
		{"16 bytes", base64.StdEncoding.EncodeToString(make([]byte, 16)), 16, ""},
		{"24 bytes", base64.StdEncoding.EncodeToString(make([]byte, 24)), 24, ""},
		{"empty", "", 0, "empty"},
		{"only newline", "\n", 0, "empty"},
		{"20 bytes", base64.StdEncoding.EncodeToString(make([]byte, 20)), 0, "key is 20 bytes; want 16, 24 or 32"},
		{"not base64", "this is not a key!!", 0, "not standard base64"},
		{"url-safe alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xFB, 0xFF}, 16))), 0, "not standard base64"},
		{"two keys", b64 + "\n" + b64 + "\n", 0, "not standard base64"},
		{"huge", strings.Repeat("A", 2000), 0, "larger than 1024 bytes"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "k"+string(rune('a'+i)))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			key, err := LoadKeyFile(path)
			if tt.wantLen == 0 {
				if err == nil {
					t.Fatalf("loaded a %d-byte key, want error %q", len(key), tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				if len(tt.content) > 8 && strings.Contains(err.Error(), strings.TrimSpace(tt.content)[:8]) {
					t.Errorf("error %q leaks file content", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(key) != tt.wantLen {
				t.Errorf("key length %d, want %d", len(key), tt.wantLen)
			}
		})
	}
}

func TestLoadKeyFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.key")
	_, err := LoadKeyFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error naming %s", err, path)
	}
}

func TestLoadKeysAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	good := writeKeyFile(t, dir, "good", bytes.Repeat([]byte{1}, 32))
	dup := writeKeyFile(t, dir, "dup", bytes.Repeat([]byte{1}, 32))
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("???"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := loadKeys([]string{good, dup})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Errorf("got %d keys, want duplicates merged into 1", len(keys))
	}
	if _, err := loadKeys([]string{good, bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("err = %v, want an error naming %s", err, bad)
	}
}

func TestKeyFingerprint(t *testing.T) {
	a := KeyFingerprint(bytes.Repeat([]byte{1}, 32))
	b := KeyFingerprint(bytes.Repeat([]byte{2}, 32))
	if len(a) != 16 || a == b {
		t.Errorf("fingerprints %q and %q: want 16 hex digits, distinct", a, b)
	}
}

// writeKeyFile writes key in the key-file format (base64 + newline), 0600.
func writeKeyFile(t testing.TB, dir, name string, key []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
