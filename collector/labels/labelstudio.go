package labels

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/preview"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Task is one Label Studio task, in the JSON Label Studio imports.
type Task struct {
	ID          int64          `json:"id"`
	Data        TaskData       `json:"data"`
	Predictions []LSPrediction `json:"predictions"`
}

// TaskData is what the labelling interface shows ($image) and what the import reads back
// (key, or request_id when a task made elsewhere has no key).
type TaskData struct {
	Image string `json:"image"`
	Key   string `json:"key"`
	// RequestID is the id of the inference request the sample was captured from ("" when
	// the client sent none), so that an annotator can match a task to a request.
	RequestID      string    `json:"request_id"`
	PredictedClass string    `json:"predicted_class"`
	Model          string    `json:"model"`
	Version        string    `json:"version"`
	Node           string    `json:"node"`
	Reason         string    `json:"reason"`
	Time           time.Time `json:"time"`
}

// LSPrediction is a pre-annotation: the model's answer, shown for the annotator to confirm or
// change.
type LSPrediction struct {
	ModelVersion string     `json:"model_version"`
	Result       []LSResult `json:"result"`
	Score        float64    `json:"score"`
}

// LSResult is one region result of a choices control.
type LSResult struct {
	FromName string  `json:"from_name,omitempty"`
	ToName   string  `json:"to_name,omitempty"`
	Type     string  `json:"type"`
	Value    LSValue `json:"value"`
}

// LSValue holds the chosen classes.
type LSValue struct {
	Choices []string `json:"choices"`
}

// taskID turns a sample key into a task id stable across exports: its first 52 bits, which a
// JSON number (a float64) holds exactly.
func taskID(key string) int64 {
	n, _ := strconv.ParseUint(key[:13], 16, 64)
	return int64(n)
}

func (s *Service) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Service) tasks(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	if !sample.ValidName(model) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("model: %q is not a model name", model))
		return
	}
	since, err := catalog.ParseTimeParam(r, "since")
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := DefaultTaskLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxTaskLimit {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d, got %q", MaxTaskLimit, v))
			return
		}
	}
	if !s.ready(w) {
		return
	}
	base := s.baseURL(r)
	exp := s.opts.Now().Add(s.opts.URLTTL).Unix()
	tasks := []Task{}
	seen := map[string]bool{}
	for _, sh := range s.opts.Catalog.Shards(model, r.URL.Query().Get("version"), since, time.Time{}) {
		if len(tasks) >= limit {
			break
		}
		entries, err := s.opts.Catalog.Entries(r.Context(), sh.Key)
		if err != nil {
			s.opts.Logger.Error("labels: read shard index failed", "shard", sh.Key, "err", err)
			httpjson.Error(w, http.StatusBadGateway, "object store unavailable")
			return
		}
		for _, e := range entries {
			if len(tasks) >= limit {
				break
			}
			if seen[e.Key] || len(e.Key) != 32 || (!since.IsZero() && e.Time.Before(since)) {
				continue
			}
			seen[e.Key] = true
			class := catalog.ClassOf(e)
			img := base + "/v1/samples/" + e.Key + ".png?" + url.Values{"exp": {strconv.FormatInt(exp, 10)}, "sig": {s.sign(e.Key, exp)}}.Encode()
			tasks = append(tasks, Task{
				ID: taskID(e.Key),
				Data: TaskData{Image: img, Key: e.Key, RequestID: e.RequestID, PredictedClass: class, Model: e.Model, Version: e.Version,
					Node: e.Node, Reason: e.Reason, Time: e.Time},
				Predictions: []LSPrediction{{ModelVersion: e.Version, Score: e.MaxSoftmax, Result: []LSResult{{
					FromName: "label", ToName: "image", Type: "choices", Value: LSValue{Choices: []string{class}},
				}}}},
			})
		}
	}
	catalog.WriteJSON(w, tasks)
}

// lsExportTask is the part of a task in Label Studio's JSON export that the import reads.
type lsExportTask struct {
	ID   int64 `json:"id"`
	Data struct {
		Key       string `json:"key"`
		RequestID string `json:"request_id"`
	} `json:"data"`
	Annotations []struct {
		Result       []LSResult      `json:"result"`
		CompletedBy  json.RawMessage `json:"completed_by"`
		WasCancelled bool            `json:"was_cancelled"`
	} `json:"annotations"`
}

// annotator names who completed an annotation: Label Studio exports a user id, or a user
// object with an email.
func annotator(raw json.RawMessage) string {
	var id int64
	if json.Unmarshal(raw, &id) == nil {
		return "labelstudio-user-" + strconv.FormatInt(id, 10)
	}
	var u struct {
		ID    int64  `json:"id"`
		Email string `json:"email"`
	}
	if json.Unmarshal(raw, &u) == nil {
		if u.Email != "" && printable(u.Email) == nil {
			return u.Email
		}
		if u.ID != 0 {
			return "labelstudio-user-" + strconv.FormatInt(u.ID, 10)
		}
	}
	return ""
}

