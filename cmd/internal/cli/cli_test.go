package cli

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	var ran []string
	cmds := []Command{{Name: "a", Summary: "first", Run: func(args []string, stdout, _ io.Writer) int {
		ran = append(ran, strings.Join(args, " "))
		fmt.Fprint(stdout, "ran a")
		return 7
	}}}
	usage := func(w io.Writer) { fmt.Fprint(w, "usage: prog") }
	for _, tc := range []struct {
		name                   string
		args                   []string
		wantCode               int
		wantStdout, wantStderr string
	}{
		{name: "command", args: []string{"a", "-x", "y"}, wantCode: 7, wantStdout: "ran a"},
		{name: "nothing", wantCode: ExitUsage, wantStderr: "usage: prog"},
		{name: "help", args: []string{"help"}, wantCode: ExitOK, wantStdout: "usage: prog"},
		{name: "-h", args: []string{"-h"}, wantCode: ExitOK, wantStdout: "usage: prog"},
		{name: "unknown", args: []string{"b"}, wantCode: ExitUsage, wantStderr: "prog: unknown command \"b\"\n\nusage: prog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Dispatch("prog", cmds, usage, tc.args, &stdout, &stderr); code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			if stdout.String() != tc.wantStdout || stderr.String() != tc.wantStderr {
				t.Errorf("stdout %q, stderr %q; want %q, %q", stdout.String(), stderr.String(), tc.wantStdout, tc.wantStderr)
			}
		})
	}
	if len(ran) != 1 || ran[0] != "-x y" {
		t.Errorf("command a ran with %q, want once with the arguments after its name", ran)
	}
}

func TestFlagExit(t *testing.T) {
	if FlagExit(flag.ErrHelp) != ExitOK || FlagExit(fmt.Errorf("bad flag")) != ExitUsage {
		t.Error("FlagExit: -h must be a success and any other error bad usage")
	}
}

func TestStrings(t *testing.T) {
	var s Strings
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(&s, "pub", "")
	if err := fs.Parse([]string{"--pub", "a", "--pub", "b"}); err != nil {
		t.Fatal(err)
	}
	if s.String() != "a,b" {
		t.Errorf("repeated flag gave %q, want a,b", s.String())
	}
}
