package labels

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Bounds of one GET /v1/labels page.
const (
	// DefaultListLimit and MaxListLimit bound the labels of one page.
	DefaultListLimit = 1000
	MaxListLimit     = 10_000
	// maxLineBytes bounds one stored line: a key, a request id, a label and an annotator of
	// at most 256 bytes each, and a time, are far less.
	maxLineBytes = 64 << 10
)

// ListedLabel is one label of a GET /v1/labels page: a stored Line and the object holding it.
type ListedLabel struct {
	Line
	// Object is the label file the line is in.
	Object string `json:"object"`
}

// ListPage is the answer to GET /v1/labels.
type ListPage struct {
	Model  string        `json:"model"`
	Labels []ListedLabel `json:"labels"`
	// Next is the cursor of the next page (the after parameter); empty on the last page.
	Next string `json:"next,omitempty"`
}

// cursor is a position in a model's labels: the line after Line of Object.
type cursor struct {
	Object string
	Line   int
}

// parseCursor reads an after parameter, "<object key>#<line>", which must name a label file
// of model.
func parseCursor(model, s string) (cursor, error) {
	obj, n, ok := strings.Cut(s, "#")
	line, err := strconv.Atoi(n)
	if !ok || err != nil || line < 0 || !strings.HasPrefix(obj, LabelsPrefix+model+"/") || !strings.HasSuffix(obj, ".jsonl") {
		return cursor{}, fmt.Errorf("after: want the next value of the previous page, got %.80q", s)
	}
	return cursor{Object: obj, Line: line}, nil
}

func (c cursor) String() string { return c.Object + "#" + strconv.Itoa(c.Line) }

// fileTime is when a label file was stored, from its name (<instance>-<unix nanos>-<random>.jsonl,
// see store); ok is false for a name not made by store.
func fileTime(key string) (time.Time, bool) {
	name := strings.TrimSuffix(key[strings.LastIndex(key, "/")+1:], ".jsonl")
	i := strings.LastIndex(name, "-")
	if i < 0 {
		return time.Time{}, false
	}
	j := strings.LastIndex(name[:i], "-")
	if j < 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(name[j+1:i], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// errPageFull stops the listing once a page holds its limit.
var errPageFull = errors.New("page full")

// listLabels serves GET /v1/labels?model=&since=&limit=&after=: the labels stored for a model,
// in the order a training job reads them (label files by key, which starts with the UTC day,
// then lines in order; a later line for a key overrides an earlier one), a page at a time.
// since skips the label files of days before it and files stored before it by their names,
// so a page reads only the files it returns lines of.
func (s *Service) listLabels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	model := q.Get("model")
	if !sample.ValidName(model) {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("model: %q is not a model name", model))
		return
	}
	since, err := catalog.ParseTimeParam(r, "since")
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := DefaultListLimit
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxListLimit {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d, got %.20q", MaxListLimit, v))
			return
		}
	}
	var after cursor
	if v := q.Get("after"); v != "" {
		if after, err = parseCursor(model, v); err != nil {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	page := ListPage{Model: model, Labels: []ListedLabel{}}
	prefix := LabelsPrefix + model + "/"
	firstDay := ""
	if !since.IsZero() {
		firstDay = prefix + "dt=" + since.UTC().Format("2006-01-02") + "/"
	}
	var days []string
	err = s.opts.Bucket.Iter(r.Context(), prefix, false, func(key string) error {
		if strings.HasSuffix(key, "/") && key >= firstDay && (after.Object == "" || key >= after.Object[:strings.LastIndex(after.Object, "/")+1]) {
			days = append(days, key)
		}
		return nil
	})
	if err == nil {
		for _, day := range days {
			if err = s.listDay(r, day, since, after, limit, &page); err != nil {
				break
			}
		}
	}
	if err != nil && !errors.Is(err, errPageFull) {
		s.opts.Logger.Error("labels: list labels failed", "model", model, "err", err)
		httpjson.Error(w, http.StatusBadGateway, "object store unavailable")
		return
	}
	catalog.WriteJSON(w, page)
}

// listDay adds the labels of one day's files to page, from after on; errPageFull when the page
// holds limit labels, with page.Next set.
func (s *Service) listDay(r *http.Request, day string, since time.Time, after cursor, limit int, page *ListPage) error {
	var files []string
	err := s.opts.Bucket.Iter(r.Context(), day, true, func(key string) error {
		if !strings.HasSuffix(key, ".jsonl") || (after.Object != "" && key < after.Object) {
			return nil
		}
		if t, ok := fileTime(key); ok && !since.IsZero() && t.Before(since) {
			return nil // every line of a file is older than the file's name says
		}
		files = append(files, key)
		return nil
	})
	if err != nil {
		return err
	}
	for _, key := range files {
		skip := 0
		if key == after.Object {
			skip = after.Line
		}
		if err := s.listFile(r, key, skip, since, limit, page); err != nil {
			return err
		}
	}
	return nil
}

// listFile adds the lines of one label file from line skip on.
func (s *Service) listFile(r *http.Request, key string, skip int, since time.Time, limit int, page *ListPage) error {
	rc, _, err := s.opts.Bucket.Get(r.Context(), key)
	if err != nil {
		return err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	for n := 0; sc.Scan(); n++ {
		if n < skip {
			continue
		}
		if len(page.Labels) == limit {
			page.Next = cursor{Object: key, Line: n}.String()
			return errPageFull
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue // as the trainer's reader does
		}
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || !sample.ValidKey(l.Key) {
			// Only the collector writes label files; a line it cannot read is logged, not
			// served, and does not stop the listing.
			s.opts.Logger.Warn("labels: unreadable line in a label file", "object", key, "line", n+1, "err", err)
			continue
		}
		if !since.IsZero() && l.Time.Before(since) {
			continue
		}
		page.Labels = append(page.Labels, ListedLabel{Line: l, Object: key})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}
