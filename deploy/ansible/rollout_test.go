package ansible_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// The files the roles install, as the test targets see them (Linux
// defaults of warren_common and the roles).
const (
	hubUnit         = "/etc/systemd/system/warren-hub.service"
	edgeProgram     = "/etc/supervisor/conf.d/warren-edge.conf"
	notifyFile      = "/var/log/warren/hub/logins.log"
	edgeKey         = "/etc/warren/edge-tls/edge.key"
	edgeCert        = "/etc/warren/edge-tls/edge.crt"
	edgeHareKeys    = "/etc/warren/edge-hare.keys"
	edgeGossipKey   = "/etc/warren/edge-gossip.key"
	hubGossipKey    = "/etc/warren/hub-gossip.key"
	hubCAKey        = "/var/lib/warren/hub/pki/ca.key"
	hareKey         = "/etc/warren/hare.key"
	sshdPAM         = "/etc/pam.d/sshd"
	notifyFormat    = "login {user} on {hostname} from {rhost}"
	loginRemoteHost = "198.51.100.7"
)

// TestRollout applies site.yml for real to three chroot hosts on this
// machine (the hub; the edge of site1, which also runs hare; web, a hare-only
// host of site1), applies it again and expects no change, starts the hub
// and the edge exactly as their installed service definitions say (the hub
// from its systemd unit, the edge from its supervisord program), then runs
// the login hook exactly as web's sshd PAM line does and waits for the
// notification in the hub's file target.
func TestRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("the rollout builds binaries and runs ansible-playbook twice; skipped under -short")
	}
	requireTool(t, "ansible-playbook")
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		missing(t, "the rollout test needs root on Linux (chroot targets, bind mounts)")
	}
	if os.Getenv(nsEnv) != "1" {
		missing(t, "the rollout test needs private mount and PID namespaces (unshare --mount --pid), which this machine refuses")
	}
	if out, err := exec.Command("ansible-doc", "-t", "connection", "community.general.chroot").CombinedOutput(); err != nil {
		missing(t, "the community.general collection (chroot connection) is missing (Debian: apt-get install ansible): %v\n%s", err, out)
	}

	base, err := os.MkdirTemp("", "warren-rollout-")
	must(t, err)
	// Registered first, so it runs last: after every unmount. Nothing is
	// removed while anything is still mounted below base.
	t.Cleanup(func() {
		if left := mountsUnder(base); len(left) > 0 {
			t.Errorf("leaving %s in place: still mounted: %v", base, left)
			return
		}
		if t.Failed() && os.Getenv("WARREN_KEEP_ROLLOUT") == "1" {
			t.Logf("kept %s (WARREN_KEEP_ROLLOUT=1)", base)
			return
		}
		os.RemoveAll(base)
	})

	repo, err := filepath.Abs("../..")
	must(t, err)
	here, err := filepath.Abs(".")
	must(t, err)
	binDir := filepath.Join(base, "bin")
	if pre := os.Getenv("WARREN_ROLLOUT_BIN"); pre != "" {
		binDir = pre // prebuilt, e.g. by make build-cross (bin/)
	} else {
		buildBinaries(t, repo, binDir)
	}

	hub := newChrootHost(t, base, "hub")
	edge := newChrootHost(t, base, "edge")
	web := newChrootHost(t, base, "web")
	for _, h := range []*chrootHost{edge, web} {
		installSshdPAM(t, h)
	}

	p := freePorts(t, 9)
	pt := struct{ nats, hubMQTT, hubAdmin, hubGossip, edgeUDP, edgeMQTT, edgeAdmin, edgeGossip int }{
		p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
	}
	inv := writeInventory(t, base, map[string]any{
		"all": map[string]any{
			"vars": map[string]any{
				"ansible_connection":         "community.general.chroot",
				"ansible_python_interpreter": "/usr/bin/python3",
				"warren_build_dir":           binDir,
				"warren_credentials_dir":     filepath.Join(base, "credentials"),
				"warren_manage_services":     false,
				"warren_hub_address":         "127.0.0.1",
				"warren_hub_nats_port":       pt.nats,
				"warren_hub_gossip_port":     pt.hubGossip,
			},
			"children": map[string]any{
				"warren_hub": map[string]any{"hosts": map[string]any{"hub": map[string]any{
					"ansible_host":               hub.root,
					"warren_service_manager":     "systemd",
					"warren_hub_nats_listen":     fmt.Sprintf("127.0.0.1:%d", pt.nats),
					"warren_hub_mqtt_listen":     fmt.Sprintf("127.0.0.1:%d", pt.hubMQTT),
					"warren_hub_mqtt_tls_listen": "",
					"warren_hub_admin_listen":    fmt.Sprintf("127.0.0.1:%d", pt.hubAdmin),
					"warren_hub_gossip_bind":     "127.0.0.1",
					"warren_hub_notify": map[string]any{
						"targets": map[string]any{
							"logins": map[string]any{"type": "file", "config": map[string]any{"path": notifyFile}},
						},
						"routes": []any{map[string]any{
							"name":    "logins",
							"match":   map[string]any{"topic": []string{"logging/hare"}},
							"targets": []string{"logins"},
							"format":  notifyFormat,
						}},
					},
				}}},
				"warren_edge": map[string]any{"hosts": map[string]any{"edge": map[string]any{
					"ansible_host":               edge.root,
					"warren_service_manager":     "supervisord",
					"warren_edge_id":             "site1",
					"warren_edge_udp_listen":     fmt.Sprintf("127.0.0.1:%d", pt.edgeUDP),
					"warren_edge_mqtt_listen":    fmt.Sprintf("127.0.0.1:%d", pt.edgeMQTT),
					"warren_edge_admin_listen":   fmt.Sprintf("127.0.0.1:%d", pt.edgeAdmin),
					"warren_edge_gossip_bind":    "127.0.0.1",
					"warren_edge_gossip_port":    pt.edgeGossip,
					"warren_edge_require_signed": true,
				}}},
				"warren_hare": map[string]any{"children": map[string]any{"site1": map[string]any{}}},
				"site1": map[string]any{
					"hosts": map[string]any{"edge": map[string]any{}, "web": map[string]any{"ansible_host": web.root}},
					"vars": map[string]any{
						"warren_hare_edge_host":    "edge",
						"warren_hare_edge_address": fmt.Sprintf("127.0.0.1:%d", pt.edgeUDP),
					},
				},
			},
		},
	})

	// First run: everything is new.
	first := runPlaybook(t, here, base, inv, "first")
	for host, r := range first {
		if r.changed == 0 {
			t.Errorf("first run: %s reports no change: %+v", host, r)
		}
	}
	// Second run: nothing to do.
	out2, second := runPlaybookOut(t, here, base, inv, "second")
	for _, host := range []string{"hub", "edge", "web"} {
		r, ok := second[host]
		if !ok {
			t.Fatalf("second run: no PLAY RECAP line for %s", host)
		}
		if r.changed != 0 {
			t.Errorf("second run: %s changed=%d, want 0; changed tasks:\n%s", host, r.changed, changedTasks(out2))
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	checkInstalledFiles(t, hub, edge, web)

	// Start the services as their definitions say.
	hubLaunch, err := parseSystemdUnit(hub.read(t, hubUnit))
	must(t, err)
	edgeLaunch, err := parseSupervisordProgram(edge.read(t, edgeProgram), "warren-edge")
	must(t, err)
	hubSvc := start(t, hub, "hub", hubLaunch, filepath.Join(base, "hub.log"))
	waitFor(t, 30*time.Second, "the hub's /healthz", func() bool {
		hubSvc.running(t)
		code, _ := httpGet(pt.hubAdmin, "/healthz")
		return code == http.StatusOK
	})
	edgeSvc := start(t, edge, "edge", edgeLaunch, filepath.Join(base, "edge.log"))
	waitFor(t, 30*time.Second, "the edge's UDP listener", func() bool {
		edgeSvc.running(t)
		_, err := httpGet(pt.edgeAdmin, "/healthz") // any answer: the admin listener is up
		return udpBound(pt.edgeUDP) && err == nil
	})

	// What the hub stores it republishes on the event's MQTT topic (hared's
	// logging/hare), where mosquitto_sub or mqttwarn read it.
	republished := subscribe(t, pt.hubMQTT, "logging/hare")

	// A login on web: run what its sshd PAM line runs, as pam_exec would.
	argv, line, err := pamExecArgv(web.read(t, sshdPAM), "hare")
	must(t, err)
	if !strings.Contains(line, "optional") {
		t.Errorf("the hare PAM line is not optional: %q", line)
	}
	user := fmt.Sprintf("rollout-%d", time.Now().UnixNano()%1_000_000_000)
	hare := exec.Command(argv[0], argv[1:]...)
	hare.Path = argv[0]
	hare.Dir = "/"
	hare.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"PAM_TYPE=open_session", "PAM_SERVICE=sshd", "PAM_USER=" + user,
		"PAM_RHOST=" + loginRemoteHost, "PAM_TTY=ssh",
	}
	hare.SysProcAttr = &syscall.SysProcAttr{Chroot: web.root, Pdeathsig: syscall.SIGKILL}
	if out, err := hare.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("hare (%q) in web: err %v, output %q", argv, err, out)
	}

	hostname, err := os.Hostname()
	must(t, err)
	waitRepublished(t, republished, 60*time.Second, map[string]any{
		"user": user, "hostname": hostname, "rhost": loginRemoteHost, "service": "sshd", "tty": "ssh", "remote": "127.0.0.1",
	}, hubSvc, edgeSvc)
	want := strings.NewReplacer("{user}", user, "{hostname}", hostname, "{rhost}", loginRemoteHost).Replace(notifyFormat)
	found := false
	deadline := time.Now().Add(60 * time.Second)
	for !found && time.Now().Before(deadline) {
		hubSvc.running(t)
		edgeSvc.running(t)
		b, err := os.ReadFile(hub.path(notifyFile))
		if err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if l == want {
					found = true
				}
			}
		}
		if !found {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !found {
		got, _ := os.ReadFile(hub.path(notifyFile))
		t.Fatalf("no %q in the hub's %s within 60s (content %q)\nhub log:\n%s\nedge log:\n%s",
			want, notifyFile, got, tail(hubSvc.log, 40), tail(edgeSvc.log, 40))
	}
	st, err := os.Stat(hub.path(notifyFile))
	must(t, err)
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != hub.uid(t, "warren-hub") {
		t.Errorf("%s is owned by uid %d, want warren-hub's", notifyFile, uid)
	}

	// Gossip is on by default: the edge joined the hub with the key the
	// playbook distributed, so the hub knows it from gossip as well as
	// from its mutual-TLS connection.
	var sources []string
	waitFor(t, 60*time.Second, "edge site1 known to the hub from gossip and nats", func() bool {
		hubSvc.running(t)
		sources = edgeSources(pt.hubAdmin, "site1")
		return slices.Contains(sources, "gossip") && slices.Contains(sources, "nats")
	})
}

