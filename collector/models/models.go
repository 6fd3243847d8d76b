// Package models serves the collector's model repository (the objects under models/ in its
// bucket) read-only to edge nodes, so that a node needs one credential, its collector token,
// instead of object-store keys. The exporter reads it through objstore's http(s) backend:
//
//	model_sync:
//	  repository: https://collector:9751/v1/repo     # EDGELOOP_TOKEN_FILE=/etc/edgeloop/token
//
// The API is a bucket rooted at PathPrefix: GET or HEAD PathPrefix+<key> returns the object at
// <key> (keys keep their "models/" prefix, so the model repository's layout is unchanged), with
// ETag, Last-Modified and Content-Length, and 304 for a matching If-None-Match; GET PathPrefix
// with ?prefix=<p>&recursive=<bool> lists keys as objstore.Listing JSON. Only keys under
// models/ exist in this view: anything else is 404, whatever the bucket holds. The same objects
// are at ModelsPath+<model>/<file> (GET /v1/models/fashion/3/model.onnx).
package models

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// PathPrefix is where the handler is mounted: the bucket URL of the repository is the
// collector's address followed by PathPrefix without its trailing "/".
const PathPrefix = "/v1/repo/"

// ModelsPath is the model repository by model: GET or HEAD ModelsPath+<model>/<file> is the
// object models/<model>/<file>, as PathPrefix+"models/<model>/<file>" is. The collector mounts
// the handler here too, so that a node or an operator can fetch a model's file by the path the
// API names models by; model sync uses PathPrefix, which also lists.
const ModelsPath = "/v1/models/"

// Root is the part of the bucket that nodes may read: the model repository.
const Root = "models/"

// MaxListing bounds the keys of one listing answer; the model repository holds a few files per
// version, so a longer answer means a prefix too broad to be a repository read.
const MaxListing = 100_000

