// Package labels is the collector's labelling API: it takes labels from annotators, teacher
// models and Label Studio, stores them as JSONL beside the shards (labels/<model>/...), hands
// training jobs dataset manifests of shards and label files, and exports samples to Label
// Studio with a PNG rendering of each input. docs/labels.md is the operator's guide.
package labels

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgeloop/edgeloop/collector/auth"
	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Limits of one request.
const (
	// MaxLabels bounds the labels of one POST /v1/labels.
	MaxLabels = 10_000
	// MaxBody bounds the body of POST /v1/labels.
	MaxBody = 4 << 20
	// MaxImportBody bounds a Label Studio export posted to the import endpoint.
	MaxImportBody = 64 << 20
	// MaxLabelName bounds a label given as a class name, and an annotator's name, in bytes.
	MaxLabelName = 256
	// MaxClassIndex bounds a label given as a class index.
	MaxClassIndex = 1 << 20
	// DefaultTaskLimit and MaxTaskLimit bound the tasks of one Label Studio export.
	DefaultTaskLimit = 1000
	MaxTaskLimit     = 10_000
	// DefaultURLTTL is how long an image URL handed to Label Studio stays valid.
	DefaultURLTTL = 30 * 24 * time.Hour
)

// LabelsPrefix starts every label object's key: labels/<model>/dt=<date>/<file>.jsonl.
const LabelsPrefix = "labels/"

