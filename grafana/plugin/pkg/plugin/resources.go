package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Body limits of the actions: the collector takes at most 4 MiB of labels per request, the
// controller 16 KiB of a manual retrain.
const (
	maxLabelsBody  = 4 << 20
	maxRetrainBody = 16 << 10
	maxReasonBytes = 1024
)

// maxThumbnailBytes bounds a thumbnail read from the collector (MaxSide² RGB PNG is far
// less; a bigger answer is not an image of ours).
const maxThumbnailBytes = 16 << 20

// routes are the resources, under /api/datasources/uid/<uid>/resources/ in Grafana:
//
//	GET  thumbnail?key=<sample key>    the sample's input as a PNG (cached)
//	GET  models                        model names known to the collector, controller jobs and repository
//	POST labels                        label samples (allowed roles)
//	POST retrain                       start a retrain (allowed roles)
//	POST jobs/{id}/cancel              cancel a job (allowed roles)
//	POST aliases                       move an alias (allowed roles), signed by the controller
func (d *Datasource) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /thumbnail", d.serveThumbnail)
	mux.HandleFunc("GET /models", d.serveModels)
	mux.Handle("POST /labels", d.action("label", d.serveLabels))
	mux.Handle("POST /retrain", d.action("retrain", d.serveRetrain))
	mux.Handle("POST /jobs/{id}/cancel", d.action("cancel", d.serveCancel))
	mux.Handle("POST /aliases", d.action("alias", d.serveAlias))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.settingErr != nil {
			httpjson.Error(w, http.StatusBadRequest, d.settingErr.Error())
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("no resource %s %s: see docs/grafana-plugin.md, \"Resources\"", r.Method, r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// action lets through users whose Grafana role is in allowedRoles, and logs every attempt
// with the user, allowed or not.
func (d *Datasource) action(name string, next func(w http.ResponseWriter, r *http.Request, u *backend.User)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := backend.UserFromContext(r.Context())
		if u == nil || !slices.Contains(d.settings.AllowedRoles, u.Role) {
			role, login := "none", "(no user)"
			if u != nil {
				role, login = u.Role, u.Login
			}
			d.logger.Warn("action refused: role not allowed", "action", name, "user", login, "role", role, "allowed_roles", d.settings.AllowedRoles)
			httpjson.Error(w, http.StatusForbidden, fmt.Sprintf("%s: your Grafana role %s may not act; the data source allows %s (jsonData.allowedRoles)",
				name, role, strings.Join(d.settings.AllowedRoles, ", ")))
			return
		}
		next(w, r, u)
	})
}

// readJSON decodes a request body strictly (unknown fields are errors) within limit; false
// when it answered the error.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, out any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpjson.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: more than %d bytes", limit))
			return false
		}
		httpjson.Error(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// relay answers what an edgeloop server answered: its status and body, or a 502 naming the
// server when it did not answer.
func relay(w http.ResponseWriter, status int, body []byte, err error) {
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		status, body = ae.Status, ae.Body
	case err != nil:
		httpjson.Error(w, http.StatusBadGateway, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func (d *Datasource) serveThumbnail(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if !sample.ValidKey(key) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("key: want a sample key of 32 lowercase hex digits, got %.40q", key))
		return
	}
	if d.collector == nil {
		httpjson.Error(w, http.StatusBadRequest, "thumbnails need jsonData.collectorUrl, which is not set")
		return
	}
	png, ok := d.thumbs.get(key)
	if !ok {
		// The collector renders the sample's input tensor (internal/preview: grey or RGB,
		// NCHW or NHWC, leading 1s dropped); the plugin keeps what it rendered.
		_, body, err := d.collector.do(r.Context(), http.MethodGet, "/v1/samples/"+key+".png", nil)
		var ae *APIError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
			httpjson.Error(w, http.StatusNotFound, "no thumbnail for "+key+": "+ae.Message)
			return
		case err != nil:
			httpjson.Error(w, statusOf(err), err.Error())
			return
		case len(body) > maxThumbnailBytes || !bytes.HasPrefix(body, []byte("\x89PNG\r\n\x1a\n")):
			httpjson.Error(w, http.StatusBadGateway, "collector: the thumbnail is not a PNG")
			return
		}
		png = body
		d.thumbs.put(key, png)
	}
	w.Header().Set("Content-Type", "image/png")
	// Keys are content-derived: the image at a key never changes.
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.Header().Set("Content-Length", strconv.Itoa(len(png)))
	w.Write(png)
}

