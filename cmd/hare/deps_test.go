package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyBudget keeps hare small and quick to start: it may link
// the standard library and internal/wire, nothing else, and not the heavy
// standard packages listed in heavy.
func TestDependencyBudget(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	const self = "github.com/warren-mesh/warren/cmd/hare"
	allowed := map[string]bool{
		self: true,
		"github.com/warren-mesh/warren/internal/wire": true,
	}
	// Each of these adds start-up time to every login for no use here.
	heavy := map[string]bool{"encoding/json": true, "net/http": true, "os/exec": true, "log/slog": true, "os/user": true}
	for _, goos := range []string{"linux", "freebsd"} {
		cmd := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".")
		cmd.Env = append(os.Environ(), "GOOS="+goos)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("GOOS=%s go list: %v\n%s", goos, err, out)
		}
		var seen int
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			path, std, _ := strings.Cut(line, " ")
			seen++
			switch {
			case std == "true" && heavy[path]:
				t.Errorf("GOOS=%s: cmd/hare links %s; keep it out (start-up time)", goos, path)
			case std == "true", allowed[path]:
			default:
				t.Errorf("GOOS=%s: cmd/hare links %s; only the standard library and internal/wire are allowed", goos, path)
			}
		}
		if seen < 10 {
			t.Fatalf("GOOS=%s: go list returned only %d packages:\n%s", goos, seen, out)
		}
	}
}
