package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Query types: the queryType of a panel's or an annotation's query (docs/grafana-plugin.md).
const (
	QuerySamples            = "samples"
	QueryCatalog            = "catalog"
	QueryJobs               = "jobs"
	QueryDecisions          = "decisions"
	QueryVersions           = "versions"
	QueryVersionAnnotations = "versionAnnotations"
	QueryJobAnnotations     = "jobAnnotations"
)

// QueryTypes lists every query type, in the order the docs describe them.
var QueryTypes = []string{QuerySamples, QueryCatalog, QueryJobs, QueryDecisions, QueryVersions, QueryVersionAnnotations, QueryJobAnnotations}

// Sample scan bounds: the collector exports at most maxTaskScan samples per request
// (collector/labels MaxTaskLimit), from the start of the range; a query keeps the newest
// Limit of those that pass its filters.
const (
	maxTaskScan        = 10000
	defaultSampleLimit = 100
)

// Query is a query's model: the fields the query editor sets beside Grafana's own (refId,
// datasource, ...), which are ignored. Each query type reads the fields it needs.
type Query struct {
	// Model restricts to one model; required by samples, optional elsewhere.
	Model string `json:"model"`
	// Version restricts samples and catalog to one version (the collector's version string).
	Version string `json:"version"`
	// Node and Reason filter samples.
	Node   string `json:"node"`
	Reason string `json:"reason"`
	// MinConfidence and MaxConfidence filter samples by their top score.
	MinConfidence *float64 `json:"minConfidence"`
	MaxConfidence *float64 `json:"maxConfidence"`
	// Phase filters jobs.
	Phase string `json:"phase"`
	// GroupBy breaks catalog counts down: "" (per model, or per version when Model is set),
	// "reason" or "class" (Model required).
	GroupBy string `json:"groupBy"`
	// Limit bounds the rows of samples (default 100, at most 10,000).
	Limit int `json:"limit"`
}

// queryError is a query's failure with the status Grafana shows.
type queryError struct {
	status backend.Status
	msg    string
}

func (e *queryError) Error() string { return e.msg }

func badQuery(format string, args ...any) error {
	return &queryError{status: backend.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// QueryData answers each query with its frames or its error; one failing query does not fail
// the others.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		frames, err := d.query(ctx, q)
		if err != nil {
			resp.Responses[q.RefID] = errResponse(err)
			continue
		}
		resp.Responses[q.RefID] = backend.DataResponse{Frames: frames}
	}
	return resp, nil
}

// errResponse maps an error to a data response: a bad query or a 4xx of the upstream server
// is the user's to fix (downstream), anything else the servers' (upstream: a 502).
func errResponse(err error) backend.DataResponse {
	var qe *queryError
	var ae *APIError
	switch {
	case errors.As(err, &qe):
		return backend.ErrDataResponseWithSource(qe.status, backend.ErrorSourceDownstream, qe.msg)
	case errors.As(err, &ae) && ae.Status/100 == 4:
		return backend.ErrDataResponseWithSource(backend.Status(ae.Status), backend.ErrorSourceDownstream, err.Error())
	}
	return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
}

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) (data.Frames, error) {
	if d.settingErr != nil {
		return nil, &queryError{status: backend.StatusBadRequest, msg: d.settingErr.Error()}
	}
	var q Query
	if len(dq.JSON) > 0 {
		if err := json.Unmarshal(dq.JSON, &q); err != nil {
			return nil, badQuery("query: %v", err)
		}
	}
	if q.Model != "" && !sample.ValidName(q.Model) {
		return nil, badQuery("model: %q is not a model name (letters, digits, '.', '_', '-')", q.Model)
	}
	if q.Limit < 0 || q.Limit > maxTaskScan {
		return nil, badQuery("limit: want 0 (the default, %d) to %d, got %d", defaultSampleLimit, maxTaskScan, q.Limit)
	}
	tr := dq.TimeRange
	switch dq.QueryType {
	case QuerySamples:
		return d.samples(ctx, q, tr)
	case QueryCatalog:
		return d.catalog(ctx, q)
	case QueryJobs:
		return d.jobs(ctx, q, tr, false)
	case QueryJobAnnotations:
		return d.jobs(ctx, q, tr, true)
	case QueryDecisions:
		return d.decisions(ctx, q, tr)
	case QueryVersions:
		return d.versions(ctx, q, tr, false)
	case QueryVersionAnnotations:
		return d.versions(ctx, q, tr, true)
	case "":
		return nil, badQuery("queryType: missing: want one of %s", strings.Join(QueryTypes, ", "))
	}
	return nil, badQuery("queryType: %q is not a query type: want one of %s", dq.QueryType, strings.Join(QueryTypes, ", "))
}

