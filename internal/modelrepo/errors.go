package modelrepo

import (
	"context"
	"errors"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// The errors a repository operation returns, wrapped with what it was doing. Each refusal of
// an untrusted version has its own, so that callers (the exporter's model sync) can count and
// log them apart; see Reason.
var (
	// ErrNoManifest: the version has no edgeloop.json, so it does not exist (an upload still
	// in progress, or one that failed).
	ErrNoManifest = errors.New("version has no manifest")
	// ErrNoSignature: the manifest carries no signature.
	ErrNoSignature = errors.New("manifest is not signed")
	// ErrUnknownKey: the manifest is signed by a key the verifier does not trust.
	ErrUnknownKey = errors.New("manifest is signed by an untrusted key")
	// ErrBadSignature: the signature does not match the manifest (it was changed after
	// signing, or the signature is malformed).
	ErrBadSignature = errors.New("manifest signature is invalid")
	// ErrDigestMismatch: a file's size or SHA-256 differs from what the manifest says.
	ErrDigestMismatch = errors.New("file does not match the manifest")
	// ErrInvalidManifest: the manifest cannot be parsed or breaks a rule of its schema.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrManifestMismatch: a validly signed manifest found at another model or version than
	// the one it names, as a replayed old or foreign manifest would be.
	ErrManifestMismatch = errors.New("manifest belongs to another model or version")
	// ErrVersionNotFound: the model has no such version, or no version at all.
	ErrVersionNotFound = errors.New("version not found")
	// ErrAliasNotFound: the model has no such alias.
	ErrAliasNotFound = errors.New("alias not found")
	// ErrVersionExists: publishing a version number that already has a manifest; versions are
	// immutable.
	ErrVersionExists = errors.New("version already exists")
	// ErrInvalidName: a model, alias or file name breaks the naming rules.
	ErrInvalidName = errors.New("invalid name")
)

// Reason names the class of err in a few words fit for a metric label, such as
// edgeloop_model_sync_failures_total{reason}: one of no_manifest, no_signature, unknown_key,
// bad_signature, digest_mismatch, invalid_manifest, manifest_mismatch, version_not_found,
// alias_not_found, version_exists, invalid_name, rollback, not_found, canceled, storage (any other
// failure of the store or the local disk); "" for nil.
func Reason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrNoManifest, "no_manifest"},
		{ErrNoSignature, "no_signature"},
		{ErrUnknownKey, "unknown_key"},
		{ErrBadSignature, "bad_signature"},
		{ErrDigestMismatch, "digest_mismatch"},
		{ErrInvalidManifest, "invalid_manifest"},
		{ErrManifestMismatch, "manifest_mismatch"},
		{ErrVersionNotFound, "version_not_found"},
		{ErrAliasNotFound, "alias_not_found"},
		{ErrVersionExists, "version_exists"},
		{ErrInvalidName, "invalid_name"},
		{ErrPointerRollback, "rollback"},
		{objstore.ErrNotFound, "not_found"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "canceled"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	if err == nil {
		return ""
	}
	return "storage"
}