// edgeSources returns where the hub knows an edge from (its /edges list).
func edgeSources(port int, id string) []string {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/edges", port))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var edges []struct {
		ID      string   `json:"id"`
		Sources []string `json:"sources"`
	}
	if json.NewDecoder(resp.Body).Decode(&edges) != nil {
		return nil
	}
	for _, e := range edges {
		if e.ID == id {
			return e.Sources
		}
	}
	return nil
}

// checkInstalledFiles checks users, modes and owners of what the roles
// installed, the keys registered at the edge, the PAM line, and that the
// rendered service definitions are the ones kept in deploy/.
func checkInstalledFiles(t *testing.T, hub, edge, web *chrootHost) {
	t.Helper()
	type want struct {
		h     *chrootHost
		path  string
		mode  os.FileMode
		owner string
	}
	for _, w := range []want{
		{hub, hubCAKey, 0o600, "warren-hub"},
		{hub, hubGossipKey, 0o600, "warren-hub"},
		{hub, "/var/lib/warren/hub", 0o700 | os.ModeDir, "warren-hub"},
		{hub, "/usr/local/bin/hub", 0o755, "root"},
		{edge, edgeKey, 0o600, "warren-edge"},
		{edge, edgeCert, 0o644, "warren-edge"},
		{edge, edgeHareKeys, 0o600, "warren-edge"},
		{edge, edgeGossipKey, 0o600, "warren-edge"},
		{edge, "/var/lib/warren/edge", 0o700 | os.ModeDir, "warren-edge"},
		{edge, hareKey, 0o600, "root"},
		{web, hareKey, 0o600, "root"},
		{web, "/usr/local/bin/hare", 0o755, "root"},
	} {
		st, err := os.Stat(w.h.path(w.path))
		if err != nil {
			t.Errorf("%s: %v", w.h.name, err)
			continue
		}
		if st.Mode()&(os.ModeDir|os.ModePerm) != w.mode {
			t.Errorf("%s:%s mode %v, want %v", w.h.name, w.path, st.Mode(), w.mode)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != w.h.uid(t, w.owner) {
			t.Errorf("%s:%s owned by uid %d, want %s", w.h.name, w.path, uid, w.owner)
		}
	}
	if a, b := hub.read(t, hubGossipKey), edge.read(t, edgeGossipKey); a != b {
		t.Errorf("hub and edge have different gossip keys")
	}

	// The edge lists the keys of both hare hosts of its site, and they are
	// the keys those hosts sign with.
	keyLine := regexp.MustCompile(`^([A-Za-z0-9._-]{1,32}) [0-9a-f]{64}$`)
	var listed []string
	for _, l := range strings.Split(edge.read(t, edgeHareKeys), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		m := keyLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("edge: %s: malformed key line", edgeHareKeys) // never print key material
			continue
		}
		listed = append(listed, l)
	}
	if len(listed) != 2 {
		t.Errorf("edge: %s lists %d keys, want 2 (edge, web)", edgeHareKeys, len(listed))
	}
	for _, h := range []*chrootHost{edge, web} {
		k := strings.TrimSpace(h.read(t, hareKey))
		if !strings.HasPrefix(k, h.name+" ") || !contains(listed, k) {
			t.Errorf("%s: its hare key (id %q) is not the one registered at the edge", h.name, strings.Fields(k)[0])
		}
	}

	// One hare line in sshd's PAM file, optional.
	n := 0
	for _, l := range strings.Split(web.read(t, sshdPAM), "\n") {
		if strings.Contains(l, "pam_exec.so") && strings.Contains(l, "hare") {
			n++
			if f := strings.Fields(l); len(f) < 2 || f[0] != "session" || f[1] != "optional" {
				t.Errorf("web: PAM line %q: want session optional", l)
			}
		}
	}
	if n != 1 {
		t.Errorf("web: %s has %d hare lines, want 1", sshdPAM, n)
	}

	// The service definitions in deploy/ are what the roles render with
	// their defaults.
	for _, c := range []struct {
		h            *chrootHost
		path, source string
	}{
		{hub, hubUnit, "../systemd/warren-hub.service"},
		{edge, edgeProgram, "../supervisord/warren-edge.conf"},
	} {
		src, err := os.ReadFile(c.source)
		must(t, err)
		if got := c.h.read(t, c.path); got != string(src) {
			t.Errorf("%s:%s differs from deploy/%s; run go test ./deploy/ansible -run TestServiceDefinitions -update", c.h.name, c.path, strings.TrimPrefix(c.source, "../"))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// installSshdPAM gives a target the PAM file of Debian's openssh-server
// (abridged), as a server with sshd has it.
func installSshdPAM(t *testing.T, h *chrootHost) {
	t.Helper()
	const pam = `# PAM configuration for the Secure Shell service

# Standard Un*x authentication.
@include common-auth

# Disallow non-root logins when /etc/nologin exists.
account    required     pam_nologin.so

# Standard Un*x authorization.
@include common-account

session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close
session    required     pam_loginuid.so
session    optional     pam_keyinit.so force revoke

# Standard Un*x session setup and teardown.
@include common-session

session    optional     pam_motd.so  motd=/run/motd.dynamic
session    optional     pam_motd.so noupdate
session    optional     pam_mail.so standard noenv
session    required     pam_limits.so
session    required     pam_env.so
session    required     pam_env.so user_readenv=1 envfile=/etc/default/locale
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open

# Standard Un*x password updating.
@include common-password
`
	must(t, os.WriteFile(h.path(sshdPAM), []byte(pam), 0o644))
}

// buildBinaries builds hare, edge and hub for this machine into
// dir/<os>-<arch>/, the layout of `make build-cross` that the roles read.
func buildBinaries(t *testing.T, repo, dir string) {
	t.Helper()
	out := filepath.Join(dir, runtime.GOOS+"-"+runtime.GOARCH)
	must(t, os.MkdirAll(out, 0o755))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out+"/", "./cmd/hare", "./cmd/edge", "./cmd/hub")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
}

// freePorts returns n distinct ports free for both TCP and UDP on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	seen := map[int]bool{}
	for tries := 0; len(ports) < n && tries < 200; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if !seen[port] {
			seen[port] = true
			ports = append(ports, port)
		}
	}
	if len(ports) < n {
		t.Fatalf("found only %d free ports", len(ports))
	}
	return ports
}

