//go:build integration

package helm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the chart's output")

const (
	chartDir  = "edgeloop"
	release   = "edgeloop"
	namespace = "edgeloop"
	// The mount path of the component Secrets in the chart (_helpers.tpl edgeloop.secretsDir).
	secretsDir = "/etc/edgeloop/secrets"
	// Pinned so that the golden files do not move with Helm's default.
	kubeVersion = "v1.34.0"
)

// monitoringAPIs is what `helm template` is told the cluster serves in the cases that turn the
// Prometheus Operator's objects on.
var monitoringAPIs = []string{"monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"}

// renderCase is one values file rendered and checked.
type renderCase struct {
	name        string   // testdata/<name>.values.yaml, testdata/<name>.golden.yaml
	apiVersions []string // --api-versions
	kinds       map[string]int
}

var cases = []renderCase{
	{name: "default", kinds: map[string]int{"ConfigMap": 6, "Service": 1, "DaemonSet": 1}},
	{name: "edge", kinds: map[string]int{"ConfigMap": 1, "Secret": 1, "Service": 1, "DaemonSet": 1}},
	{name: "datacenter", kinds: map[string]int{
		"ConfigMap": 7, "Service": 3, "StatefulSet": 1, "PodDisruptionBudget": 1, "Deployment": 1,
		"PersistentVolumeClaim": 1, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1,
	}},
	{name: "all", apiVersions: monitoringAPIs, kinds: map[string]int{
		"ConfigMap": 8, "Secret": 4, "Service": 4, "DaemonSet": 1, "StatefulSet": 1, "PodDisruptionBudget": 1,
		"Deployment": 1, "PersistentVolumeClaim": 1, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1,
		"ServiceMonitor": 3, "PrometheusRule": 1,
	}},
}

// need skips the test with why, or fails it under CI=true, where everything must be there.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (CI=true: integration tests may not skip)")
	}
	t.Skip(why)
}

// helmPath is $HELM, or the pinned helm from scripts/tools.sh (which builds it the first time:
// about 7 minutes).
func helmPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELM"); p != "" {
		return p
	}
	out, err := exec.Command("../../scripts/tools.sh", "path", "helm").Output()
	need(t, err == nil, fmt.Sprintf("helm: scripts/tools.sh path helm: %v", err))
	return strings.TrimSpace(string(out))
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestChart lints and renders the chart over every values file in cases, compares the output
// with the golden files, decodes every object strictly into its Kubernetes API type, and runs
// each rendered component configuration through `edgeloop <component> --config.check`.
func TestChart(t *testing.T) {
	helm := helmPath(t)
	t.Logf("%s", strings.TrimSpace(run(t, nil, helm, "version", "--short")))

	bin := filepath.Join(t.TempDir(), "edgeloop")
	run(t, nil, "go", "build", "-o", bin, "github.com/edgeloop/edgeloop/cmd/edgeloop")

	var objects, configs int
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			values := filepath.Join("testdata", c.name+".values.yaml")
			run(t, nil, helm, "lint", "--strict", chartDir, "-f", values)

			out := render(t, helm, values, c.apiVersions)
			golden := filepath.Join("testdata", c.name+".golden.yaml")
			got := elideDashboards(out)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("helm template differs from %s (run with -update and review the diff):\n%s", golden, firstDiff(string(want), got))
			}

			docs := splitDocs(t, out)
			kinds := map[string]int{}
			for _, d := range docs {
				kinds[d.kind]++
				validate(t, d)
				checkDashboard(t, d)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(c.kinds) {
				t.Errorf("rendered kinds = %v, want %v", kinds, c.kinds)
			}
			objects += len(docs)
			configs += checkConfigs(t, bin, docs)
		})
	}

	// The Capabilities gate: asked for but not served, the Prometheus Operator's objects are left out.
	t.Run("all-without-crds", func(t *testing.T) {
		out := render(t, helm, filepath.Join("testdata", "all.values.yaml"), nil)
		for _, d := range splitDocs(t, out) {
			if strings.HasPrefix(d.apiVersion, "monitoring.coreos.com/") {
				t.Errorf("%s %s rendered although the cluster serves no monitoring.coreos.com/v1", d.kind, d.name)
			}
		}
	})

	// The strict decoding itself: a misspelt field in a free-form value (values.schema.json
	// leaves securityContext open) renders, and must be refused by the decoder.
	t.Run("strict-decoding", func(t *testing.T) {
		out := run(t, nil, helm, "template", release, chartDir, "--set", "exporter.securityContext.readOnlyRootFilesytem=true")
		var refused int
		for _, d := range splitDocs(t, out) {
			if _, err := decodeStrict(d); err != nil {
				if !strings.Contains(err.Error(), "readOnlyRootFilesytem") {
					t.Errorf("%s: refused for another reason: %v", d.source, err)
				}
				refused++
			}
		}
		if refused != 1 {
			t.Errorf("%d objects refused, want 1 (the DaemonSet)", refused)
		}
		if _, err := decodeStrict(doc{apiVersion: "v1", kind: "Pod", name: "x", json: []byte(`{}`)}); err == nil {
			t.Error("an unknown kind was accepted")
		}
	})

	// A missing required value is a render error that names it.
	t.Run("required", func(t *testing.T) {
		cmd := exec.Command(helm, "template", release, chartDir, "--set", "collector.enabled=true")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "collector.config.bucket is required") {
			t.Errorf("collector without a bucket: err %v, output %s", err, out)
		}
		cmd = exec.Command(helm, "template", release, chartDir, "--set", "exporter.unknownKey=1")
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unknownKey") {
			t.Errorf("unknown value key: err %v, output %s (values.schema.json must refuse it)", err, out)
		}
	})

	t.Logf("%d values files, %d objects decoded strictly, %d component configurations passed --config.check", len(cases), objects, configs)
}

