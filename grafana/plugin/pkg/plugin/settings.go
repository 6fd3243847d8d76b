// Package plugin is the Go backend of edgeloop's Grafana data source (docs/grafana-plugin.md):
// query types that turn the collector's and the retrain controller's APIs, and the model
// repository, into data frames; a health check; and resource handlers for thumbnails and for
// the actions an operator takes from Grafana (label samples, start a retrain, cancel a job),
// each allowed only to the Grafana roles the data source's settings name.
package plugin

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/token"
)

// ID is the plugin's id, as in src/plugin.json.
const ID = "edgeloop-edgeloop-datasource"

// Keys of secureJsonData. Grafana keeps these encrypted and sends them only to the backend;
// nothing the plugin answers ever contains them.
const (
	SecretCollectorToken      = "collectorToken"
	SecretControllerToken     = "controllerToken"
	SecretRepositoryToken     = "repositoryToken"
	SecretRepositoryAccessKey = "repositoryAccessKey"
	SecretRepositorySecretKey = "repositorySecretKey"
	SecretTLSCACert           = "tlsCACert"
)

// Defaults of jsonData.
const (
	DefaultThumbnailCacheEntries = 1000
	DefaultThumbnailCacheBytes   = 64 << 20
	DefaultTimeout               = 30 * time.Second
)

// Roles are Grafana's organisation roles, the values allowedRoles may hold.
var Roles = []string{"Viewer", "Editor", "Admin"}

// Settings are a data source's configuration: jsonData (public, the browser sees it) and the
// secrets of secureJsonData (the backend only).
type Settings struct {
	// CollectorURL is the collector's base URL (https://collector:9751).
	CollectorURL string `json:"collectorUrl"`
	// ControllerURL is the retrain controller's base URL (https://retrain:9752).
	ControllerURL string `json:"controllerUrl"`
	// RepositoryURL is the model repository as a bucket URL (s3://bucket?endpoint=...,
	// file:///dir, or the collector's read-only https://collector:9751/v1/repo), for the
	// versions query and version annotations; empty turns them off.
	RepositoryURL string `json:"repositoryUrl"`
	// AllowedRoles are the Grafana roles whose users may act (label, retrain, cancel).
	AllowedRoles []string `json:"allowedRoles"`
	// ThumbnailCacheEntries and ThumbnailCacheBytes bound the thumbnail cache.
	ThumbnailCacheEntries int `json:"thumbnailCacheEntries"`
	ThumbnailCacheBytes   int `json:"thumbnailCacheBytes"`
	// TimeoutSeconds bounds each request to the collector, the controller and the repository.
	TimeoutSeconds int `json:"timeoutSeconds"`

	collectorToken  string
	controllerToken string
	repoToken       string
	repoAccessKey   string
	repoSecretKey   string
	caPEM           string
}

// Timeout is TimeoutSeconds as a duration, the default when unset.
func (s *Settings) Timeout() time.Duration {
	if s.TimeoutSeconds <= 0 {
		return DefaultTimeout
	}
	return time.Duration(s.TimeoutSeconds) * time.Second
}

