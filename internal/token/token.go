// Package token holds the one set of rules for edgeloop's two kinds of credential file
// (docs/security.md, "Credential files"):
//
//   - a secret (by convention named *.token): exactly one raw bearer token on one line. A
//     client reads it (token_file, bearer_token_file, EDGELOOP_TOKEN_FILE) and sends it.
//   - a hash list (by convention named *.sha256): lines "<id> sha256:<64 hex digits>", the
//     SHA-256 of each token a server accepts. A server reads it (tokens_file,
//     webhook_tokens_file, operator_tokens_file) and never holds the tokens themselves.
//
// The two differ by one letter in older docs (.token and .tokens), and a client pointed at a
// hash list used to fail only at its first request, as a 401 from the far side. Classify tells
// them apart so that every reader refuses the wrong kind at load and --config.check, naming
// which kind the key expects.
package token

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MaxSecretBytes bounds a secret file: a bearer token is a line, not a document (a
// Kubernetes projected service account token is about 1 KiB).
const MaxSecretBytes = 16 << 10

// HashPrefix starts the hash of every entry of a hash list.
const HashPrefix = "sha256:"

// Kind is what a credential file's content looks like.
type Kind int

const (
	// Empty is a file with nothing but white space and "#" comments.
	Empty Kind = iota
	// Secret is one line holding one word that is not a hash: a raw token.
	Secret
	// HashList is content with at least one "sha256:" field: a server's list of hashes.
	HashList
	// Other is anything else (several words or several lines, no hash): neither kind.
	Other
)

// String names the kind as messages use it.
func (k Kind) String() string {
	switch k {
	case Empty:
		return "empty"
	case Secret:
		return "a secret (one raw token)"
	case HashList:
		return `a hash list ("<id> sha256:<hex>" lines)`
	default:
		return "neither a secret nor a hash list"
	}
}

// ErrEmpty is returned for a file of either kind that holds nothing.
var ErrEmpty = errors.New("empty token file")

// Classify says which kind of credential file data is. A hash list may carry "#" comments;
// a secret is taken as it is, except that surrounding white space is trimmed, so a token
// containing "#" stays a secret as long as it is the only word on its line.
func Classify(data []byte) Kind {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return Empty
	}
	if fields := strings.Fields(string(trimmed)); len(fields) == 1 && !strings.HasPrefix(fields[0], "#") {
		if strings.HasPrefix(fields[0], HashPrefix) {
			return HashList // a hash without its id: malformed, but meant as a list
		}
		return Secret
	}
	words, hashes := 0, 0
	_ = EachLine(data, func(_ int, fields []string) error { // a line over 1 MiB ends the count
		for _, f := range fields {
			if strings.HasPrefix(f, HashPrefix) {
				hashes++
			}
		}
		words += len(fields)
		return nil
	})
	switch {
	case hashes > 0:
		return HashList
	case words == 0:
		return Empty
	}
	return Other
}

// ReadSecret reads a secret file and returns the token, surrounding white space trimmed.
// It refuses an empty file, a hash list (the server's side of the credential, which would
// only earn a 401 later), anything longer than MaxSecretBytes, and a token with characters a
// bearer token cannot carry (RFC 6750: printable ASCII, no spaces). Errors name the path;
// the caller names its key.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok, err := ParseSecret(b)
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	return tok, nil
}

// ParseSecret checks the content of a secret file (see ReadSecret) and returns the token.
func ParseSecret(data []byte) (string, error) {
	if len(data) > MaxSecretBytes {
		return "", fmt.Errorf("%d bytes, more than a token (%d)", len(data), MaxSecretBytes)
	}
	switch k := Classify(data); k {
	case Secret:
	case Empty:
		return "", ErrEmpty
	case HashList:
		return "", fmt.Errorf("holds %s, which a server reads; this key expects a secret: the raw token on one line (a *.token file)", k)
	default:
		if bytes.ContainsAny(bytes.TrimSpace(data), "\r\n") {
			return "", fmt.Errorf("holds several lines and no hash; this key expects a secret: the raw token on one line (a *.token file)")
		}
		// One line of several words: the character rule below says what is wrong with it.
	}
	tok := string(bytes.TrimSpace(data))
	for _, r := range tok {
		if r < 0x21 || r > 0x7e {
			return "", errors.New("the token must be printable ASCII without spaces")
		}
	}
	return tok, nil
}

// ReadHashList reads a hash list file and returns its content for the server's parser
// (ParseList checks each line; LoadList does both). It refuses an empty file and a file holding
// one bare token: a secret in a server's file means the token itself sits on the server, and
// no client could match it.
func ReadHashList(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *fs.PathError names the path
	}
	if err := CheckHashList(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// CheckHashList refuses content that is empty or is a secret (see ReadHashList). Content of
// kind Other is left to the line parser, whose errors name the line.
func CheckHashList(data []byte) error {
	switch k := Classify(data); k {
	case Empty:
		return ErrEmpty
	case Secret:
		return fmt.Errorf(`holds %s, which a client sends; this key expects a hash list: "<id> sha256:<64 hex digits>" lines, the SHA-256 of each token (a *.sha256 file)`, k)
	}
	return nil
}