// writeInventory writes the inventory (JSON is YAML) into base/inventory.
func writeInventory(t *testing.T, base string, inv map[string]any) string {
	t.Helper()
	dir := filepath.Join(base, "inventory")
	must(t, os.MkdirAll(dir, 0o700))
	b, err := json.MarshalIndent(inv, "", "  ")
	must(t, err)
	path := filepath.Join(dir, "hosts.yml")
	must(t, os.WriteFile(path, b, 0o600))
	return path
}

// recap is one host's PLAY RECAP line.
type recap struct{ ok, changed, unreachable, failed int }

var recapLine = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// parseRecap reads the PLAY RECAP of ansible-playbook's default output.
func parseRecap(out string) map[string]recap {
	i := strings.LastIndex(out, "PLAY RECAP")
	if i < 0 {
		return nil
	}
	res := map[string]recap{}
	for _, m := range recapLine.FindAllStringSubmatch(out[i:], -1) {
		n := func(s string) int { v, _ := strconv.Atoi(s); return v }
		res[m[1]] = recap{ok: n(m[2]), changed: n(m[3]), unreachable: n(m[4]), failed: n(m[5])}
	}
	return res
}

// changedTasks lists the tasks that reported "changed" in ansible output.
func changedTasks(out string) string {
	var b strings.Builder
	task := ""
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "TASK [") || strings.HasPrefix(l, "RUNNING HANDLER ["):
			task = strings.TrimRight(l, " *")
		case strings.HasPrefix(l, "changed: "):
			fmt.Fprintf(&b, "  %s: %s\n", task, l)
		}
	}
	return b.String()
}

