// Command edge runs a warren edge: the per-site replacement for hared and
// the local mosquitto. It stores every hare datagram (UDP 8035) and every
// MQTT publish on the ingest topics durably in an embedded JetStream, and
// forwards them to the hub over mutual TLS.
//
//	edge run [flags]              serve until SIGINT/SIGTERM
//	edge check-config [flags]     load and check the configuration; print it
//	edge status [--json] [--admin ADDR] [--wait D]
//	edge version
//
// Configuration: a YAML file (--config or EDGE_CONFIG), EDGE_* environment
// variables (EDGE_UDP_LISTEN for udp.listen) and the flags below; see
// edge.Config for every key.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/warren-mesh/warren/bridge"
	"github.com/warren-mesh/warren/edge"
	"github.com/warren-mesh/warren/internal/cfgload"
	"github.com/warren-mesh/warren/internal/cli"
	"github.com/warren-mesh/warren/internal/version"
	"github.com/warren-mesh/warren/internal/wire"
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
	return cli.Execute("edge", newRoot(stdout, stderr), args, stderr)
}

// flagKeys maps the configuration flags to their keys.
var flagKeys = cli.CommonFlagKeys(map[string]string{
	"id":          "id",
	"udp-listen":  "udp.listen",
	"mqtt-listen": "mqtt.listen",
	"hub-url":     "hub.url",
})

// globals are the flags every command has.
type globals struct {
	flags *pflag.FlagSet
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := cli.NewRoot("edge", "EDGE", "warren edge: durable hare/MQTT ingest and store-and-forward to the hub", stdout, stderr)
	pf := root.PersistentFlags()
	pf.String("id", "", "edge id (id; default: the host name)")
	pf.String("udp-listen", "", "hare datagram listener, host:port (udp.listen)")
	pf.String("mqtt-listen", "", "MQTT listener, host:port (mqtt.listen)")
	pf.String("hub-url", "", "hub address, tls://host:port (hub.url)")
	g := &globals{flags: pf}

	root.AddCommand(
		runCmd(g, stderr),
		checkConfigCmd(g, stdout),
		statusCmd(g, stdout),
		cli.VersionCmd("edge", stdout),
	)
	return root
}

// load reads the configuration: defaults, file, EDGE_* environment, flags.
func (g *globals) load() (edge.Config, string, error) {
	cfg := edge.DefaultConfig()
	file, err := cli.Load(g.flags, "EDGE", flagKeys, &cfg)
	return cfg, file, err
}

func newLogger(c edge.LogConfig, w io.Writer) *slog.Logger {
	return cli.NewLogger(c.Level, c.Format, w)
}

func runCmd(g *globals, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "run the edge until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, file, err := g.load()
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, stderr)
			if file == "" {
				file = "(none: embedded defaults)"
			}
			// SIGHUP reloads keys; caught from the start so an early one
			// (e.g. a reload by the service manager) never ends the edge.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			logger.Info("edge starting", "version", version.String(), "config", file, "id", cfg.ID, "data_dir", cfg.DataDir)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, logger, hup)
		},
	}
}

// serve runs the edge and its bridge until ctx ends. Each value on hup
// reloads the hare keys (udp.keys_file) and what services registered in
// edgeEnv.OnReload (the gossip keyring).
func serve(ctx context.Context, cfg edge.Config, logger *slog.Logger, hup <-chan os.Signal) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e, err := edge.New(cfg, logger, reg)
	if err != nil {
		return usageError{Err: err}
	}
	if err := e.Start(ctx); err != nil {
		return err
	}

	env := &edgeEnv{Cfg: cfg, Edge: e, Logger: logger, Reg: reg}
	for _, s := range edgeServices {
		if s.Prepare == nil {
			continue
		}
		if err := s.Prepare(env); err != nil {
			e.Close()
			return usageError{Err: fmt.Errorf("%s: %w", s.Name, err)}
		}
	}

	// The bridge reads the EDGE stream through e (bridge.Source) and
	// forwards to the hub.
	b, err := bridge.New(cfg.Hub, e, logger, reg, env.BridgeOpts...)
	if err != nil {
		e.Close()
		return usageError{Err: err}
	}
	env.Bridge = b
	e.SetLinkStatus(func() any { return b.Status() })
	bctx, bcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := b.Run(bctx); err != nil {
			logger.Error("bridge stopped", "err", err)
		}
	})
	sctx, scancel := context.WithCancel(context.Background())
	var swg sync.WaitGroup
	for _, s := range edgeServices {
		if s.Run == nil {
			continue
		}
		swg.Go(func() {
			if err := s.Run(sctx, env); err != nil {
				logger.Error("service stopped", "service", s.Name, "err", err)
			}
		})
	}

	logger.Info("edge ready", "udp", e.UDPAddr(), "mqtt", e.MQTTAddr(), "admin", e.AdminAddr(), "epoch", e.Epoch())
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			waiting = false
		case <-hup:
			reload(e, env, logger)
		}
	}
	logger.Info("edge stopping")
	scancel()
	swg.Wait()
	// The bridge goes next: it reads the edge stream the edge closes.
	bcancel()
	wg.Wait()
	err = e.Close()
	logger.Info("edge stopped")
	return err
}

func checkConfigCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "load and check the configuration and the files it names; print the effective configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, file, err := g.load()
			if err != nil {
				return err
			}
			if err := checkFiles(cfg, stdout); err != nil {
				return usageError{Err: err}
			}
			if file == "" {
				file = "no file, embedded defaults"
			}
			fmt.Fprintf(stdout, "# config ok (%s)\n", file)
			cli.PrintConfig(stdout, cfg)
			return nil
		},
	}
}

// checkFiles reads every file the configuration names (without printing
// any content), so check-config catches a missing key or password file.
func checkFiles(cfg edge.Config, warn io.Writer) error {
	if cfg.UDP.KeysFile != "" {
		if err := wire.CheckKeyFileMode(cfg.UDP.KeysFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(warn, "# warning: udp.keys_file: %v\n", err)
		}
	}
	var errs []error
	if cfg.UDP.KeysFile != "" {
		if _, err := wire.LoadKeys(cfg.UDP.KeysFile); err != nil {
			errs = append(errs, fmt.Errorf("udp.keys_file: %w", err))
		}
	}
	for i, u := range cfg.MQTT.Users {
		if _, err := cfgload.ReadSecret(fmt.Sprintf("mqtt.users[%d].password_file", i), u.PasswordFile); err != nil {
			errs = append(errs, err)
		}
	}
	for key, path := range map[string]string{"mqtt.tls.cert_file": cfg.MQTT.TLS.CertFile, "mqtt.tls.key_file": cfg.MQTT.TLS.KeyFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	if err := checkDiscovery(cfg); err != nil {
		errs = append(errs, err)
	}
	if cfg.Hub.URL != "" {
		if _, err := bridge.New(cfg.Hub, nopSource{cfg.ID}, nil, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nopSource lets check-config build a bridge (which loads the TLS files)
// without an edge.
type nopSource struct{ id string }

func (nopSource) JetStream() jetstream.JetStream { return nil }
func (s nopSource) EdgeID() string               { return s.id }
func (nopSource) Epoch() string                  { return "check" }

var (
	_ bridge.Source          = (*edge.Edge)(nil)
	_ bridge.Source          = nopSource{}
	_ bridge.StoreFullSource = (*edge.Edge)(nil)
)
