package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Label reading bounds: the collector's GET /v1/labels serves at most maxLabelPage labels a
// page; a samples query reads at most maxLabelPages pages.
const (
	maxLabelPage  = 10000
	maxLabelPages = 10
	// labelSkew widens the label window before the range: a sample's time is its edge
	// node's clock and a label's the collector's, and a label given right after capture must
	// not be missed because the clocks differ.
	labelSkew = time.Hour
)

// sampleLabel is the label a sample row shows: the collector's stored label line (collector/labels.Line).
type sampleLabel struct {
	Key       string          `json:"key"`
	Label     json.RawMessage `json:"label"`
	Source    string          `json:"source"`
	Annotator string          `json:"annotator"`
	Time      time.Time       `json:"time"`
}

// text is the label as the table shows it: a class name, or a class index in decimal.
func (l sampleLabel) text() string {
	var s string
	if json.Unmarshal(l.Label, &s) == nil {
		return s
	}
	return string(l.Label)
}

// labels reads the labels of model given since from (less labelSkew) and returns, for each of
// keys, the one training would use: the last in the collector's order. complete is false when
// the labels ran beyond maxLabelPages pages, so a later label may have been missed.
func (c *api) labels(ctx context.Context, model string, from time.Time, keys map[string]bool) (map[string]sampleLabel, bool, error) {
	out := map[string]sampleLabel{}
	if len(keys) == 0 {
		return out, true, nil
	}
	v := url.Values{"model": {model}, "limit": {strconv.Itoa(maxLabelPage)}}
	if !from.IsZero() {
		v.Set("since", from.Add(-labelSkew).UTC().Format(time.RFC3339Nano))
	}
	for range maxLabelPages {
		var page struct {
			Labels []sampleLabel `json:"labels"`
			Next   string        `json:"next"`
		}
		if err := c.getJSON(ctx, "/v1/labels?"+v.Encode(), &page); err != nil {
			return nil, false, fmt.Errorf("labels: %w", err)
		}
		for _, l := range page.Labels {
			if keys[l.Key] {
				out[l.Key] = l
			}
		}
		if page.Next == "" {
			return out, true, nil
		}
		v.Set("after", page.Next)
	}
	return out, false, nil
}
