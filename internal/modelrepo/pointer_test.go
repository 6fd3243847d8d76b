package modelrepo_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// TestSignedPointers checks that Publish signs the latest hint and SetSignedAlias the alias,
// each bound to its model and name, with sequences that grow; and that what whoever can write
// the bucket can do to a pointer (edit it, copy it to another name, forge a huge sequence on
// an unsigned one) is refused or ignored.
func TestSignedPointers(t *testing.T) {
	ctx := context.Background()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, b)
	f.publish(t, "tiny", modelrepo.PublishOptions{})
	hint, _, err := f.repo.Pointer(ctx, modelrepo.LatestKey("tiny"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := modelrepo.VerifyPointer(&hint, f.verifier, "tiny", modelrepo.SelectorLatest); err != nil || hint.Version != 1 || hint.Sequence < 1 {
		t.Fatalf("latest hint %+v: %v; want signed, version 1", hint, err)
	}
	f.publish(t, "tiny", modelrepo.PublishOptions{})
	hint2, _, _ := f.repo.Pointer(ctx, modelrepo.LatestKey("tiny"), "")
	if err := modelrepo.VerifyPointer(&hint2, f.verifier, "tiny", modelrepo.SelectorLatest); err != nil || hint2.Version != 2 || hint2.Sequence <= hint.Sequence {
		t.Fatalf("second hint %+v (first's sequence %d): %v; want version 2 and a higher sequence", hint2, hint.Sequence, err)
	}

	if err := f.repo.SetSignedAlias(ctx, "tiny", "stable", 1, f.signer); err != nil {
		t.Fatal(err)
	}
	a1, _, _ := f.repo.Pointer(ctx, modelrepo.AliasKey("tiny", "stable"), "")
	if err := f.repo.SetSignedAlias(ctx, "tiny", "stable", 2, f.signer); err != nil {
		t.Fatal(err)
	}
	a2, _, _ := f.repo.Pointer(ctx, modelrepo.AliasKey("tiny", "stable"), "")
	if a2.Sequence <= a1.Sequence {
		t.Fatalf("alias sequences %d then %d; want growth", a1.Sequence, a2.Sequence)
	}

	// An unsigned pointer claiming the largest sequence does not push the next signed one to
	// an overflow: only the signer's own pointers count.
	forged := []byte(`{"version":1,"updated":"2026-01-01T00:00:00Z","model":"tiny","name":"stable","sequence":9223372036854775807}`)
	if err := b.Put(ctx, modelrepo.AliasKey("tiny", "stable"), bytes.NewReader(forged), int64(len(forged))); err != nil {
		t.Fatal(err)
	}
	if err := f.repo.SetSignedAlias(ctx, "tiny", "stable", 2, f.signer); err != nil {
		t.Fatal(err)
	}
	a3, _, _ := f.repo.Pointer(ctx, modelrepo.AliasKey("tiny", "stable"), "")
	if a3.Sequence == math.MaxInt64 || a3.Sequence <= 0 {
		t.Fatalf("sequence after a forged one: %d", a3.Sequence)
	}

	for _, tc := range []struct {
		name        string
		edit        func(a *modelrepo.Alias)
		model, want string
		err         error
	}{
		{"untouched", func(*modelrepo.Alias) {}, "tiny", "stable", nil},
		{"version edited", func(a *modelrepo.Alias) { a.Version = 1 }, "tiny", "stable", modelrepo.ErrBadSignature},
		{"sequence edited", func(a *modelrepo.Alias) { a.Sequence++ }, "tiny", "stable", modelrepo.ErrBadSignature},
		{"unsigned", func(a *modelrepo.Alias) { a.Signature = nil }, "tiny", "stable", modelrepo.ErrNoSignature},
		{"copied to canary", func(*modelrepo.Alias) {}, "tiny", "canary", modelrepo.ErrManifestMismatch},
		{"copied to another model", func(*modelrepo.Alias) {}, "other", "stable", modelrepo.ErrManifestMismatch},
		{"untrusted key", func(a *modelrepo.Alias) { modelrepo.NewSigner(seedKey(3)).SignPointer(a) }, "tiny", "stable", modelrepo.ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := a3
			sig := *a3.Signature
			a.Signature = &sig
			tc.edit(&a)
			err := modelrepo.VerifyPointer(&a, f.verifier, tc.model, tc.want)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("VerifyPointer = %v, want %v", err, tc.err)
			}
		})
	}
	if got := modelrepo.Reason(modelrepo.ErrPointerRollback); got != "rollback" {
		t.Errorf("Reason(ErrPointerRollback) = %q", got)
	}
}
