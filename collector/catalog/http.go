package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/httpjson"
)

// Handler returns the catalog's read API for operators, behind requireOperator:
//
//	GET /v1/catalog                                   models with totals
//	GET /v1/catalog/{model}                           versions with totals
//	GET /v1/catalog/{model}/{version}?since=<w>       counts, new since watermark w, next watermark
//	GET /v1/catalog/{model}/{version}/shards?from=<RFC3339>&to=<RFC3339>
//	GET /v1/samples?request_id=<id>                   the samples captured from a request
//
// Mount it at "/v1/catalog", "/v1/catalog/" and "GET /v1/samples" (POST is ingest). It answers
// 503 until the first Rebuild has completed, as its answers would silently miss the bucket's
// content before that.
func (c *Catalog) Handler(requireOperator func(http.Handler) http.Handler) http.Handler {
	if requireOperator == nil {
		panic("catalog: Handler: nil requireOperator")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/catalog", c.serveModels)
	mux.HandleFunc("GET /v1/catalog/{$}", c.serveModels)
	mux.HandleFunc("GET /v1/catalog/{model}", c.serveVersions)
	mux.HandleFunc("GET /v1/catalog/{model}/{version}", c.serveStats)
	mux.HandleFunc("GET /v1/catalog/{model}/{version}/shards", c.serveShards)
	mux.HandleFunc("GET /v1/samples", c.serveSamples)
	return requireOperator(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.Synced() {
			w.Header().Set("Retry-After", "10")
			httpjson.Error(w, http.StatusServiceUnavailable, "the catalog is still being loaded from the bucket")
			return
		}
		mux.ServeHTTP(w, r)
	}))
}

// WriteJSON writes v as a 200 JSON answer.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a failed write means the client left
}

func (c *Catalog) serveModels(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, map[string]any{"models": c.Models()})
}

func (c *Catalog) serveVersions(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	vers, err := c.Versions(model)
	if err != nil {
		httpjson.Error(w, http.StatusNotFound, err.Error())
		return
	}
	WriteJSON(w, map[string]any{"model": model, "versions": vers})
}

func (c *Catalog) serveStats(w http.ResponseWriter, r *http.Request) {
	st, err := c.Stats(r.PathValue("model"), r.PathValue("version"), r.URL.Query().Get("since"))
	switch {
	case errors.Is(err, ErrBadWatermark):
		httpjson.Error(w, http.StatusBadRequest, "since: "+err.Error())
	case err != nil:
		httpjson.Error(w, http.StatusNotFound, err.Error())
	default:
		WriteJSON(w, st)
	}
}

// ParseTimeParam reads an optional RFC 3339 query parameter; zero when absent.
func ParseTimeParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errors.New(name + ": want an RFC 3339 time such as 2026-03-01T00:00:00Z, got " + quote(v))
	}
	return t, nil
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (c *Catalog) serveShards(w http.ResponseWriter, r *http.Request) {
	model, ver := r.PathValue("model"), r.PathValue("version")
	from, err := ParseTimeParam(r, "from")
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	to, err := ParseTimeParam(r, "to")
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		httpjson.Error(w, http.StatusBadRequest, "to is before from")
		return
	}
	if _, err := c.Stats(model, ver, ""); err != nil {
		httpjson.Error(w, http.StatusNotFound, err.Error())
		return
	}
	shards := c.Shards(model, ver, from, to)
	if shards == nil {
		shards = []ShardInfo{}
	}
	WriteJSON(w, map[string]any{"model": model, "version": ver, "shards": shards})
}

// RequestAnswer is the answer of GET /v1/samples?request_id=.
type RequestAnswer struct {
	RequestID string      `json:"request_id"`
	Samples   []SampleRef `json:"samples"`
	// Partial says that the id's samples are in more than MaxRequestShards shards and only
	// those of the first were read.
	Partial bool `json:"partial,omitempty"`
}

// CheckRequestID checks a request id asked about; the error names the parameter.
func CheckRequestID(id string) error {
	switch {
	case id == "":
		return errors.New("request_id: missing: give the V2 infer request's id")
	case len(id) > MaxRequestID:
		return fmt.Errorf("request_id: %d bytes, longer than the %d a sample can hold", len(id), MaxRequestID)
	case !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl):
		return fmt.Errorf("request_id: %s is not valid UTF-8 without control characters", quote(id))
	}
	return nil
}

func (c *Catalog) serveSamples(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("request_id")
	if err := CheckRequestID(id); err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	found, partial, err := c.FindRequest(r.Context(), id)
	if err != nil {
		c.logger.Error("catalog: find request failed", "request_id", id, "err", err)
		httpjson.Error(w, http.StatusBadGateway, "could not read a shard index from the object store")
		return
	}
	if len(found) == 0 {
		httpjson.Error(w, http.StatusNotFound, "no sample with request_id "+quote(id)+": not captured, or not shipped and stored yet")
		return
	}
	WriteJSON(w, RequestAnswer{RequestID: id, Samples: found, Partial: partial})
}

var (
	samplesDesc = prometheus.NewDesc("edgeloop_collector_catalog_samples",
		"Distinct samples in the object store by model, version and capture reason, as the catalog knows them.",
		[]string{"model", "version", "reason"}, nil)
	bytesDesc = prometheus.NewDesc("edgeloop_collector_catalog_bytes",
		"Bytes of distinct samples (metadata and input) in the object store by model and version.",
		[]string{"model", "version"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Catalog) Describe(ch chan<- *prometheus.Desc) {
	ch <- samplesDesc
	ch <- bytesDesc
}

// Collect implements prometheus.Collector: the gauges are computed at scrape from the
// catalog's totals, so they cost nothing between scrapes.
func (c *Catalog) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for model, vers := range c.models {
		for ver, v := range vers {
			for reason, n := range v.total.ByReason {
				ch <- prometheus.MustNewConstMetric(samplesDesc, prometheus.GaugeValue, float64(n.Samples), model, ver, reason)
			}
			ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(v.total.Bytes), model, ver)
		}
	}
}
