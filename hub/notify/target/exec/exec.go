// Package exec is the notifier target that runs a program for each
// notification: argv without a shell, the payload (or message) on stdin,
// a minimal environment, and a timeout that kills the whole process group.
package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// waitDelay is how long Wait waits for the output pipes after the process
// was killed (a grandchild may still hold them).
const waitDelay = 2 * time.Second

// outputLimit bounds how much of the program's output is kept for errors.
const outputLimit = 1 << 10

// Notifier runs a program per notification. Safe for concurrent use.
type Notifier struct {
	cfg  Config
	path string
	args []*target.Template
	env  []string
	red  *target.Redactor
}

// New returns an exec target. It resolves argv[0] through PATH and reads
// EnvFiles now, so a missing program or secret fails at configuration time.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	path, err := osexec.LookPath(cfg.Argv[0])
	if err != nil {
		return nil, fmt.Errorf("argv[0]: %w", err)
	}
	n := &Notifier{cfg: cfg, path: path}
	for i, a := range cfg.Argv[1:] {
		tpl, err := target.ParseTemplate(fmt.Sprintf("argv[%d]", i+1), a)
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, tpl)
	}
	if cfg.InheritEnv {
		n.env = os.Environ()
	} else if p, ok := os.LookupEnv("PATH"); ok {
		n.env = []string{"PATH=" + p}
	}
	n.env = append(n.env, cfg.Env...)
	var secrets []string
	for i, e := range cfg.EnvFiles {
		name, file, _ := splitVar(e)
		v, err := target.ReadSecretFile(fmt.Sprintf("env_files[%d]", i), file)
		if err != nil {
			return nil, err
		}
		n.env = append(n.env, name+"="+v)
		secrets = append(secrets, v)
	}
	n.red = target.NewRedactor(secrets...)
	return n, nil
}

// Notify runs the program once. It sets WARREN_ID, WARREN_TOPIC,
// WARREN_EDGE, WARREN_TITLE, WARREN_PRIORITY and WARREN_TIME (RFC 3339).
// A program that cannot start, or an argument that cannot be rendered, is
// not retryable; a non-zero exit or timeout is retryable when
// RetryOnFailure is set; cancellation by the caller always is.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	args := make([]string, 0, len(n.args))
	for _, tpl := range n.args {
		a, err := tpl.Execute(m)
		if err != nil {
			return false, err
		}
		args = append(args, a)
	}
	var stdin []byte
	if n.cfg.Stdin != StdinNone {
		b, err := target.Content(n.cfg.Stdin, m)
		if err != nil {
			return false, err
		}
		stdin = b
	}

	runCtx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	cmd := osexec.CommandContext(runCtx, n.path, args...)
	cmd.Args[0] = n.cfg.Argv[0]
	cmd.Dir = n.cfg.Dir
	cmd.Env = append(n.env[:len(n.env):len(n.env)],
		"WARREN_ID="+m.ID,
		"WARREN_TOPIC="+m.Topic,
		"WARREN_EDGE="+m.Edge,
		"WARREN_TITLE="+m.Title,
		"WARREN_PRIORITY="+strconv.Itoa(m.Priority),
		"WARREN_TIME="+m.Time.UTC().Format(time.RFC3339Nano),
	)
	cmd.Stdin = bytes.NewReader(stdin)
	out := &limitedBuffer{limit: outputLimit}
	cmd.Stdout = out
	cmd.Stderr = out
	setProcessGroup(cmd)
	cmd.WaitDelay = waitDelay

	if err := cmd.Start(); err != nil {
		return false, n.red.Error(fmt.Errorf("start %s: %w", n.cfg.Argv[0], err))
	}
	err := cmd.Wait()
	if err == nil {
		return false, nil
	}
	detail := target.Snippet(out.Bytes())
	switch {
	case ctx.Err() != nil:
		return true, n.red.Error(fmt.Errorf("%s: %w", n.cfg.Argv[0], ctx.Err()))
	case runCtx.Err() != nil:
		err = fmt.Errorf("%s: timed out after %s, process group killed", n.cfg.Argv[0], n.cfg.Timeout)
	default:
		err = fmt.Errorf("%s: %w", n.cfg.Argv[0], err)
	}
	if detail != "" {
		err = fmt.Errorf("%w: output: %s", err, detail)
	}
	return n.cfg.RetryOnFailure, n.red.Error(err)
}

// limitedBuffer keeps the first limit bytes written to it and discards the
// rest, so a chatty program cannot grow the hub's memory.
type limitedBuffer struct {
	mu    sync.Mutex
	limit int
	buf   bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

var _ target.Notifier = (*Notifier)(nil)

var errNoProcess = errors.New("process not started")
