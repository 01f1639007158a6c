package audit

import "testing"

func TestVersionBelow(t *testing.T) {
	cases := []struct {
		v, min string
		below  bool
	}{
		{"1.2.3", "1.2.4", true},
		{"1.2.4", "1.2.4", false},
		{"1.3", "1.2.4", false},
		{"v1.2", "1.2.0", false},
		{"1.2", "1.2.1", true},
		{"0.9.9", "1", true},
		{"1.2.0-rc1", "1.2.0", true},
		{"1.2.0", "1.2.0-rc1", false},
		{"1.2.0+build5", "1.2.0", false},
		{"1.55.0", "1.50.0", false},
		{"1.10.0", "1.9.0", false},
		{"dev", "1.0.0", false},
		{"", "1.0.0", false},
		{"1.x", "1.0.0", false},
		{"1.0.0", "junk", false},
		{"1.2.3.4.5", "9", false},
	}
	for _, c := range cases {
		if got := VersionBelow(c.v, c.min); got != c.below {
			t.Errorf("VersionBelow(%q, %q) = %v, want %v", c.v, c.min, got, c.below)
		}
	}
}

func TestParseMinVersions(t *testing.T) {
	m, err := parseMinVersions([]string{"edge:0.4.0", "Go:1.50", " mosquitto : 2.0.15 "})
	if err != nil {
		t.Fatal(err)
	}
	if m["edge"] != "0.4.0" || m["go"] != "1.50" || m["mosquitto"] != "2.0.15" {
		t.Errorf("got %v", m)
	}
	for _, bad := range [][]string{{"edge"}, {":1.0"}, {"edge:x"}, {"edge:1", "EDGE:2"}} {
		if _, err := parseMinVersions(bad); err == nil {
			t.Errorf("parseMinVersions(%q) accepted", bad)
		}
	}
}

func FuzzVersionBelow(f *testing.F) {
	f.Add("1.2.3", "1.2.4")
	f.Add("v2.0.0-rc1", "2.0.0")
	f.Add("dev", "1")
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := VersionBelow(a, b), VersionBelow(b, a)
		if ab && ba {
			t.Fatalf("%q < %q and %q < %q", a, b, b, a)
		}
		if VersionBelow(a, a) {
			t.Fatalf("%q below itself", a)
		}
	})
}
