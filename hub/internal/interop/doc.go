// Package interop has no code: its test runs the real edge→hub bridge
// (package bridge) against the real hub (package hub), proving that the two
// halves of the forwarding contract fit. It lives apart from package hub so
// that the hub's own tests do not depend on the bridge.
package interop