// sourceRE is what a label's source may be (annotator, teacher model, ...).
var sourceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Options configure the labelling API.
type Options struct {
	// Bucket holds the shards and receives the labels; required.
	Bucket objstore.Bucket
	// Catalog finds shards and samples; required.
	Catalog *catalog.Catalog
	// Instance is this collector's instance name, part of every label object's name so that
	// instances never write the same key; required.
	Instance string
	// BucketURL is the bucket's URL as jobs reach it (s3://edgeloop?endpoint=...), reported in
	// dataset manifests beside the bucket-relative keys.
	BucketURL string
	// PublicURL is the collector's address as annotators' browsers reach it, the base of the
	// image URLs given to Label Studio; empty means the scheme and Host of the export request.
	PublicURL string
	// SigningKey signs image URLs, so that a browser can load a sample's PNG without the
	// operator token. Collector instances behind one address need the same key; nil means a
	// random key, and URLs that die with the process.
	SigningKey []byte
	// URLTTL is how long a signed image URL is valid; zero means DefaultURLTTL.
	URLTTL time.Duration
	// RequireOperator is the collector's operator authentication; required.
	RequireOperator func(http.Handler) http.Handler
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service serves the labelling API.
type Service struct {
	opts Options
}

// New checks opts and returns the service.
func New(opts Options) (*Service, error) {
	switch {
	case opts.Bucket == nil:
		return nil, errors.New("labels: no bucket")
	case opts.Catalog == nil:
		return nil, errors.New("labels: no catalog")
	case opts.RequireOperator == nil:
		return nil, errors.New("labels: no operator authentication")
	case !sample.ValidName(opts.Instance):
		return nil, fmt.Errorf("labels: instance %q is not a valid name", opts.Instance)
	}
	if opts.SigningKey == nil {
		opts.SigningKey = make([]byte, 32)
		_, _ = rand.Read(opts.SigningKey) // never fails (crypto/rand)
	}
	if opts.URLTTL <= 0 {
		opts.URLTTL = DefaultURLTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	return &Service{opts: opts}, nil
}

// Handler returns the API; mount it at "/v1/labels", "/v1/datasets/", "/v1/labelstudio/" and
// "/v1/samples/":
//
//	POST /v1/labels                              store labels, by key or request id (operator)
//	GET  /v1/labels?model=&since=&limit=&after=  the stored labels, a page at a time (operator)
//	GET  /v1/datasets/{model}?since=&version=    dataset manifest (operator)
//	GET  /v1/labelstudio/{model}/tasks?since=&version=&limit=   Label Studio tasks (operator)
//	POST /v1/labelstudio/{model}/import          Label Studio JSON export → labels (operator)
//	GET  /v1/samples/{key}.png                   a sample's input as PNG (operator, or signed URL)
func (s *Service) Handler() http.Handler {
	op := s.opts.RequireOperator
	mux := http.NewServeMux()
	mux.Handle("POST /v1/labels", op(http.HandlerFunc(s.postLabels)))
	mux.Handle("GET /v1/labels", op(http.HandlerFunc(s.listLabels)))
	mux.Handle("GET /v1/datasets/{model}", op(http.HandlerFunc(s.dataset)))
	mux.Handle("GET /v1/labelstudio/{model}/tasks", op(http.HandlerFunc(s.tasks)))
	mux.Handle("POST /v1/labelstudio/{model}/import", op(http.HandlerFunc(s.importLS)))
	png := http.HandlerFunc(s.png)
	mux.HandleFunc("GET /v1/samples/{file}", func(w http.ResponseWriter, r *http.Request) {
		// A browser showing a Label Studio task has no token: a valid signature stands in
		// for one, for this one image only.
		if r.URL.Query().Has("sig") {
			if err := s.checkSignature(r); err != nil {
				httpjson.Error(w, http.StatusForbidden, err.Error())
				return
			}
			png(w, r)
			return
		}
		op(png).ServeHTTP(w, r)
	})
	return mux
}

// Label is one label of a POST /v1/labels request. It names its sample by Key or by
// RequestID, not both.
type Label struct {
	// Key is the sample's key: 32 lowercase hex digits.
	Key string `json:"key,omitempty"`
	// RequestID names the sample by the id of the inference request it was captured from
	// (a batch's row i as "<id>#<i>"): the catalog resolves it to a key, and it must name
	// exactly one sample of the request's model.
	RequestID string `json:"request_id,omitempty"`
	// Label is the class: an index (≥ 0) or a name, as the trainer reads it.
	Label json.RawMessage `json:"label"`
	// Source says who labelled: human, teacher, labelstudio, ...
	Source string `json:"source"`
	// Annotator names the person or model, optionally.
	Annotator string `json:"annotator,omitempty"`
}

// Request is the body of POST /v1/labels.
type Request struct {
	Model  string  `json:"model"`
	Labels []Label `json:"labels"`
}

// Line is one line of a stored label file: the trainer reads "key" and "label".
type Line struct {
	Key string `json:"key"`
	// RequestID is the request id the label named its sample by, when it did.
	RequestID string          `json:"request_id,omitempty"`
	Label     json.RawMessage `json:"label"`
	Source    string          `json:"source"`
	Annotator string          `json:"annotator,omitempty"`
	Time      time.Time       `json:"time"`
}

// validLabel checks a label value and returns its canonical JSON.
func validLabel(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("missing: give a class index or a class name")
	}
	if raw[0] == '"' {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			return nil, fmt.Errorf("not a valid JSON string: %v", err)
		}
		if err := printable(name); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(name)
		return b, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 || n > MaxClassIndex {
		return nil, fmt.Errorf("want a class index (an integer from 0 to %d) or a class name (a string), got %.40s", MaxClassIndex, raw)
	}
	return json.RawMessage(strconv.FormatInt(n, 10)), nil
}

// printable checks a name: 1 to MaxLabelName bytes of printable UTF-8.
func printable(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > MaxLabelName:
		return fmt.Errorf("longer than %d bytes (%d)", MaxLabelName, len(s))
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("holds the unprintable character %U", r)
		}
	}
	return nil
}

// problems collects a request's errors, each naming its field; only the first few are kept.
type problems []string

func (p *problems) add(format string, args ...any) {
	if len(*p) < 20 {
		*p = append(*p, fmt.Sprintf(format, args...))
	} else if len(*p) == 20 {
		*p = append(*p, "...")
	}
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "; "))
}