// need returns the server a query needs, or says that it is not configured.
func need(a *api, key string) (*api, error) {
	if a == nil {
		return nil, badQuery("this query needs jsonData.%s, which is not set", key)
	}
	return a, nil
}

// task is the part of a collector Label Studio task (collector/labels.Task) a sample row
// shows: the collector serves no other listing of samples.
type task struct {
	Data struct {
		Key            string    `json:"key"`
		RequestID      string    `json:"request_id"`
		PredictedClass string    `json:"predicted_class"`
		Model          string    `json:"model"`
		Version        string    `json:"version"`
		Node           string    `json:"node"`
		Reason         string    `json:"reason"`
		Time           time.Time `json:"time"`
	} `json:"data"`
	Predictions []struct {
		Score float64 `json:"score"`
	} `json:"predictions"`
}

// ThumbnailPath is the path under Grafana of a sample's thumbnail resource.
func ThumbnailPath(uid, key string) string {
	return "/api/datasources/uid/" + url.PathEscape(uid) + "/resources/thumbnail?key=" + url.QueryEscape(key)
}

// samples lists captured samples of one model predicted within the time range, newest first,
// filtered by node, reason and top score.
func (d *Datasource) samples(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	c, err := need(d.collector, "collectorUrl")
	if err != nil {
		return nil, err
	}
	if q.Model == "" {
		return nil, badQuery("model: the samples query needs a model")
	}
	limit := q.Limit
	if limit == 0 {
		limit = defaultSampleLimit
	}
	v := url.Values{"limit": {strconv.Itoa(maxTaskScan)}}
	if !tr.From.IsZero() {
		v.Set("since", tr.From.UTC().Format(time.RFC3339Nano))
	}
	if q.Version != "" {
		v.Set("version", q.Version)
	}
	var tasks []task
	if err := c.getJSON(ctx, "/v1/labelstudio/"+url.PathEscape(q.Model)+"/tasks?"+v.Encode(), &tasks); err != nil {
		return nil, err
	}
	scanned := len(tasks)
	rows := tasks[:0]
	for _, t := range tasks {
		score := 0.0
		if len(t.Predictions) > 0 {
			score = t.Predictions[0].Score
		}
		switch {
		case !tr.To.IsZero() && t.Data.Time.After(tr.To),
			q.Node != "" && t.Data.Node != q.Node,
			q.Reason != "" && t.Data.Reason != q.Reason,
			q.MinConfidence != nil && score < *q.MinConfidence,
			q.MaxConfidence != nil && score > *q.MaxConfidence:
			continue
		}
		rows = append(rows, t)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Data.Time.After(rows[j].Data.Time) })
	if len(rows) > limit {
		rows = rows[:limit]
	}
	keys := make(map[string]bool, len(rows))
	for _, t := range rows {
		keys[t.Data.Key] = true
	}
	// Labels are read back from the collector (GET /v1/labels); a collector that cannot
	// answer leaves the label columns empty with a notice rather than failing the samples.
	labels, complete, labelErr := c.labels(ctx, q.Model, tr.From, keys)
	f := data.NewFrame("samples",
		data.NewField("time", nil, []time.Time{}),
		data.NewField("model", nil, []string{}),
		data.NewField("version", nil, []string{}),
		data.NewField("node", nil, []string{}),
		data.NewField("reason", nil, []string{}),
		data.NewField("confidence", nil, []float64{}),
		data.NewField("predicted_class", nil, []string{}),
		data.NewField("label", nil, []*string{}),
		data.NewField("key", nil, []string{}),
		data.NewField("request_id", nil, []string{}),
		data.NewField("thumbnail_url", nil, []string{}),
		data.NewField("label_source", nil, []*string{}),
		data.NewField("annotator", nil, []*string{}),
		data.NewField("labelled", nil, []*time.Time{}),
	)
	for _, t := range rows {
		score := 0.0
		if len(t.Predictions) > 0 {
			score = t.Predictions[0].Score
		}
		var label, source, who *string
		var at *time.Time
		if l, ok := labels[t.Data.Key]; ok {
			text, src, ann, when := l.text(), l.Source, l.Annotator, l.Time
			label, source, at = &text, &src, &when
			if ann != "" {
				who = &ann
			}
		}
		f.AppendRow(t.Data.Time, t.Data.Model, t.Data.Version, t.Data.Node, t.Data.Reason, score,
			t.Data.PredictedClass, label, t.Data.Key, t.Data.RequestID, ThumbnailPath(d.uid, t.Data.Key), source, who, at)
	}
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	switch {
	case labelErr != nil:
		f.Meta.Notices = append(f.Meta.Notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: "label is empty: the labels could not be read: " + labelErr.Error()})
	case !complete:
		f.Meta.Notices = append(f.Meta.Notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("labels read up to %d given since the range's start: a later label of a sample may not be shown; narrow the range", maxLabelPage*maxLabelPages)})
	}
	if scanned >= maxTaskScan {
		f.Meta.Notices = append(f.Meta.Notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("the collector returned its maximum of %d samples from the start of the range: narrow the range to see later ones", maxTaskScan)})
	}
	return data.Frames{f}, nil
}