// serveModels lists the model names the query editor offers: the collector's catalog, the
// repository's models and the models of the controller's jobs, each where configured.
func (d *Datasource) serveModels(w http.ResponseWriter, r *http.Request) {
	set := map[string]bool{}
	var problems []string
	if d.collector != nil {
		var ans struct {
			Models []struct {
				Model string `json:"model"`
			} `json:"models"`
		}
		if err := d.collector.getJSON(r.Context(), "/v1/catalog", &ans); err != nil {
			problems = append(problems, err.Error())
		}
		for _, m := range ans.Models {
			set[m.Model] = true
		}
	}
	if d.repo != nil {
		ms, err := d.repo.Models(r.Context())
		if err != nil {
			problems = append(problems, "repository: "+err.Error())
		}
		for _, m := range ms {
			set[m] = true
		}
	}
	if d.controller != nil {
		var ans struct {
			Jobs []job `json:"jobs"`
		}
		if err := d.controller.getJSON(r.Context(), "/v1/jobs", &ans); err != nil {
			problems = append(problems, err.Error())
		}
		for _, j := range ans.Jobs {
			set[j.Model] = true
		}
	}
	models := make([]string, 0, len(set))
	for m := range set {
		models = append(models, m)
	}
	slices.Sort(models)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"models": models, "problems": problems})
}

// LabelsRequest is the body of POST labels: the collector's POST /v1/labels without source
// and annotator, which the plugin sets (source "grafana", annotator the Grafana user), so
// that a label says who gave it and no user can speak for another.
type LabelsRequest struct {
	Model  string        `json:"model"`
	Labels []LabelAction `json:"labels"`
}

