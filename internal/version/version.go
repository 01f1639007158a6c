// Package version holds the build version of the warren binaries, set at link
// time with -ldflags "-X github.com/warren-mesh/warren/internal/version.Version=...".
package version

import "runtime"

// Version is the release version; "dev" for builds without -ldflags.
var Version = "dev"

// Commit is the VCS revision the binary was built from, if known.
var Commit = ""

// String returns a one-line description such as "v0.1.0 (abc1234, go1.26.8)".
func String() string {
	c := Commit
	if c == "" {
		c = "unknown commit"
	}
	return Version + " (" + c + ", " + runtime.Version() + ")"
}
