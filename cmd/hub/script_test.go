package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"hub": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar with hub as a separate process.
//
// Custom command:
//
//	mode FILE OCTAL   fail unless FILE's permission bits are OCTAL
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// no HUB_* variable of the test environment leaks in
			vars := env.Vars[:0]
			for _, kv := range env.Vars {
				if !strings.HasPrefix(kv, "HUB_") {
					vars = append(vars, kv)
				}
			}
			env.Vars = vars
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mode": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: mode FILE OCTAL")
				}
				want, err := strconv.ParseUint(args[1], 8, 32)
				ts.Check(err)
				fi, err := os.Stat(ts.MkAbs(args[0]))
				ts.Check(err)
				if got := uint64(fi.Mode().Perm()); (got == want) == neg {
					ts.Fatalf("%s: mode %#o, want %s%#o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
				}
			},
		},
	})
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"version", []string{"version"}, exitOK, ""},
		{"unknown command", []string{"fly"}, exitUsage, "unknown command"},
		{"unknown flag", []string{"status", "--jsn"}, exitUsage, "unknown flag"},
		{"extra argument", []string{"version", "x"}, exitUsage, ""},
		{"bad config value", []string{"check-config", "--log-level", "loud", "--data-dir", dir}, exitUsage, "log.level"},
		{"issue without id", []string{"pki", "issue", "--data-dir", dir}, exitUsage, "accepts 1 arg"},
		{"status without a hub", []string{"status", "--admin-listen", "unix:" + dir + "/none.sock"}, exitFailure, "is the daemon running"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(c.args, &out, &errb); code != c.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, c.code, errb.String())
			}
			if !strings.Contains(errb.String(), c.err) {
				t.Errorf("stderr %q lacks %q", errb.String(), c.err)
			}
		})
	}
}
