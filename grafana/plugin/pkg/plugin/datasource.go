package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// Datasource is one configured edgeloop data source: Grafana makes one per data source and
// organisation (instancemgmt), and a new one whenever its settings change.
type Datasource struct {
	uid        string
	settings   *Settings
	settingErr error // a configuration the health check, queries and resources report
	logger     *slog.Logger

	collector  *api // nil when not configured
	controller *api
	repo       *modelrepo.Repository // nil when not configured
	repoBucket objstore.Bucket

	thumbs    *thumbCache
	resources backend.CallResourceHandler
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewFactory returns the instance factory that datasource.Manage calls with each data
// source's settings. Every instance logs to logger.
func NewFactory(logger *slog.Logger) datasource.InstanceFactoryFunc {
	return func(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
		return NewDatasource(ctx, s, logger), nil
	}
}

// NewDatasource builds a data source from its settings. Settings that do not validate still
// make one: its health check, queries and resources answer the configuration error (naming
// the key), which is where a Grafana user looks, rather than a bare "plugin unavailable".
func NewDatasource(ctx context.Context, s backend.DataSourceInstanceSettings, logger *slog.Logger) *Datasource {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Datasource{uid: s.UID, logger: logger.With("datasource_uid", s.UID, "datasource", s.Name)}
	d.resources = httpadapter.New(d.routes())
	set, err := LoadSettings(s)
	if err != nil {
		d.settingErr = fmt.Errorf("configuration: %w", err)
		d.logger.Error("the data source's settings are not valid", "err", d.settingErr)
		return d
	}
	d.settings = set
	client := newHTTPClient(set.caPEM, set.Timeout())
	if set.CollectorURL != "" {
		d.collector = &api{name: "collector", base: strings.TrimSuffix(set.CollectorURL, "/"), token: set.collectorToken, client: client}
	}
	if set.ControllerURL != "" {
		d.controller = &api{name: "controller", base: strings.TrimSuffix(set.ControllerURL, "/"), token: set.controllerToken, client: client}
	}
	if set.RepositoryURL != "" {
		t, _ := set.repositoryTarget() // checked by Validate
		if t.HTTP != nil {
			t.HTTP.Client = &http.Client{Timeout: set.Timeout(), Transport: bearer{token: set.repoToken, next: client.Transport}}
		}
		b, err := t.Open(ctx)
		if err != nil {
			d.settingErr = fmt.Errorf("configuration: jsonData.repositoryUrl: %w", err)
			d.logger.Error("cannot open the model repository", "err", err)
			return d
		}
		d.repoBucket, d.repo = b, modelrepo.New(b)
	}
	d.thumbs = newThumbCache(set.ThumbnailCacheEntries, set.ThumbnailCacheBytes)
	return d
}

// bearer adds the repository's node token to each request of the collector's /v1/repo: the
// objstore HTTP bucket reads its token from a file, and Grafana gives it to us in memory.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// Dispose is called when Grafana replaces the instance (its settings changed).
func (d *Datasource) Dispose() {
	if c, ok := d.repoBucket.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// CallResource serves the resource handlers (resources.go).
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	return d.resources.CallResource(ctx, req, sender)
}

// CheckHealth says which of the collector, the controller and the model repository answer,
// and whether the credentials work: each part's line is in the message, and in
// JSONDetails for the frontend.
func (d *Datasource) CheckHealth(ctx context.Context, req *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	if d.settingErr != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: d.settingErr.Error()}, nil
	}
	parts := []partHealth{
		d.apiHealth(ctx, "collector", d.collector, "/v1/catalog"),
		d.apiHealth(ctx, "controller", d.controller, "/v1/jobs?phase=none"),
		d.repoHealth(ctx),
	}
	status := backend.HealthStatusOk
	lines := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Configured && !p.OK {
			status = backend.HealthStatusError
		}
		lines = append(lines, p.Name+": "+p.Message)
	}
	details, err := jsonMarshal(map[string]any{"parts": parts})
	if err != nil {
		return nil, err
	}
	return &backend.CheckHealthResult{Status: status, Message: strings.Join(lines, "; "), JSONDetails: details}, nil
}

// partHealth is one part's health: configured, answering (/healthz), credentials accepted.
type partHealth struct {
	Name        string `json:"name"`
	Configured  bool   `json:"configured"`
	Answers     bool   `json:"answers"`
	Credentials string `json:"credentials"` // "work", "refused", "unknown" or "n/a"
	OK          bool   `json:"ok"`
	Message     string `json:"message"`
}

// apiHealth asks /healthz (no credential), then an operator endpoint whose 401 or 403 means
// the token is refused. A 503 there (the catalog still loading) comes after the token check,
// so the credentials work.
func (d *Datasource) apiHealth(ctx context.Context, name string, a *api, probe string) partHealth {
	p := partHealth{Name: name, Credentials: "n/a"}
	if a == nil {
		p.OK, p.Message = true, "not configured"
		return p
	}
	p.Configured = true
	if _, _, err := (&api{name: a.name, base: a.base, client: a.client}).do(ctx, http.MethodGet, "/healthz", nil); err != nil {
		var ae *APIError
		if !errors.As(err, &ae) {
			p.Credentials = "unknown"
			p.Message = "does not answer: " + err.Error()
			return p
		}
	}
	p.Answers = true
	_, _, err := a.do(ctx, http.MethodGet, probe, nil)
	var ae *APIError
	switch {
	case err == nil:
		p.Credentials, p.OK, p.Message = "work", true, "answers, credentials work"
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		p.Credentials, p.Message = "refused", fmt.Sprintf("answers, but refuses the operator token (%d: %s)", ae.Status, ae.Message)
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		p.Credentials, p.OK, p.Message = "work", true, "answers, credentials work; not ready yet: "+ae.Message
	default:
		p.Credentials, p.Message = "unknown", "answers /healthz, but "+err.Error()
	}
	return p
}

func (d *Datasource) repoHealth(ctx context.Context) partHealth {
	p := partHealth{Name: "repository", Credentials: "n/a"}
	if d.repo == nil {
		p.OK, p.Message = true, "not configured (the versions query and version annotations are off)"
		return p
	}
	p.Configured = true
	models, err := d.repo.Models(ctx)
	if err != nil {
		p.Credentials, p.Message = "unknown", "cannot list the models: "+err.Error()
		if strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "Access Denied") {
			p.Answers, p.Credentials = true, "refused"
		}
		return p
	}
	p.Answers, p.Credentials, p.OK = true, "work", true
	p.Message = fmt.Sprintf("answers, credentials work (%d models)", len(models))
	return p
}
