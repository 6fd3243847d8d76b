package modelrepo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// ErrPointerRollback: a signed alias or latest hint carries a lower sequence than one the
// reader accepted before (or the same sequence with another version): an old pointer written
// back, which would roll nodes back to an old version. The reader keeps what it serves.
var ErrPointerRollback = errors.New("alias or latest hint rolled back")

// PointerSigningBytes returns the bytes a pointer's signature covers: the pointer without its
// signature, encoded by encoding/json.Marshal after one decode-encode round (see
// Manifest.SigningBytes for why).
func (a *Alias) PointerSigningBytes() ([]byte, error) {
	c := *a
	c.Signature = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("alias: encode: %w", err)
	}
	var again Alias
	if err := json.Unmarshal(b, &again); err != nil {
		return nil, fmt.Errorf("alias: encode: %w", err)
	}
	return json.Marshal(&again)
}

// SignPointer sets a's signature. The pointer must name its model, its name (the alias, or
// "latest" for the hint) and a positive sequence, so that a signed pointer cannot be replayed
// under another name or model, nor an old one passed off as new.
func (s *Signer) SignPointer(a *Alias) error {
	a.Signature = nil
	if err := ValidateModelName(a.Model); err != nil {
		return fmt.Errorf("sign alias: %w", err)
	}
	if a.Name != SelectorLatest {
		if err := ValidateAliasName(a.Name); err != nil {
			return fmt.Errorf("sign alias: %w", err)
		}
	}
	if a.Version < 1 || a.Sequence < 1 {
		return fmt.Errorf("sign alias: version and sequence must be positive, got %d and %d", a.Version, a.Sequence)
	}
	msg, err := a.PointerSigningBytes()
	if err != nil {
		return fmt.Errorf("sign alias: %w", err)
	}
	a.Signature = &Signature{KeyID: s.keyID, Algorithm: AlgorithmEd25519, Value: base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg))}
	return nil
}

// VerifyPointer checks a signed alias or latest hint: its signature (ErrNoSignature,
// ErrUnknownKey, ErrBadSignature, as for manifests), a positive sequence, and that it names
// model and name (ErrManifestMismatch otherwise: a pointer copied from elsewhere). Whether
// its sequence is new enough is the reader's to check against what it accepted before.
func VerifyPointer(a *Alias, v *Verifier, model, name string) error {
	if v == nil {
		return errors.New("verify alias: no trusted keys")
	}
	msg, err := a.PointerSigningBytes()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := v.verifySignature(a.Signature, msg); err != nil {
		return fmt.Errorf("alias %s of %s: %w", name, model, err)
	}
	if a.Sequence < 1 {
		return fmt.Errorf("alias %s of %s: %w: signed without a sequence", name, model, ErrBadSignature)
	}
	if a.Model != model || a.Name != name {
		return fmt.Errorf("%w: alias %s of %s holds a pointer signed for alias %q of %q", ErrManifestMismatch, name, model, a.Name, a.Model)
	}
	return nil
}

// nextSequence is the sequence for a new pointer at key: above the current pointer's when
// that one is signed by signer (an unsigned or foreign one could claim any sequence, up to
// the largest int64), and never below the current time in milliseconds, so that a pointer
// deleted and written again still moves forward.
func (r *Repository) nextSequence(ctx context.Context, key string, signer *Signer) int64 {
	seq := r.now().UnixMilli()
	data, _, err := objstore.ReadAll(ctx, r.bucket, key, maxAliasSize)
	if err != nil {
		return seq
	}
	prev, err := ParseAlias(data)
	if err != nil || prev.Signature == nil {
		return seq
	}
	if msg, err := prev.PointerSigningBytes(); err != nil || NewVerifier(signer.Public()).verifySignature(prev.Signature, msg) != nil {
		return seq
	}
	return max(seq, prev.Sequence+1)
}

// SetSignedAlias points alias of model at version, which must exist, with a signed pointer
// whose sequence is above the alias's current one: exporters refuse a signed alias older than
// one they accepted (docs/security.md).
func (r *Repository) SetSignedAlias(ctx context.Context, model, alias string, version int64, signer *Signer) error {
	if signer == nil {
		return errors.New("set alias: no signing key")
	}
	return r.setAlias(ctx, model, alias, version, signer)
}

// putPointer writes a pointer to version under key: signed with a fresh sequence when signer
// is set, else as before signing existed ({"version", "updated"}).
func (r *Repository) putPointer(ctx context.Context, key, model, name string, version int64, signer *Signer) error {
	a := Alias{Version: version, Updated: r.now().UTC().Truncate(time.Second)}
	if signer != nil {
		a.Model, a.Name, a.Sequence = model, name, r.nextSequence(ctx, key, signer)
		if err := signer.SignPointer(&a); err != nil {
			return err
		}
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return r.bucket.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
}

// verifySignature checks sig over msg against the trusted keys.
func (v *Verifier) verifySignature(s *Signature, msg []byte) error {
	if s == nil || s.Value == "" {
		return ErrNoSignature
	}
	if s.Algorithm != AlgorithmEd25519 {
		return fmt.Errorf("%w: algorithm %q (only %s is accepted)", ErrBadSignature, s.Algorithm, AlgorithmEd25519)
	}
	pub, ok := v.keys[s.KeyID]
	if !ok {
		return fmt.Errorf("%w: key_id %q (trusted: %s)", ErrUnknownKey, s.KeyID, strings.Join(v.KeyIDs(), ", "))
	}
	sig, err := base64.StdEncoding.DecodeString(s.Value)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: value is not a base64 ed25519 signature", ErrBadSignature)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: key %s", ErrBadSignature, s.KeyID)
	}
	return nil
}

// Retire removes version of model (deletes its manifest, so it ceases to exist for every
// selector) and signs a latest hint naming the highest version left, with a fresh sequence:
// exporters that refuse a listing below the signed hint (require_signed_pointers) move down
// only on such a signed word. It returns the version the hint now names.
func (r *Repository) Retire(ctx context.Context, model string, version int64, signer *Signer) (int64, error) {
	if signer == nil {
		return 0, errors.New("retire: no signing key")
	}
	if err := r.mustExist(ctx, model, version, ""); err != nil {
		return 0, fmt.Errorf("retire %s version %d: %w", model, version, err)
	}
	if err := r.bucket.Delete(ctx, ManifestKey(model, version)); err != nil {
		return 0, fmt.Errorf("retire %s version %d: %w", model, version, err)
	}
	latest, err := r.Latest(ctx, model)
	if err != nil {
		return 0, fmt.Errorf("retire %s version %d: %w", model, version, err)
	}
	if err := r.putPointer(ctx, LatestKey(model), model, SelectorLatest, latest, signer); err != nil {
		return 0, fmt.Errorf("retire %s version %d: latest hint: %w", model, version, err)
	}
	return latest, nil
}
