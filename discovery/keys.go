package discovery

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxKeyFileSize bounds what LoadKeyFile reads; a key file is ~45 bytes.
const maxKeyFileSize = 1024

// ErrNoKey is returned by Config.Validate when gossip would run without
// encryption and insecure mode was not requested.
var ErrNoKey = errors.New("no gossip key: set key_files (or, for development only, insecure: the --insecure-gossip flag)")

// ErrInsecure is returned by keyring operations on a node that runs without
// encryption.
var ErrInsecure = errors.New("gossip runs without encryption (insecure mode); restart with key files to enable it")

// LoadKeyFile reads one gossip key: the standard base64 encoding of 16, 24 or
// 32 random bytes (AES-128/192/256), surrounding whitespace and a trailing
// newline allowed. Errors name the file but never include its content.
// A key can be made with: head -c 32 /dev/urandom | base64 > gossip.key
func LoadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	return parseKey(path, raw)
}

func parseKey(path string, raw []byte) ([]byte, error) {
	if len(raw) > maxKeyFileSize {
		return nil, fmt.Errorf("gossip key file %s: larger than %d bytes; it must hold one base64 key", path, maxKeyFileSize)
	}
	text := bytes.TrimSpace(raw)
	if len(text) == 0 {
		return nil, fmt.Errorf("gossip key file %s: empty", path)
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		// The decoder's error can quote an offset but not the content; still,
		// keep the message generic so nothing of the key leaks.
		return nil, fmt.Errorf("gossip key file %s: not standard base64 (make one with: head -c 32 /dev/urandom | base64)", path)
	}
	key = key[:n]
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	default:
		return nil, fmt.Errorf("gossip key file %s: key is %d bytes; want 16, 24 or 32", path, len(key))
	}
}

// loadKeys loads every file; the first key is the primary. Duplicates are
// dropped. It fails as a whole if any file fails.
func loadKeys(paths []string) ([][]byte, error) {
	var keys [][]byte
	var errs []error
	for _, p := range paths {
		k, err := LoadKeyFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dup := false
		for _, have := range keys {
			if bytes.Equal(have, k) {
				dup = true
				break
			}
		}
		if !dup {
			keys = append(keys, k)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}

// KeyFingerprint identifies a key in logs and status output without revealing
// it: the first 8 bytes of its SHA-256, in hex.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// keyFileWorldReadable reports whether group or others may read the file.
func keyFileWorldReadable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().Perm()&0o077 != 0
}
