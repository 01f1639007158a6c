package wire

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// MaxKeyFileSize bounds how much of a key file is read (1 MiB, far more than
// thousands of hosts need).
const MaxKeyFileSize = 1 << 20

var (
	// ErrNoKeys: the key file holds no key.
	ErrNoKeys = errors.New("no keys in key file")
	// ErrKeyFileMode: the key file is readable or writable by group or others.
	ErrKeyFileMode = errors.New("key file is accessible by group or others")
)

// Key is one line of a key file.
type Key struct {
	// ID is the key id, 1..32 bytes of [A-Za-z0-9._-].
	ID string
	// Secret is the 32-byte HMAC key.
	Secret []byte
}

// ParseKeys parses key-file text: one key per line as
// "<key-id> <64 hex digits>" separated by spaces or tabs; blank lines and
// "#" comments (whole line or trailing) are ignored; CRLF line ends are
// accepted. Errors name the line ("line 3: ...") and never echo key
// material. A key id that appears twice is an error. It returns ErrNoKeys
// when the text holds no key.
func ParseKeys(data []byte) ([]Key, error) {
	var keys []Key
	seen := make(map[string]int)
	lineNo := 0
	for rest := string(data); len(rest) > 0; {
		lineNo++
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		switch len(fields) {
		case 0:
			continue
		case 2:
		default:
			return nil, fmt.Errorf("line %d: want \"<key-id> <64 hex digits>\", got %d fields", lineNo, len(fields))
		}
		id, secret := fields[0], fields[1]
		if !ValidKeyID(id) {
			// Not echoed: a swapped line would print the secret.
			return nil, fmt.Errorf("line %d: key id must be 1..%d characters of [A-Za-z0-9._-]", lineNo, MaxKeyIDLen)
		}
		if len(secret) != 2*KeySize {
			return nil, fmt.Errorf("line %d: key %q: want %d hex digits, got %d characters", lineNo, id, 2*KeySize, len(secret))
		}
		raw, err := hex.DecodeString(secret)
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: not hex digits", lineNo, id)
		}
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("line %d: key id %q already defined on line %d", lineNo, id, prev)
		}
		seen[id] = lineNo
		keys = append(keys, Key{ID: id, Secret: raw})
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	return keys, nil
}

// LoadKeys reads and parses a key file (see ParseKeys). Errors start with
// the path. It does not check the file's mode: see CheckKeyFileMode.
func LoadKeys(path string) ([]Key, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// LoadFirstKey reads a key file and returns its first key: the one hare
// signs with. The whole file must parse.
func LoadFirstKey(path string) (Key, error) {
	keys, err := LoadKeys(path)
	if err != nil {
		return Key{}, err
	}
	return keys[0], nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError already names the path
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes; is this a key file?", path, MaxKeyFileSize)
	}
	return data, nil
}

// CheckKeyFileMode returns an error wrapping ErrKeyFileMode when the file at
// path grants any permission to group or others (anything beyond 0600), or
// the error of stat itself. Callers decide whether that is fatal or a
// warning. It always returns nil on Windows, which has no such mode bits.
func CheckKeyFileMode(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o: %w; run chmod 600 on it", path, perm, ErrKeyFileMode)
	}
	return nil
}

// Keyring maps key ids to secrets for Open.
type Keyring map[string][]byte

// NewKeyring indexes keys by id. Later duplicates (which ParseKeys never
// returns) replace earlier ones.
func NewKeyring(keys []Key) Keyring {
	r := make(Keyring, len(keys))
	for _, k := range keys {
		r[k.ID] = k.Secret
	}
	return r
}

// Lookup is a KeyLookup over the ring.
func (r Keyring) Lookup(id string) ([]byte, bool) {
	k, ok := r[id]
	return k, ok
}
