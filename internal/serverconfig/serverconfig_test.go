package serverconfig_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/serverconfig"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/retrain"
)

// write puts content into a file under t's temporary directory and returns its path.
func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hashList writes a token hash list with one entry at dir/name and returns its path.
func hashList(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(token.HashLine("someone", "a-token-of-"+name)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCollectorLoads writes a collector's file with tuning and reads it back with the
// collector's own strict loader: every typed value and every tuned one arrives, and the
// tuning's wal mapping is merged with the typed wal.dir rather than replacing it.
func TestCollectorLoads(t *testing.T) {
	dir := t.TempDir()
	c := serverconfig.Collector{Instance: "it", Listen: "127.0.0.1:9999", LogJSON: true,
		Tokens: hashList(t, dir, "tokens"), Operators: hashList(t, dir, "operators"),
		Bucket: "s3://edgeloop?endpoint=127.0.0.1:9000&insecure=true", WALDir: filepath.Join(dir, "wal"),
		ShardTargetBytes: 1 << 20, ShardMaxAge: 2 * time.Second,
		Tuning: "wal:\n  segment_bytes: 262144\nshards:\n  max_age: 1s\npprof: true\n"}
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := collector.LoadConfig(write(t, "collector.yaml", y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	got := map[string]any{
		"instance": cfg.Instance, "listen": cfg.Web.Listen, "log.format": cfg.Log.Format,
		"tokens": cfg.Auth.TokensFile, "operators": cfg.Auth.OperatorTokensFile, "bucket": cfg.Bucket,
		"wal.dir": cfg.WAL.Dir, "wal.segment_bytes": cfg.WAL.SegmentBytes,
		"shards.target_bytes": cfg.Shards.TargetBytes, "shards.max_age": cfg.Shards.MaxAge, "pprof": cfg.Web.Pprof,
	}
	want := map[string]any{
		"instance": "it", "listen": "127.0.0.1:9999", "log.format": "json",
		"tokens": c.Tokens, "operators": c.Operators, "bucket": c.Bucket,
		"wal.dir": c.WALDir, "wal.segment_bytes": int64(262144),
		"shards.target_bytes": int64(1 << 20), "shards.max_age": time.Second, "pprof": true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loaded %v\nwant   %v\nfrom:\n%s", got, want, y)
	}
}

// TestControllerLoads does the same for the retrain controller's file: policy, the local
// command with its placeholders, gate, publish and drift, and a tuned gate evaluator beside the
// typed evaluation sets.
func TestControllerLoads(t *testing.T) {
	dir := t.TempDir()
	keys, err := modelrepo.GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := serverconfig.Controller{Listen: "127.0.0.1:9998", LogJSON: true, StateDir: filepath.Join(dir, "state"),
		WebhookTokens: hashList(t, dir, "webhook"), OperatorTokens: hashList(t, dir, "operators"),
		Bucket: "s3://models?endpoint=127.0.0.1:9000&insecure=true", SigningKey: keys.Private,
		CollectorURL: "http://127.0.0.1:9751", CollectorToken: filepath.Join(dir, "collector.token"),
		Models:   []string{"fashion"},
		Policy:   serverconfig.Policy{MinNewLabels: 300, EveryNewLabels: 1000, Cooldown: time.Hour, DailyBudget: 20, JobTimeout: 10 * time.Minute, CheckInterval: time.Second},
		Command:  []string{"/usr/bin/edgeloop", "train", "--out", "{{.Output}}", "--data", "/a dir/with: colons"},
		EvalSets: []string{"fmnist-test-clean"}, MaxClassRegression: 0.05, PublishStable: true,
		Drift:  &serverconfig.Drift{Targets: []string{"http://127.0.0.1:9750/metrics"}, PSIThreshold: 0.25, For: 10 * time.Second, Interval: time.Second},
		Tuning: "gate:\n  evaluator: builtin\n"}
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := retrain.LoadConfig(write(t, "retrain.yaml", y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	var models []string
	for _, m := range cfg.Models {
		models = append(models, m.Name)
	}
	got := map[string]any{
		"listen": cfg.Web.Listen, "log.format": cfg.Log.Format, "state_dir": cfg.StateDir,
		"webhook": cfg.Auth.WebhookTokensFile, "operators": cfg.Auth.OperatorTokensFile,
		"bucket": cfg.Repository.Bucket, "key": cfg.Repository.SigningKeyFile,
		"collector": cfg.Dataset.CollectorURL, "token": cfg.Dataset.TokenFile, "models": strings.Join(models, ","),
		"policy":  [6]any{cfg.Policy.MinNewLabels, cfg.Policy.EveryNewLabels, cfg.Policy.Cooldown, cfg.Policy.DailyBudget, cfg.Policy.JobTimeout, cfg.Policy.CheckInterval},
		"backend": cfg.Backend.Type, "command": strings.Join(cfg.Backend.Local.Command, "|"),
		"eval_sets": strings.Join(cfg.Gate.EvalSets, ","), "max_class_regression": cfg.Gate.MaxClassRegression,
		"evaluator": cfg.Gate.Evaluator, "stable": cfg.Publish.Stable,
		"drift": [4]any{strings.Join(cfg.Drift.Targets, ","), cfg.Drift.PSIThreshold, cfg.Drift.For, cfg.Drift.Interval},
	}
	want := map[string]any{
		"listen": "127.0.0.1:9998", "log.format": "json", "state_dir": c.StateDir,
		"webhook": c.WebhookTokens, "operators": c.OperatorTokens,
		"bucket": c.Bucket, "key": c.SigningKey,
		"collector": c.CollectorURL, "token": c.CollectorToken, "models": "fashion",
		"policy":  [6]any{300, 1000, time.Hour, 20, 10 * time.Minute, time.Second},
		"backend": "local", "command": strings.Join(c.Command, "|"),
		"eval_sets": "fmnist-test-clean", "max_class_regression": 0.05,
		"evaluator": "builtin", "stable": true,
		"drift": [4]any{"http://127.0.0.1:9750/metrics", 0.25, 10 * time.Second, time.Second},
	}
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s: loaded %v, want %v", k, got[k], w)
		}
	}
	if t.Failed() {
		t.Logf("from:\n%s", y)
	}
}

// TestTuningErrors: tuning that is not a YAML mapping is an error naming the file, not a file
// that silently lacks it.
func TestTuningErrors(t *testing.T) {
	for _, tuning := range []string{"wal: [unclosed", "- a list\n- not a mapping\n"} {
		if _, err := (serverconfig.Collector{Tuning: tuning}).YAML(); err == nil || !strings.Contains(err.Error(), "collector configuration: tuning") {
			t.Errorf("collector tuning %q: %v", tuning, err)
		}
		if _, err := (serverconfig.Controller{Tuning: tuning}).YAML(); err == nil || !strings.Contains(err.Error(), "retrain controller configuration: tuning") {
			t.Errorf("controller tuning %q: %v", tuning, err)
		}
	}
}
