// Package file is the notifier target that writes notifications to files:
// appended or atomically replaced, with a templated path.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Notifier writes notifications to files. It is safe for concurrent use:
// each append is one write(2) on an O_APPEND descriptor, each overwrite a
// rename of its own temporary file.
//
// In append mode it keeps the descriptors of the last maxOpen paths open:
// opening and closing the file for every notification cost more than the
// write (≈ 12 % of the notifier's CPU in BenchmarkNotifierThroughput).
// Before each write it checks with a stat(2) that the path still names the
// open file, so a rotated (renamed) or deleted file is reopened by name and
// the notification lands in the file the operator sees.
type Notifier struct {
	cfg     Config
	path    *target.Template
	mode    fs.FileMode
	dirMode fs.FileMode

	mu     sync.Mutex
	open   map[string]*openFile // append mode, by path
	closed bool                 // Close was called: open and close per write
}

// maxOpen bounds the descriptors one file target keeps open (templated
// paths can name many files).
const maxOpen = 16

type openFile struct {
	f  *os.File
	fi fs.FileInfo // of f when opened, to recognise the path still naming it
}

// New returns a file target for cfg, which must be valid.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tpl, err := target.ParseTemplate("path", cfg.Path)
	if err != nil {
		return nil, err
	}
	mode, _ := parseMode("mode", cfg.Mode)
	dirMode, _ := parseMode("dir_mode", cfg.DirMode)
	return &Notifier{cfg: cfg, path: tpl, mode: fs.FileMode(mode), dirMode: fs.FileMode(dirMode)}, nil
}

// Notify writes m. Rendering errors and unusable paths (permission denied,
// read-only file system, a directory in the way) are not retryable; other
// I/O errors such as a full disk are.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	path, err := n.path.Execute(m)
	if err != nil {
		return false, err
	}
	if err := checkPath(path); err != nil {
		return false, fmt.Errorf("path %q: %w", path, err)
	}
	data, err := target.Content(n.cfg.Content, m)
	if err != nil {
		return false, err
	}
	if n.cfg.Newline {
		data = append(data[:len(data):len(data)], '\n')
	}
	if n.cfg.Append {
		err = n.append(path, data)
	} else {
		err = n.replace(path, data)
	}
	if err != nil {
		return retryable(err), err
	}
	return false, nil
}

func (n *Notifier) append(path string, data []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	of := n.open[path]
	if of != nil {
		if fi, err := os.Stat(path); err != nil || !os.SameFile(fi, of.fi) {
			n.drop(path) // rotated or deleted: reopen by name
			of = nil
		}
	}
	if of == nil {
		f, err := n.openAppend(path)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		of = &openFile{f: f, fi: fi}
		if n.closed {
			defer f.Close()
		} else {
			if len(n.open) >= maxOpen {
				for p := range n.open { // any one
					n.drop(p)
					break
				}
			}
			if n.open == nil {
				n.open = map[string]*openFile{}
			}
			n.open[path] = of
		}
	}
	if _, err := of.f.Write(data); err != nil {
		n.drop(path)
		return err
	}
	if n.cfg.Fsync {
		if err := of.f.Sync(); err != nil {
			n.drop(path)
			return err
		}
	}
	return nil
}

// drop closes and forgets the descriptor of path (n.mu held).
func (n *Notifier) drop(path string) {
	if of := n.open[path]; of != nil {
		of.f.Close()
		delete(n.open, path)
	}
}

// Close closes the descriptors kept open. Later appends still work, each
// opening and closing its file.
func (n *Notifier) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for p := range n.open {
		n.drop(p)
	}
	return nil
}

// openAppend opens path for appending, creating it (and its directories
// with create_dirs) if needed.
func (n *Notifier) openAppend(path string) (*os.File, error) {
	if n.cfg.CreateDirs {
		if err := os.MkdirAll(filepath.Dir(path), n.dirMode); err != nil {
			return nil, fmt.Errorf("create directory: %w", err)
		}
	}
	// Create with O_EXCL first so the configured mode is set exactly (not
	// masked by umask) on files this target creates.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, n.mode)
	switch {
	case err == nil:
		if err := f.Chmod(n.mode); err != nil {
			f.Close()
			return nil, fmt.Errorf("chmod %s: %w", path, err)
		}
		return f, nil
	case errors.Is(err, fs.ErrExist):
		return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	default:
		return nil, err
	}
}

func (n *Notifier) replace(path string, data []byte) error {
	if n.cfg.CreateDirs {
		if err := os.MkdirAll(filepath.Dir(path), n.dirMode); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(n.mode); err != nil {
		return fail(err)
	}
	if n.cfg.Fsync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// checkPath refuses paths that are empty, hold a NUL byte or climb out of
// their directory with "..".
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return errors.New("contains a NUL byte")
	}
	for _, el := range strings.Split(filepath.ToSlash(p), "/") {
		if el == ".." {
			return errors.New(`contains a ".." element`)
		}
	}
	if strings.HasSuffix(p, "/") {
		return errors.New("names a directory")
	}
	return nil
}

// retryable classifies an I/O error: problems that persist until an
// operator acts are not retryable.
func retryable(err error) bool {
	switch {
	case errors.Is(err, fs.ErrPermission),
		errors.Is(err, syscall.EROFS),
		errors.Is(err, syscall.EISDIR),
		errors.Is(err, syscall.ENOTDIR),
		errors.Is(err, syscall.ENAMETOOLONG),
		errors.Is(err, syscall.EINVAL):
		return false
	}
	return true
}

var _ target.Notifier = (*Notifier)(nil)
