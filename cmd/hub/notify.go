package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"

	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/notify"
)

// The notifier as a service of `hub run`, its hot reload, and the `hub
// notify` commands.

func init() {
	registerHubService(hubService{Name: "notify", Attach: attachNotify})
}

// notificationsFile is the file target of the embedded defaults, under
// data_dir.
const notificationsFile = "notifications.log"

// Texts of the default login route (mqttwarn style).
const (
	defaultLoginTitle  = "login {user} on {hostname}"
	defaultLoginFormat = "login {user} on {hostname} from {rhost}"
	defaultAlertTitle  = "warren security alert: {rule}"
	defaultAlertFormat = "security alert {rule} seen by {observer}: {message}"
)

// defaultNotify is the notifier configuration used when there is none:
// every hare login as a log line (and, with no config file at all, as a
// line of data_dir/notifications.log), and "site offline" alerts as log
// lines, plus the audit's security alerts (warren/audit/alert/#) to the
// same targets as logins. Other events (e.g. the audit's connect events,
// one per connection) are not notified: a catch-all would flood the log.
func defaultNotify(dataDir string, withFile bool) map[string]any {
	loginTargets := []any{"log"}
	targets := map[string]any{"log": map[string]any{"type": "log"}}
	if withFile {
		targets["file"] = map[string]any{"type": "file", "config": map[string]any{
			"path": filepath.Join(dataDir, notificationsFile),
		}}
		loginTargets = append(loginTargets, "file")
	}
	return map[string]any{
		"targets": targets,
		"routes": []any{
			map[string]any{
				"name":    "logins",
				"match":   map[string]any{"topic": []any{"logging/hare"}},
				"targets": loginTargets,
				"title":   defaultLoginTitle,
				"format":  defaultLoginFormat,
			},
			// Security alerts of the audit (brute force, plain remote
			// connections, unknown edges, ...), from every edge and the
			// hub; the audit already rate-limits them per key.
			map[string]any{
				"name":     "audit-alerts",
				"match":    map[string]any{"topic": []any{"warren/audit/alert/#"}},
				"targets":  loginTargets,
				"title":    defaultAlertTitle,
				"format":   defaultAlertFormat,
				"priority": "1",
			},
		},
		"offline": map[string]any{"targets": []any{"log"}},
	}
}

// loadNotify returns the notifier configuration of a hub configuration
// loaded from file ("" for embedded defaults) and says where it came from.
// The section is read from the file itself when there is one, so map keys
// (target names) keep their case.
func loadNotify(cfg hub.Config, file string) (notify.Config, string, error) {
	raw, origin := cfg.Notify, "notify section"
	if file != "" {
		sec, ok, err := notify.ReadSection(file)
		if err != nil {
			return notify.Config{}, "", err
		}
		raw = nil
		if ok {
			raw = sec
		}
	}
	if len(raw) == 0 {
		raw, origin = defaultNotify(cfg.DataDir, file == ""), "default: logins and security alerts to the log"
		if file == "" {
			origin = "embedded default: logins and security alerts to the log and " + filepath.Join(cfg.DataDir, notificationsFile)
		}
	}
	nc, err := notify.Parse(raw)
	if err != nil {
		return notify.Config{}, "", notifyError(err)
	}
	return nc, origin, nil
}

// mqttURL is the broker URL of the hub's loopback MQTT listener at addr
// (host:port), or "" when MQTT is off.
func mqttURL(addr string) string {
	if addr == "" {
		return ""
	}
	return "tcp://" + addr
}

var keyPathRE = regexp.MustCompile(`^[A-Za-z_][\w.\[\]-]*: `)

