// Package natsembed starts and stops an embedded nats-server the way every
// warren daemon needs it: no signal handlers, logs routed into slog, and a
// bounded wait for readiness.
package natsembed

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start runs a server with opts. It forces NoSigs and NoLog (see PITFALLS)
// and routes the server's log lines to logger.
func Start(opts *server.Options, logger *slog.Logger, ready time.Duration) (*server.Server, error) {
	return StartLogged(opts, &Logger{L: logger}, ready)
}

// StartLogged is Start with the server's log going to l (whose Hook sees
// every line from the first one on); opts.Debug and opts.Trace say which
// levels the server emits.
func StartLogged(opts *server.Options, l *Logger, ready time.Duration) (*server.Server, error) {
	opts.NoSigs = true
	opts.NoLog = true
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	s.SetLoggerV2(l, opts.Debug, opts.Trace, false)
	go s.Start()
	if !s.ReadyForConnections(ready) {
		s.Shutdown()
		s.WaitForShutdown()
		if last := l.lastError.Load(); last != nil {
			return nil, fmt.Errorf("nats-server not ready after %s: %s", ready, *last)
		}
		return nil, fmt.Errorf("nats-server not ready after %s", ready)
	}
	return s, nil
}

// Stop shuts a server down and waits for it.
func Stop(s *server.Server) {
	if s == nil {
		return
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// Logger adapts slog to nats-server's logger interface. Hook, when set, sees
// every line before it is logged (the audit uses it to count what the
// server reports only in its log).
type Logger struct {
	L         *slog.Logger
	Hook      func(level slog.Level, msg string)
	lastError atomic.Pointer[string]
}

func (l *Logger) log(level slog.Level, format string, v []any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	if level >= slog.LevelError {
		l.lastError.Store(&msg)
	}
	if l.Hook != nil {
		l.Hook(level, msg)
	}
	l.L.Log(context.Background(), level, msg)
}

// Noticef logs at info.
func (l *Logger) Noticef(format string, v ...any) { l.log(slog.LevelInfo, format, v) }

// Warnf logs at warn.
func (l *Logger) Warnf(format string, v ...any) { l.log(slog.LevelWarn, format, v) }

// Fatalf logs at error; the embedded server does not exit the process.
func (l *Logger) Fatalf(format string, v ...any) { l.log(slog.LevelError, format, v) }

// Errorf logs at error.
func (l *Logger) Errorf(format string, v ...any) { l.log(slog.LevelError, format, v) }

// Debugf logs at debug.
func (l *Logger) Debugf(format string, v ...any) { l.log(slog.LevelDebug, format, v) }

// Tracef logs at debug-4.
func (l *Logger) Tracef(format string, v ...any) { l.log(slog.LevelDebug-4, format, v) }

var _ server.Logger = (*Logger)(nil)