// LabelAction is one label of a LabelsRequest: a sample by key (or by request_id) and its
// class, an index or a name.
type LabelAction struct {
	Key       string          `json:"key,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	Label     json.RawMessage `json:"label"`
}

// LabelSource is the source of the labels posted from Grafana.
const LabelSource = "grafana"

func (d *Datasource) serveLabels(w http.ResponseWriter, r *http.Request, u *backend.User) {
	if d.collector == nil {
		httpjson.Error(w, http.StatusBadRequest, "labelling needs jsonData.collectorUrl, which is not set")
		return
	}
	var req LabelsRequest
	if !readJSON(w, r, maxLabelsBody, &req) {
		return
	}
	if len(req.Labels) == 0 {
		httpjson.Error(w, http.StatusBadRequest, "labels: give at least one label")
		return
	}
	type outLabel struct {
		LabelAction
		Source    string `json:"source"`
		Annotator string `json:"annotator"`
	}
	out := struct {
		Model  string     `json:"model"`
		Labels []outLabel `json:"labels"`
	}{Model: req.Model}
	for _, l := range req.Labels {
		out.Labels = append(out.Labels, outLabel{LabelAction: l, Source: LabelSource, Annotator: annotator(u)})
	}
	body, _ := json.Marshal(out) // plain strings and raw JSON already decoded: always encodes
	status, ans, err := d.collector.do(r.Context(), http.MethodPost, "/v1/labels", body)
	d.logAction(u, "label", err, "model", req.Model, "labels", len(req.Labels))
	relay(w, status, ans, err)
}

// annotator names a Grafana user in what edgeloop records: the login, else the e-mail.
func annotator(u *backend.User) string {
	if u.Login != "" {
		return u.Login
	}
	return u.Email
}

// RetrainRequest is the body of POST retrain.
type RetrainRequest struct {
	Model  string `json:"model"`
	Reason string `json:"reason"`
	Force  bool   `json:"force"`
}

func (d *Datasource) serveRetrain(w http.ResponseWriter, r *http.Request, u *backend.User) {
	if d.controller == nil {
		httpjson.Error(w, http.StatusBadRequest, "retraining needs jsonData.controllerUrl, which is not set")
		return
	}
	var req RetrainRequest
	if !readJSON(w, r, maxRetrainBody, &req) {
		return
	}
	if !sample.ValidName(req.Model) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("model: %.80q is not a model name", req.Model))
		return
	}
	// The controller records its operator (the data source's token) as the trigger's "by":
	// the Grafana user goes into the reason, so the decision says who asked.
	reason := "grafana user " + annotator(u)
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	if len(reason) > maxReasonBytes {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("reason: at most %d bytes with the user's name", maxReasonBytes))
		return
	}
	body, _ := json.Marshal(map[string]any{"reason": reason, "force": req.Force})
	status, ans, err := d.controller.do(r.Context(), http.MethodPost, "/v1/models/"+url.PathEscape(req.Model)+"/retrain", body)
	d.logAction(u, "retrain", err, "model", req.Model, "force", req.Force, "status", status)
	relay(w, status, ans, err)
}

func (d *Datasource) serveCancel(w http.ResponseWriter, r *http.Request, u *backend.User) {
	if d.controller == nil {
		httpjson.Error(w, http.StatusBadRequest, "cancelling needs jsonData.controllerUrl, which is not set")
		return
	}
	id := r.PathValue("id")
	if id == "" || len(id) > 256 || strings.ContainsAny(id, "/?#") {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("job: %.80q is not a job id", id))
		return
	}
	status, ans, err := d.controller.do(r.Context(), http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil)
	d.logAction(u, "cancel", err, "job", id, "status", status)
	relay(w, status, ans, err)
}

// AliasRequest is the body of POST aliases: move (promote, roll back) an alias of a model to
// one of its versions.
type AliasRequest struct {
	Model   string `json:"model"`
	Alias   string `json:"alias"`
	Version int64  `json:"version"`
	Reason  string `json:"reason"`
}

// serveAlias relays a move to the controller's PUT /v1/models/{model}/aliases/{alias}, which
// signs the pointer with the repository's key: the plugin never holds that key. As for a
// retrain, the controller records the data source's operator, so the reason names the user.
func (d *Datasource) serveAlias(w http.ResponseWriter, r *http.Request, u *backend.User) {
	if d.controller == nil {
		httpjson.Error(w, http.StatusBadRequest, "moving an alias needs jsonData.controllerUrl, which is not set")
		return
	}
	var req AliasRequest
	if !readJSON(w, r, maxRetrainBody, &req) {
		return
	}
	switch {
	case !sample.ValidName(req.Model):
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("model: %.80q is not a model name", req.Model))
		return
	case !sample.ValidName(req.Alias):
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("alias: %.80q is not an alias name", req.Alias))
		return
	case req.Version < 1:
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("version: want a positive version number, got %d", req.Version))
		return
	}
	reason := "grafana user " + annotator(u)
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	if len(reason) > maxReasonBytes {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("reason: at most %d bytes with the user's name", maxReasonBytes))
		return
	}
	body, _ := json.Marshal(map[string]any{"version": req.Version, "reason": reason})
	status, ans, err := d.controller.do(r.Context(), http.MethodPut,
		"/v1/models/"+url.PathEscape(req.Model)+"/aliases/"+url.PathEscape(req.Alias), body)
	d.logAction(u, "alias", err, "model", req.Model, "alias", req.Alias, "version", req.Version, "status", status)
	relay(w, status, ans, err)
}

// logAction logs an action the user took and its outcome.
func (d *Datasource) logAction(u *backend.User, name string, err error, args ...any) {
	args = append([]any{"action", name, "user", annotator(u), "role", u.Role}, args...)
	if err != nil {
		d.logger.Warn("action failed", append(args, "err", err)...)
		return
	}
	d.logger.Info("action", args...)
}
