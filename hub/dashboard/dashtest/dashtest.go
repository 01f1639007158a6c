// Package dashtest drives the dashboard page in Debian's headless
// Chromium for tests (hub/dashboard's own and cmd/hub's, which loads the
// page from a running hub): it finds the browser, dumps the DOM the page's
// script leaves behind, reads the data-* attributes the script sets on
// each chart, and saves screenshots. Test-only; nothing imports it outside
// _test.go files.
package dashtest

import (
	"context"
	"encoding/json"
	"html"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Chromium finds Debian's chromium; the test skips without it unless
// WARREN_REQUIRE_ALL=1.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("WARREN_REQUIRE_ALL") == "1" {
		t.Fatal("chromium is not installed (apt-get install chromium) and WARREN_REQUIRE_ALL=1")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// Run runs headless chromium with a fresh profile and returns its
// standard output.
func Run(t testing.TB, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,900",
		// Virtual time runs the page's scripts and fetches to completion
		// (the page's next refresh is after the budget).
		"--virtual-time-budget=8000",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// ArtifactDir is $WARREN_ARTIFACTS (made if missing), or a temporary
// directory of the test.
func ArtifactDir(t testing.TB) string {
	if d := os.Getenv("WARREN_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// Element returns the attributes of the first element with id.
func Element(t testing.TB, dom, id string) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`<[a-z]+\s[^>]*\bid="` + regexp.QuoteMeta(id) + `"[^>]*>`)
	tag := re.FindString(dom)
	if tag == "" {
		t.Fatalf("no element #%s in the DOM", id)
	}
	return Attrs(tag)
}

var reAttr = regexp.MustCompile(`\b([a-z][a-z0-9-]*)="([^"]*)"`)

// Attrs parses the attributes of one tag.
func Attrs(tag string) map[string]string {
	out := map[string]string{}
	for _, m := range reAttr.FindAllStringSubmatch(tag, -1) {
		out[m[1]] = html.UnescapeString(m[2])
	}
	return out
}

// Body returns the attributes of the body tag.
func Body(dom string) map[string]string {
	return Attrs(regexp.MustCompile(`<body[^>]*>`).FindString(dom))
}

// List parses a JSON list of strings.
func List(t testing.TB, s string) []string {
	t.Helper()
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return l
}

// Counts parses a JSON object of numbers.
func Counts(t testing.TB, s string) map[string]int {
	t.Helper()
	var m map[string]int
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return m
}

// Contains tells whether l holds s.
func Contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// CheckChart asserts a chart container says it rendered the datasets,
// drew pixels, and drew each of the painted datasets in its color.
func CheckChart(t testing.TB, id string, a map[string]string, datasets, painted []string) {
	t.Helper()
	if a["data-rendered"] != "true" {
		t.Errorf("%s not rendered: %v", id, a)
		return
	}
	if got := List(t, a["data-datasets"]); strings.Join(got, ",") != strings.Join(datasets, ",") {
		t.Errorf("%s datasets %v, want %v", id, got, datasets)
	}
	if n, _ := strconv.Atoi(a["data-points"]); n == 0 {
		t.Errorf("%s has no data points", id)
	}
	if n, _ := strconv.Atoi(a["data-total"]); n == 0 {
		t.Errorf("%s total is 0", id)
	}
	if n, _ := strconv.Atoi(a["data-painted"]); n <= 0 {
		t.Errorf("%s canvas is blank (%s)", id, a["data-painted"])
	}
	px := Counts(t, a["data-color-pixels"])
	for _, d := range painted {
		if px[d] == 0 {
			t.Errorf("%s: no pixel of dataset %q was drawn (%v)", id, d, px)
		}
	}
}
