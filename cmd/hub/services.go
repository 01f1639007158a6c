package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/hub"
)

// hubEnv is what `hub run` hands to the services that run inside the hub
// (notifier, discovery, audit, dashboard, ...).
type hubEnv struct {
	Hub    *hub.Hub
	Cfg    hub.Config
	File   string // the configuration file, "" for embedded defaults
	Logger *slog.Logger
	Reg    *prometheus.Registry
	// Load reads the configuration again exactly as `hub run` did (file,
	// HUB_* environment, flags), for services that reload.
	Load func() (hub.Config, error)
}

// hubService is one part of `hub run`. Services register themselves with
// registerHubService from an init function in their own file. Attach runs
// after hub.New and before Run: it checks its configuration (an error
// exits 2) and hooks in through Hub.Go, Hub.HandleAdmin, Hub.OnEdgeLink.
type hubService struct {
	Name   string
	Attach func(env *hubEnv) error
}

var hubServices []hubService

func registerHubService(s hubService) { hubServices = append(hubServices, s) }
