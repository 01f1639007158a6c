package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File modes of everything the package writes.
const (
	DirMode  fs.FileMode = 0o700 // PKI directory, edges/ and output bundles
	KeyMode  fs.FileMode = 0o600 // private keys
	CertMode fs.FileMode = 0o644 // certificates
)

// ErrExists is returned (wrapped, with the path) when a file would be
// overwritten and Force was not given.
var ErrExists = errors.New("already exists; refusing to overwrite it (use --force to replace it)")

// ensureDir creates dir with DirMode if it does not exist. An existing
// directory keeps its mode: it may be a directory the operator made.
func ensureDir(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	// MkdirAll applies the umask; set the mode exactly.
	if err := os.Chmod(dir, DirMode); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	return nil
}

// refuseExisting returns ErrExists (wrapped) for the first path that exists,
// unless force is set.
func refuseExisting(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		_, err := os.Lstat(p)
		if err == nil {
			return fmt.Errorf("%s: %w", p, ErrExists)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// writeFile writes data to path with exactly the given mode, whatever the
// umask. The data goes to a temporary file in the same directory first, so a
// reader never sees a half-written file. Without force an existing path is
// never replaced (a hard link fails if the name exists); with force it is
// replaced atomically by rename.
func writeFile(path string, data []byte, mode fs.FileMode, force bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		// The temporary name never survives: it was linked or renamed into
		// place, or the write failed.
		_ = os.Remove(tmpName)
	}()
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if force {
		if err := os.Rename(tmpName, path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return syncDir(dir)
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		// Some file systems have no hard links: fall back to an exclusive
		// create, which still never replaces an existing file.
		if err := writeExclusive(path, data, mode); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func writeExclusive(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes a new directory entry durable. Errors are ignored on
// systems where directories cannot be synced.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	_ = d.Sync()
	return d.Close()
}
