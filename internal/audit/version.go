package audit

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseVersion reads a dotted numeric version: an optional "v", one to
// four numbers, then an optional pre-release ("-rc1") or build ("+x")
// suffix. ok is false for anything else ("dev", "", "1.x").
func ParseVersion(s string) (nums []int, pre bool, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		pre = true
		s = s[:i]
	}
	if s == "" {
		return nil, false, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return nil, false, false
	}
	nums = make([]int, len(parts))
	for i, p := range parts {
		if p == "" || len(p) > 9 {
			return nil, false, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false, false
		}
		nums[i] = n
	}
	return nums, pre, true
}

// VersionBelow reports whether version is lower than min. Missing parts
// count as 0, and a pre-release is below its release ("1.2.0-rc1" <
// "1.2.0"). A version that does not parse is never below (it cannot be
// judged); a minimum that does not parse makes nothing below.
func VersionBelow(version, min string) bool {
	v, vpre, ok := ParseVersion(version)
	if !ok {
		return false
	}
	m, mpre, ok := ParseVersion(min)
	if !ok {
		return false
	}
	for i := 0; i < len(v) || i < len(m); i++ {
		var a, b int
		if i < len(v) {
			a = v[i]
		}
		if i < len(m) {
			b = m[i]
		}
		if a != b {
			return a < b
		}
	}
	return vpre && !mpre
}

// parseMinVersions reads "name:version" entries into a map by lower-case
// name.
func parseMinVersions(list []string) (map[string]string, error) {
	out := map[string]string{}
	for i, e := range list {
		name, v, ok := strings.Cut(e, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		v = strings.TrimSpace(v)
		if !ok || name == "" {
			return nil, fmt.Errorf("[%d] %q: want name:version, e.g. edge:0.4.0 or go:1.50.0", i, e)
		}
		if _, _, ok := ParseVersion(v); !ok {
			return nil, fmt.Errorf("[%d] %q: %q is not a dotted version", i, e, v)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("[%d] %q: %s is listed twice", i, e, name)
		}
		out[name] = v
	}
	return out, nil
}
