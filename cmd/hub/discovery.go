package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/version"
)

// The discovery service: when the configuration turns discovery on
// (discovery.enabled, seeds, key_files or --insecure-gossip), the hub joins
// the gossip cluster advertising its NATS URL(s) and TLS server name, so
// edges find it wherever it runs; its fleet view (`hub edges`, status)
// merges the gossip members with the NATS connections; refused gossip (a
// node with a wrong key) is logged and counted
// (warren_discovery_refused_total{reason="wrong_key"}); GET /discovery on the
// admin listener serves the discovery view.
func init() {
	registerHubService(hubService{Name: "discovery", Attach: attachDiscovery})
}

func attachDiscovery(env *hubEnv) error {
	dc := env.Cfg.DiscoveryConfig()
	if !dc.Active() {
		return nil
	}
	// The NATS port is known only once the hub listens (nats.listen may say
	// port 0); New needs a URL to check the configuration and load the keys,
	// the real one replaces it before Start.
	urls, err := hubNATSURLs(env.Cfg, env.Cfg.NATS.Listen)
	if err != nil {
		return err
	}
	n, err := discovery.New(dc, hubMeta(env.Cfg, urls), env.Logger)
	if err != nil {
		return err
	}
	if err := env.Reg.Register(discovery.NewCollector(n)); err != nil {
		return err
	}
	h := env.Hub
	h.HandleAdmin("GET /discovery", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(n.View())
	}))
	h.SetFleetSource(n.Members)
	h.Go("discovery", func(ctx context.Context) error {
		defer n.Shutdown()
		urls, err := hubNATSURLs(env.Cfg, h.Addrs().NATS)
		if err != nil {
			return err
		}
		if err := n.UpdateMeta(hubMeta(env.Cfg, urls)); err != nil {
			return err
		}
		if err := n.Start(ctx); err != nil {
			return err
		}
		env.Logger.Info("discovery: advertising the hub", "component", "discovery", "gossip", n.LocalAddr(), "nats_urls", urls)
		// SIGHUP reloads the gossip key files: install a new key as a second
		// file, reload everywhere, make it the first, reload, remove the old.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				waiting = false
			case <-hup:
				if err := n.ReloadKeys(); err != nil {
					env.Logger.Error("gossip keys not reloaded", "component", "discovery", "err", err)
				} else {
					env.Logger.Info("gossip keys reloaded", "component", "discovery", "primary", n.Keyring().Primary)
				}
			}
		}
		if err := n.Leave(2 * time.Second); err != nil && !errors.Is(err, discovery.ErrShutdown) {
			env.Logger.Warn("leaving the gossip cluster", "component", "discovery", "err", err)
		}
		return nil
	})
	return nil
}

func hubMeta(cfg hub.Config, urls []string) discovery.Meta {
	return discovery.Meta{
		Role:          discovery.RoleHub,
		ID:            discovery.Token(cfg.ServerName),
		Version:       discovery.Token(version.Version),
		NATSURLs:      urls,
		TLSServerName: pki.DefaultServerName,
	}
}

// hubNATSURLs is what the hub advertises: discovery.advertise_nats, or
// tls://<host of nats.listen>:<port of bound>. An empty or unspecified host
// stays 0.0.0.0, which edges read as "the address I see the hub's gossip
// on"; so does a bound port of 0 before the hub listens (4222 then).
func hubNATSURLs(cfg hub.Config, bound string) ([]string, error) {
	if len(cfg.Discovery.AdvertiseNATS) > 0 {
		return cfg.Discovery.AdvertiseNATS, nil
	}
	host, _, err := net.SplitHostPort(cfg.NATS.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats.listen: %w", err)
	}
	_, port, err := net.SplitHostPort(bound)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", bound, err)
	}
	if port == "0" {
		port = "4222"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "0.0.0.0"
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	return []string{"tls://" + net.JoinHostPort(host, port)}, nil
}

// checkDiscovery loads the gossip key files and checks the advertised URLs
// when discovery is on (for check-config); it touches no network.
func checkDiscovery(cfg hub.Config) error {
	dc := cfg.DiscoveryConfig()
	if !dc.Active() {
		return nil
	}
	urls, err := hubNATSURLs(cfg, cfg.NATS.Listen)
	if err != nil {
		return err
	}
	_, err = discovery.New(dc, hubMeta(cfg, urls), nil)
	return err
}

// discoverySummary is check-config's line about discovery.
func discoverySummary(cfg hub.Config) string {
	dc := cfg.DiscoveryConfig()
	if !dc.Active() {
		return "off (set discovery.key_files to advertise the hub to edges)"
	}
	enc := fmt.Sprintf("%d key file(s)", len(dc.KeyFiles))
	if len(dc.KeyFiles) == 0 {
		enc = "NOT ENCRYPTED (insecure)"
	}
	urls, _ := hubNATSURLs(cfg, cfg.NATS.Listen)
	return fmt.Sprintf("gossip on %s as %q, label %q, %s, profile %s, seeds %v, advertising %v",
		net.JoinHostPort(dc.BindAddr, fmt.Sprint(dc.BindPort)), dc.NodeName, dc.Label, enc, dc.Profile, dc.Seeds, urls)
}
