// Package admin serves a daemon's admin endpoints — /healthz, /metrics and
// /status — on a loopback TCP address or a unix socket, and is the client the
// status commands use to read them.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is an admin listener's address.
type Config struct {
	// Listen is "host:port" (loopback unless AllowRemote) or "unix:/path/to.sock".
	// Empty disables the listener. Default set by each daemon.
	Listen string `mapstructure:"listen"`
}

// Validate refuses non-loopback TCP addresses: the admin endpoints are not
// authenticated.
func (c Config) Validate(key string) error {
	if c.Listen == "" {
		return nil
	}
	if p, ok := strings.CutPrefix(c.Listen, "unix:"); ok {
		if p == "" {
			return fmt.Errorf("%s: unix socket path is empty", key)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: %q is not a loopback address; the admin listener is unauthenticated, use 127.0.0.1, [::1] or unix:/path", key, c.Listen)
	}
	return nil
}

// Handlers are what the listener serves.
type Handlers struct {
	// Registry holds the daemon's metrics.
	Registry *prometheus.Registry
	// Health returns nil when the daemon is healthy.
	Health func() error
	// Status returns the daemon's status as a JSON-encodable value.
	Status func() any
	// Extra handlers by path (e.g. the hub's dashboard).
	Extra map[string]http.Handler
}

// Server is a running admin listener.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen starts serving; Addr tells where.
func Listen(cfg Config, h Handlers, logger *slog.Logger) (*Server, error) {
	network, addr := "tcp", cfg.Listen
	if p, ok := strings.CutPrefix(cfg.Listen, "unix:"); ok {
		network, addr = "unix", p
		_ = os.Remove(p) // a stale socket from a killed process
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", cfg.Listen, err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o660); err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin socket %s: %w", addr, err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if h.Health != nil {
			if err := h.Health(); err != nil {
				http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
	if h.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(h.Registry, promhttp.HandlerOpts{}))
	}
	if h.Status != nil {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if err := enc.Encode(h.Status()); err != nil {
				logger.Warn("status encode", "err", err)
			}
		})
	}
	for p, hd := range h.Extra {
		mux.Handle(p, hd)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin listener stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the listening address ("127.0.0.1:port" or "unix:/path").
func (s *Server) Addr() string {
	if s.ln.Addr().Network() == "unix" {
		return "unix:" + s.ln.Addr().String()
	}
	return s.ln.Addr().String()
}

// Close stops the listener, waiting up to 2 s for requests in flight.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Get fetches path from an admin listener at addr (as in Config.Listen) and
// decodes JSON into v (or copies raw bytes when v is *[]byte).
func Get(ctx context.Context, addr, path string, v any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p)
		}}
		base = "http://admin"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("admin %s: %w (is the daemon running, and is admin.listen the same?)", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin %s%s: %w", addr, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin %s%s: %s: %s", addr, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if raw, ok := v.(*[]byte); ok {
		*raw = body
		return nil
	}
	return json.Unmarshal(body, v)
}