// TestChartFilesCurrent checks that the chart's copies of the rules and dashboards are the
// repository's: Helm reads files only inside the chart, so they are copied, and must not drift.
func TestChartFilesCurrent(t *testing.T) {
	pairs := map[string]string{"../../alerts/rules": "edgeloop/files/alerts", "../../dashboards/json": "edgeloop/files/dashboards"}
	var n int
	for src, dst := range pairs {
		want, _ := filepath.Glob(filepath.Join(src, "*"))
		got, _ := filepath.Glob(filepath.Join(dst, "*"))
		if len(want) == 0 || len(want) != len(got) {
			t.Errorf("%s has %d files, %s %d: copy them again (cp %s/* %s/)", src, len(want), dst, len(got), src, dst)
			continue
		}
		for _, f := range want {
			a, errA := os.ReadFile(f)
			b, errB := os.ReadFile(filepath.Join(dst, filepath.Base(f)))
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Errorf("%s differs from its copy in %s: cp %s %s/", f, dst, f, dst)
			}
			n++
		}
	}
	t.Logf("%d files match", n)
}

func render(t *testing.T, helm, values string, apiVersions []string) string {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion, "-f", values}
	for _, a := range apiVersions {
		args = append(args, "--api-versions", a)
	}
	return run(t, nil, helm, args...)
}

// doc is one rendered object.
type doc struct {
	apiVersion, kind, name, source string
	json                           []byte
}

var sourceLine = regexp.MustCompile(`(?m)^# Source: (.*)$`)

func splitDocs(t *testing.T, out string) []doc {
	t.Helper()
	var docs []doc
	for _, part := range strings.Split(out, "\n---\n") {
		src := ""
		if m := sourceLine.FindStringSubmatch(part); m != nil {
			src = m[1]
		}
		j, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			t.Fatalf("%s: not YAML: %v", src, err)
		}
		if string(j) == "null" {
			continue // only comments
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(j, &head); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if head.APIVersion == "" || head.Kind == "" || head.Metadata.Name == "" {
			t.Errorf("%s: apiVersion, kind and metadata.name are required: %s", src, j)
		}
		docs = append(docs, doc{apiVersion: head.APIVersion, kind: head.Kind, name: head.Metadata.Name, source: src, json: j})
	}
	return docs
}

// typed returns an empty object of the Kubernetes API type for apiVersion and kind, or nil.
func typed(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}
	}
	return nil
}

// validate decodes d strictly into its API type (an unknown field is an error, as it is for
// kubectl's strict field validation), or checks a Prometheus Operator object's required fields.
func validate(t *testing.T, d doc) {
	t.Helper()
	if d.apiVersion == "monitoring.coreos.com/v1" {
		validateMonitoring(t, d)
		return
	}
	obj, err := decodeStrict(d)
	if err != nil {
		t.Errorf("%s: %v", d.source, err)
		return
	}
	checkObject(t, d, obj)
}

