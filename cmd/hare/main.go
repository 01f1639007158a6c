// Command hare is warren's PAM session hook. pam_exec runs it on every
// session open; it sends one UDP datagram describing the login to an edge
// (or to a classic hared) and always exits 0, so it can neither fail nor
// hold up a login.
//
//	hare [-port N] [-key FILE|none] [-close] [-timeout D] [-v] HOST
//
// "hare HOST" behaves like the C hare (jpmens/hare): it sends only when
// PAM_TYPE=open_session (Linux-PAM) or PAM_SM_FUNC=pam_sm_open_session
// (OpenPAM), and the unsigned payload is byte-identical with the C tool's.
// With a key file it sends the signed v1 envelope instead. See
// ARCHITECTURE.md ("hare") for the flags and the wire formats.
//
// hare links only the standard library and internal/wire
// (cmd/hare/deps_test.go enforces this) and should be built with
// CGO_ENABLED=0: a cgo build is dynamically linked and starts ~1 ms slower.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warren-mesh/warren/internal/wire"
)

func main() { os.Exit(hareMain()) }

// hareMain is the real entry point (also registered with testscript). The
// watchdog ends the process with status 0 shortly after the timeout, should
// anything (a hung resolver thread, a stuck file system) outlast it.
func hareMain() int {
	return run(os.Args[1:], os.LookupEnv, os.Stderr, func(d time.Duration) {
		time.AfterFunc(d, func() { os.Exit(0) })
	})
}

// Defaults.
const (
	defaultPort    = 8035
	defaultTimeout = time.Second
	// watchdogGrace is how long after the timeout the watchdog fires.
	watchdogGrace = 250 * time.Millisecond
	// keyNone as -key value forces unsigned v0.
	keyNone   = "none"
	usageLine = "Usage: hare [-port N] [-key FILE|none] [-close] [-timeout D] [-v] HOST"
)

// defaultKeyFile is where hare looks for its key when -key is not given.
func defaultKeyFile() string {
	if runtime.GOOS == "freebsd" {
		return "/usr/local/etc/warren/hare.key"
	}
	return "/etc/warren/hare.key"
}

// config is hare's command line.
type config struct {
	// Host is where to send: a name, an IPv4 literal, an IPv6 literal with or
	// without brackets (and with a %zone if link-local), optionally followed
	// by :port ("name:port", "[v6]:port"). Required.
	Host string
	// Port is the UDP port used when Host names none. Default 8035.
	Port int
	// KeyFile is the key file to sign with (its first key). "" means
	// defaultKeyFile() when that file exists, else unsigned; "none" means
	// unsigned v0 always.
	KeyFile string
	// Close also sends close_session events, marked "event":"close".
	// Default false (open_session only, like the C hare).
	Close bool
	// Timeout bounds name resolution and sending. Default 1s; must be > 0.
	Timeout time.Duration
	// Verbose reports each step on stderr. Errors are reported without it.
	Verbose bool
}

func defaultConfig() config {
	return config{Port: defaultPort, Timeout: defaultTimeout}
}

func (c config) validate() error {
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("-port: %d is not a UDP port (1..65535)", c.Port))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout: %v must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

// errUsage marks a wrong number of arguments.
var errUsage = errors.New("want exactly one HOST argument")

// parseArgs parses flags, which may appear before or after HOST. It returns
// the config and the positional arguments separately, so that the caller can
// check the PAM environment before complaining about missing arguments, as
// the C hare does.
func parseArgs(args []string) (config, []string, error) {
	cfg := defaultConfig()
	fset := flag.NewFlagSet("hare", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	fset.IntVar(&cfg.Port, "port", cfg.Port, "UDP port when HOST has none")
	fset.StringVar(&cfg.KeyFile, "key", "", "key file to sign with, or \"none\" (default "+defaultKeyFile()+" if it exists)")
	fset.BoolVar(&cfg.Close, "close", false, "also send close_session events")
	fset.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on name resolution and sending")
	fset.BoolVar(&cfg.Verbose, "v", false, "report each step on stderr")
	var pos []string
	for {
		if err := fset.Parse(args); err != nil {
			return cfg, nil, err
		}
		rest := fset.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return cfg, pos, cfg.validate()
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, usageLine)
	fmt.Fprintf(w, `  -close        also send close_session events (marked "event":"close")
  -key FILE     sign with the first key in FILE, or "none" for unsigned
                (default %s if it exists)
  -port N       UDP port when HOST has none (default %d)
  -timeout D    bound on name resolution and sending (default %v)
  -v            report each step on stderr
`, defaultKeyFile(), defaultPort, defaultTimeout)
}

// envFunc looks up an environment variable (os.LookupEnv).
type envFunc func(string) (string, bool)

// run is hare. It returns the exit status: 2 for a usage error, else 0,
// whatever happens to the datagram.
func run(args []string, env envFunc, stderr io.Writer, watchdog func(time.Duration)) int {
	cfg, pos, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stderr)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "hare: %v\n", err)
		printUsage(stderr)
		return 2
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "hare: "+format+"\n", a...) }
	debugf := func(string, ...any) {}
	if cfg.Verbose {
		debugf = logf
	}

	event, send := pamEvent(env, cfg.Close)
	if !send {
		debugf("neither PAM open_session nor pam_sm_open_session detected; nothing sent")
		return 0
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "hare: %v\n", errUsage)
		printUsage(stderr)
		return 2
	}
	cfg.Host = pos[0]
	host, port, err := splitTarget(cfg.Host, cfg.Port)
	if err != nil {
		fmt.Fprintf(stderr, "hare: %v\n", err)
		printUsage(stderr)
		return 2
	}
	if watchdog != nil {
		watchdog(cfg.Timeout + watchdogGrace)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()

	now := time.Now()
	login := buildLogin(env, now, event)
	datagram := buildDatagram(cfg, login, now, logf, debugf)
	if err := deliver(ctx, host, port, datagram, systemLookup, debugf); err != nil {
		logf("%v", err)
	}
	return 0
}

