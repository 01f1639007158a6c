// Package grafana holds the Grafana dashboard of a warren mesh
// (warren.json); its test checks that every metric the dashboard queries
// is one the code exports.
package grafana

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// prefixed are metric families whose names the code builds from a prefix
// and a suffix literal in one file.
var prefixed = map[string]string{
	"warren_edge_":      "edge/metrics.go",
	"warren_notify_":    "hub/notify/metrics.go",
	"warren_discovery_": "discovery/metrics.go",
}

var reMetric = regexp.MustCompile(`\b(?:hub|warren)_[a-z0-9_]+`)

func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("warren.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("warren.json: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("warren.json: no uid or no panels")
	}
	root := filepath.Join("..", "..")
	var src strings.Builder
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			src.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code := src.String()
	names := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range reMetric.FindAllString(tg.Expr, -1) {
				names[m] = true
			}
		}
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	if len(sorted) < 20 {
		t.Fatalf("only %d metrics in the dashboard: %v", len(sorted), sorted)
	}
	for _, n := range sorted {
		if strings.Contains(code, `"`+n+`"`) {
			continue
		}
		found := false
		for prefix, file := range prefixed {
			if !strings.HasPrefix(n, prefix) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(root, file))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), `"`+strings.TrimPrefix(n, prefix)+`"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("dashboard queries %s, which no code exports", n)
		}
	}
}
