package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	hexA = "4242424242424242424242424242424242424242424242424242424242424242"
	hexB = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
)

func TestParseKeys(t *testing.T) {
	b, _ := hex.DecodeString(hexB)
	tests := []struct {
		name    string
		in      string
		want    []Key
		wantErr string // substring; "" means success
	}{
		{name: "one", in: "web1 " + hexA + "\n", want: []Key{{"web1", testKey}}},
		{name: "no final newline", in: "web1 " + hexA, want: []Key{{"web1", testKey}}},
		{
			name: "comments blanks tabs crlf",
			in:   "# hare keys\r\n\r\n  web1\t" + hexA + "  # first\r\n\n\tdb.2 " + hexB + "\r\n#end",
			want: []Key{{"web1", testKey}, {"db.2", b}},
		},
		{name: "empty", in: "", wantErr: ErrNoKeys.Error()},
		{name: "only comments", in: "# nothing\n\n", wantErr: ErrNoKeys.Error()},
		{name: "one field", in: "\nweb1\n", wantErr: "line 2: want \"<key-id> <64 hex digits>\", got 1 fields"},
		{name: "three fields", in: "web1 " + hexA + " extra", wantErr: "line 1: want"},
		{name: "bad key id", in: "web/1 " + hexA, wantErr: "line 1: key id must be"},
		{name: "key id too long", in: strings.Repeat("k", 33) + " " + hexA, wantErr: "line 1: key id must be"},
		{name: "short key", in: "web1 abcd", wantErr: "line 1: key \"web1\": want 64 hex digits, got 4 characters"},
		{name: "not hex", in: "web1 " + strings.Repeat("zz", 32), wantErr: "line 1: key \"web1\": not hex digits"},
		{name: "duplicate", in: "a " + hexA + "\nb " + hexA + "\na " + hexB, wantErr: "line 3: key id \"a\" already defined on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeys([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKeys error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeys: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("ParseKeys mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseKeysNeverEchoesSecrets(t *testing.T) {
	// A line with id and secret swapped, or a secret alone, must not put the
	// secret into an error message.
	for _, in := range []string{hexA + " web1", hexA, "web1 " + hexA[:63] + "g"} {
		_, err := ParseKeys([]byte(in))
		if err == nil {
			t.Fatalf("ParseKeys(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), hexA[:16]) {
			t.Fatalf("error echoes key material: %v", err)
		}
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hare.key")
	if err := os.WriteFile(path, []byte("first "+hexA+"\nsecond "+hexB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys(path)
	if err != nil || len(keys) != 2 {
		t.Fatalf("LoadKeys = %v, %v", keys, err)
	}
	k, err := LoadFirstKey(path)
	if err != nil || k.ID != "first" || !bytes.Equal(k.Secret, testKey) {
		t.Fatalf("LoadFirstKey = %+v, %v", k, err)
	}
	if err := CheckKeyFileMode(path); err != nil {
		t.Fatalf("CheckKeyFileMode(0600) = %v", err)
	}

	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("ok "+hexA+"\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFirstKey(bad); err == nil || !strings.Contains(err.Error(), bad+": line 2:") {
		t.Fatalf("LoadFirstKey(bad) = %v, want path and line", err)
	}

	if _, err := LoadKeys(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadKeys(missing) = %v, want ErrNotExist", err)
	}

	big := filepath.Join(dir, "big.key")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), MaxKeyFileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("LoadKeys(big) = %v", err)
	}
}

func TestCheckKeyFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix mode bits")
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o640, false}, {0o604, false}, {0o660, false}, {0o602, false}, {0o700, true},
	} {
		path := filepath.Join(dir, "k")
		if err := os.WriteFile(path, []byte("x "+hexA), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckKeyFileMode(path)
		if tt.ok != (err == nil) {
			t.Errorf("mode %04o: CheckKeyFileMode = %v", tt.mode, err)
		}
		if !tt.ok && !errors.Is(err, ErrKeyFileMode) {
			t.Errorf("mode %04o: error %v does not wrap ErrKeyFileMode", tt.mode, err)
		}
		os.Remove(path)
	}
	if err := CheckKeyFileMode(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
