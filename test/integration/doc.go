// Package integration holds warren's real-process tests: the hare, edge and
// hub binaries are built once per test run and driven as an operator would
// (config files, signals, SIGKILL, outages), and what reached the edge and
// hub stores is read back and checked event by event. The package has no
// non-test code besides this comment; everything lives in _test.go files.
// Everything here is skipped under -short.
package integration