// notifyError writes the keys of notify's errors as hub configuration
// keys, one problem per line: "routes[0].format: ..." becomes
// "notify.routes[0].format: ...".
func notifyError(err error) error {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		for _, p := range strings.Split(strings.TrimPrefix(l, "notify config: "), "; ") {
			if keyPathRE.MatchString(p) {
				lines = append(lines, "notify."+p)
			} else {
				lines = append(lines, "notify: "+p)
			}
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// buildStandalone validates nc fully (targets built, secret files read)
// without a running hub. The caller closes the engine.
func buildStandalone(cfg hub.Config, nc notify.Config, logger *slog.Logger) (*notify.Engine, error) {
	e, err := notify.New(nc, notify.Deps{Logger: logger, Standalone: true, HubMQTT: mqttURL(cfg.MQTT.Listen)})
	if err != nil {
		return nil, notifyError(err)
	}
	return e, nil
}

// checkNotify is check-config's part: it validates the notify section and
// returns a one-line summary.
func checkNotify(cfg hub.Config, file string) (string, error) {
	nc, origin, err := loadNotify(cfg, file)
	if err != nil {
		return "", err
	}
	e, err := buildStandalone(cfg, nc, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", err
	}
	e.Close()
	return fmt.Sprintf("%d targets, %d routes (%s)", len(nc.Targets), len(nc.Routes), origin), nil
}

func attachNotify(env *hubEnv) error {
	nc, origin, err := loadNotify(env.Cfg, env.File)
	if err != nil {
		return err
	}
	// Build once without the hub to fail at start (exit 2) on bad targets
	// or secret files; the engine that runs needs the hub's connection.
	e, err := buildStandalone(env.Cfg, nc, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	e.Close()
	// A second back covers clock granularity between this and the stream's
	// timestamps of the first events.
	s := &notifyService{env: env, hubCfg: env.Cfg, cfg: nc, started: time.Now().Add(-time.Second)}
	env.Hub.OnEdgeLink(s.edgeLink)
	env.Hub.HandleAdmin("GET /notify", http.HandlerFunc(s.serveStatus))
	env.Hub.Go("notify", s.run)
	env.Logger.Info("notifier configured", "targets", len(nc.Targets), "routes", len(nc.Routes), "from", origin)
	return nil
}

// notifyService runs the engine inside `hub run` and reloads it.
type notifyService struct {
	env *hubEnv

	mu      sync.Mutex // engine and pending; never held for long
	engine  *notify.Engine
	pending []linkChange // edge link changes before the engine exists

	reloadMu sync.Mutex    // serialises reloads; guards hubCfg and cfg
	hubCfg   hub.Config    // the configuration last loaded
	cfg      notify.Config // the notify configuration in force

	started time.Time // before the hub started: where a new consumer begins
}

type linkChange struct {
	id string
	up bool
	at time.Time
}

// edgeLink runs on the hub's event goroutine: it must not block.
func (s *notifyService) edgeLink(id string, up bool, at time.Time) {
	s.mu.Lock()
	e := s.engine
	if e == nil && len(s.pending) < 1024 {
		s.pending = append(s.pending, linkChange{id, up, at})
	}
	s.mu.Unlock()
	if e != nil {
		e.EdgeLinkChanged(id, up, at)
	}
}

func (s *notifyService) run(ctx context.Context) error {
	h := s.env.Hub
	s.reloadMu.Lock()
	e, err := notify.New(s.cfg, notify.Deps{JS: h.JetStream(), NC: h.Conn(), Logger: s.env.Logger, Registry: s.env.Reg, StartTime: s.started, HubMQTT: mqttURL(h.Addrs().MQTT)})
	if err != nil {
		s.reloadMu.Unlock()
		return err
	}
	defer e.Close()
	s.mu.Lock()
	s.engine = e
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.reloadMu.Unlock()
	for _, c := range pending {
		e.EdgeLinkChanged(c.id, c.up, c.at)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.watch(wctx) })
	err = e.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

// serveStatus answers GET /notify with the engine's Status (503 until the
// engine runs).
func (s *notifyService) serveStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	e := s.engine
	s.mu.Unlock()
	if e == nil {
		http.Error(w, "the notifier is not running yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(e.Status(ctx))
}

// reloadDebounce collects the burst of events one save makes (editors
// write, rename, chmod).
const reloadDebounce = 200 * time.Millisecond

// watch reloads on SIGHUP and when the configuration file changes.
func (s *notifyService) watch(ctx context.Context) {
	log := s.env.Logger.With("component", "notify")
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var events <-chan fsnotify.Event
	var errs <-chan error
	var file string
	if s.env.File != "" {
		file, _ = filepath.Abs(s.env.File)
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(filepath.Dir(file))
		}
		if err != nil {
			log.Warn("cannot watch the config file; reload with SIGHUP", "file", file, "err", err)
		} else {
			defer w.Close()
			events, errs = w.Events, w.Errors
			log.Info("watching the config file; its notify section reloads on change and on SIGHUP", "file", file)
		}
	}
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.reload("SIGHUP")
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// The file itself, or the atomic swap of a Kubernetes-style
			// ..data symlink next to it.
			if base := filepath.Base(ev.Name); filepath.Clean(ev.Name) == file || base == filepath.Base(file) || base == "..data" {
				if ev.Op != fsnotify.Chmod {
					timer = time.After(reloadDebounce)
				}
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("config file watch", "err", err)
		case <-timer:
			timer = nil
			s.reload("config file changed")
		}
	}
}

// reload reads the whole configuration again and applies its notify
// section; anything else that changed is reported as needing a restart. On
// any error the running configuration stays.
func (s *notifyService) reload(why string) error {
	log := s.env.Logger.With("component", "notify")
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	engine := s.engine
	s.mu.Unlock()
	if s.env.Load == nil {
		return errors.New("no configuration loader")
	}
	hc, err := s.env.Load()
	if err == nil {
		var nc notify.Config
		nc, _, err = loadNotify(hc, s.env.File)
		if err == nil {
			if changed := changedKeys(s.hubCfg, hc); len(changed) > 0 {
				log.Warn("configuration changed outside notify; those changes apply after a restart", "keys", strings.Join(changed, ", "))
			}
			s.hubCfg = hc
			if reflect.DeepEqual(nc, s.cfg) {
				log.Info("config reload: notify section unchanged", "trigger", why)
				return nil
			}
			if engine != nil {
				err = engine.Reload(nc) // logs its own failure
				if err != nil {
					return err
				}
			}
			s.cfg = nc
			log.Info("notify configuration reloaded", "trigger", why, "targets", len(nc.Targets), "routes", len(nc.Routes))
			return nil
		}
	}
	log.Error("config reload failed; keeping the running configuration", "trigger", why, "err", err)
	return err
}

// changedKeys names the top-level keys other than notify that differ.
func changedKeys(a, b hub.Config) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if name == "notify" || name == "" || name == "-" {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}

// ---- hub notify ...

func notifyCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "try, check and import notifier configurations",
	}
	cmd.AddCommand(notifyTestCmd(g, stdout, stderr), notifyCheckCmd(g, stdout), notifyImportCmd(stdout, stderr), notifyStatusCmd(g, stdout))
	return cmd
}

