package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/warren-mesh/warren/edge"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

// The security audit as a service of `edge run`: an audit.Auditor
// attached to the edge's embedded nats-server (system events on an
// in-process system-account connection, the server's log lines, the
// connection list), told about unsigned hare datagrams the UDP ingest
// refuses, asked by the edge's authenticator before every password check
// (brute-force blocks), and, with audit.mosquitto.log_file, following a
// mosquitto broker's log. Its events are stored in the EDGE stream as
// ev.warren.audit.<kind> (topic warren/audit/<kind>, source "audit"), so
// the bridge forwards them to the hub like any event.

func init() {
	registerEdgeService(edgeService{Name: "audit", Prepare: prepareAudit, Run: runAudit})
}

// edgeAuditors holds the auditor Prepare made for an env until Run.
var edgeAuditors sync.Map // *edgeEnv -> *audit.Auditor

// edgeAuditSink stores events in the EDGE stream.
func edgeAuditSink(e *edge.Edge) audit.Sink {
	return audit.JetStreamSink{
		JS:      e.JetStream(),
		Edge:    e.ID(),
		Subject: func(s string) string { return event.EdgeSubjectPrefix + s },
	}
}

func prepareAudit(env *edgeEnv) error {
	cfg := env.Cfg.Audit
	if !cfg.Enabled {
		return nil
	}
	e := env.Edge
	aud, err := audit.New(cfg, audit.Options{
		Sink:     edgeAuditSink(e),
		Logger:   env.Logger.With("component", "audit"),
		Registry: env.Reg,
		Observer: e.ID(),
	})
	if err != nil {
		return err
	}
	e.SetNATSLogHook(aud.NATSLogHook)
	e.SetLoginGuard(aud)
	e.OnUnsignedDatagram(aud.UnsignedDatagram)
	edgeAuditors.Store(env, aud)
	return nil
}

func runAudit(ctx context.Context, env *edgeEnv) error {
	v, ok := edgeAuditors.LoadAndDelete(env)
	if !ok {
		return nil // audit off
	}
	aud := v.(*audit.Auditor)
	e := env.Edge
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- aud.Run(ctx) }()
	stop := func(err error) error {
		cancel()
		<-done
		return err
	}
	sys, err := e.SystemConn("warren-edge-audit")
	if err != nil {
		return stop(err)
	}
	defer sys.Close()
	tap, err := e.InProcessConn("warren-edge-audit-tap")
	if err != nil {
		return stop(err)
	}
	defer tap.Close()
	if err := aud.Attach(e.Server(), sys, audit.AttachOptions{Tap: tap}); err != nil {
		return stop(fmt.Errorf("attach: %w", err))
	}
	if m := env.Cfg.Audit.Mosquitto; m.LogFile != "" {
		go func() {
			if err := aud.FollowMosquitto(ctx, m.Options()); err != nil && ctx.Err() == nil {
				env.Logger.Error("mosquitto log follower stopped", "component", "audit", "file", m.LogFile, "err", err)
			}
		}()
	}
	return <-done
}
