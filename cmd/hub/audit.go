package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/dashboard"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

// The security audit and the dashboard as services of `hub run`.
//
// Audit: an audit.Auditor attached to the hub's embedded nats-server
// (system events on a warren-sys connection, the server's log lines, the
// connection list), told by the hub about refused edge identities and
// edge heartbeats (versions), and asked by the hub's authenticator before
// every MQTT password check (brute-force blocks). Its events are stored in
// the HUB stream as hub.ev.<EventID>.warren.audit.<kind> (topic
// warren/audit/<kind>), where the notifier and the dashboard read them
// like any edge's events.
//
// Dashboard: a dashboard.Aggregator fed by dashboard.Follow from the HUB
// stream (every edge's events and audit, and the hub's own), with the
// hub's edge list as the fleet, served on the admin listener at
// dashboard.path.

func init() {
	registerHubService(hubService{Name: "audit", Attach: attachAudit})
	registerHubService(hubService{Name: "dashboard", Attach: attachDashboard})
}

// hubAuditSink is the Sink of the hub's auditor.
func hubAuditSink(h *hub.Hub) audit.Sink {
	id := h.EventID()
	return audit.SinkFunc(func(ctx context.Context, ev audit.Event) error {
		js := h.JetStream()
		if js == nil {
			return hub.ErrNotRunning
		}
		return audit.JetStreamSink{JS: js, Edge: id, Subject: func(s string) string { return event.HubSubject(id, s) }}.Emit(ctx, ev)
	})
}

// attachAudit makes the hub's auditor and hooks it in; it runs as a hub
// service.
func attachAudit(env *hubEnv) error {
	cfg := env.Cfg.Audit
	if !cfg.Enabled {
		return nil
	}
	h := env.Hub
	log := env.Logger.With("component", "audit")
	aud, err := audit.New(cfg, audit.Options{
		Sink:     hubAuditSink(h),
		Logger:   log,
		Registry: env.Reg,
		Observer: h.EventID(),
	})
	if err != nil {
		return err
	}
	h.AddNATSLogHook(aud.NATSLogHook)
	h.SetLoginGuard(aud)
	h.OnUnknownEdge(aud.UnknownEdge)
	h.OnHeartbeat(func(hb hub.Heartbeat) {
		aud.EdgeVersion(hb.ID, hb.Version, "")
		aud.EdgeStoreFull(hb.ID, hb.StoreFull)
	})
	h.Go("audit", func(ctx context.Context) error { return runHubAudit(ctx, h, aud, log) })
	return nil
}

// runHubAudit attaches aud to the running hub's server and runs it until
// ctx ends.
func runHubAudit(ctx context.Context, h *hub.Hub, aud *audit.Auditor, log *slog.Logger) error {
	s := h.Server()
	if s == nil {
		return hub.ErrNotRunning
	}
	sys, err := h.ConnectSystem("warren-hub-audit")
	if err != nil {
		return err
	}
	defer sys.Close()
	tap, err := h.Connect("warren-hub-audit-tap")
	if err != nil {
		return err
	}
	defer tap.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- aud.Run(ctx) }()
	err = aud.Attach(s, sys, audit.AttachOptions{
		Tap: tap,
		Describe: func(r audit.ConnRef) (audit.ConnDetail, bool) {
			return h.DescribeConn(r.CID, r.Port)
		},
	})
	if err != nil {
		cancel()
		<-done
		return fmt.Errorf("attach: %w", err) // the hub stops
	}
	if m := h.Config().Audit.Mosquitto; m.LogFile != "" {
		go func() {
			if err := aud.FollowMosquitto(ctx, m.Options()); err != nil && ctx.Err() == nil {
				log.Error("mosquitto log follower stopped", "file", m.LogFile, "err", err)
			}
		}()
	}
	return <-done
}

// attachDashboard mounts the dashboard on the admin listener.
func attachDashboard(env *hubEnv) error {
	dc := env.Cfg.Dashboard
	if !dc.Enabled || env.Cfg.Admin.Listen == "" {
		return nil
	}
	h := env.Hub
	acfg := dashboard.DefaultAggregatorConfig()
	acfg.Retention = dc.Retention
	acfg.HubID = h.EventID()
	agg, err := dashboard.NewAggregator(acfg)
	if err != nil {
		return err
	}
	agg.SetFleet(func() []dashboard.Edge { return fleetOf(h.Edges()) })
	h.HandleAdmin("GET "+dc.Path, dashboard.New(agg, dashboard.Options{
		Title:     dc.Title,
		Window:    dc.Window,
		Step:      dc.Step,
		MaxWindow: max(dc.Retention, dc.Window),
		Refresh:   dc.Refresh,
		Logger:    env.Logger.With("component", "dashboard"),
	}))
	h.Go("dashboard", func(ctx context.Context) error {
		for {
			err := dashboard.Follow(ctx, h.JetStream(), agg, dashboard.FollowOptions{Since: dc.Retention})
			if err == nil || ctx.Err() != nil {
				return nil
			}
			// The dashboard is not worth stopping the hub for.
			env.Logger.Warn("dashboard cannot read the stream; retrying", "component", "dashboard", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	})
	return nil
}

// fleetOf converts the hub's edge list for the dashboard.
func fleetOf(edges []hub.EdgeStatus) []dashboard.Edge {
	out := make([]dashboard.Edge, 0, len(edges))
	for _, e := range edges {
		out = append(out, dashboard.Edge{
			ID: e.ID, Connected: e.Connected, Address: e.Address, Version: e.Version,
			TLSVersion: e.TLSVersion, LastSeen: e.LastSeen, BacklogMsgs: e.BacklogMsgs,
		})
	}
	return out
}
