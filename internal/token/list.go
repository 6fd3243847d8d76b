package token

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/edgeloop/edgeloop/internal/sample"
)

// List is a parsed hash list: the SHA-256 of each token a server accepts and the id it is
// bound to. Every server reads its hash lists into one (the collector's node and operator
// tokens, the exporter's inference clients, the retrain controller's webhook and operators),
// so that the file format, its checks and the lookup exist once. The zero List accepts no
// token.
type List struct {
	// ids maps each token's SHA-256 to the id it is bound to.
	ids map[[sha256.Size]byte]string
}

// Len is the number of tokens.
func (l List) Len() int { return len(l.ids) }

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
	l := List{ids: map[[sha256.Size]byte]string{}}
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
		if other, dup := l.ids[sum]; dup {
			return fmt.Errorf("line %d: the same hash as %s's: every credential is bound to one id", n, other)
		}
		l.ids[sum] = id
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

// Lookup returns the id tok is bound to, by the SHA-256 of tok in a map: one hash and one map
// probe, whatever the list's size (a collector holds one entry per node: thousands). The
// lookup's time may depend on the digest being looked up and on the stored digests near it,
// but that tells a caller at most something about digests, never about a token: the stored
// values are hashes of random tokens, and finding a token from its digest is a SHA-256
// preimage. (Comparing with every entry in constant time, as an earlier version did, cost
// tens of microseconds a request at 10,000 entries and protected nothing more.)
func (l List) Lookup(tok string) (string, bool) {
	id, ok := l.ids[sha256.Sum256([]byte(tok))]
	return id, ok
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
