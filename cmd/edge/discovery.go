package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/warren-mesh/warren/bridge"
	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/edge"
	"github.com/warren-mesh/warren/internal/version"
)

// The discovery service: when the configuration turns discovery on
// (discovery.enabled, seeds, key_files or --insecure-gossip), the edge joins
// the gossip cluster, the bridge dials where gossip sees the hub on every
// (re)connect (falling back to hub.url), and the edge advertises its id,
// version, backlog and hub-link state. `edge status` shows the view.
func init() {
	var node *discovery.Node
	registerEdgeService(edgeService{
		Name: "discovery",
		Prepare: func(env *edgeEnv) error {
			dc := env.Cfg.DiscoveryConfig()
			if !dc.Active() {
				return nil
			}
			n, err := discovery.New(dc, edgeMeta(env.Cfg.ID, bridge.LinkStatus{State: "connecting"}), env.Logger)
			if err != nil {
				return err
			}
			if err := env.Reg.Register(discovery.NewCollector(n)); err != nil {
				return err
			}
			// Start now, so the bridge's first dial may already know the hub.
			if err := n.Start(context.Background()); err != nil {
				return err
			}
			node = n
			env.BridgeOpts = append(env.BridgeOpts, bridge.WithHubAddrs(n.HubURLs))
			env.Edge.SetDiscoveryStatus(func() any { return n.View() })
			env.OnReload = append(env.OnReload, func() {
				if err := n.ReloadKeys(); err != nil {
					env.Logger.Error("gossip keys not reloaded", "component", "discovery", "err", err)
					return
				}
				env.Logger.Info("gossip keys reloaded", "component", "discovery", "primary", n.Keyring().Primary)
			})
			return nil
		},
		Run: func(ctx context.Context, env *edgeEnv) error {
			if node == nil {
				return nil
			}
			return runEdgeDiscovery(ctx, env, node)
		},
	})
}

func edgeMeta(id string, ls bridge.LinkStatus) discovery.Meta {
	return discovery.Meta{
		Role:    discovery.RoleEdge,
		ID:      id,
		Version: discovery.Token(version.Version),
		Backlog: ls.BacklogMsgs,
		Link:    discovery.LinkFromBridge(ls.State),
	}
}

// metaRefresh is how often the bridge's state is copied into the edge's
// metadata; the node broadcasts a change at most every
// discovery.meta_update_interval.
const metaRefresh = time.Second

// runEdgeDiscovery keeps the advertised metadata current until ctx ends,
// then leaves the cluster (others record the edge as left, not failed).
func runEdgeDiscovery(ctx context.Context, env *edgeEnv, n *discovery.Node) error {
	defer n.Shutdown()
	t := time.NewTicker(metaRefresh)
	defer t.Stop()
	update := func() {
		if env.Bridge == nil {
			return
		}
		if err := n.UpdateMeta(edgeMeta(env.Cfg.ID, env.Bridge.Status())); err != nil {
			env.Logger.Warn("discovery metadata not updated", "component", "discovery", "err", err)
		}
	}
	update()
	for {
		select {
		case <-ctx.Done():
			if err := n.Leave(2 * time.Second); err != nil && !errors.Is(err, discovery.ErrShutdown) {
				env.Logger.Warn("leaving the gossip cluster", "component", "discovery", "err", err)
			}
			return nil
		case <-t.C:
			update()
		}
	}
}

// printDiscovery writes the discovery view for people: the hub chosen and
// why, then every member.
func printDiscovery(w io.Writer, v discovery.View, now time.Time) {
	enc := "encrypted, primary key " + v.Keyring.Primary
	if !v.Keyring.Encrypted {
		enc = "NOT ENCRYPTED (insecure)"
	}
	fmt.Fprintf(w, "\ndiscovery  node %s at %s  label %s  %s\n", v.Node, v.Addr, v.Label, enc)
	fmt.Fprintf(w, "  seeds    %s\n", strings.Join(v.Seeds, ", "))
	if v.Hub != nil {
		fmt.Fprintf(w, "  hub      %s at %s (%s)  dials %s  tls name %s\n", v.Hub.Name, v.Hub.Addr, v.HubWhy,
			strings.Join(v.HubURLs, ", "), v.Hub.ServerName)
	} else {
		fmt.Fprintf(w, "  hub      none (%s): the bridge dials hub.url only\n", v.HubWhy)
	}
	c := v.Counters
	fmt.Fprintf(w, "  members  %d alive, %d dead, %d left; joins %d, failed %d, re-joins %d; refused: wrong key %d, unencrypted %d, wrong label %d\n",
		c.Alive, c.Dead, c.Left, c.Joins, c.JoinFailures, c.Rejoins, c.RefusedWrongKey, c.RefusedUnencrypted, c.RefusedLabel)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tROLE\tSTATE\tADDRESS\tVERSION\tLINK\tBACKLOG\tSINCE")
	for _, m := range v.Members {
		name := m.Name
		if m.Self {
			name += " (self)"
		}
		role := string(m.Role)
		if m.MetaErr != "" {
			role = "bad metadata"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, dashed(role), m.State, m.Addr, dashed(m.Version),
			dashed(string(m.Link)), m.Backlog, now.Sub(m.Since).Round(time.Second).String()+" ago")
	}
	tw.Flush()
}

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkDiscovery loads the gossip key files when discovery is on (for
// check-config); it touches no network.
func checkDiscovery(cfg edge.Config) error {
	dc := cfg.DiscoveryConfig()
	if !dc.Active() {
		return nil
	}
	_, err := discovery.New(dc, edgeMeta(cfg.ID, bridge.LinkStatus{}), nil)
	return err
}