func runPlaybook(t *testing.T, dir, base, inv, label string) map[string]recap {
	t.Helper()
	_, r := runPlaybookOut(t, dir, base, inv, label)
	return r
}

// runPlaybookOut runs site.yml against inv (bounded to 4 minutes), fails
// the test unless every host ends with failed=0 and unreachable=0, and
// returns the output and the recap.
func runPlaybookOut(t *testing.T, dir, base, inv, label string) (string, map[string]recap) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	logPath := filepath.Join(base, "ansible-"+label+".log")
	logf, err := os.Create(logPath)
	must(t, err)
	defer logf.Close()
	var buf strings.Builder
	cmd := exec.CommandContext(ctx, "ansible-playbook", "-i", inv, "site.yml")
	cmd.Dir = dir
	cmd.Stdout = io.MultiWriter(logf, &buf)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = append(os.Environ(),
		"ANSIBLE_CONFIG="+filepath.Join(dir, "ansible.cfg"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_HOME="+filepath.Join(base, "ansible-home"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(base, "ansible-tmp"),
		"ANSIBLE_STDOUT_CALLBACK=default",
		"ANSIBLE_RETRY_FILES_ENABLED=0",
		"PYTHONDONTWRITEBYTECODE=1",
	)
	began := time.Now()
	runErr := cmd.Run()
	out := buf.String()
	t.Logf("ansible-playbook (%s run) took %v", label, time.Since(began).Round(100*time.Millisecond))
	rec := parseRecap(out)
	if runErr != nil || len(rec) == 0 {
		t.Fatalf("ansible-playbook (%s run): %v\n%s", label, runErr, lastLines(out, 80))
	}
	for host, r := range rec {
		if r.failed != 0 || r.unreachable != 0 {
			t.Fatalf("ansible-playbook (%s run): %s failed=%d unreachable=%d\n%s", label, host, r.failed, r.unreachable, lastLines(out, 80))
		}
	}
	return out, rec
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpGet fetches http://127.0.0.1:port/path and returns the status code.
func httpGet(port int, path string) (int, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// subscribe connects an MQTT 3.1.1 client to 127.0.0.1:port and subscribes
// to topic; the payloads arrive on the returned channel.
func subscribe(t *testing.T, port int, topic string) <-chan []byte {
	t.Helper()
	ch := make(chan []byte, 64)
	opts := mqtt.NewClientOptions().
		AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID(fmt.Sprintf("rollout-test-%d", os.Getpid())).
		SetProtocolVersion(4).
		SetConnectTimeout(5 * time.Second).
		SetAutoReconnect(false)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect to the hub (127.0.0.1:%d): %v", port, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case ch <- append([]byte(nil), m.Payload()...):
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe %s: %v", topic, tok.Error())
	}
	return ch
}

// waitRepublished waits for a JSON payload on ch whose fields include want
// (compared as text), failing with the services' logs after d.
func waitRepublished(t *testing.T, ch <-chan []byte, d time.Duration, want map[string]any, svcs ...*service) {
	t.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var seen []string
	for {
		select {
		case p := <-ch:
			seen = append(seen, string(p))
			var got map[string]any
			if json.Unmarshal(p, &got) != nil {
				continue
			}
			match := true
			for k, v := range want {
				if fmt.Sprint(got[k]) != fmt.Sprint(v) {
					match = false
				}
			}
			if match {
				return
			}
		case <-tick.C:
			for _, s := range svcs {
				s.running(t)
			}
		case <-deadline:
			var logs strings.Builder
			for _, s := range svcs {
				fmt.Fprintf(&logs, "%s log:\n%s\n", s.name, tail(s.log, 30))
			}
			t.Fatalf("no login event %v republished by the hub within %v (saw %q)\n%s", want, d, seen, logs.String())
		}
	}
}