// NewHandler returns the handler of PathPrefix, serving the keys under root of bucket (Root for
// the collector; tests may pass "" to serve a whole bucket) to requests that requireNode lets
// through. The caller keeps ownership of bucket.
func NewHandler(bucket objstore.Bucket, root string, requireNode func(http.Handler) http.Handler, logger *slog.Logger) http.Handler {
	if bucket == nil || requireNode == nil {
		panic("models: NewHandler: nil bucket or requireNode")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{bucket: bucket, root: root, logger: logger}
	return requireNode(h)
}

type handler struct {
	bucket objstore.Bucket
	root   string
	logger *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpjson.Error(w, http.StatusMethodNotAllowed, "the model repository is read-only: GET or HEAD")
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, ModelsPath); ok {
		h.object(w, r, Root+rest)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok {
		httpjson.Error(w, http.StatusNotFound, "not found")
		return
	}
	if key == "" {
		h.list(w, r)
		return
	}
	h.object(w, r, key)
}

// visible reports whether key lies in the served part of the bucket.
func (h *handler) visible(key string) bool { return strings.HasPrefix(key, h.root) }

func (h *handler) object(w http.ResponseWriter, r *http.Request, key string) {
	if err := objstore.ValidateKey(key); err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if !h.visible(key) {
		// The same answer as a missing model file: nodes learn nothing of the rest of the bucket.
		httpjson.Error(w, http.StatusNotFound, "object not found")
		return
	}
	ctx := r.Context()
	if r.Method == http.MethodHead {
		attrs, err := h.bucket.Attributes(ctx, key)
		if err != nil {
			h.fail(w, r, key, err)
			return
		}
		setHeaders(w, attrs)
		if matches(r.Header.Get("If-None-Match"), attrs.ETag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(attrs.Size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	inm := r.Header.Get("If-None-Match")
	etag := ""
	if tags := parseETags(inm); len(tags) == 1 && tags[0] != "*" {
		// One tag, as the objstore client sends: let the bucket answer the conditional request.
		etag = tags[0]
	}
	rc, attrs, err := h.bucket.GetIfNoneMatch(ctx, key, etag)
	if objstore.IsNotModified(err) {
		w.Header().Set("ETag", objstore.QuoteETag(etag))
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if err != nil {
		h.fail(w, r, key, err)
		return
	}
	defer rc.Close()
	setHeaders(w, attrs)
	if etag == "" && matches(inm, attrs.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(attrs.Size, 10))
	w.WriteHeader(http.StatusOK)
	if n, err := io.Copy(w, rc); err != nil {
		// The status is sent: the client sees a body shorter than Content-Length.
		h.logger.Warn("model repository: send failed", "key", key, "sent", n, "size", attrs.Size, "err", err)
	}
}

func setHeaders(w http.ResponseWriter, attrs objstore.Attributes) {
	w.Header().Set("ETag", objstore.QuoteETag(attrs.ETag))
	w.Header().Set("Content-Type", "application/octet-stream")
	// Pollers revalidate every time: an alias changes under a fixed key.
	w.Header().Set("Cache-Control", "no-cache")
	if !attrs.LastModified.IsZero() {
		w.Header().Set("Last-Modified", attrs.LastModified.UTC().Format(http.TimeFormat))
	}
}

// parseETags splits an If-None-Match header into its entity tags, unquoted; weak tags compare
// as strong ones (RFC 9110's weak comparison, which If-None-Match uses).
func parseETags(h string) []string {
	var tags []string
	for t := range strings.SplitSeq(h, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "" {
			continue
		}
		tags = append(tags, strings.Trim(t, `"`))
	}
	return tags
}

// matches reports whether an If-None-Match header matches etag.
func matches(inm, etag string) bool {
	for _, t := range parseETags(inm) {
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, key string, err error) {
	switch {
	case objstore.IsNotFound(err):
		httpjson.Error(w, http.StatusNotFound, "object not found")
	case errors.Is(err, objstore.ErrInvalidKey):
		httpjson.Error(w, http.StatusBadRequest, err.Error())
	default:
		h.logger.Error("model repository: read failed", "key", key, "err", err)
		httpjson.Error(w, http.StatusBadGateway, "object store unavailable")
	}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	recursive := false
	if v := q.Get("recursive"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "recursive must be true or false, got "+strconv.Quote(v))
			return
		}
		recursive = b
	}
	for name := range q {
		if name != "prefix" && name != "recursive" {
			httpjson.Error(w, http.StatusBadRequest, "unknown parameter "+strconv.Quote(name)+" (known: prefix, recursive)")
			return
		}
	}
	if err := objstore.ValidatePrefix(prefix); err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	keys := []string{}
	switch {
	case strings.HasPrefix(prefix, h.root):
		// Inside the served part: the bucket's own listing.
	case strings.HasPrefix(h.root, prefix) && !recursive:
		// The prefix stops above the served part ("", "mod"): the view holds one "directory".
		// It is reported only when something is under it, as a listing of the bucket would.
		found, err := h.any(r, h.root)
		if err != nil {
			h.fail(w, r, prefix, err)
			return
		}
		if found {
			keys = append(keys, h.root)
		}
		h.writeListing(w, keys)
		return
	case strings.HasPrefix(h.root, prefix):
		prefix = h.root
	default:
		h.writeListing(w, keys)
		return
	}
	tooMany := errors.New("too many keys")
	err := h.bucket.Iter(r.Context(), prefix, recursive, func(key string) error {
		if len(keys) >= MaxListing {
			return tooMany
		}
		keys = append(keys, key)
		return nil
	})
	if errors.Is(err, tooMany) {
		httpjson.Error(w, http.StatusUnprocessableEntity, "listing has more than "+strconv.Itoa(MaxListing)+" keys: narrow the prefix")
		return
	}
	if err != nil {
		h.fail(w, r, prefix, err)
		return
	}
	h.writeListing(w, keys)
}

// any reports whether at least one object lies under prefix.
func (h *handler) any(r *http.Request, prefix string) (bool, error) {
	stop := errors.New("found")
	err := h.bucket.Iter(r.Context(), prefix, false, func(string) error { return stop })
	if errors.Is(err, stop) {
		return true, nil
	}
	return false, err
}

func (h *handler) writeListing(w http.ResponseWriter, keys []string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	if err := json.NewEncoder(w).Encode(objstore.Listing{Keys: keys}); err != nil {
		h.logger.Debug("model repository: send listing failed", "err", err)
	}
}
