// Package cli is what the edge and hub commands share: exit codes, the
// usage-error convention, configuration loading (file, PREFIX_*
// environment, flags) and the slog logger.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/warren-mesh/warren/internal/cfgload"
	"github.com/warren-mesh/warren/internal/version"
)

// Exit codes of the daemons' commands.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and failed
	ExitUsage   = 2 // bad arguments or configuration
)

// UsageError marks an error that exits with ExitUsage.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Execute runs root with args, prints a failure as "name: error" on stderr
// and returns the exit code: ExitUsage for UsageError and for cobra's own
// argument and flag errors, ExitFailure for the rest.
func Execute(name string, root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var ue UsageError
	msg := err.Error()
	if errors.As(err, &ue) || strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "accepts ") ||
		strings.Contains(msg, "flag needs an argument") || strings.HasPrefix(msg, "invalid argument") {
		return ExitUsage
	}
	return ExitFailure
}

// Validator is a configuration that checks itself.
type Validator interface{ Validate() error }

// Load reads a configuration into cfg (which holds the defaults): the file
// named by the --config flag or $PREFIX_CONFIG, PREFIX_* environment
// variables, then the flags of fs named in flagKeys (flag name →
// configuration key), and validates it. It returns the file ("" for
// embedded defaults). Every error is a UsageError.
func Load[T Validator](fs *pflag.FlagSet, prefix string, flagKeys map[string]string, cfg T) (string, error) {
	file, _ := fs.GetString("config")
	if file == "" {
		file = os.Getenv(prefix + "_CONFIG")
	}
	flags := map[string]*pflag.Flag{}
	for name, key := range flagKeys {
		flags[key] = fs.Lookup(name)
	}
	if err := cfgload.Load(cfgload.Options{File: file, EnvPrefix: prefix, Flags: flags, IgnoreEnv: []string{prefix + "_CONFIG"}}, cfg); err != nil {
		return file, UsageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return file, UsageError{fmt.Errorf("config: %w", err)}
	}
	return file, nil
}

// NewLogger makes the daemons' logger: level debug, info, warn or error
// (anything else is info), format "json" or text.
func NewLogger(level, format string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// VersionCmd is the `version` command of daemon name.
func VersionCmd(name string, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(stdout, "%s %s\n", name, version.String())
		},
	}
}

// NewRoot is a daemon's root command with the flags both daemons have:
// --config (default $<PREFIX>_CONFIG), --data-dir, --admin-listen,
// --log-level, --log-format and --insecure-gossip. CommonFlagKeys maps them
// to their configuration keys.
func NewRoot(name, prefix, short string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         short,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringP("config", "c", "", "YAML configuration file (default $"+prefix+"_CONFIG; none: embedded defaults)")
	pf.String("data-dir", "", "data directory (data_dir)")
	pf.String("admin-listen", "", "admin listener, 127.0.0.1:PORT or unix:/path (admin.listen)")
	pf.String("log-level", "", "debug, info, warn or error (log.level)")
	pf.String("log-format", "", "text or json (log.format)")
	pf.Bool("insecure-gossip", false, "DEVELOPMENT ONLY: run discovery gossip without encryption (discovery.insecure)")
	return root
}

// CommonFlagKeys maps the flags of NewRoot to their configuration keys.
func CommonFlagKeys(more map[string]string) map[string]string {
	keys := map[string]string{
		"data-dir":     "data_dir",
		"admin-listen": "admin.listen",
		"log-level":    "log.level",
		"log-format":   "log.format",
		// dev only: gossip without a key (discovery refuses to start otherwise)
		"insecure-gossip": "discovery.insecure",
	}
	maps.Copy(keys, more)
	return keys
}
