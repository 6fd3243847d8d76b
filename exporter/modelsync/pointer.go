package modelsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// pointerState is what a model remembers of the signed pointer (alias or latest hint) it last
// accepted, persisted in its cache directory so that a restart cannot be used to roll it back
// either.
type pointerState struct {
	// Signed is true once a signed pointer was accepted: from then on an unsigned one is a
	// downgrade of the repository's guarantees and is refused.
	Signed bool `json:"signed"`
	// Sequence and Version are the last accepted signed pointer's.
	Sequence int64 `json:"sequence"`
	Version  int64 `json:"version"`
}

// pointerFile is where m keeps the state of its selector's pointer: one file per selector, so
// that switching a model from one alias to another does not compare unrelated sequences.
func pointerFile(m *model) string {
	return filepath.Join(m.cacheDir, "pointer-"+m.selector+".json")
}

// loadPointerState reads m's pointer state; none yet is the zero state.
func loadPointerState(m *model) (pointerState, error) {
	data, err := os.ReadFile(pointerFile(m))
	if errors.Is(err, fs.ErrNotExist) {
		return pointerState{}, nil
	}
	if err != nil {
		return pointerState{}, err
	}
	var st pointerState
	if err := json.Unmarshal(data, &st); err != nil {
		return pointerState{}, fmt.Errorf("%s: %w", pointerFile(m), err)
	}
	return st, nil
}

// checkPointer decides whether p, read at m's selector's pointer, may be followed, and
// records it when it is signed and new. An unsigned pointer is accepted as before signing
// existed, unless require_signed_pointers is set or a signed one was accepted before. A signed
// one must verify, name this model and selector, and carry a sequence no lower than the last
// accepted (the same sequence must name the same version): otherwise the attempt is refused
// with ErrPointerRollback, logged, counted, and the serving version stays.
func (s *Syncer) checkPointer(m *model, p modelrepo.Alias) error {
	name := m.cfg.Name
	if p.Signature == nil {
		if s.cfg.RequireSignedPointers || m.pointer.Signed {
			why := "require_signed_pointers is set"
			if m.pointer.Signed {
				why = fmt.Sprintf("a signed one (sequence %d) was accepted before", m.pointer.Sequence)
			}
			return fmt.Errorf("%w: %s pointer of %s is unsigned, and %s", modelrepo.ErrNoSignature, m.selector, name, why)
		}
		return nil
	}
	if err := modelrepo.VerifyPointer(&p, s.verifier, name, m.selector); err != nil {
		return err
	}
	old := m.pointer
	if p.Sequence < old.Sequence || (p.Sequence == old.Sequence && p.Version != old.Version) {
		s.metrics.rollback(name)
		s.logger.Error("refused a rolled-back model pointer; the serving version stays", "model", name, "selector", m.selector,
			"version", p.Version, "sequence", p.Sequence, "accepted_version", old.Version, "accepted_sequence", old.Sequence, "serving", m.serving)
		return fmt.Errorf("%w: %s of %s has sequence %d (version %d), below the accepted sequence %d (version %d)",
			modelrepo.ErrPointerRollback, m.selector, name, p.Sequence, p.Version, old.Sequence, old.Version)
	}
	if p.Sequence == old.Sequence && old.Signed {
		return nil
	}
	next := pointerState{Signed: true, Sequence: p.Sequence, Version: p.Version}
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.cacheDir, 0o700); err != nil {
		return err
	}
	// Persisted before it is acted on: a crash after loading must not forget the floor.
	if err := fsutil.WriteFileAtomic(pointerFile(m), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("pointer state: %w", err)
	}
	m.pointer = next
	return nil
}
