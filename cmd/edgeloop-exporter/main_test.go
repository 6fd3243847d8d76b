package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "edgeloop "},
		{name: "--version", args: []string{"--version"}, wantCode: 0, wantStdout: "edgeloop "},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStdout: "usage: edgeloop-exporter <command>"},
		{name: "no command", wantCode: 2, wantStderr: "usage: edgeloop-exporter <command>"},
		{name: "a full-binary command", args: []string{"collector"}, wantCode: 2, wantStderr: `unknown command "collector"`},
		{name: "model help", args: []string{"model", "-h"}, wantCode: 0, wantStdout: "verify"},
		{name: "model sign is not here", args: []string{"model", "sign"}, wantCode: 2, wantStderr: `unknown command "sign"`},
		{name: "model verify needs a key", args: []string{"model", "verify", "/nonexistent"}, wantCode: 2, wantStderr: "--pub and one version directory are required"},
		{name: "config check", args: []string{"exporter", "--config.check"}, wantCode: 0, wantStdout: "configuration (built-in defaults) is valid"},
		{name: "bad config", args: []string{"exporter", "--config", "/nonexistent.yaml"}, wantCode: 2, wantStderr: "edgeloop-exporter exporter: invalid configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}
