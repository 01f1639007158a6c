// Command hub runs warren's hub: the home end of the mesh that edges
// forward their events to over mutual TLS, which stores them once, serves
// them to MQTT clients and reports its state.
//
//	hub run                      serve until SIGINT/SIGTERM
//	hub check-config             load and check the configuration and files
//	hub status [--json] [--wait D]
//	hub edges [--json]           edges seen by the running hub
//	hub pki init [--force] [--san NAME|IP]...
//	hub pki issue EDGE-ID [--force] [--out DIR]
//	hub pki list [--json]
//	hub notify test --topic T --payload P [--edge E] [--source S] [--send] [--json]
//	hub notify check | import-mqttwarn FILE.ini
//	hub version
//
// Configuration: a YAML file (--config or HUB_CONFIG), HUB_* environment
// variables (HUB_NATS_LISTEN for nats.listen) and a few flags; see
// hub.Config for every key.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/internal/cli"
	"github.com/warren-mesh/warren/internal/version"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit codes and usage errors: see internal/cli.
const (
	exitOK      = cli.ExitOK
	exitFailure = cli.ExitFailure
	exitUsage   = cli.ExitUsage
)

type usageError = cli.UsageError

func run(args []string, stdout, stderr io.Writer) int {
	return cli.Execute("hub", newRoot(stdout, stderr), args, stderr)
}

// globals are the flags every command has.
type globals struct {
	flags *pflag.FlagSet
}

// flagKeys maps persistent flags to configuration keys.
var flagKeys = cli.CommonFlagKeys(map[string]string{"pki-dir": "pki_dir"})

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := cli.NewRoot("hub", "HUB", "warren hub: receives, stores and republishes every edge event", stdout, stderr)
	pf := root.PersistentFlags()
	pf.String("pki-dir", "", "PKI directory (pki_dir; default <data_dir>/pki)")
	g := &globals{flags: pf}

	root.AddCommand(
		runCmd(g, stderr),
		checkConfigCmd(g, stdout),
		statusCmd(g, stdout),
		edgesCmd(g, stdout),
		pkiCmd(g, stdout),
		notifyCmd(g, stdout, stderr),
		cli.VersionCmd("hub", stdout),
	)
	return root
}

// load reads the configuration: defaults, file, HUB_* environment, flags.
func (g *globals) load() (hub.Config, string, error) {
	cfg := hub.DefaultConfig()
	file, err := cli.Load(g.flags, "HUB", flagKeys, &cfg)
	return cfg, file, err
}

func newLogger(c hub.LogConfig, w io.Writer) *slog.Logger {
	return cli.NewLogger(c.Level, c.Format, w)
}

func runCmd(g *globals, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "run the hub until SIGINT or SIGTERM (SIGHUP reloads the notify section and the gossip keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// SIGHUP is caught from the start, so one that arrives before
			// the services that reload on it are up never ends the hub; the
			// services (notify, discovery) take their own copies.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			go func() {
				for range hup {
				}
			}()
			defer func() { signal.Stop(hup); close(hup) }() // no send after Stop
			cfg, file, err := g.load()
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, stderr)
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			h, err := hub.New(cfg, logger, reg)
			if err != nil {
				return usageError{Err: err}
			}
			env := &hubEnv{Hub: h, Cfg: cfg, File: file, Logger: logger, Reg: reg,
				Load: func() (hub.Config, error) { c, _, err := g.load(); return c, err }}
			for _, s := range hubServices {
				if err := s.Attach(env); err != nil {
					return usageError{Err: fmt.Errorf("%s: %w", s.Name, err)}
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if file == "" {
				file = "(none: embedded defaults)"
			}
			logger.Info("hub starting", "version", version.String(), "config", file, "data_dir", cfg.DataDir)
			if err := h.Run(ctx); err != nil {
				return err
			}
			logger.Info("hub stopped")
			return nil
		},
	}
}

func checkConfigCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "check the configuration, the PKI and the password files without starting anything",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, file, err := g.load()
			if err != nil {
				return err
			}
			if _, err := hub.New(cfg, slog.New(slog.DiscardHandler), nil); err != nil {
				return usageError{Err: err}
			}
			if err := checkDiscovery(cfg); err != nil {
				return usageError{Err: err}
			}
			notifySummary, err := checkNotify(cfg, file)
			if err != nil {
				return usageError{Err: err}
			}
			if file == "" {
				file = "no file, embedded defaults"
			}
			fmt.Fprintf(stdout, "# config ok (%s)\n", file)
			fmt.Fprintf(stdout, "#   data_dir %s, pki_dir %s (dev_pki %v)\n", cfg.DataDir, cfg.PKIPath(), cfg.DevPKI)
			fmt.Fprintf(stdout, "#   nats %s (TLS >= %s), mqtt %s, mqtt tls %s, admin %s\n",
				cfg.NATS.Listen, cfg.NATS.TLSMinVersion, orOff(cfg.MQTT.Listen), orOff(cfg.MQTT.TLSListen), orOff(cfg.Admin.Listen))
			fmt.Fprintf(stdout, "#   stream duplicate window %s, %d MQTT users\n", cfg.Stream.DuplicateWindow, len(cfg.MQTT.Users))
			fmt.Fprintf(stdout, "#   discovery %s\n", discoverySummary(cfg))
			fmt.Fprintf(stdout, "#   notify %s\n", notifySummary)
			// The notify section is the file's own text (its secrets are
			// inline values a generic printer cannot tell apart); `hub
			// notify check` shows what it compiles to.
			cli.PrintConfig(stdout, cfg, "notify")
			return nil
		},
	}
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}