// decodeStrict decodes d into its API type, refusing unknown fields, unknown kinds and trailing data.
func decodeStrict(d doc) (any, error) {
	obj := typed(d.apiVersion, d.kind)
	if obj == nil {
		return nil, fmt.Errorf("%s %s: a kind this test does not know; add its type", d.apiVersion, d.kind)
	}
	dec := json.NewDecoder(bytes.NewReader(d.json))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", d.kind, d.name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s %s: trailing data after the object", d.kind, d.name)
	}
	return obj, nil
}

// checkObject checks what the chart promises beyond the schema.
func checkObject(t *testing.T, d doc, obj any) {
	t.Helper()
	if len(d.name) > 63 {
		t.Errorf("%s: name %q longer than 63", d.source, d.name)
	}
	var pod *corev1.PodTemplateSpec
	switch o := obj.(type) {
	case *appsv1.DaemonSet:
		pod = &o.Spec.Template
		env := map[string]string{}
		for _, e := range pod.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if env["NVIDIA_VISIBLE_DEVICES"] != "all" {
			t.Errorf("%s: the exporter needs NVIDIA_VISIBLE_DEVICES=all", d.source)
		}
	case *appsv1.StatefulSet:
		pod = &o.Spec.Template
		if len(o.Spec.VolumeClaimTemplates) != 1 {
			t.Errorf("%s: the collector needs its WAL claim", d.source)
		}
	case *appsv1.Deployment:
		pod = &o.Spec.Template
		if o.Spec.Replicas == nil || *o.Spec.Replicas != 1 || o.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("%s: the retrain controller must be 1 replica, Recreate", d.source)
		}
	}
	if pod == nil {
		return
	}
	for _, c := range pod.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: container %s without readOnlyRootFilesystem", d.source, c.Name)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
			c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: container %s needs /readyz and /healthz probes", d.source, c.Name)
		}
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = true
		}
		vols := map[string]bool{}
		for _, v := range pod.Spec.Volumes {
			vols[v.Name] = true
		}
		for m := range mounts {
			if !vols[m] && m != "wal" {
				t.Errorf("%s: container %s mounts %s, which is no volume", d.source, c.Name, m)
			}
		}
	}
}

