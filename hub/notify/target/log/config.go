package log

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Config configures a log target.
type Config struct {
	// Level is the slog level of the record: "debug", "info" (default),
	// "warn" or "error".
	Level string `mapstructure:"level"`
	// Message is the record's message text. Default "notification".
	Message string `mapstructure:"message"`
	// Payload adds the raw event payload as the attribute "payload".
	// Default false.
	Payload bool `mapstructure:"payload"`
}

// DefaultConfig returns level info, message "notification", no payload.
func DefaultConfig() Config {
	return Config{Level: "info", Message: "notification"}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if _, err := parseLevel(c.Level); err != nil {
		errs = append(errs, err)
	}
	if c.Message == "" {
		errs = append(errs, errors.New("message: empty; set the log message text"))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("level: %q is not one of debug, info, warn, error", s)
}
