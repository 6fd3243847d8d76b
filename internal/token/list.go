package token

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/edgeloop/edgeloop/internal/sample"
)

// List is a parsed hash list: the SHA-256 of each token a server accepts and the id it is
// bound to. Every server reads its hash lists into one (the collector's node and operator
// tokens, the exporter's inference clients, the retrain controller's webhook and operators),
// so that the file format, its checks and the constant-time lookup exist once. The zero List
// accepts no token.
type List struct{ entries []entry }

type entry struct {
	sum [sha256.Size]byte
	id  string
}

// Len is the number of tokens.
func (l List) Len() int { return len(l.entries) }

// LoadList reads a hash list file: one "<id> sha256:<64 hex>" per line; blank lines and "#"
// comments are skipped. Every malformed line is an error naming its number, and so is a hash
// given twice (two ids cannot share a credential). An empty file, or one holding a bare token
// instead of its hash, is refused with a message saying what the key expects (ReadHashList).
// Errors name the path; the caller names its key.
func LoadList(path string) (List, error) {
	data, err := ReadHashList(path)
	if err != nil {
		return List{}, fmt.Errorf("tokens: %w", err)
	}
	l, err := ParseList(data)
	if err != nil {
		return List{}, fmt.Errorf("tokens %s: %w", path, err)
	}
	return l, nil
}

// ParseList parses the content of a hash list file (see LoadList).
func ParseList(data []byte) (List, error) {
	var l List
	seen := map[[sha256.Size]byte]string{}
	err := EachLine(data, func(n int, fields []string) error {
		if len(fields) != 2 {
			return fmt.Errorf("line %d: want \"<id> sha256:<64 hex digits>\", got %d fields", n, len(fields))
		}
		id, hash := fields[0], fields[1]
		if !sample.ValidName(id) {
			return fmt.Errorf("line %d: id %.64q %s", n, id, sample.NameRule)
		}
		hexHash, ok := strings.CutPrefix(hash, HashPrefix)
		b, err := hex.DecodeString(hexHash)
		if !ok || err != nil || len(b) != sha256.Size {
			return fmt.Errorf("line %d: the hash must be sha256: and 64 hex digits (sha256sum of the token)", n)
		}
		sum := [sha256.Size]byte(b)
		if other, dup := seen[sum]; dup {
			return fmt.Errorf("line %d: the same hash as %s's: every credential is bound to one id", n, other)
		}
		seen[sum] = id
		l.entries = append(l.entries, entry{sum: sum, id: id})
		return nil
	})
	if err != nil {
		return List{}, err
	}
	return l, nil
}

// HashLine returns the line a hash list holds for id and tok.
func HashLine(id, tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return id + " " + HashPrefix + hex.EncodeToString(sum[:])
}

// Lookup returns the id tok is bound to. It compares the token's hash with every entry in
// constant time and does not stop at a match, so the time taken says nothing about which
// entry, or how much of one, matched (10,000 entries take some tens of microseconds).
func (l List) Lookup(tok string) (string, bool) {
	sum := sha256.Sum256([]byte(tok))
	found := -1
	for i := range l.entries {
		if subtle.ConstantTimeCompare(sum[:], l.entries[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return l.entries[found].id, true
}

// Bearer returns the request's bearer token (RFC 6750: "Authorization: Bearer <token>", the
// scheme in any case), and false when there is none or it is empty.
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