// catalog counts stored samples: per model, per version of a model, or per version and
// capture reason or predicted class.
func (d *Datasource) catalog(ctx context.Context, q Query) (data.Frames, error) {
	c, err := need(d.collector, "collectorUrl")
	if err != nil {
		return nil, err
	}
	type counts struct {
		Samples int64 `json:"samples"`
		Bytes   int64 `json:"bytes"`
	}
	switch {
	case q.GroupBy != "" && q.GroupBy != "reason" && q.GroupBy != "class":
		return nil, badQuery("groupBy: want \"\", \"reason\" or \"class\", got %q", q.GroupBy)
	case q.GroupBy != "" && q.Model == "":
		return nil, badQuery("groupBy: %q needs a model", q.GroupBy)
	case q.Model == "":
		var ans struct {
			Models []struct {
				Model    string `json:"model"`
				Versions int64  `json:"versions"`
				Shards   int64  `json:"shards"`
				counts
			} `json:"models"`
		}
		if err := c.getJSON(ctx, "/v1/catalog", &ans); err != nil {
			return nil, err
		}
		f := data.NewFrame("catalog", data.NewField("model", nil, []string{}), data.NewField("versions", nil, []int64{}),
			data.NewField("shards", nil, []int64{}), data.NewField("samples", nil, []int64{}), data.NewField("bytes", nil, []int64{}))
		for _, m := range ans.Models {
			f.AppendRow(m.Model, m.Versions, m.Shards, m.Samples, m.Bytes)
		}
		return data.Frames{f}, nil
	}
	var vers struct {
		Versions []struct {
			Version string    `json:"version"`
			Shards  int64     `json:"shards"`
			First   time.Time `json:"first"`
			Last    time.Time `json:"last"`
			counts
		} `json:"versions"`
	}
	if err := c.getJSON(ctx, "/v1/catalog/"+url.PathEscape(q.Model), &vers); err != nil {
		return nil, err
	}
	if q.GroupBy == "" {
		f := data.NewFrame("catalog", data.NewField("model", nil, []string{}), data.NewField("version", nil, []string{}),
			data.NewField("shards", nil, []int64{}), data.NewField("samples", nil, []int64{}), data.NewField("bytes", nil, []int64{}),
			data.NewField("first", nil, []time.Time{}), data.NewField("last", nil, []time.Time{}))
		for _, v := range vers.Versions {
			if q.Version == "" || v.Version == q.Version {
				f.AppendRow(q.Model, v.Version, v.Shards, v.Samples, v.Bytes, v.First, v.Last)
			}
		}
		return data.Frames{f}, nil
	}
	f := data.NewFrame("catalog", data.NewField("model", nil, []string{}), data.NewField("version", nil, []string{}),
		data.NewField(q.GroupBy, nil, []string{}), data.NewField("samples", nil, []int64{}), data.NewField("bytes", nil, []int64{}))
	for _, v := range vers.Versions {
		if q.Version != "" && v.Version != q.Version {
			continue
		}
		var st struct {
			Total struct {
				ByReason map[string]counts `json:"by_reason"`
				ByClass  map[string]counts `json:"by_class"`
			} `json:"total"`
		}
		if err := c.getJSON(ctx, "/v1/catalog/"+url.PathEscape(q.Model)+"/"+url.PathEscape(v.Version), &st); err != nil {
			return nil, err
		}
		by := st.Total.ByReason
		if q.GroupBy == "class" {
			by = st.Total.ByClass
		}
		names := make([]string, 0, len(by))
		for n := range by {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			f.AppendRow(q.Model, v.Version, n, by[n].Samples, by[n].Bytes)
		}
	}
	return data.Frames{f}, nil
}