// LoadSettings reads a data source's settings: jsonData strictly (an unknown key is an error
// naming it, as for every edgeloop configuration), defaults filled in, then validated.
func LoadSettings(ds backend.DataSourceInstanceSettings) (*Settings, error) {
	s := &Settings{}
	if data := bytes.TrimSpace(ds.JSONData); len(data) > 0 && !bytes.Equal(data, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(s); err != nil {
			return nil, fmt.Errorf("jsonData: %w", err)
		}
	}
	sec := ds.DecryptedSecureJSONData
	s.collectorToken, s.controllerToken = sec[SecretCollectorToken], sec[SecretControllerToken]
	s.repoToken, s.repoAccessKey, s.repoSecretKey = sec[SecretRepositoryToken], sec[SecretRepositoryAccessKey], sec[SecretRepositorySecretKey]
	s.caPEM = sec[SecretTLSCACert]
	if s.AllowedRoles == nil {
		s.AllowedRoles = []string{"Editor", "Admin"}
	}
	if s.ThumbnailCacheEntries == 0 {
		s.ThumbnailCacheEntries = DefaultThumbnailCacheEntries
	}
	if s.ThumbnailCacheBytes == 0 {
		s.ThumbnailCacheBytes = DefaultThumbnailCacheBytes
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks the settings; each error names its key (jsonData.<key> or
// secureJsonData.<key>) and never quotes a secret.
func (s *Settings) Validate() error {
	var errs []error
	if s.CollectorURL == "" && s.ControllerURL == "" {
		errs = append(errs, config.Errorf("jsonData.collectorUrl", "set it, controllerUrl, or both: the data source has nothing to read"))
	}
	for _, u := range []struct{ field, url, secret, tok string }{
		{"collectorUrl", s.CollectorURL, SecretCollectorToken, s.collectorToken},
		{"controllerUrl", s.ControllerURL, SecretControllerToken, s.controllerToken},
	} {
		if u.url == "" {
			continue
		}
		if err := checkBaseURL(u.url); err != nil {
			errs = append(errs, config.Errorf("jsonData."+u.field, "%v", err))
		}
		if u.tok == "" {
			errs = append(errs, config.Errorf("secureJsonData."+u.secret, "must be set when %s is: the operator token (%s answers operators only)", u.field, strings.TrimSuffix(u.field, "Url")))
		} else if _, err := token.ParseSecret([]byte(u.tok)); err != nil {
			// ParseSecret's messages describe the token's form, never its value.
			errs = append(errs, config.Errorf("secureJsonData."+u.secret, "%v", err))
		}
	}
	if s.RepositoryURL != "" {
		if _, err := s.repositoryTarget(); err != nil {
			errs = append(errs, config.Errorf("jsonData.repositoryUrl", "%v", err))
		}
	}
	for i, r := range s.AllowedRoles {
		if !slices.Contains(Roles, r) {
			errs = append(errs, config.Errorf(fmt.Sprintf("jsonData.allowedRoles[%d]", i), "%q is not a Grafana role: want Viewer, Editor or Admin", r))
		}
	}
	if s.ThumbnailCacheEntries < 0 {
		errs = append(errs, config.Errorf("jsonData.thumbnailCacheEntries", "must be at least 0 (0: the default, %d)", DefaultThumbnailCacheEntries))
	}
	if s.ThumbnailCacheBytes < 0 {
		errs = append(errs, config.Errorf("jsonData.thumbnailCacheBytes", "must be at least 0 (0: the default, %d)", DefaultThumbnailCacheBytes))
	}
	if s.TimeoutSeconds < 0 || s.TimeoutSeconds > 600 {
		errs = append(errs, config.Errorf("jsonData.timeoutSeconds", "must be 0 (the default, %s) to 600, got %d", DefaultTimeout, s.TimeoutSeconds))
	}
	if s.caPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(s.caPEM)) {
		errs = append(errs, config.Errorf("secureJsonData."+SecretTLSCACert, "holds no PEM certificate"))
	}
	return errors.Join(errs...)
}

// checkBaseURL accepts an http(s) URL with a host and nothing after the path: credentials
// belong in secureJsonData, where Grafana encrypts them, not in a URL the browser sees.
func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("want an http:// or https:// URL, got %q", raw)
	case u.Host == "":
		return fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return errors.New("credentials in the URL are not accepted: put the token in secureJsonData")
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: want a base URL without query or fragment", u.Redacted())
	}
	return nil
}

// repositoryTarget parses RepositoryURL with the repository's credentials from
// secureJsonData instead of the process environment (Grafana's environment is not the data
// source's to use).
func (s *Settings) repositoryTarget() (objstore.Target, error) {
	lookup := func(name string) (string, bool) {
		switch name {
		case objstore.EnvAccessKey:
			return s.repoAccessKey, s.repoAccessKey != ""
		case objstore.EnvSecretKey:
			return s.repoSecretKey, s.repoSecretKey != ""
		}
		return "", false
	}
	t, err := objstore.ParseURL(s.RepositoryURL, lookup)
	if err != nil {
		return objstore.Target{}, err
	}
	if t.HTTP != nil && s.repoToken == "" {
		return objstore.Target{}, fmt.Errorf("an http(s) repository is the collector's /v1/repo, which answers node credentials: set secureJsonData.%s", SecretRepositoryToken)
	}
	return t, nil
}
