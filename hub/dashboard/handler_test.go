package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// mount serves h at /dashboard/ the way the hub's admin listener does.
func mount(h http.Handler) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", h)
	return httptest.NewServer(mux)
}

func TestHandler(t *testing.T) {
	a, _ := newTestAgg(t, nil)
	a.now = time.Now
	a.Observe(Message{Edge: "e1", Topic: event.HareTopic, Source: event.SourceUDP, Time: time.Now(), Payload: []byte(`{"hostname":"vm"}`)})
	a.Observe(auditMsg(t, "e1", audit.Event{Kind: audit.KindAlert, Rule: audit.RulePlain, Time: time.Now(), Message: "<script>alert(1)</script>"}))
	srv := mount(New(a, Options{Title: "home <mesh>", Refresh: 3 * time.Second}))
	defer srv.Close()

	resp, body := get(t, srv.URL+"/dashboard/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, want := range []string{`<title>home &lt;mesh&gt; · dashboard</title>`, `data-refresh-ms="3000"`, `src="assets/chart.umd.min.js"`, `id="chart-devices"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("page refers to an outside URL")
	}

	resp, body = get(t, srv.URL+"/dashboard/assets/chart.umd.min.js")
	if resp.StatusCode != 200 || !strings.Contains(body, "Chart.js v4.6.1") || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("chart.js: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	resp, _ = get(t, srv.URL+"/dashboard/assets/app.js")
	if resp.StatusCode != 200 {
		t.Errorf("app.js: %s", resp.Status)
	}

	resp, body = get(t, srv.URL+"/dashboard/api/snapshot?window=1h&step=10m&top=5&alerts=5")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("snapshot: %s %s", resp.Status, body)
	}
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Timeline.Times) != 6 || s.Timeline.StepMS != 600000 || len(s.Devices) != 1 || s.Devices[0].Name != "e1/vm" ||
		len(s.Alerts) != 1 || len(s.Fleet) != 1 || s.WindowMS != 3600000 {
		t.Errorf("snapshot %+v", s)
	}
	var sum uint64
	for _, v := range s.Timeline.Series[SeriesLogins] {
		sum += v
	}
	if sum != 1 {
		t.Errorf("logins %v", s.Timeline.Series[SeriesLogins])
	}
	for path, want := range map[string]string{
		"/dashboard/api/timeline?window=30m&step=1m": `"step_ms":60000`,
		"/dashboard/api/devices?top=1":               `[{"name":"e1/vm","in":1,"out":0}]`,
		"/dashboard/api/topics":                      `"logging/hare"`,
		"/dashboard/api/fleet":                       `"id":"e1"`,
		"/dashboard/api/alerts?n=1":                  `"rule":"plain_remote"`,
	} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %s %s, want %s", path, resp.Status, body, want)
		}
	}
	for _, path := range []string{
		"/dashboard/api/snapshot?window=-1h", "/dashboard/api/snapshot?window=48h", "/dashboard/api/snapshot?step=1s",
		"/dashboard/api/devices?top=0", "/dashboard/api/devices?top=1000", "/dashboard/api/alerts?n=x", "/dashboard/api/timeline?step=soon",
	} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", path, resp.Status)
		}
	}
	for _, path := range []string{"/dashboard/nothing", "/dashboard/api/nothing", "/dashboard/assets/missing.js", "/dashboard/assets/index.html/x"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %s, want 404", path, resp.Status)
		}
	}
	if resp, err := http.Post(srv.URL+"/dashboard/api/snapshot", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp.Status, err)
	}
}

type brokenSource struct{ *Aggregator }

func (*brokenSource) Fleet(context.Context) ([]Edge, error) { return nil, errors.New("hub not ready") }

func TestHandlerSourceError(t *testing.T) {
	a, _ := newTestAgg(t, nil)
	srv := mount(New(&brokenSource{Aggregator: a}, Options{}))
	defer srv.Close()
	resp, body := get(t, srv.URL+"/dashboard/api/snapshot")
	if resp.StatusCode != 500 || !strings.Contains(body, "hub not ready") {
		t.Errorf("%s %s", resp.Status, body)
	}
}
