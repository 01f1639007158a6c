package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/bridge"
	"github.com/warren-mesh/warren/edge"
)

// edgeEnv is what `edge run` hands to the services that run beside the
// edge and its bridge (discovery, audit, ...).
type edgeEnv struct {
	Cfg    edge.Config
	Edge   *edge.Edge
	Logger *slog.Logger
	Reg    *prometheus.Registry
	// BridgeOpts are passed to bridge.New; a service's Prepare may add to them.
	BridgeOpts []bridge.Option
	// Bridge is set after Prepare, before Run.
	Bridge *bridge.Bridge
	// OnReload are called on SIGHUP, after the hare keys are reloaded.
	OnReload []func()
}

// reload is what SIGHUP does: read udp.keys_file again (a new host's key
// needs no restart), then the services' reloads (discovery: the gossip key
// files, for rotation without downtime). Failures keep what is in use and
// are logged.
func reload(e *edge.Edge, env *edgeEnv, logger *slog.Logger) {
	logger.Info("SIGHUP: reloading keys")
	if env.Cfg.UDP.KeysFile != "" {
		if n, err := e.ReloadKeys(); err != nil {
			logger.Error("udp.keys_file not reloaded", "err", err)
		} else {
			logger.Info("hare keys reloaded", "file", env.Cfg.UDP.KeysFile, "keys", n)
		}
	}
	for _, f := range env.OnReload {
		f()
	}
}

// edgeService is one optional part of `edge run`. Services register
// themselves with registerEdgeService from an init function in their own
// file, so adding one does not touch serve.
type edgeService struct {
	Name string
	// Prepare runs after the edge started and before the bridge is made.
	// An error stops the edge (configuration errors exit 2).
	Prepare func(env *edgeEnv) error
	// Run runs until ctx ends; it is cancelled before the bridge stops.
	// Nil: nothing to run.
	Run func(ctx context.Context, env *edgeEnv) error
}

var edgeServices []edgeService

func registerEdgeService(s edgeService) { edgeServices = append(edgeServices, s) }