// validateMonitoring checks the fields the Prometheus Operator requires (its CRDs are not
// vendored here, so not every field is typed).
func validateMonitoring(t *testing.T, d doc) {
	t.Helper()
	switch d.kind {
	case "ServiceMonitor":
		var sm struct {
			Spec struct {
				Selector  *struct{ MatchLabels map[string]string } `json:"selector"`
				Endpoints []struct {
					Port        string `json:"port"`
					HonorLabels bool   `json:"honorLabels"`
				} `json:"endpoints"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(d.json, &sm); err != nil {
			t.Fatalf("%s: %v", d.source, err)
		}
		if sm.Spec.Selector == nil || len(sm.Spec.Selector.MatchLabels) == 0 || len(sm.Spec.Endpoints) == 0 {
			t.Errorf("%s: a ServiceMonitor needs spec.selector and spec.endpoints", d.source)
		}
		for _, e := range sm.Spec.Endpoints {
			if e.Port == "" {
				t.Errorf("%s: an endpoint without port", d.source)
			}
			if strings.HasSuffix(d.name, "-exporter") && !e.HonorLabels {
				t.Errorf("%s: the exporter's endpoint needs honorLabels: true (pod attribution)", d.source)
			}
		}
	case "PrometheusRule":
		var pr struct {
			Spec struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Alert  string `json:"alert"`
						Record string `json:"record"`
						Expr   string `json:"expr"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(d.json, &pr); err != nil {
			t.Fatalf("%s: %v", d.source, err)
		}
		var rules int
		for _, g := range pr.Spec.Groups {
			if g.Name == "" || len(g.Rules) == 0 {
				t.Errorf("%s: group %q without name or rules", d.source, g.Name)
			}
			for _, r := range g.Rules {
				if r.Expr == "" || (r.Alert == "") == (r.Record == "") {
					t.Errorf("%s: group %s: a rule needs expr and one of alert, record", d.source, g.Name)
				}
				rules++
			}
		}
		if rules == 0 {
			t.Errorf("%s: no rules", d.source)
		}
	default:
		t.Errorf("%s: unknown monitoring.coreos.com kind %s", d.source, d.kind)
	}
}

// checkConfigs runs every component configuration among docs through the binary's
// --config.check, with the Secrets the pod would mount written where the configuration expects
// them: the chart's own Secrets' data, or made-up files of the same keys for existing Secrets.
// It returns how many configurations passed.
func checkConfigs(t *testing.T, bin string, docs []doc) int {
	t.Helper()
	secrets := t.TempDir()
	fixtures(t, secrets)
	for _, d := range docs {
		if d.kind != "Secret" {
			continue
		}
		var s corev1.Secret
		if err := json.Unmarshal(d.json, &s); err != nil {
			t.Fatal(err)
		}
		for k, v := range s.StringData {
			if err := os.WriteFile(filepath.Join(secrets, k), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := []string{"NODE_NAME=gpu-node-1", "POD_NAME=edgeloop-collector-0", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	var n int
	for _, d := range docs {
		if d.kind != "ConfigMap" || strings.HasSuffix(d.name, "-dashboard") {
			continue
		}
		var cm corev1.ConfigMap
		if err := json.Unmarshal(d.json, &cm); err != nil {
			t.Fatal(err)
		}
		keys := make([]string, 0, len(cm.Data))
		for k := range cm.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			component := strings.TrimSuffix(k, ".yaml")
			if component != "exporter" && component != "collector" && component != "retrain" {
				t.Errorf("%s: unexpected ConfigMap key %s", d.source, k)
				continue
			}
			file := filepath.Join(t.TempDir(), k)
			body := strings.ReplaceAll(cm.Data[k], secretsDir, secrets)
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			out := run(t, env, bin, component, "--config", file, "--config.check")
			if !strings.Contains(out, "is valid") {
				t.Errorf("%s: edgeloop %s --config.check: %s", d.source, component, out)
			}
			n++
		}
	}
	return n
}

// fixtures writes stand-ins for the keys of the Secrets a values file names as existingSecret.
func fixtures(t *testing.T, dir string) {
	t.Helper()
	hash := func(token string) string {
		sum := sha256.Sum256([]byte(token))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"node.token":               "node-token-1\n",
		"nodes.sha256":             "node-1 " + hash("node-token-1") + "\n",
		"operators.sha256":         "retrain " + hash("operator-token-1") + "\n",
		"retrain-webhook.sha256":   "alertmanager " + hash("webhook-token-1") + "\n",
		"retrain-operator.sha256":  "ops " + hash("ops-token-1") + "\n",
		"collector-operator.token": "operator-token-1\n",
		"edgeloop.key":             string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// elideDashboards replaces each dashboard ConfigMap's data (the JSON of dashboards/json, 40-65
// KB each) by its SHA-256 in the golden text, so the golden files stay readable; the rendered
// data itself is compared with the source files by checkDashboard.
func elideDashboards(out string) string {
	parts := strings.Split(out, "\n---\n")
	for i, part := range parts {
		if !strings.Contains(part, "# Source: edgeloop/templates/dashboards.yaml") {
			continue
		}
		head, data, ok := strings.Cut(part, "\ndata:\n")
		if !ok {
			continue
		}
		sum := sha256.Sum256([]byte(data))
		parts[i] = fmt.Sprintf("%s\ndata: {} # elided from the golden file: %d bytes, sha256 %x\n", head, len(data), sum)
	}
	return strings.Join(parts, "\n---\n")
}

// checkDashboard checks that a dashboard ConfigMap carries its dashboard unchanged, under the
// label Grafana's sidecar looks for.
func checkDashboard(t *testing.T, d doc) {
	t.Helper()
	if d.kind != "ConfigMap" || !strings.HasSuffix(d.name, "-dashboard") {
		return
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(d.json, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("%s: %s without the label grafana_dashboard: \"1\"", d.source, d.name)
	}
	if len(cm.Data) != 1 {
		t.Fatalf("%s: %s has %d keys, want 1", d.source, d.name, len(cm.Data))
	}
	for key, body := range cm.Data {
		want, err := os.ReadFile(filepath.Join("../../dashboards/json", key))
		if err != nil {
			t.Fatalf("%s: %s: %v", d.source, d.name, err)
		}
		if strings.TrimSpace(body) != strings.TrimSpace(string(want)) {
			t.Errorf("%s: %s: %s differs from dashboards/json/%s", d.source, d.name, key, key)
		}
		if !json.Valid([]byte(body)) {
			t.Errorf("%s: %s: %s is not JSON", d.source, d.name, key)
		}
	}
}

// firstDiff shows the first differing line of two texts, with its line number.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, a, b)
		}
	}
	return ""
}
