package ansible_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// chrootHost is a throwaway target host: a directory with the machine's /usr
// bind-mounted read-only, its own writable /usr/local, /etc (a copy of the
// machine's), /var, /tmp and /root, and /dev and a fresh /proc. Ansible
// reaches it with the community.general.chroot connection.
type chrootHost struct {
	name   string
	root   string
	mounts []string // mount points, in the order they were made
}

// newChrootHost makes host name under base. Its mounts are undone in
// t.Cleanup (and vanish anyway with the test's private mount namespace).
func newChrootHost(t *testing.T, base, name string) *chrootHost {
	t.Helper()
	h := &chrootHost{name: name, root: filepath.Join(base, "hosts", name)}
	t.Cleanup(func() {
		if err := h.unmount(); err != nil {
			t.Errorf("chroot %s: %v", name, err)
		}
	})
	local := filepath.Join(base, "hosts", name+".usr-local")
	for _, d := range []string{h.root, local, local + "/bin", local + "/etc", local + "/lib", local + "/sbin", local + "/share"} {
		must(t, os.MkdirAll(d, 0o755))
	}
	if out, err := exec.Command("cp", "-a", "/etc", filepath.Join(h.root, "etc")).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc into %s: %v\n%s", name, err, out)
	}
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{"usr", 0o755}, {"dev", 0o755}, {"proc", 0o555}, {"run", 0o755},
		{"tmp", 0o1777}, {"var", 0o755}, {"var/lib", 0o755}, {"var/log", 0o755},
		{"var/tmp", 0o1777}, {"var/cache", 0o755}, {"root", 0o700}, {"home", 0o755},
	}
	for _, d := range dirs {
		p := filepath.Join(h.root, d.path)
		must(t, os.MkdirAll(p, d.mode))
		must(t, os.Chmod(p, d.mode))
	}
	must(t, os.Symlink("../run", filepath.Join(h.root, "var/run")))
	must(t, h.bind("/usr", "usr", true))
	must(t, h.bind(local, "usr/local", false))
	// On a merged-/usr system /bin, /sbin, /lib and /lib64 are links into
	// /usr; elsewhere they are directories to bind.
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		fi, err := os.Lstat("/" + d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink("/" + d)
			must(t, err)
			must(t, os.Symlink(target, filepath.Join(h.root, d)))
		default:
			must(t, os.MkdirAll(filepath.Join(h.root, d), 0o755))
			must(t, h.bind("/"+d, d, true))
		}
	}
	must(t, h.bind("/dev", "dev", true))
	if err := syscall.Mount("proc", filepath.Join(h.root, "proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		t.Fatalf("mount proc in %s: %v", name, err)
	}
	h.mounts = append(h.mounts, filepath.Join(h.root, "proc"))
	return h
}

// bind mounts src on root/dst, read-only if ro (keeping the source's
// nosuid/nodev/noexec flags, which a remount may not drop).
func (h *chrootHost) bind(src, dst string, ro bool) error {
	target := filepath.Join(h.root, dst)
	if err := syscall.Mount(src, target, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	h.mounts = append(h.mounts, target)
	if !ro {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(src, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", src, err)
	}
	keep := uintptr(st.Flags) & (syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC | syscall.MS_NOATIME | syscall.MS_NODIRATIME | syscall.MS_RELATIME)
	if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY|keep, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// unmount undoes the mounts, last first, and reports any left behind.
func (h *chrootHost) unmount() error {
	var failed []string
	for i := len(h.mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(h.mounts[i], syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			failed = append(failed, fmt.Sprintf("%s: %v", h.mounts[i], err))
		}
	}
	h.mounts = nil
	if left := mountsUnder(h.root); len(left) > 0 {
		failed = append(failed, "still mounted: "+strings.Join(left, ", "))
	}
	if len(failed) > 0 {
		return fmt.Errorf("unmount: %s", strings.Join(failed, "; "))
	}
	return nil
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []string{"cannot read /proc/self/mountinfo: " + err.Error()}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// path returns the host path of p inside the chroot.
func (h *chrootHost) path(p string) string { return filepath.Join(h.root, p) }

// read returns the content of p inside the chroot.
func (h *chrootHost) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(h.path(p))
	if err != nil {
		t.Fatalf("%s: %v", h.name, err)
	}
	return string(b)
}

// lookupID finds name in the chroot's /etc/passwd (field 2 = uid, 3 = gid)
// or /etc/group (field 2 = gid).
func (h *chrootHost) lookupID(t *testing.T, file, name string, field int) uint32 {
	t.Helper()
	for _, line := range strings.Split(h.read(t, file), "\n") {
		f := strings.Split(line, ":")
		if len(f) > field && f[0] == name {
			v, err := strconv.ParseUint(f[field], 10, 32)
			if err != nil {
				t.Fatalf("%s: %s: bad id for %s: %q", h.name, file, name, f[field])
			}
			return uint32(v)
		}
	}
	t.Fatalf("%s: %s has no entry %q", h.name, file, name)
	return 0
}

func (h *chrootHost) uid(t *testing.T, user string) uint32 {
	return h.lookupID(t, "/etc/passwd", user, 2)
}

func (h *chrootHost) gid(t *testing.T, group string) uint32 {
	return h.lookupID(t, "/etc/group", group, 2)
}

// home returns the home directory of user in the chroot.
func (h *chrootHost) home(t *testing.T, user string) string {
	t.Helper()
	for _, line := range strings.Split(h.read(t, "/etc/passwd"), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 6 && f[0] == user {
			return f[5]
		}
	}
	t.Fatalf("%s: no user %q", h.name, user)
	return ""
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
