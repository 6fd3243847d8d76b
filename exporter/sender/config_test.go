package sender

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
)

// TestInvalidConfigs loads every file in testdata/invalid, each breaking one rule, and checks
// the exact message its first line promises.
func TestInvalidConfigs(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		cfg := DefaultConfig()
		return &cfg
	})
}

func TestDefaultsValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Enabled() {
		t.Error("enabled without a url")
	}
}

func TestValidConfig(t *testing.T) {
	cfg := DefaultConfig()
	data := []byte(`
url: https://collector.example.com:9751/edgeloop/
tls:
  cert_file: /etc/edgeloop/node.crt
  key_file: /etc/edgeloop/node.key
  ca_file: /etc/edgeloop/ca.crt
  server_name: collector.internal
max_batch_samples: 2000
max_batch_bytes: 67108864
batch_delay: 0s
max_rate: 0.5
dead_letter_max_bytes: 0
dead_letter_dir: ""
`)
	if err := config.Parse(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled() || cfg.TLS.ServerName != "collector.internal" || cfg.MaxRate != 0.5 || cfg.Timeout != 30*time.Second {
		t.Fatalf("cfg = %+v", cfg)
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := dir + "/empty"
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spaced := dir + "/spaced"
	if err := os.WriteFile(spaced, []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hashes := dir + "/node.sha256"
	if err := os.WriteFile(hashes, []byte("edge-1 sha256:"+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := dir + "/ca.crt"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(c *Config, o *Options)
		want   string
	}{
		{"no url", func(c *Config, _ *Options) { c.URL = "" }, "sender: no collector url configured"},
		{"invalid", func(c *Config, _ *Options) { c.Timeout = 0 }, "sender: timeout: must be positive, got 0s"},
		{"no node", func(_ *Config, o *Options) { o.Node = "" }, "sender: no node name"},
		{"missing token file", func(c *Config, _ *Options) { c.TokenFile = dir + "/missing" }, "sender: token file: open " + dir + "/missing: no such file or directory"},
		{"empty token", func(c *Config, _ *Options) { c.TokenFile = empty }, "sender: token_file: token file " + empty + ": empty token file"},
		{"token with space", func(c *Config, _ *Options) { c.TokenFile = spaced }, "sender: token_file: token file " + spaced + ": the token must be printable ASCII without spaces"},
		{"hash list as token", func(c *Config, _ *Options) { c.TokenFile = hashes }, "sender: token_file: token file " + hashes + `: holds a hash list ("<id> sha256:<hex>" lines), which a server reads; this key expects a secret: the raw token on one line (a *.token file)`},
		{"bad CA", func(c *Config, _ *Options) { c.URL = "https://collector"; c.TLS.CAFile = notPEM }, "sender: tls ca_file " + notPEM + ": no PEM certificate found"},
		{"missing certificate", func(c *Config, _ *Options) {
			c.URL = "https://collector"
			c.TLS.CertFile, c.TLS.KeyFile = dir+"/node.crt", dir+"/node.key"
		}, "sender: client certificate: open " + dir + "/node.crt: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "http://127.0.0.1:1")
			opts := Options{Node: "edge-1"}
			tt.change(&cfg, &opts)
			s, err := New(cfg, newQueue(), opts)
			if err == nil {
				s.Close()
				t.Fatalf("New accepted; want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %q\nwant %q", err, tt.want)
			}
		})
	}
}

// TestMetricsDocumented checks that docs/metrics.md names every metric, and that the metrics
// pass Prometheus' naming lint.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	newMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 13 {
		t.Errorf("%d metrics, want 13", len(mfs))
	}
	for _, mf := range mfs {
		if !strings.Contains(string(doc), "`"+mf.GetName()+"`") {
			t.Errorf("docs/metrics.md does not document %s", mf.GetName())
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Every label value the code can use is documented too.
	values := append(slices.Clone(errorReasons), outcomeSent, outcomeFailed, deadRejected, deadTooLarge, deadBadRequest, deadUndecodable, dlRetained, dlDropped)
	for _, v := range append(values, badResponseReasons...) {
		if !regexp.MustCompile("`" + regexp.QuoteMeta(v) + "`").Match(doc) {
			t.Errorf("docs/metrics.md does not document the label value %s", v)
		}
	}
}
