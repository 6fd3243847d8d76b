package jobs

import (
	"encoding/json"
	"net/url"
	"text/template"
)

// TemplateFuncs returns the functions that the local and http backends' templates may call
// besides text/template's own: json encodes a value as JSON (so a model name with a quote
// cannot break a request body), pathescape escapes a value for a URL path segment. It returns
// a new map on each call, so that no backend can change another's.
func TemplateFuncs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"pathescape": url.PathEscape,
	}
}

// TemplateSample returns the job that backends render their configured templates over when
// validating them, to catch what parsing alone does not (a field name that does not exist).
func TemplateSample() Spec {
	return Spec{
		ID:              "job-1",
		Model:           "model",
		BaseVersion:     1,
		DatasetManifest: "/var/lib/edgeloop/retrain/manifest.json",
		Output:          "/var/lib/edgeloop/retrain/out",
	}
}
