package mosqlog

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// FollowOptions tune Follow.
type FollowOptions struct {
	// FromStart reads the existing content first; otherwise only lines
	// written after Follow starts are reported.
	FromStart bool
	// Poll is how often the file is checked for growth and rotation (default 250 ms).
	Poll time.Duration
	// Location for timestamps without a zone (default time.Local).
	Location *time.Location
	// MaxLine bounds a line; longer lines are cut (default 64 KiB).
	MaxLine int
}

// Follow tails path like `tail -F`: it waits for the file to exist, reads
// whole lines as they are appended, and starts again from the top when the
// file is truncated or replaced (logrotate's copytruncate or create modes).
// Every line that parses is passed to fn; the others are skipped. It returns
// when ctx ends.
func Follow(ctx context.Context, path string, opts FollowOptions, fn func(Record)) error {
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.MaxLine <= 0 {
		opts.MaxLine = 64 << 10
	}
	t := &tailer{path: path, opts: opts, fn: fn}
	first := true
	tick := time.NewTicker(opts.Poll)
	defer tick.Stop()
	defer t.close()
	for {
		if err := t.step(first); err != nil {
			return err
		}
		first = false
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

type tailer struct {
	path    string
	opts    FollowOptions
	fn      func(Record)
	f       *os.File
	ino     uint64
	off     int64
	partial []byte
	tail    []byte // the last bytes read before off, to notice a file rewritten in place
}

func (t *tailer) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

func (t *tailer) step(first bool) error {
	fi, err := os.Stat(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // not there yet, or between rotate and create
	}
	if err != nil {
		return err
	}
	switch {
	case t.f == nil:
	case inode(fi) != t.ino:
		// replaced (rotated): drain what the old file still holds, then start over
		t.read()
		t.close()
	case fi.Size() < t.off || t.rewritten():
		// truncated in place: what is before our offset is new content
		t.close()
	}
	if t.f == nil {
		f, err := os.Open(t.path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		t.f, t.ino, t.off, t.partial, t.tail = f, inode(fi), 0, nil, nil
		if first && !t.opts.FromStart {
			if t.off, err = f.Seek(0, io.SeekEnd); err != nil {
				return err
			}
		}
	}
	t.read()
	return nil
}

func (t *tailer) read() {
	if _, err := t.f.Seek(t.off, io.SeekStart); err != nil {
		return
	}
	r := bufio.NewReaderSize(t.f, 32<<10)
	for {
		chunk, err := r.ReadSlice('\n')
		t.off += int64(len(chunk))
		t.remember(chunk)
		if len(t.partial)+len(chunk) <= t.opts.MaxLine {
			t.partial = append(t.partial, chunk...)
		}
		if err == nil {
			if rec, ok := Parse(string(t.partial), t.opts.Location); ok {
				t.fn(rec)
			}
			t.partial = t.partial[:0]
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return // io.EOF: keep the partial line for the next poll
	}
}

const tailKeep = 64

// remember keeps the last tailKeep bytes read.
func (t *tailer) remember(b []byte) {
	if len(b) >= tailKeep {
		t.tail = append(t.tail[:0], b[len(b)-tailKeep:]...)
		return
	}
	t.tail = append(t.tail, b...)
	if over := len(t.tail) - tailKeep; over > 0 {
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
}

// rewritten tells whether the bytes before the read offset changed: a file
// truncated and written again up to (or past) where we were.
func (t *tailer) rewritten() bool {
	if len(t.tail) == 0 {
		return false
	}
	buf := make([]byte, len(t.tail))
	n, err := t.f.ReadAt(buf, t.off-int64(len(t.tail)))
	return err != nil && n < len(buf) || string(buf[:n]) != string(t.tail)
}
