//go:build integration

package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// pluginClients are the plugin's three gRPC services, as Grafana dispenses them.
type pluginClients struct {
	diag grpcplugin.DiagnosticsClient
	data grpcplugin.DataClient
	res  grpcplugin.ResourceClient
}

// startPlugin builds the plugin's binary as `make plugin` does and starts it the way Grafana
// does: go-plugin's client runs the executable with the magic cookie
// (grafana_plugin_type=datasource) and protocol version 2 in its environment, reads the
// handshake line the plugin prints, and dials its gRPC server. The plugin's log lines (hclog
// JSON on stderr) go to log.
func startPlugin(t *testing.T, log io.Writer) pluginClients {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gpx_edgeloop_"+runtime.GOOS+"_"+runtime.GOARCH)
	build := exec.Command("go", "build", "-o", bin, "github.com/edgeloop/edgeloop/grafana/plugin/pkg")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build the plugin: %v", err)
	}
	cmd := exec.Command(bin)
	// Grafana's own variables; the host's environment stays out, as Grafana's plugin
	// settings leave it out by default.
	cmd.Env = []string{"GF_VERSION=11.3.0", "GF_EDITION=oss", "PATH=" + os.Getenv("PATH")}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  grpcplugin.ProtocolVersion,
			MagicCookieKey:   grpcplugin.MagicCookieKey,
			MagicCookieValue: grpcplugin.MagicCookieValue,
		},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
			"resource":    &grpcplugin.ResourceGRPCPlugin{},
			"data":        &grpcplugin.DataGRPCPlugin{},
		}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: log, JSONFormat: true, Level: hclog.Debug}),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("go-plugin handshake: %v", err)
	}
	var pc pluginClients
	for name, out := range map[string]any{"diagnostics": &pc.diag, "data": &pc.data, "resource": &pc.res} {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("dispense %s: %v", name, err)
		}
		switch o := out.(type) {
		case *grpcplugin.DiagnosticsClient:
			*o = raw.(grpcplugin.DiagnosticsClient)
		case *grpcplugin.DataClient:
			*o = raw.(grpcplugin.DataClient)
		case *grpcplugin.ResourceClient:
			*o = raw.(grpcplugin.ResourceClient)
		}
	}
	if v := client.NegotiatedVersion(); v != grpcplugin.ProtocolVersion {
		t.Fatalf("negotiated protocol %d", v)
	}
	return pc
}

// pluginContext is what Grafana sends with every call: the data source's settings (secrets
// decrypted) and the signed-in user.
func pluginContext(t *testing.T, e *env, repoURL string, secure map[string]string, u *pluginv2.User) *pluginv2.PluginContext {
	s := e.settings(t, repoURL, nil, secure)
	return &pluginv2.PluginContext{
		OrgId: 1, PluginId: ID, User: u, GrafanaConfig: map[string]string{},
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Uid: s.UID, Name: s.Name, JsonData: s.JSONData, DecryptedSecureJsonData: s.DecryptedSecureJSONData,
			LastUpdatedMS: s.Updated.UnixMilli(),
		},
	}
}