// validate checks a request and returns its lines.
func (s *Service) validate(req Request) ([]Line, error) {
	var p problems
	if !sample.ValidName(req.Model) {
		p.add("model: %q is not a model name (1-128 letters, digits, '.', '_', '-')", req.Model)
	}
	switch {
	case len(req.Labels) == 0:
		p.add("labels: empty")
	case len(req.Labels) > MaxLabels:
		p.add("labels: %d labels, more than the limit of %d per request", len(req.Labels), MaxLabels)
	}
	now := s.opts.Now().UTC()
	lines := make([]Line, 0, len(req.Labels))
	for i, l := range req.Labels {
		switch {
		case l.Key != "" && l.RequestID != "":
			p.add("labels[%d]: give key or request_id, not both", i)
		case l.RequestID != "":
			if err := catalog.CheckRequestID(l.RequestID); err != nil {
				p.add("labels[%d].%v", i, err)
			}
		case !sample.ValidKey(l.Key):
			p.add("labels[%d].key: want 32 lowercase hex digits (or give request_id instead), got %.40q", i, l.Key)
		}
		v, err := validLabel(l.Label)
		if err != nil {
			p.add("labels[%d].label: %v", i, err)
		}
		if !sourceRE.MatchString(l.Source) {
			p.add("labels[%d].source: want 1-64 lowercase letters, digits, '.', '_', '-' (human, teacher, ...), got %.40q", i, l.Source)
		}
		if l.Annotator != "" {
			if err := printable(l.Annotator); err != nil {
				p.add("labels[%d].annotator: %v", i, err)
			}
		}
		lines = append(lines, Line{Key: l.Key, RequestID: l.RequestID, Label: v, Source: l.Source, Annotator: l.Annotator, Time: now})
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return lines, nil
}

// Unresolved is a label whose request id does not name exactly one sample of the model.
type Unresolved struct {
	// Index is the label's place in the request (or the task's in a Label Studio export).
	Index     int    `json:"index"`
	RequestID string `json:"request_id"`
	// Reason is "unknown" (no sample has the id: not captured, or not stored yet),
	// "ambiguous" (several samples have it; label them by key) or "other_model".
	Reason string `json:"reason"`
	// Keys are the samples the id names, for "ambiguous" and "other_model".
	Keys []string `json:"keys,omitempty"`
}

// resolveStatus is the answer to a batch with labels that name no single sample: nothing of
// the batch is stored, and the caller sends it again once fixed (or once the samples are in).
const resolveStatus = http.StatusUnprocessableEntity

// resolve fills in the key of every line that names its sample by request id, through the
// catalog, and returns the lines whose id names no single sample of model, their Index set by
// index. Lookups are one per distinct id; each reads the shard indexes of the samples the id
// may name (catalog.FindRequest).
func (s *Service) resolve(ctx context.Context, model string, lines []Line, index func(i int) int) ([]Unresolved, error) {
	found := map[string][]catalog.SampleRef{}
	var bad []Unresolved
	for i := range lines {
		id := lines[i].RequestID
		if id == "" {
			continue
		}
		refs, ok := found[id]
		if !ok {
			var partial bool
			var err error
			if refs, partial, err = s.opts.Catalog.FindRequest(ctx, id); err != nil {
				return nil, err
			}
			if partial { // more samples than were read: ambiguous however many were
				refs = append(refs, catalog.SampleRef{})
			}
			found[id] = refs
		}
		u := Unresolved{Index: index(i), RequestID: id}
		switch {
		case len(refs) == 0:
			u.Reason = "unknown"
		case len(refs) > 1:
			u.Reason = "ambiguous"
		case refs[0].Model != model:
			u.Reason = "other_model"
		default:
			lines[i].Key = refs[0].Key
			continue
		}
		for _, r := range refs {
			if r.Key != "" {
				u.Keys = append(u.Keys, r.Key)
			}
		}
		bad = append(bad, u)
	}
	return bad, nil
}

// resolveLines runs resolve and answers the request when it cannot go on (false then): 503
// while the catalog loads, 422 naming every label whose id names no single sample, with
// nothing stored. field names a label's request id in messages, by its index.
func (s *Service) resolveLines(w http.ResponseWriter, r *http.Request, model string, lines []Line, index func(i int) int, field func(index int) string) bool {
	byID := false
	for _, l := range lines {
		byID = byID || l.RequestID != ""
	}
	if !byID {
		return true
	}
	if !s.ready(w) {
		return false
	}
	bad, err := s.resolve(r.Context(), model, lines, index)
	if err != nil {
		s.opts.Logger.Error("labels: resolve request ids failed", "model", model, "err", err)
		httpjson.Error(w, http.StatusBadGateway, "could not read a shard index from the object store")
		return false
	}
	if len(bad) == 0 {
		return true
	}
	var p problems
	for _, u := range bad {
		switch u.Reason {
		case "unknown":
			p.add("%s %q: no sample has it (not captured, or not shipped and stored yet)", field(u.Index), u.RequestID)
		case "ambiguous":
			p.add("%s %q: names several samples (%s): label them by key", field(u.Index), u.RequestID, strings.Join(u.Keys, ", "))
		default:
			p.add("%s %q: its sample %s is not of model %q", field(u.Index), u.RequestID, strings.Join(u.Keys, ", "), model)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resolveStatus)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error":      "nothing stored: " + p.err().Error(),
		"unresolved": bad,
	})
	return false
}

