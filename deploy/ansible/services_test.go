package ansible_test

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/systemd and deploy/supervisord from the role templates")

// The service definitions kept in deploy/ for installs without Ansible, and
// the names the render playbook gives them.
var renderedDefinitions = map[string]string{
	"warren-hub.service":  "../systemd/warren-hub.service",
	"warren-edge.service": "../systemd/warren-edge.service",
	"warren-hub.conf":     "../supervisord/warren-hub.conf",
	"warren-edge.conf":    "../supervisord/warren-edge.conf",
}

// TestServiceDefinitions renders the roles' service templates with their
// defaults and expects the files in deploy/systemd and deploy/supervisord
// to be exactly that (-update rewrites them).
func TestServiceDefinitions(t *testing.T) {
	requireTool(t, "ansible-playbook")
	if runtime.GOOS != "linux" {
		t.Skip("the files in deploy/ carry the Linux defaults")
	}
	dest := t.TempDir()
	cmd := exec.Command("ansible-playbook", "-i", "localhost,", "-e", "render_dest="+dest, "testdata/render-services.yml")
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_HOME="+filepath.Join(dest, ".ansible"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dest, ".ansible-tmp"), "ANSIBLE_LOCALHOST_WARNING=0",
		"ANSIBLE_CONFIG="+filepath.Join(mustAbs(t, "."), "ansible.cfg"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	for name, kept := range renderedDefinitions {
		got, err := os.ReadFile(filepath.Join(dest, name))
		must(t, err)
		if *update {
			must(t, os.WriteFile(kept, got, 0o644))
			continue
		}
		want, err := os.ReadFile(kept)
		must(t, err)
		if string(got) != string(want) {
			t.Errorf("deploy/%s differs from what the roles render; run go test ./deploy/ansible -run TestServiceDefinitions -update\n--- rendered:\n%s", strings.TrimPrefix(kept, "../"), got)
		}
	}
}

// TestSystemdUnits runs systemd-analyze verify on deploy/systemd/*.service.
// verify insists that ExecStart names an existing executable, so each unit
// is checked as a copy whose binary path points at a stand-in executable;
// every warning counts as a failure.
func TestSystemdUnits(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	units, err := filepath.Glob("../systemd/*.service")
	must(t, err)
	if len(units) != 2 {
		t.Fatalf("want 2 units in deploy/systemd, found %v", units)
	}
	dir := t.TempDir()
	stand, err := os.ReadFile("/bin/true")
	must(t, err)
	for _, unit := range units {
		text, err := os.ReadFile(unit)
		must(t, err)
		l, err := parseSystemdUnit(string(text))
		must(t, err)
		bin := filepath.Join(dir, filepath.Base(l.Argv[0]))
		must(t, os.WriteFile(bin, stand, 0o755))
		copyPath := filepath.Join(dir, filepath.Base(unit))
		must(t, os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(text), l.Argv[0]+" ", bin+" ")), 0o644))
		out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// TestRCScripts checks the FreeBSD rc.d scripts with sh -n (and dash, the
// strictest POSIX shell here, when it exists).
func TestRCScripts(t *testing.T) {
	scripts, err := filepath.Glob("../rc.d/*")
	must(t, err)
	if len(scripts) != 2 {
		t.Fatalf("want 2 scripts in deploy/rc.d, found %v", scripts)
	}
	for _, s := range scripts {
		st, err := os.Stat(s)
		must(t, err)
		if st.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
		for _, sh := range []string{"sh", "dash"} {
			if _, err := exec.LookPath(sh); err != nil {
				continue
			}
			if out, err := exec.Command(sh, "-n", s).CombinedOutput(); err != nil {
				t.Errorf("%s -n %s: %v\n%s", sh, s, err, out)
			}
		}
		text, err := os.ReadFile(s)
		must(t, err)
		name := filepath.Base(s)
		for _, want := range []string{"# PROVIDE: " + name, `name="` + name + `"`, `rcvar="` + name + `_enable"`, `run_rc_command "$1"`} {
			if !strings.Contains(string(text), want) {
				t.Errorf("%s lacks %q", s, want)
			}
		}
	}
}

// TestAnsibleLint runs Debian's ansible-lint over the playbook and roles.
func TestAnsibleLint(t *testing.T) {
	lint := requireTool(t, "ansible-lint")
	home := t.TempDir()
	cmd := exec.Command(lint, "--offline", "--nocolor", "-p")
	cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+filepath.Join(home, ".ansible"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(home, "tmp"), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ansible-lint: %v\n%s", err, out)
	}
}

// TestSyntax runs ansible-playbook --syntax-check on site.yml with the
// example inventory.
func TestSyntax(t *testing.T) {
	requireTool(t, "ansible-playbook")
	home := t.TempDir()
	cmd := exec.Command("ansible-playbook", "--syntax-check", "-i", "inventories/example", "site.yml")
	cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+filepath.Join(home, ".ansible"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(home, "tmp"), "ANSIBLE_NOCOLOR=1",
		"ANSIBLE_CONFIG="+filepath.Join(mustAbs(t, "."), "ansible.cfg"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("syntax check: %v\n%s", err, out)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	must(t, err)
	return a
}