// callResource sends one resource call and gathers the streamed answer.
func (pc pluginClients) callResource(t *testing.T, ctx *pluginv2.PluginContext, method, url string, body []byte) (int, []byte) {
	t.Helper()
	path, _, _ := strings.Cut(url, "?")
	stream, err := pc.res.CallResource(context.Background(), &pluginv2.CallResourceRequest{PluginContext: ctx, Path: path, Method: method, Url: url, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	var code int
	var out bytes.Buffer
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return code, out.Bytes()
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 0 {
			code = int(r.Code)
		}
		out.Write(r.Body)
	}
}

// TestPluginOverGRPC runs the built plugin binary as Grafana runs it, against a real
// collector and controller over MinIO, and queries it through the plugin protocol:
// CheckHealth, QueryData (frames in Arrow, as Grafana reads them) and CallResource
// (thumbnails, actions allowed and refused, bad input). No answer and no log line holds a
// credential.
func TestPluginOverGRPC(t *testing.T) {
	endpoint, ak, sk := testenv.MinIO(t)
	cfg := objstore.DefaultS3Config()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Insecure, cfg.Bucket = endpoint, ak, sk, true, "edgeloop"
	if err := objstore.CreateS3Bucket(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Setenv(objstore.EnvAccessKey, ak)
	t.Setenv(objstore.EnvSecretKey, sk)
	bucketURL := "s3://edgeloop?endpoint=" + endpoint + "&insecure=true"
	e := startEnv(t, bucketURL)
	var log testenv.Buffer
	pc := startPlugin(t, &log)
	repoSecrets := map[string]string{SecretRepositoryAccessKey: ak, SecretRepositorySecretKey: sk}
	ana := &pluginv2.User{Login: "ana", Role: "Editor"}
	ctx := pluginContext(t, e, bucketURL, repoSecrets, ana)
	var seen bytes.Buffer
	calls := 0

	health, err := pc.diag.CheckHealth(context.Background(), &pluginv2.CheckHealthRequest{PluginContext: ctx})
	if err != nil {
		t.Fatal(err)
	}
	calls++
	seen.WriteString(health.Message)
	if health.Status != pluginv2.CheckHealthResponse_OK || !strings.Contains(health.Message, "repository: answers, credentials work (1 models)") {
		t.Fatalf("health: %v %s", health.Status, health.Message)
	}
	bad := pluginContext(t, e, "", map[string]string{SecretControllerToken: "wrong-token"}, ana)
	if h, err := pc.diag.CheckHealth(context.Background(), &pluginv2.CheckHealthRequest{PluginContext: bad}); err != nil ||
		h.Status != pluginv2.CheckHealthResponse_ERROR || !strings.Contains(h.Message, "controller: answers, but refuses the operator token") {
		t.Fatalf("health with a wrong token: %v %v", h, err)
	}
	calls++

	now := time.Now()
	tr := &pluginv2.TimeRange{FromEpochMS: now.Add(-time.Hour).UnixMilli(), ToEpochMS: now.Add(time.Minute).UnixMilli()}
	queries := []*pluginv2.DataQuery{
		{RefId: "S", QueryType: QuerySamples, Json: []byte(`{"model":"fashion","reason":"low_confidence","refId":"S","datasource":{"type":"edgeloop-edgeloop-datasource","uid":"edgeloop-ds"}}`), TimeRange: tr},
		{RefId: "C", QueryType: QueryCatalog, Json: []byte(`{}`), TimeRange: tr},
		{RefId: "V", QueryType: QueryVersions, Json: []byte(`{"model":"fashion"}`), TimeRange: tr},
		{RefId: "A", QueryType: QueryVersionAnnotations, Json: []byte(`{}`), TimeRange: tr},
		{RefId: "J", QueryType: QueryJobs, Json: []byte(`{}`), TimeRange: tr},
		{RefId: "D", QueryType: QueryDecisions, Json: []byte(`{}`), TimeRange: tr},
		{RefId: "X", QueryType: "nonsense", Json: []byte(`{}`), TimeRange: tr},
	}
	resp, err := pc.data.QueryData(context.Background(), &pluginv2.QueryDataRequest{PluginContext: ctx, Queries: queries})
	if err != nil {
		t.Fatal(err)
	}
	calls++
	rows := map[string]int{}
	for ref, r := range resp.Responses {
		seen.WriteString(r.Error)
		if ref == "X" {
			if r.Status != http.StatusBadRequest || !strings.Contains(r.Error, `"nonsense" is not a query type`) {
				t.Errorf("bad query type: %d %q", r.Status, r.Error)
			}
			continue
		}
		if r.Error != "" {
			t.Fatalf("%s: %s", ref, r.Error)
		}
		frames, err := data.UnmarshalArrowFrames(r.Frames)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		rows[ref] = frames[0].Rows()
		if ref == "S" {
			keys := column[string](t, frames[0], "key")
			for i, u := range column[string](t, frames[0], "thumbnail_url") {
				if !strings.HasSuffix(u, "/resources/thumbnail?key="+keys[i]) {
					t.Errorf("thumbnail_url %q", u)
				}
			}
		}
	}
	if want := map[string]int{"S": 3, "C": 2, "V": 2, "A": 2, "J": 0, "D": 0}; !equalMaps(rows, want) {
		t.Errorf("rows %v, want %v", rows, want)
	}

	// Thumbnails of each layout, through the plugin protocol.
	for _, c := range e.samples {
		code, body := pc.callResource(t, ctx, http.MethodGet, "thumbnail?key="+c.key, nil)
		calls++
		if c.w == 0 {
			if code != http.StatusNotFound {
				t.Errorf("%v: %d", c.shape, code)
			}
			continue
		}
		img, err := png.Decode(bytes.NewReader(body))
		if code != http.StatusOK || err != nil {
			t.Fatalf("%v: %d %v", c.shape, code, err)
		}
		if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
			t.Errorf("%v: %v", c.shape, b)
		}
	}

	// Actions: a Viewer is refused, an Editor labels, retrains, cancels and moves an alias.
	viewerCtx := pluginContext(t, e, bucketURL, repoSecrets, &pluginv2.User{Login: "vic", Role: "Viewer"})
	labels, _ := json.Marshal(map[string]any{"model": "fashion", "labels": []map[string]any{{"key": e.samples[0].key, "label": "Trouser"}}})
	for _, c := range []struct {
		name string
		ctx  *pluginv2.PluginContext
		url  string
		body []byte
		code int
		want string
	}{
		{"viewer labels", viewerCtx, "labels", labels, 403, "your Grafana role Viewer may not act"},
		{"viewer retrains", viewerCtx, "retrain", []byte(`{"model":"fashion"}`), 403, "may not act"},
		{"editor labels", ctx, "labels", labels, 201, `"stored"`},
		{"bad label", ctx, "labels", []byte(`{"model":"fashion","labels":[{"key":"nope","label":1}]}`), 400, "labels[0].key"},
		{"editor retrains", ctx, "retrain", []byte(`{"model":"fashion","reason":"from the grpc test"}`), 202, `"started"`},
		{"unknown job", ctx, "jobs/job-x/cancel", nil, 404, "no job"},
		{"empty alias move", ctx, "aliases", []byte(`{}`), 400, "is not a model name"},
		{"editor rolls stable back", ctx, "aliases", []byte(`{"model":"fashion","alias":"stable","version":1,"reason":"from the grpc test"}`), 200, `"previous": 2`},
	} {
		code, body := pc.callResource(t, c.ctx, http.MethodPost, c.url, c.body)
		calls++
		seen.Write(body)
		if code != c.code || !bytes.Contains(body, []byte(c.want)) {
			t.Errorf("%s: %d %s; want %d containing %q", c.name, code, body, c.code, c.want)
		}
		if c.name == "editor retrains" {
			var d struct {
				Started string `json:"started"`
			}
			_ = json.Unmarshal(body, &d)
			e.waitJob(t, d.Started, "running")
			if code, body := pc.callResource(t, ctx, http.MethodPost, "jobs/"+d.Started+"/cancel", nil); code != http.StatusAccepted {
				t.Errorf("cancel: %d %s", code, body)
			}
			e.waitJob(t, d.Started, "cancelled")
			calls++
		}
	}

	// The label the Editor gave comes back in the samples frame, decoded from Arrow.
	resp, err = pc.data.QueryData(context.Background(), &pluginv2.QueryDataRequest{PluginContext: ctx, Queries: queries[:1]})
	if err != nil || resp.Responses["S"].Error != "" {
		t.Fatalf("samples after labelling: %v %v", err, resp)
	}
	calls++
	frames, err := data.UnmarshalArrowFrames(resp.Responses["S"].Frames)
	if err != nil {
		t.Fatal(err)
	}
	labelled := 0
	keys, lab, ann := column[string](t, frames[0], "key"), column[*string](t, frames[0], "label"), column[*string](t, frames[0], "annotator")
	for i, k := range keys {
		if k != e.samples[0].key {
			continue
		}
		if lab[i] == nil || *lab[i] != "Trouser" || ann[i] == nil || *ann[i] != "ana" {
			t.Errorf("sample %s: label %v annotator %v, want Trouser by ana", k, lab[i], ann[i])
		}
		labelled++
	}
	if labelled != 1 {
		t.Errorf("the labelled sample is not among the %d rows", len(keys))
	}

	// The plugin's log reaches Grafana through go-plugin: the actions are there with the user.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), `"action":"cancel"`) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{`"action":"label"`, `"action":"retrain"`, `"action":"cancel"`, `"action":"alias"`, `"user":"ana"`, `"user":"vic"`, "action refused"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("plugin log lacks %s:\n%s", want, log.String())
		}
	}
	noSecrets(t, "answers", seen.Bytes())
	noSecrets(t, "plugin log", []byte(log.String()))
	for _, s := range []string{ak, sk} {
		if strings.Contains(seen.String()+log.String(), s) {
			t.Error("an S3 key reached an answer or the log")
		}
	}
	t.Logf("%d plugin protocol calls checked", calls)
}

func equalMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
