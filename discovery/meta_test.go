package discovery

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeMetaWireFormat(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
		want string
	}{
		{
			name: "hub",
			meta: Meta{Role: RoleHub, ID: "home", Version: "v0.3.0", NATSURLs: []string{"tls://10.0.0.5:4222"}, TLSServerName: "hub.warren"},
			want: `{"r":"hub","id":"home","v":"v0.3.0","u":["tls://10.0.0.5:4222"],"tls":"hub.warren"}`,
		},
		{
			name: "edge",
			meta: Meta{Role: RoleEdge, ID: "vps1", Version: "v0.3.0", Backlog: 17, Link: LinkUp},
			want: `{"r":"edge","id":"vps1","v":"v0.3.0","bl":17,"l":"up"}`,
		},
		{
			name: "minimal edge",
			meta: Meta{Role: RoleEdge},
			want: `{"r":"edge"}`,
		},
		{
			name: "no HTML escaping",
			meta: Meta{Role: RoleHub, NATSURLs: []string{"nats://h:1/?a=1&b=<2>"}},
			want: `{"r":"hub","u":["nats://h:1/?a=1&b=<2>"]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, dropped, err := EncodeMeta(tt.meta)
			if err != nil {
				t.Fatal(err)
			}
			if dropped != 0 {
				t.Errorf("dropped = %d, want 0", dropped)
			}
			if string(b) != tt.want {
				t.Errorf("encoded\n got %s\nwant %s", b, tt.want)
			}
			back, err := DecodeMeta(b)
			if err != nil {
				t.Fatalf("decode own encoding: %v", err)
			}
			if diff := cmp.Diff(tt.meta, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeMetaTrimsURLs(t *testing.T) {
	var urls []string
	for i := range 16 {
		urls = append(urls, fmt.Sprintf("tls://hub-%02d.example.org:4222/%s", i, strings.Repeat("p", 20)))
	}
	m := Meta{Role: RoleHub, ID: "hub", NATSURLs: urls, TLSServerName: "hub.example.org"}
	b, dropped, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxMetaSize {
		t.Fatalf("encoded %d bytes, over %d", len(b), MaxMetaSize)
	}
	if dropped == 0 {
		t.Fatal("dropped = 0; the list was too long and should have been cut")
	}
	back, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(urls[:len(urls)-dropped], back.NATSURLs); diff != "" {
		t.Errorf("kept URLs are not a prefix of the list (-want +got):\n%s", diff)
	}
	if m.NATSURLs[15] != urls[15] {
		t.Error("EncodeMeta modified its argument")
	}
}

func TestEncodeMetaTooLarge(t *testing.T) {
	// One URL of the maximal length plus long fields cannot fit.
	m := Meta{
		Role:          RoleHub,
		ID:            strings.Repeat("i", maxIDLen),
		Version:       strings.Repeat("v", maxVersionLen),
		TLSServerName: strings.Repeat("t", maxTLSNameLen),
		NATSURLs:      []string{"tls://" + strings.Repeat("h", maxURLLen-11) + ":4222"},
	}
	_, _, err := EncodeMeta(m)
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("err = %v, want ErrMetaTooLarge", err)
	}
}

func TestMetaValidate(t *testing.T) {
	tests := []struct {
		name    string
		meta    Meta
		wantErr string // substring; empty means valid
	}{
		{"hub ok", Meta{Role: RoleHub, NATSURLs: []string{"nats://127.0.0.1:4222", "tls://[::1]:4222", "wss://h/x", "nats://:4222"}}, ""},
		{"edge ok", Meta{Role: RoleEdge, ID: "e-1", Link: "catching_up-2"}, ""},
		{"missing role", Meta{}, "role: missing"},
		{"unknown role", Meta{Role: "relay"}, `role: "relay" unknown`},
		{"id with space", Meta{Role: RoleEdge, ID: "a b"}, "id: byte 1"},
		{"id too long", Meta{Role: RoleEdge, ID: strings.Repeat("x", 65)}, "id: longer than 64"},
		{"control char in version", Meta{Role: RoleEdge, Version: "v1\n"}, "version: byte 2"},
		{"non-ASCII tls name", Meta{Role: RoleHub, TLSServerName: "hüb"}, "tls_server_name:"},
		{"http scheme", Meta{Role: RoleHub, NATSURLs: []string{"http://h:80"}}, `nats_urls[0]: scheme "http"`},
		{"credentials", Meta{Role: RoleHub, NATSURLs: []string{"nats://u:p@h:4222"}}, "credentials"},
		{"no host", Meta{Role: RoleHub, NATSURLs: []string{"nats://"}}, "missing host:port"},
		{"not a URL", Meta{Role: RoleHub, NATSURLs: []string{"nats://h:port%"}}, "nats_urls[0]"},
		{"too many URLs", Meta{Role: RoleHub, NATSURLs: make([]string, 17)}, "17 entries"},
		{"bad link", Meta{Role: RoleEdge, Link: "UP"}, "link: only"},
		{"long link", Meta{Role: RoleEdge, Link: LinkState(strings.Repeat("a", 17))}, "link: longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.meta.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"empty", "", "empty metadata"},
		{"not json", "hello", "not a JSON object"},
		{"array", `[1,2]`, "not a JSON object"},
		{"truncated", `{"r":"hub","u":["nats://h:1"]`, "decode metadata"},
		{"trailing data", `{"r":"edge"}{"r":"hub"}`, "trailing data"},
		{"trailing garbage", `{"r":"edge"} x`, "trailing data"},
		{"negative backlog", `{"r":"edge","bl":-1}`, "decode metadata"},
		{"float backlog", `{"r":"edge","bl":1.5}`, "decode metadata"},
		{"wrong type", `{"r":"edge","u":"nats://h:1"}`, "decode metadata"},
		{"NUL in id", `{"r":"edge","id":"a\u0000b"}`, "id: byte 1"},
		{"invalid UTF-8", "{\"r\":\"edge\",\"id\":\"\xff\"}", "id:"},
		{"missing role", `{"id":"x"}`, "role: missing"},
		{"too large", `{"r":"edge","id":"` + strings.Repeat("x", 600) + `"}`, "over the 512-byte limit"},
		{"binary", "\x00\x01\x02", "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMeta([]byte(tt.in))
			if err == nil {
				t.Fatalf("DecodeMeta(%q) succeeded, want error containing %q", tt.in, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeMetaIgnoresUnknownKeys(t *testing.T) {
	m, err := DecodeMeta([]byte(`{"r":"edge","id":"e1","future":{"x":[1,2]},"bl":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Meta{Role: RoleEdge, ID: "e1", Backlog: 3}, m); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// FuzzDecodeMeta: peer metadata never panics the decoder, and whatever it
// accepts encodes back to something it accepts again, unchanged.
func FuzzDecodeMeta(f *testing.F) {
	for _, s := range []string{
		`{"r":"hub","id":"home","v":"v0.3.0","u":["tls://10.0.0.5:4222"],"tls":"hub.warren"}`,
		`{"r":"edge","id":"vps1","v":"v0.3.0","bl":17,"l":"up"}`,
		`{"r":"edge","bl":18446744073709551615}`,
		`{"r":"hub","u":["nats://0.0.0.0:4222","ws://[::]:80"]}`,
		`{"r":"edge"}{`, `[]`, `{`, "", "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		enc, _, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it: %v", b, err)
		}
		back, err := DecodeMeta(enc)
		if err != nil {
			t.Fatalf("cannot decode own encoding %q: %v", enc, err)
		}
		// Encoding may drop trailing URLs to fit; compare the rest.
		if len(back.NATSURLs) < len(m.NATSURLs) {
			m.NATSURLs = m.NATSURLs[:len(back.NATSURLs)]
		}
		if len(m.NATSURLs) == 0 {
			m.NATSURLs = nil // "u":[] and no "u" mean the same
		}
		if diff := cmp.Diff(m, back); diff != "" {
			t.Fatalf("round trip changed metadata (-first +second):\n%s", diff)
		}
	})
}