// store writes lines as one new label object of model and returns its key.
func (s *Service) store(ctx context.Context, model string, lines []Line) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return "", err
		}
	}
	now := s.opts.Now().UTC()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	key := fmt.Sprintf("%s%s/dt=%s/%s-%d-%s.jsonl", LabelsPrefix, model, now.Format("2006-01-02"), s.opts.Instance, now.UnixNano(), hex.EncodeToString(rnd[:]))
	if err := s.opts.Bucket.Put(ctx, key, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		return "", fmt.Errorf("labels: store: %w", err)
	}
	return key, nil
}

// decodeBody decodes a JSON body strictly, within limit bytes; the error is a 4xx message.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, strict bool) (int, error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes: split it", limit)
		}
		return http.StatusBadRequest, fmt.Errorf("body: %v", err)
	}
	if dec.More() {
		return http.StatusBadRequest, errors.New("body: more than one JSON value")
	}
	return 0, nil
}

func (s *Service) postLabels(w http.ResponseWriter, r *http.Request) {
	var req Request
	if code, err := decodeBody(w, r, MaxBody, &req, true); err != nil {
		httpjson.Error(w, code, err.Error())
		return
	}
	lines, err := s.validate(req)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.resolveLines(w, r, req.Model, lines, func(i int) int { return i },
		func(i int) string { return fmt.Sprintf("labels[%d].request_id", i) }) {
		return
	}
	key, err := s.store(r.Context(), req.Model, lines)
	if err != nil {
		s.opts.Logger.Error("labels: store failed", "model", req.Model, "err", err)
		httpjson.Error(w, http.StatusBadGateway, "object store unavailable")
		return
	}
	op, _ := auth.OperatorFrom(r.Context())
	s.opts.Logger.Info("labels stored", "model", req.Model, "labels", len(lines), "object", key, "operator", op)
	w.WriteHeader(http.StatusCreated)
	catalog.WriteJSON(w, map[string]any{"stored": len(lines), "object": key})
}

func (s *Service) ready(w http.ResponseWriter) bool {
	if s.opts.Catalog.Synced() {
		return true
	}
	w.Header().Set("Retry-After", "10")
	httpjson.Error(w, http.StatusServiceUnavailable, "the catalog is still being loaded from the bucket")
	return false
}

func (s *Service) dataset(w http.ResponseWriter, r *http.Request) {
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
	if !s.ready(w) {
		return
	}
	ver := r.URL.Query().Get("version")
	m := dataset.Manifest{Model: model, Bucket: s.opts.BucketURL, Version: ver, Generated: s.opts.Now().UTC(), Shards: []string{}, Labels: []string{}}
	if !since.IsZero() {
		m.Since = &since
	}
	for _, sh := range s.opts.Catalog.Shards(model, ver, since, time.Time{}) {
		m.Shards = append(m.Shards, sh.Key)
	}
	err = s.opts.Bucket.Iter(r.Context(), LabelsPrefix+model+"/", true, func(key string) error {
		if strings.HasSuffix(key, ".jsonl") {
			m.Labels = append(m.Labels, key)
		}
		return nil
	})
	if err != nil {
		s.opts.Logger.Error("labels: list label files failed", "model", model, "err", err)
		httpjson.Error(w, http.StatusBadGateway, "object store unavailable")
		return
	}
	if len(m.Shards) == 0 && len(m.Labels) == 0 {
		if _, err := s.opts.Catalog.Versions(model); err != nil {
			httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("model %q has no shards and no labels", model))
			return
		}
	}
	catalog.WriteJSON(w, m)
}

// sign returns the signature of an image URL for key, valid until exp (Unix seconds).
func (s *Service) sign(key string, exp int64) string {
	mac := hmac.New(sha256.New, s.opts.SigningKey)
	fmt.Fprintf(mac, "edgeloop sample png\n%s\n%d", key, exp)
	return hex.EncodeToString(mac.Sum(nil))
}

func (s *Service) checkSignature(r *http.Request) error {
	q := r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil {
		return errors.New("signed URL without a valid exp")
	}
	key := strings.TrimSuffix(r.PathValue("file"), ".png")
	want := s.sign(key, exp)
	if !hmac.Equal([]byte(want), []byte(q.Get("sig"))) {
		return errors.New("bad signature: export the tasks again")
	}
	if s.opts.Now().Unix() > exp {
		return errors.New("signed URL expired: export the tasks again")
	}
	return nil
}