// job is the part of the controller's job (retrain.Job, GET /v1/jobs) the frames show.
type job struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Phase   string `json:"phase"`
	Trigger struct {
		Source string `json:"source"`
		Alert  string `json:"alert"`
		By     string `json:"by"`
		Reason string `json:"reason"`
	} `json:"trigger"`
	BaseVersion int64 `json:"base_version"`
	Version     int64 `json:"version"`
	Gate        *struct {
		Promote       bool   `json:"promote"`
		Reason        string `json:"reason"`
		PrimaryMetric string `json:"primary_metric"`
		Candidate     struct {
			Primary float64 `json:"primary"`
		} `json:"candidate"`
		Current struct {
			Primary float64 `json:"primary"`
		} `json:"current"`
	} `json:"gate"`
	Error    string    `json:"error"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// jobs lists the controller's jobs that overlap the time range (created before its end, not
// finished before its start), as a table or as annotations (one region per job).
func (d *Datasource) jobs(ctx context.Context, q Query, tr backend.TimeRange, annotations bool) (data.Frames, error) {
	c, err := need(d.controller, "controllerUrl")
	if err != nil {
		return nil, err
	}
	v := url.Values{}
	if q.Model != "" {
		v.Set("model", q.Model)
	}
	if q.Phase != "" {
		v.Set("phase", q.Phase)
	}
	var ans struct {
		Jobs []job `json:"jobs"`
	}
	if err := c.getJSON(ctx, "/v1/jobs?"+v.Encode(), &ans); err != nil {
		return nil, err
	}
	var rows []job
	for _, j := range ans.Jobs {
		if (!tr.To.IsZero() && j.Created.After(tr.To)) || (!tr.From.IsZero() && !j.Finished.IsZero() && j.Finished.Before(tr.From)) {
			continue
		}
		rows = append(rows, j)
	}
	if annotations {
		f := annotationFrame("jobs")
		for _, j := range rows {
			end := j.Finished
			if end.IsZero() {
				end = time.Now()
			}
			text := fmt.Sprintf("%s: %s (trigger %s)", j.ID, j.Phase, triggerText(j))
			if j.Gate != nil {
				text += "; gate: " + j.Gate.Reason
			}
			if j.Error != "" {
				text += "; " + j.Error
			}
			f.AppendRow(j.Created, end, "retrain "+j.Model+" "+j.Phase, text, strings.Join([]string{"edgeloop", "job", j.Model, j.Phase}, ","))
		}
		return data.Frames{f}, nil
	}
	f := data.NewFrame("jobs",
		data.NewField("created", nil, []time.Time{}),
		data.NewField("id", nil, []string{}),
		data.NewField("model", nil, []string{}),
		data.NewField("phase", nil, []string{}),
		data.NewField("trigger", nil, []string{}),
		data.NewField("base_version", nil, []int64{}),
		data.NewField("version", nil, []*int64{}),
		data.NewField("gate_promote", nil, []*bool{}),
		data.NewField("gate_metric", nil, []string{}),
		data.NewField("gate_candidate", nil, []*float64{}),
		data.NewField("gate_current", nil, []*float64{}),
		data.NewField("gate_reason", nil, []string{}),
		data.NewField("error", nil, []string{}),
		data.NewField("started", nil, []*time.Time{}),
		data.NewField("finished", nil, []*time.Time{}),
	)
	for _, j := range rows {
		var promote *bool
		var cand, cur *float64
		metric, reason := "", ""
		if j.Gate != nil {
			promote, cand, cur = &j.Gate.Promote, &j.Gate.Candidate.Primary, &j.Gate.Current.Primary
			metric, reason = j.Gate.PrimaryMetric, j.Gate.Reason
		}
		var version *int64
		if j.Version != 0 {
			version = &j.Version
		}
		f.AppendRow(j.Created, j.ID, j.Model, j.Phase, triggerText(j), j.BaseVersion, version, promote, metric, cand, cur, reason, j.Error,
			timePtr(j.Started), timePtr(j.Finished))
	}
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return data.Frames{f}, nil
}

func triggerText(j job) string {
	parts := []string{j.Trigger.Source}
	for _, p := range []string{j.Trigger.Alert, j.Trigger.By, j.Trigger.Reason} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// annotationFrame is a frame Grafana reads as annotations: time and timeEnd (a region), title,
// text, and tags as a comma-separated string.
func annotationFrame(name string) *data.Frame {
	return data.NewFrame(name,
		data.NewField("time", nil, []time.Time{}),
		data.NewField("timeEnd", nil, []time.Time{}),
		data.NewField("title", nil, []string{}),
		data.NewField("text", nil, []string{}),
		data.NewField("tags", nil, []string{}),
	)
}

// decisions lists the controller's verdicts on triggers within the time range: the job each
// started, or why it was skipped.
func (d *Datasource) decisions(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	c, err := need(d.controller, "controllerUrl")
	if err != nil {
		return nil, err
	}
	path := "/v1/decisions"
	if q.Model != "" {
		path += "?" + url.Values{"model": {q.Model}}.Encode()
	}
	var ans struct {
		Decisions []struct {
			Time    time.Time `json:"time"`
			Trigger struct {
				Source  string `json:"source"`
				Model   string `json:"model"`
				Version string `json:"version"`
				Alert   string `json:"alert"`
				By      string `json:"by"`
				Reason  string `json:"reason"`
			} `json:"trigger"`
			Started string `json:"started"`
			Skipped string `json:"skipped"`
			Detail  string `json:"detail"`
		} `json:"decisions"`
	}
	if err := c.getJSON(ctx, path, &ans); err != nil {
		return nil, err
	}
	f := data.NewFrame("decisions",
		data.NewField("time", nil, []time.Time{}),
		data.NewField("model", nil, []string{}),
		data.NewField("source", nil, []string{}),
		data.NewField("alert", nil, []string{}),
		data.NewField("by", nil, []string{}),
		data.NewField("started", nil, []string{}),
		data.NewField("skipped", nil, []string{}),
		data.NewField("detail", nil, []string{}),
		data.NewField("reason", nil, []string{}),
	)
	for _, x := range ans.Decisions {
		if (!tr.From.IsZero() && x.Time.Before(tr.From)) || (!tr.To.IsZero() && x.Time.After(tr.To)) {
			continue
		}
		f.AppendRow(x.Time, x.Trigger.Model, x.Trigger.Source, x.Trigger.Alert, x.Trigger.By, x.Started, x.Skipped, x.Detail, x.Trigger.Reason)
	}
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return data.Frames{f}, nil
}

// maxVersionsPerModel bounds the manifests one versions query reads per model (the newest):
// each is one GET.
const maxVersionsPerModel = 200

// versions lists model versions from the repository: when each was made, its parent (the
// lineage), the aliases pointing at it, its metrics; or, as annotations, one point per version
// made within the time range. Manifests are read without verifying signatures: this is a
// listing for people, never a decision what to load.
func (d *Datasource) versions(ctx context.Context, q Query, tr backend.TimeRange, annotations bool) (data.Frames, error) {
	if d.repo == nil {
		return nil, badQuery("this query needs jsonData.repositoryUrl (the model repository), which is not set")
	}
	models := []string{q.Model}
	if q.Model == "" {
		var err error
		if models, err = d.repo.Models(ctx); err != nil {
			return nil, fmt.Errorf("repository: %w", err)
		}
	}
	f := data.NewFrame("versions",
		data.NewField("created", nil, []time.Time{}),
		data.NewField("model", nil, []string{}),
		data.NewField("version", nil, []int64{}),
		data.NewField("parent_version", nil, []*int64{}),
		data.NewField("aliases", nil, []string{}),
		data.NewField("latest", nil, []bool{}),
		data.NewField("accuracy", nil, []*float64{}),
		data.NewField("metrics", nil, []string{}),
		data.NewField("classes", nil, []int64{}),
		data.NewField("signed", nil, []bool{}),
		data.NewField("datasets", nil, []int64{}),
	)
	ann := annotationFrame("versions")
	for _, m := range models {
		vers, err := d.repo.Versions(ctx, m)
		if err != nil {
			if errors.Is(err, modelrepo.ErrInvalidName) {
				return nil, badQuery("model: %v", err)
			}
			return nil, fmt.Errorf("repository: %w", err)
		}
		aliases, err := d.repo.Aliases(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("repository: %w", err)
		}
		byVersion := map[int64][]string{}
		for name, v := range aliases {
			byVersion[v] = append(byVersion[v], name)
		}
		if len(vers) > maxVersionsPerModel {
			vers = vers[len(vers)-maxVersionsPerModel:]
		}
		for _, v := range vers {
			man, err := d.repo.UnverifiedManifest(ctx, m, v)
			if err != nil {
				return nil, fmt.Errorf("repository: %w", err)
			}
			names := byVersion[v]
			slices.Sort(names)
			if annotations {
				if (!tr.From.IsZero() && man.Created.Before(tr.From)) || (!tr.To.IsZero() && man.Created.After(tr.To)) {
					continue
				}
				text := fmt.Sprintf("%s version %d published", m, v)
				if man.ParentVersion != 0 {
					text += fmt.Sprintf(", retrained from %d", man.ParentVersion)
				}
				if len(names) > 0 {
					text += "; now " + strings.Join(names, ", ")
				}
				ann.AppendRow(man.Created, man.Created, fmt.Sprintf("%s v%d", m, v), text, "edgeloop,version,"+m)
				continue
			}
			var parent *int64
			if man.ParentVersion != 0 {
				parent = &man.ParentVersion
			}
			var acc *float64
			if a, ok := man.Metrics["accuracy"]; ok {
				acc = &a
			}
			metrics, _ := json.Marshal(man.Metrics) // a map of floats always encodes
			f.AppendRow(man.Created, m, v, parent, strings.Join(names, ","), v == vers[len(vers)-1], acc, string(metrics),
				int64(len(man.Classes)), man.Signature != nil, int64(len(man.Datasets)))
		}
	}
	if annotations {
		return data.Frames{ann}, nil
	}
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return data.Frames{f}, nil
}

// jsonMarshal is json.Marshal for health details.
func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b, nil
}

// statusOf is the HTTP status an action answers for an upstream error.
func statusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return http.StatusBadGateway
}
