package discovery

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func hubMember(name, addr string, urls ...string) Member {
	return Member{Name: name, Addr: addr, State: StateAlive, Meta: Meta{Role: RoleHub, NATSURLs: urls}}
}

func TestChooseHub(t *testing.T) {
	edge := Member{Name: "a-edge", Addr: "10.0.0.9:7946", State: StateAlive, Meta: Meta{Role: RoleEdge}}
	h1 := hubMember("hub-1", "10.0.0.1:7946", "tls://10.0.0.1:4222")
	h2 := hubMember("hub-2", "10.0.0.2:7946", "tls://10.0.0.2:4222")
	dead := hubMember("hub-0", "10.0.0.3:7946", "tls://10.0.0.3:4222")
	dead.State = StateDead
	left := hubMember("hub-00", "10.0.0.4:7946", "tls://10.0.0.4:4222")
	left.State = StateLeft
	bad := hubMember("aaa", "10.0.0.5:7946", "tls://10.0.0.5:4222")
	bad.MetaErr = "decode metadata: boom"
	noURL := hubMember("aab", "10.0.0.6:7946")

	tests := []struct {
		name       string
		members    []Member
		current    string
		wantOK     bool
		wantName   string
		wantReason string
	}{
		{"none", []Member{edge}, "", false, "", "no alive hub known"},
		{"only dead, left, invalid or URL-less hubs", []Member{edge, dead, left, bad, noURL}, "", false, "", "no alive hub known"},
		{"one", []Member{edge, h2, dead}, "", true, "hub-2", "only alive hub"},
		{"lowest name", []Member{h2, h1, edge}, "", true, "hub-1", "lowest name of 2 alive hubs"},
		{"sticky", []Member{h1, h2}, "hub-2", true, "hub-2", "current hub, still alive (2 hubs)"},
		{"current gone", []Member{h1, h2}, "hub-9", true, "hub-1", "lowest name of 2 alive hubs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := chooseHub(tt.members, tt.current)
			if ok != tt.wantOK || got.Name != tt.wantName || got.Reason != tt.wantReason {
				t.Errorf("chooseHub = (%q, %q, %v), want (%q, %q, %v)", got.Name, got.Reason, ok, tt.wantName, tt.wantReason, tt.wantOK)
			}
		})
	}
}

func TestHubURLs(t *testing.T) {
	h1 := hubMember("hub-1", "10.0.0.1:7946", "tls://0.0.0.0:4222", "nats://hub.example:4222")
	h2 := hubMember("hub-2", "[fd00::2]:7946", "tls://[::]:4223", "nats://hub.example:4222", "nats://:4224")
	h3 := hubMember("hub-3", "10.0.0.3:7946", "tls://10.0.0.3")
	members := []Member{h3, h2, h1}
	got := hubURLs(members, HubChoice{Member: h2})
	want := []string{
		"tls://[fd00::2]:4223",
		"nats://hub.example:4222",
		"nats://[fd00::2]:4224",
		"tls://10.0.0.1:4222",
		"tls://10.0.0.3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestResolveURL(t *testing.T) {
	tests := []struct{ in, gossip, want string }{
		{"tls://0.0.0.0:4222", "192.0.2.7:7946", "tls://192.0.2.7:4222"},
		{"nats://0.0.0.0", "192.0.2.7:7946", "nats://192.0.2.7:4222"},
		{"tls://[::]:4222", "192.0.2.7:7946", "tls://192.0.2.7:4222"},
		{"tls://hub.example:4222", "192.0.2.7:7946", "tls://hub.example:4222"},
		{"tls://198.51.100.1:4222", "192.0.2.7:7946", "tls://198.51.100.1:4222"},
		{"tls://0.0.0.0:4222", "garbage", "tls://0.0.0.0:4222"},
		{"%%%", "192.0.2.7:7946", "%%%"},
	}
	for _, tt := range tests {
		if got := resolveURL(tt.in, tt.gossip); got != tt.want {
			t.Errorf("resolveURL(%q, %q) = %q, want %q", tt.in, tt.gossip, got, tt.want)
		}
	}
}

func TestDialTargets(t *testing.T) {
	got := dialTargets([]string{"tls://10.0.0.1:4222", "ws://10.0.0.1:80", "nats://h", "tls://10.0.0.1:4222", "%%"}, "hub.example:4222")
	want := []dialTarget{
		{"10.0.0.1:4222", "discovery"},
		{"h:4222", "discovery"},
		{"hub.example:4222", "fallback"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(dialTarget{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := dialTargets(nil, "x:1"); len(got) != 1 || got[0].via != "fallback" {
		t.Errorf("no URLs: %v", got)
	}
}
