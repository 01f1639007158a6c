package file

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Config configures a file target.
type Config struct {
	// Path is the file to write, a Go template over the message, e.g.
	// "/var/log/warren/{{.Edge}}.log". Required. A rendered path with a
	// ".." element or a NUL byte is refused, so payload fields cannot
	// steer writes outside the configured directory.
	Path string `mapstructure:"path"`
	// Append adds each notification to the end of the file (true, the
	// default); false replaces the file's content atomically (write to a
	// temporary file, then rename), so readers never see half a message.
	Append bool `mapstructure:"append"`
	// Newline writes "\n" after each notification. Default true.
	Newline bool `mapstructure:"newline"`
	// Content selects what is written: "body" (the rendered message, the
	// default), "payload" (the event payload as received) or "json" (one
	// JSON document per notification).
	Content string `mapstructure:"content"`
	// CreateDirs creates missing parent directories (with DirMode).
	// Default true.
	CreateDirs bool `mapstructure:"create_dirs"`
	// Mode is the octal permission set on files this target creates,
	// quoted with a leading zero. Default "0640".
	Mode string `mapstructure:"mode"`
	// DirMode is the octal permission of directories this target creates
	// (before umask), quoted with a leading zero. Default "0750".
	DirMode string `mapstructure:"dir_mode"`
	// Fsync flushes each write to disk before reporting success. Default
	// false: the page cache survives a hub crash, not a power loss.
	Fsync bool `mapstructure:"fsync"`
}

// DefaultConfig returns the defaults: append, newline, body, create
// directories, mode 0640, dir mode 0750, no fsync. Path must be set.
func DefaultConfig() Config {
	return Config{
		Append:     true,
		Newline:    true,
		Content:    target.ContentBody,
		CreateDirs: true,
		Mode:       "0640",
		DirMode:    "0750",
	}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: missing; set the file to write, e.g. /var/log/warren/{{.Edge}}.log"))
	} else if _, err := target.ParseTemplate("path", c.Path); err != nil {
		errs = append(errs, err)
	} else if err := checkPath(c.Path); err != nil {
		errs = append(errs, fmt.Errorf("path: %w", err))
	}
	if err := target.ValidateContent("content", c.Content); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseMode("mode", c.Mode); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseMode("dir_mode", c.DirMode); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// parseMode parses an octal permission written with a leading 0 or 0o
// ("0640", "0o640"). Without the prefix it is refused: an unquoted YAML
// 0640 arrives as the integer 416, and reading that back as octal would
// silently set the wrong mode.
func parseMode(key, s string) (uint32, error) {
	digits, ok := strings.CutPrefix(s, "0o")
	if !ok {
		digits, ok = strings.CutPrefix(s, "0")
	}
	v, err := strconv.ParseUint(digits, 8, 32)
	if !ok || digits == "" || err != nil || v > 0o777 {
		return 0, fmt.Errorf("%s: %q is not an octal permission; write it quoted with a leading zero, e.g. \"0640\"", key, s)
	}
	return uint32(v), nil
}
