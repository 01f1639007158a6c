// Package secretfile reads a secret (a password, a token) from a file, the
// same way for every *_file key of every config: at most 64 KiB, one
// trailing newline (LF or CRLF) removed, empty refused. Errors name the
// key and the file, never the content.
package secretfile

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Max bounds what Read reads: a secret is a token or a password, never
// megabytes.
const Max = 64 << 10

// Read reads the secret in path for config key key (e.g. "token_file").
func Read(key, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, Max+1))
	if err != nil {
		return "", fmt.Errorf("%s: read %s: %w", key, path, err)
	}
	if len(buf) > Max {
		return "", fmt.Errorf("%s: %s is larger than %d bytes; it should hold one secret", key, path, Max)
	}
	s := strings.TrimSuffix(string(buf), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	return s, nil
}
