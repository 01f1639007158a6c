package exec

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Stdin modes beyond the shared content modes.
const (
	// StdinNone gives the program an empty stdin.
	StdinNone = "none"
)

// Config configures an exec target. The program runs directly, never
// through a shell.
type Config struct {
	// Argv is the program and its arguments. Required. Argv[0] is a path
	// or a name looked up in PATH when the target is built; the arguments
	// after it are Go templates over the message (e.g. "{{.Edge}}"), each
	// rendering to exactly one argument, so no quoting is involved.
	Argv []string `mapstructure:"argv"`
	// Stdin selects what the program reads on stdin: "payload" (the event
	// payload, the default), "body" (the rendered message), "json" (the
	// message as JSON) or "none".
	Stdin string `mapstructure:"stdin"`
	// Env adds "NAME=value" variables to the program's environment. (A
	// list, not a map, because config keys are case-folded.)
	Env []string `mapstructure:"env"`
	// EnvFiles adds "NAME=/path/to/file" variables whose value is read
	// from the file when the target is built (trailing newline trimmed);
	// use it for secrets, which are then redacted from errors.
	EnvFiles []string `mapstructure:"env_files"`
	// InheritEnv passes the hub's whole environment to the program.
	// Default false: the program gets only PATH, the WARREN_* variables
	// and Env/EnvFiles, so secrets in the hub's environment stay there.
	InheritEnv bool `mapstructure:"inherit_env"`
	// Dir is the working directory. Default: the hub's.
	Dir string `mapstructure:"dir"`
	// Timeout bounds one run; on expiry the program's whole process group
	// is killed. Default 30s.
	Timeout time.Duration `mapstructure:"timeout"`
	// RetryOnFailure makes a non-zero exit or a timeout retryable.
	// Default true; set false for programs that are not idempotent.
	RetryOnFailure bool `mapstructure:"retry_on_failure"`
}

// DefaultConfig returns stdin "payload", a 30s timeout and retries on
// failure. Argv must be set.
func DefaultConfig() Config {
	return Config{Stdin: target.ContentPayload, Timeout: 30 * time.Second, RetryOnFailure: true}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	switch {
	case len(c.Argv) == 0 || c.Argv[0] == "":
		errs = append(errs, errors.New("argv: missing; set the program and its arguments, e.g. [/usr/local/bin/page, \"{{.Edge}}\"]"))
	case strings.Contains(c.Argv[0], "{{"):
		errs = append(errs, errors.New("argv[0]: the program must be a fixed path or name, not a template"))
	}
	for i, a := range c.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			errs = append(errs, fmt.Errorf("argv[%d]: contains a NUL byte", i))
		} else if i > 0 {
			if _, err := target.ParseTemplate(fmt.Sprintf("argv[%d]", i), a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if c.Stdin != StdinNone {
		if err := target.ValidateContent("stdin", c.Stdin); err != nil {
			errs = append(errs, fmt.Errorf("%w (or none)", err))
		}
	}
	for i, e := range c.Env {
		if _, _, err := splitVar(e); err != nil {
			errs = append(errs, fmt.Errorf("env[%d]: %w", i, err))
		}
	}
	for i, e := range c.EnvFiles {
		if _, v, err := splitVar(e); err != nil {
			errs = append(errs, fmt.Errorf("env_files[%d]: %w", i, err))
		} else if v == "" {
			errs = append(errs, fmt.Errorf("env_files[%d]: missing file path after '='", i))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

// splitVar splits "NAME=value" and checks NAME is a portable variable name.
func splitVar(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", errors.New(`not of the form NAME=value`)
	}
	if name == "" {
		return "", "", errors.New("empty variable name")
	}
	for i, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return "", "", fmt.Errorf("%q is not a valid variable name", name)
		}
	}
	if strings.IndexByte(value, 0) >= 0 {
		return "", "", fmt.Errorf("value of %s contains a NUL byte", name)
	}
	return name, value, nil
}