func (s *Service) importLS(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	if !sample.ValidName(model) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("model: %q is not a model name", model))
		return
	}
	var export []lsExportTask
	if code, err := decodeBody(w, r, MaxImportBody, &export, false); err != nil {
		httpjson.Error(w, code, err.Error()+" (want Label Studio's JSON export: a list of tasks)")
		return
	}
	var p problems
	var lines []Line
	var lineTask []int // lines[j] is of export[lineTask[j]]
	skipped := 0
	now := s.opts.Now().UTC()
	for i, t := range export {
		// A task without a key (made outside edgeloop) may name its sample by request id.
		byID := t.Data.Key == "" && t.Data.RequestID != ""
		switch {
		case byID:
			if err := catalog.CheckRequestID(t.Data.RequestID); err != nil {
				p.add("task %d (index %d): data.%v", t.ID, i, err)
				continue
			}
		case !sample.ValidKey(t.Data.Key):
			p.add("task %d (index %d): data.key: want 32 lowercase hex digits (or data.request_id), got %.40q: were the tasks exported by edgeloop?", t.ID, i, t.Data.Key)
			continue
		}
		// The last completed annotation wins: it is the latest review.
		var choice, who string
		for _, a := range t.Annotations {
			if a.WasCancelled {
				continue
			}
			for _, res := range a.Result {
				if res.Type == "choices" && len(res.Value.Choices) > 0 {
					choice, who = res.Value.Choices[0], annotator(a.CompletedBy)
				}
			}
		}
		if choice == "" {
			skipped++ // not labelled yet
			continue
		}
		if err := printable(choice); err != nil {
			p.add("task %d (index %d): choice: %v", t.ID, i, err)
			continue
		}
		label, _ := json.Marshal(choice)
		l := Line{Key: t.Data.Key, Label: label, Source: "labelstudio", Annotator: who, Time: now}
		if byID {
			l.RequestID = t.Data.RequestID
		}
		lines = append(lines, l)
		lineTask = append(lineTask, i)
	}
	if err := p.err(); err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.resolveLines(w, r, model, lines, func(j int) int { return lineTask[j] },
		func(i int) string { return fmt.Sprintf("task %d (index %d): data.request_id", export[i].ID, i) }) {
		return
	}
	answer := map[string]any{"stored": len(lines), "skipped": skipped}
	if len(lines) > 0 {
		key, err := s.store(r.Context(), model, lines)
		if err != nil {
			s.opts.Logger.Error("labels: store failed", "model", model, "err", err)
			httpjson.Error(w, http.StatusBadGateway, "object store unavailable")
			return
		}
		answer["object"] = key
	}
	w.WriteHeader(http.StatusCreated)
	catalog.WriteJSON(w, answer)
}

// errNoImage says that a sample's input is not a .npy array that can be shown as an image.
var errNoImage = errors.New("the sample's input is not an image-shaped .npy array")

func (s *Service) png(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutSuffix(r.PathValue("file"), ".png")
	if !ok || !sample.ValidKey(key) {
		httpjson.Error(w, http.StatusNotFound, "want /v1/samples/<32 hex digit key>.png")
		return
	}
	if !s.ready(w) {
		return
	}
	sh, ok := s.opts.Catalog.Locate(key)
	if !ok {
		httpjson.Error(w, http.StatusNotFound, "no shard holds sample "+key)
		return
	}
	arr, err := s.readInput(r, sh.Key, key)
	switch {
	case errors.Is(err, errNoImage) || objstore.IsNotFound(err):
		httpjson.Error(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		s.opts.Logger.Error("labels: read sample failed", "shard", sh.Key, "key", key, "err", err)
		httpjson.Error(w, http.StatusBadGateway, "could not read the sample's shard")
		return
	}
	img, err := preview.Image(arr)
	if err != nil {
		httpjson.Error(w, http.StatusNotFound, err.Error())
		return
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		httpjson.Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/png")
	// Keys are content-derived: the image at a key never changes.
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

// readInput finds the sample's input member in its shard and decodes it.
func (s *Service) readInput(r *http.Request, shardKey, key string) (*npy.Array, error) {
	rc, _, err := s.opts.Bucket.Get(r.Context(), shardKey)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	prefix := key + ".input."
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("shard %s has no input for %s: %w", shardKey, key, objstore.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", shardKey, err)
		}
		if !strings.HasPrefix(h.Name, prefix) {
			continue
		}
		if h.Name != key+"."+sample.NPYFile || h.Size > sample.MaxInputBytes {
			return nil, errNoImage
		}
		arr, err := npy.Read(tr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNoImage, err)
		}
		return arr, nil
	}
}
