package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Interval time.Duration `yaml:"interval"`
	Name     string        `yaml:"name"`
}

type sample struct {
	Listen string  `yaml:"listen"`
	Ratio  float64 `yaml:"ratio"`
	Inner  inner   `yaml:"inner"`
	Items  []inner `yaml:"items"`
}

func (s *sample) Validate() error {
	var errs []error
	if s.Listen == "" {
		errs = append(errs, Errorf("listen", "must not be empty"))
	}
	if s.Inner.Interval <= 0 {
		errs = append(errs, Nest("inner", Errorf("interval", "must be positive, got %s", s.Inner.Interval)))
	}
	for i, it := range s.Items {
		if it.Name == "" {
			errs = append(errs, Nest("items", Nest(fmt.Sprintf("[%d]", i), Errorf("name", "must not be empty"))))
		}
	}
	return errors.Join(errs...)
}

func defaults() *sample {
	return &sample{Listen: ":1", Ratio: 0.5, Inner: inner{Interval: time.Second}}
}

func TestParse(t *testing.T) {
	t.Setenv("EDGELOOP_TEST_SECRET", "s3cr$t")
	tests := []struct {
		name, yaml, wantErr string
		check               func(*sample) bool
	}{
		{name: "empty keeps defaults", yaml: "", check: func(s *sample) bool { return s.Listen == ":1" && s.Ratio == 0.5 }},
		{name: "partial keeps other defaults", yaml: "ratio: 0.9\n", check: func(s *sample) bool { return s.Listen == ":1" && s.Ratio == 0.9 }},
		{name: "duration", yaml: "inner:\n  interval: 2m\n", check: func(s *sample) bool { return s.Inner.Interval == 2*time.Minute }},
		{name: "env expanded", yaml: "listen: ${EDGELOOP_TEST_SECRET}\n", check: func(s *sample) bool { return s.Listen == "s3cr$t" }},
		{name: "env default", yaml: "listen: ${EDGELOOP_TEST_UNSET:-:9}\n", check: func(s *sample) bool { return s.Listen == ":9" }},
		{name: "dollar escape", yaml: "listen: a$$b\n", check: func(s *sample) bool { return s.Listen == "a$b" }},
		{name: "unknown top-level key", yaml: "listen: x\nbogus: 1\n", wantErr: "bogus: unknown field (line 2)"},
		{name: "unknown nested key", yaml: "inner:\n  interval: 1s\n  nmae: x\n", wantErr: "inner.nmae: unknown field (line 3)"},
		{name: "unknown key in list item", yaml: "items:\n  - name: a\n  - bogus: b\n", wantErr: "items[1].bogus: unknown field (line 3)"},
		{name: "bad duration", yaml: "inner:\n  interval: soon\n", wantErr: `inner.interval: cannot use str "soon" as a duration (like 30s or 5m) (line 2)`},
		{name: "bad number", yaml: "ratio: high\n", wantErr: `ratio: cannot use str "high" as a number (line 1)`},
		{name: "unset env", yaml: "listen: ${EDGELOOP_TEST_UNSET}\n", wantErr: "environment variable EDGELOOP_TEST_UNSET is not set (referenced as ${EDGELOOP_TEST_UNSET}; use ${EDGELOOP_TEST_UNSET:-default} for an optional value)"},
		{name: "validate names nested field", yaml: "inner:\n  interval: -1s\n", wantErr: "inner.interval: must be positive, got -1s"},
		{name: "validate names list field", yaml: "items:\n  - name: a\n  - name: \"\"\n", wantErr: "items[1].name: must not be empty"},
		{name: "syntax error", yaml: "listen: [\n", wantErr: "parse: yaml: line 1: did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaults()
			err := Parse([]byte(tt.yaml), s)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tt.check(s) {
				t.Fatalf("decoded %+v", s)
			}
		})
	}
}

func TestNestKeepsFieldErrorsFindable(t *testing.T) {
	err := Nest("gpu", errors.Join(Errorf("naming", "bad"), errors.New("plain")))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "gpu.naming" {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "plain") {
		t.Fatalf("plain error lost: %v", err)
	}
	if Nest("x", nil) != nil {
		t.Fatal("Nest(nil) != nil")
	}
}