// notifyStatusCmd prints the running notifier's queues (GET /notify).
func notifyStatusCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	var wait time.Duration
	c := &cobra.Command{
		Use:   "status",
		Short: "show the running notifier's queues: events waiting, per target queued, in flight, paused, dead letters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := fetch(g, "/notify", wait)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := stdout.Write(raw)
				return err
			}
			var st notify.Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("notify status: %w", err)
			}
			printNotifyStatus(stdout, st)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	c.Flags().DurationVar(&wait, "wait", 0, "retry this long while the hub is not answering yet")
	return c
}

func printNotifyStatus(w io.Writer, st notify.Status) {
	fmt.Fprintf(w, "notifier  consumer %s  events waiting %d, in flight %d  dead letters %d\n",
		st.Consumer, st.EventsPending, st.EventsInFlight, st.DeadLetters)
	if st.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", st.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TARGET\tTYPE\tQUEUED\tIN FLIGHT\tREDELIVERED\tDEAD\tPAUSED UNTIL")
	for _, t := range st.Targets {
		paused := "-"
		if t.PausedUntil != nil {
			paused = t.PausedUntil.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%s\n", t.Name, t.Type, t.Queued, t.InFlight, t.Redelivered, t.DeadLetters, paused)
	}
	tw.Flush()
}

func notifyTestCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	var topic, payload, edge, source string
	var send, asJSON bool
	cmd := &cobra.Command{
		Use:   "test --topic T --payload P",
		Short: "show what the notifier would do with an event (--send: deliver it to the targets)",
		Long: `Loads the configuration (as hub run does), routes and renders one event
without a running hub, and prints the routes tried, each notification's
title, message and priority, and the stage that would drop it and why.
Dedup state starts empty. With --send every notification that is not
dropped goes straight to its target (no outbox, no retries); targets of
type nats need the running hub and report an error. --payload @FILE reads
the payload from FILE, @- from standard input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topic == "" {
				return usageError{Err: errors.New("--topic is required")}
			}
			body, err := readPayload(payload, cmd.InOrStdin())
			if err != nil {
				return usageError{Err: err}
			}
			cfg, file, err := g.load()
			if err != nil {
				return err
			}
			nc, _, err := loadNotify(cfg, file)
			if err != nil {
				return usageError{Err: err}
			}
			logger := slog.New(slog.DiscardHandler)
			if send {
				logger = newLogger(cfg.Log, stderr)
			}
			e, err := buildStandalone(cfg, nc, logger)
			if err != nil {
				return usageError{Err: err}
			}
			defer e.Close()
			rep := e.Test(cmd.Context(), topic, body, edge, source, send)
			if asJSON {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\n", b)
			} else {
				fmt.Fprint(stdout, rep.String())
			}
			var failed []string
			for _, d := range rep.Deliveries {
				if d.Error != "" {
					failed = append(failed, d.Target)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("sending to %s failed", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&topic, "topic", "", "MQTT topic of the event, e.g. logging/hare (required)")
	f.StringVar(&payload, "payload", "", "event payload; @FILE reads a file, @- standard input")
	f.StringVar(&edge, "edge", "local", "id of the edge the event comes from")
	f.StringVar(&source, "source", "mqtt", "event source: udp, mqtt or audit")
	f.BoolVar(&send, "send", false, "deliver the notifications to their targets")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func readPayload(p string, stdin io.Reader) ([]byte, error) {
	name, ok := strings.CutPrefix(p, "@")
	if !ok {
		return []byte(p), nil
	}
	if name == "-" {
		return io.ReadAll(io.LimitReader(stdin, 1<<20))
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--payload: %w", err)
	}
	return b, nil
}

func notifyCheckCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "check the notify section only (targets are built, secret files read)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, file, err := g.load()
			if err != nil {
				return err
			}
			sum, err := checkNotify(cfg, file)
			if err != nil {
				return usageError{Err: err}
			}
			fmt.Fprintf(stdout, "notify ok: %s\n", sum)
			return nil
		},
	}
}

func notifyImportCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "import-mqttwarn FILE.ini",
		Short: "convert an mqttwarn ini file to warren's notify YAML (stdout; warnings on stderr)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{Err: err}
			}
			res, err := notify.ImportMqttwarn(b, nil)
			if err != nil {
				return usageError{Err: fmt.Errorf("%s: %w", args[0], err)}
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(stderr, "warning: %s\n", w)
			}
			if _, err := notify.Parse(res.Config); err != nil {
				fmt.Fprintf(stderr, "warning: the result does not validate yet (fix it before use): %v\n", err)
			}
			_, err = stdout.Write(res.YAML)
			return err
		},
	}
}