// pamEvent decides from the PAM environment whether to send and which
// event. Like the C hare it accepts either convention: Linux-PAM's
// PAM_TYPE and OpenPAM's PAM_SM_FUNC.
func pamEvent(env envFunc, withClose bool) (event string, send bool) {
	typ, _ := env("PAM_TYPE")
	fn, _ := env("PAM_SM_FUNC")
	switch {
	case typ == "open_session" || fn == "pam_sm_open_session":
		return wire.EventOpen, true
	case withClose && (typ == "close_session" || fn == "pam_sm_close_session"):
		return wire.EventClose, true
	default:
		return "", false
	}
}

// buildLogin reads what the C hare reads: PAM_USER, PAM_SERVICE, PAM_RHOST,
// PAM_TTY (unset → null) and gethostname ("?" when it fails).
func buildLogin(env envFunc, now time.Time, event string) wire.Login {
	opt := func(name string) wire.Opt {
		v, ok := env(name)
		return wire.Opt{Value: v, Set: ok}
	}
	host, err := os.Hostname()
	if err != nil {
		host = "?"
	}
	return wire.Login{
		Tst:      now.Unix(),
		Hostname: host,
		User:     opt("PAM_USER"),
		Service:  opt("PAM_SERVICE"),
		RHost:    opt("PAM_RHOST"),
		TTY:      opt("PAM_TTY"),
		Event:    event,
	}
}

// buildDatagram returns the bytes to send: the signed v1 envelope when a key
// is available, else the v0 JSON. Any problem with the key is reported and
// falls back to v0, so that the login still reaches the edge (which counts
// unsigned datagrams and accepts them only from sources it allows).
func buildDatagram(cfg config, login wire.Login, now time.Time, logf, debugf func(string, ...any)) []byte {
	key, ok := loadKey(cfg.KeyFile, logf, debugf)
	if !ok {
		return wire.AppendV0(make([]byte, 0, 256), login)
	}
	payload, truncated := fitPayload(login, wire.MaxPayload)
	if truncated {
		logf("payload longer than %d bytes; fields truncated", wire.MaxPayload)
	}
	var nonce [wire.NonceSize]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never returns an error.
	d, err := wire.Seal(key.ID, key.Secret, uint64(now.UnixMilli()), nonce, payload)
	if err != nil {
		logf("sign with key %q: %v; sending unsigned", key.ID, err)
		return wire.AppendV0(make([]byte, 0, 256), login)
	}
	debugf("signed with key %q", key.ID)
	return d
}

// loadKey returns the first key of the configured key file, or false to
// send unsigned.
func loadKey(path string, logf, debugf func(string, ...any)) (wire.Key, bool) {
	if path == keyNone {
		debugf("-key none: sending unsigned v0")
		return wire.Key{}, false
	}
	explicit := path != ""
	if !explicit {
		path = defaultKeyFile()
	}
	key, err := wire.LoadFirstKey(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			debugf("no key file %s: sending unsigned v0", path)
		} else {
			logf("key file: %v; sending unsigned v0", err)
		}
		return wire.Key{}, false
	}
	if err := wire.CheckKeyFileMode(path); err != nil {
		logf("warning: %v", err)
	}
	return key, true
}

// fitPayload encodes login, truncating its strings (at rune boundaries)
// until the JSON fits in max bytes. Real PAM values are far shorter; this
// only keeps an absurd environment from costing the event.
func fitPayload(login wire.Login, max int) (payload []byte, truncated bool) {
	payload = wire.AppendV0(make([]byte, 0, 256), login)
	for limit := 256; len(payload) > max; limit /= 2 {
		l := login
		l.Hostname = truncate(l.Hostname, limit)
		for _, o := range []*wire.Opt{&l.User, &l.Service, &l.RHost, &l.TTY} {
			o.Value = truncate(o.Value, limit)
		}
		payload = wire.AppendV0(payload[:0], l)
		truncated = true
		if limit == 0 {
			break // cannot happen: the empty-string JSON is ~100 bytes
		}
	}
	return payload, truncated
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// splitTarget splits HOST into a host and a port: "name", "1.2.3.4", "::1",
// "[::1]", "fe80::1%eth0" use defPort; "name:port", "1.2.3.4:port" and
// "[v6]:port" carry their own.
func splitTarget(target string, defPort int) (host string, port int, err error) {
	if target == "" {
		return "", 0, errors.New("HOST is empty")
	}
	bad := func(why string) (string, int, error) {
		return "", 0, fmt.Errorf("HOST %q: %s", target, why)
	}
	var portStr string
	switch {
	case strings.HasPrefix(target, "["):
		end := strings.IndexByte(target, ']')
		if end < 0 {
			return bad("missing ]")
		}
		host = target[1:end]
		switch rest := target[end+1:]; {
		case rest == "":
		case strings.HasPrefix(rest, ":"):
			portStr = rest[1:]
		default:
			return bad("unexpected text after ]")
		}
	case strings.Count(target, ":") == 1:
		host, portStr, _ = strings.Cut(target, ":")
	default:
		host = target // a name, an IPv4 literal, or a bare IPv6 literal
	}
	if host == "" {
		return bad("no host")
	}
	if portStr == "" && !strings.HasSuffix(target, ":") {
		return host, defPort, nil
	}
	p, err := strconv.Atoi(portStr)
	if err != nil || p < 1 || p > 65535 {
		return bad("port must be 1..65535")
	}
	return host, p, nil
}
