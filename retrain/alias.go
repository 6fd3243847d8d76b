package retrain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/retrain/publish"
)

// maxAliasBody bounds the body of PUT /v1/models/{model}/aliases/{alias}.
const maxAliasBody = 16 << 10

// maxAliasReason bounds the reason of an alias move, as that of a manual retrain.
const maxAliasReason = 1024

// AliasRequest is the body of PUT /v1/models/{model}/aliases/{alias}.
type AliasRequest struct {
	// Version is the existing, signed version the alias is to point at.
	Version int64 `json:"version"`
	// Reason says why (a rollback's incident, a promotion's check); it is logged with the
	// operator. Optional.
	Reason string `json:"reason"`
}

// AliasRecord is an alias as the controller's API answers it (docs/retrain.md, "Aliases").
type AliasRecord struct {
	// Model and Alias name the pointer.
	Model string `json:"model"`
	Alias string `json:"alias"`
	// Version is the version it points at.
	Version int64 `json:"version"`
	// Updated is when it was last written.
	Updated time.Time `json:"updated"`
	// Sequence is the signed pointer's sequence (0: unsigned), which exporters require to grow.
	Sequence int64 `json:"sequence,omitempty"`
	// Signed says whether the pointer verifies against the controller's trusted keys for this
	// model and alias; Problem says why not, for a pointer that carries a signature.
	Signed  bool   `json:"signed"`
	KeyID   string `json:"key_id,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// AliasMove is the answer to PUT /v1/models/{model}/aliases/{alias}.
type AliasMove struct {
	AliasRecord
	// Previous is the version the alias pointed at before (0: it was not set).
	Previous int64 `json:"previous"`
	// Changed is false when the alias already was a signed pointer to the version: nothing
	// was written.
	Changed bool `json:"changed"`
	// By is the operator who moved it, Reason why.
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
	// Note warns of a job of the model that will move stable itself when its soak ends.
	Note string `json:"note,omitempty"`
}

// aliasRoutes mounts the alias API; routes calls it.
func (c *Controller) aliasRoutes() {
	c.mux.Handle("GET /v1/models/{model}/aliases", c.requireOperator(http.HandlerFunc(c.serveAliases)))
	c.mux.Handle("GET /v1/models/{model}/aliases/{alias}", c.requireOperator(http.HandlerFunc(c.serveAlias)))
	c.mux.Handle("PUT /v1/models/{model}/aliases/{alias}", c.requireOperator(http.HandlerFunc(c.serveMoveAlias)))
}

// aliasModel answers a 404 and returns false for a model the controller does not manage: it
// signs the rollouts of its models only; other models are moved with `edgeloop model alias`.
func (c *Controller) aliasModel(w http.ResponseWriter, model string) bool {
	if _, ok := c.models[model]; !ok {
		httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("model %.80q is not in the controller's models", model))
		return false
	}
	return true
}

// checkAliasName answers a 400 and returns false for a name that cannot be moved: the alias
// rules of the model repository, and not "latest", which is no alias but the highest version
// (with a hint that publish and retire keep signed).
func checkAliasName(w http.ResponseWriter, alias string) bool {
	if alias == modelrepo.SelectorLatest {
		httpjson.Error(w, http.StatusBadRequest, `alias: "latest" is not an alias but the highest version, which publishing and retiring move; move an alias such as stable or canary instead`)
		return false
	}
	if err := modelrepo.ValidateAliasName(alias); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "alias: "+strings.TrimPrefix(err.Error(), modelrepo.ErrInvalidName.Error()+": "))
		return false
	}
	return true
}

// record reads one alias and checks its signature.
func (c *Controller) record(ctx context.Context, model, alias string) (AliasRecord, error) {
	a, err := c.repo.Alias(ctx, model, alias)
	if err != nil {
		return AliasRecord{}, err
	}
	return c.describe(model, alias, a), nil
}

// describe turns a stored pointer into its record.
func (c *Controller) describe(model, alias string, a modelrepo.Alias) AliasRecord {
	r := AliasRecord{Model: model, Alias: alias, Version: a.Version, Updated: a.Updated, Sequence: a.Sequence}
	if a.Signature != nil {
		r.KeyID = a.Signature.KeyID
		if err := modelrepo.VerifyPointer(&a, c.verifier, model, alias); err != nil {
			r.Problem = err.Error()
		} else {
			r.Signed = true
		}
	}
	return r
}

func (c *Controller) serveAliases(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	if !c.aliasModel(w, model) {
		return
	}
	names, err := c.repo.Aliases(r.Context(), model)
	if err != nil {
		c.repoError(w, "list aliases", err)
		return
	}
	out := []AliasRecord{}
	for _, name := range sortedNames(names) {
		rec, err := c.record(r.Context(), model, name)
		if errors.Is(err, modelrepo.ErrAliasNotFound) {
			continue // deleted between the listing and the read
		}
		if err != nil {
			c.repoError(w, "read alias "+name, err)
			return
		}
		out = append(out, rec)
	}
	ans := map[string]any{"model": model, "aliases": out}
	// The highest version is what "latest" selects; 0 when the model has none yet.
	latest, err := c.repo.Latest(r.Context(), model)
	if err != nil && !errors.Is(err, modelrepo.ErrVersionNotFound) {
		c.repoError(w, "latest version", err)
		return
	}
	ans["latest"] = latest
	writeJSON200(w, ans)
}

func (c *Controller) serveAlias(w http.ResponseWriter, r *http.Request) {
	model, alias := r.PathValue("model"), r.PathValue("alias")
	if !c.aliasModel(w, model) || !checkAliasName(w, alias) {
		return
	}
	rec, err := c.record(r.Context(), model, alias)
	if err != nil {
		c.repoError(w, "read alias", err)
		return
	}
	writeJSON200(w, rec)
}

// serveMoveAlias points an alias at an existing version whose manifest verifies, with a
// pointer signed by the controller's key and a sequence above the alias's current one, so
// that exporters follow it (a rollback included) and refuse the old pointer if it is ever
// written back (docs/model-repository.md, "Aliases").
func (c *Controller) serveMoveAlias(w http.ResponseWriter, r *http.Request) {
	model, alias := r.PathValue("model"), r.PathValue("alias")
	if !c.aliasModel(w, model) || !checkAliasName(w, alias) {
		return
	}
	body, code, err := readBody(w, r, maxAliasBody)
	if err != nil {
		httpjson.Error(w, code, err.Error())
		return
	}
	var req AliasRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "body: "+err.Error()+` (want {"version": N, "reason": "..."})`)
		return
	}
	if req.Version < 1 {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("version: want a positive version number, got %d", req.Version))
		return
	}
	if err := checkReason(req.Reason); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "reason: "+err.Error())
		return
	}
	op, _ := r.Context().Value(operatorKey{}).(string)
	ctx := r.Context()
	// The version must be one every exporter would load: it exists and its manifest verifies
	// against the trusted keys. An alias to anything else would only make exporters refuse it.
	if _, err := c.repo.Manifest(ctx, model, req.Version, c.verifier); err != nil {
		switch {
		case errors.Is(err, modelrepo.ErrNoManifest) || errors.Is(err, modelrepo.ErrVersionNotFound):
			httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("version: %s has no version %d", model, req.Version))
		case modelrepo.Reason(err) == "storage" || modelrepo.Reason(err) == "canceled":
			c.repoError(w, "read manifest", err)
		default:
			httpjson.Error(w, http.StatusConflict, fmt.Sprintf("version: %s version %d does not verify, and exporters would refuse it: %v", model, req.Version, err))
		}
		return
	}

	// One move at a time: each reads the current pointer's sequence to write the next one.
	c.aliasMu.Lock()
	defer c.aliasMu.Unlock()
	move := AliasMove{By: op, Reason: req.Reason}
	prev, err := c.repo.Alias(ctx, model, alias)
	switch {
	case errors.Is(err, modelrepo.ErrAliasNotFound):
	case err != nil:
		c.repoError(w, "read alias", err)
		return
	default:
		move.Previous = prev.Version
	}
	if prevRec := c.describe(model, alias, prev); err == nil && prevRec.Signed && prev.Version == req.Version {
		move.AliasRecord = prevRec
	} else {
		if err := c.repo.SetSignedAlias(ctx, model, alias, req.Version, c.signer); err != nil {
			c.repoError(w, "set alias", err)
			return
		}
		rec, err := c.record(ctx, model, alias)
		if err != nil {
			c.repoError(w, "read alias back", err)
			return
		}
		move.AliasRecord, move.Changed = rec, true
	}
	move.Note = c.soakNote(model, alias, req.Version)
	c.logger.Info("alias moved", "model", model, "alias", alias, "version", req.Version, "previous", move.Previous,
		"changed", move.Changed, "sequence", move.Sequence, "operator", op, "reason", req.Reason)
	writeJSON200(w, move)
}

// soakNote warns when a soaking job of model will move stable itself: moving canary away
// from its version stops that promotion, moving stable does not.
func (c *Controller) soakNote(model, alias string, version int64) string {
	for _, j := range c.Jobs() {
		if j.Model != model || j.Phase != PhaseSoaking {
			continue
		}
		switch {
		case alias == publish.AliasCanary && version != j.Version:
			return fmt.Sprintf("job %s was soaking version %d on canary: with canary moved, it will not move stable", j.ID, j.Version)
		case alias == publish.AliasStable && version != j.Version:
			return fmt.Sprintf("job %s is soaking version %d on canary and will point stable at it at %s unless canary moves away from it first",
				j.ID, j.Version, j.SoakUntil.UTC().Format(time.RFC3339))
		}
	}
	return ""
}

// checkReason checks a free-text reason: at most maxAliasReason bytes of printable UTF-8, as
// it goes into logs.
func checkReason(s string) error {
	switch {
	case len(s) > maxAliasReason:
		return fmt.Errorf("at most %d bytes", maxAliasReason)
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

// repoError answers a failed repository operation: 404 for a missing alias, 502 for the
// object store, with the cause logged.
func (c *Controller) repoError(w http.ResponseWriter, op string, err error) {
	if errors.Is(err, modelrepo.ErrAliasNotFound) {
		httpjson.Error(w, http.StatusNotFound, err.Error())
		return
	}
	c.logger.Error("alias API: repository", "op", op, "err", err)
	httpjson.Error(w, http.StatusBadGateway, op+": the model repository failed: "+err.Error())
}

func sortedNames(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
