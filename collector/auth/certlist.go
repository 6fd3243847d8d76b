package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/edgeloop/edgeloop/internal/token"
)

// CertList is a set of node certificates named by serial number or SHA-256 fingerprint (of
// the DER certificate): the collector's deny list (revoked certificates) or allow list. A
// certificate matches when either its serial or its fingerprint is listed. Serials are only
// unique per issuing CA; a fleet with several node CAs names stolen certificates by
// fingerprint.
type CertList struct {
	serials      map[string]bool // lower-case hex of the serial's magnitude, no leading zeros
	fingerprints map[[sha256.Size]byte]bool
}

// Len is the number of entries.
func (l CertList) Len() int { return len(l.serials) + len(l.fingerprints) }

// Contains reports whether cert is listed.
func (l CertList) Contains(cert *x509.Certificate) bool {
	if l.Len() == 0 {
		return false
	}
	if cert.SerialNumber != nil && l.serials[serialKey(cert.SerialNumber)] {
		return true
	}
	return l.fingerprints[sha256.Sum256(cert.Raw)]
}

func serialKey(n *big.Int) string { return new(big.Int).Abs(n).Text(16) }

// LoadCertList reads a certificate list file (see ParseCertList).
func LoadCertList(path string) (CertList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return CertList{}, fmt.Errorf("auth: certificate list: %w", err)
	}
	l, err := ParseCertList(data)
	if err != nil {
		return CertList{}, fmt.Errorf("auth: certificate list %s: %w", path, err)
	}
	return l, nil
}

// ParseCertList parses a certificate list: one entry per line, "serial:<hex>" or
// "sha256:<64 hex digits>", hex digits optionally separated by colons (as `openssl x509
// -serial -fingerprint -sha256` prints them); blank lines and "#" comments are skipped. A
// malformed line is an error naming its number: a typo must not silently leave a stolen
// certificate accepted.
func ParseCertList(data []byte) (CertList, error) {
	l := CertList{serials: map[string]bool{}, fingerprints: map[[sha256.Size]byte]bool{}}
	err := token.EachLine(data, func(n int, fields []string) error {
		if len(fields) != 1 {
			return fmt.Errorf("line %d: want one entry, serial:<hex> or sha256:<64 hex digits>, got %d fields", n, len(fields))
		}
		kind, value, _ := strings.Cut(strings.ToLower(fields[0]), ":")
		digits := strings.ReplaceAll(value, ":", "")
		b, err := hex.DecodeString(digits)
		switch {
		case kind == "serial" && err == nil && len(b) > 0 && len(b) <= 20: // RFC 5280: at most 20 octets
			l.serials[serialKey(new(big.Int).SetBytes(b))] = true
		case kind == "sha256" && err == nil && len(b) == sha256.Size:
			l.fingerprints[[sha256.Size]byte(b)] = true
		case kind == "serial":
			return fmt.Errorf("line %d: a serial must be 1 to 20 bytes in hex, got %.80q", n, value)
		case kind == "sha256":
			return fmt.Errorf("line %d: a sha256 fingerprint must be 64 hex digits, got %.80q", n, value)
		default:
			return fmt.Errorf("line %d: want serial:<hex> or sha256:<64 hex digits>, got %.80q", n, fields[0])
		}
		return nil
	})
	if err != nil {
		return CertList{}, err
	}
	return l, nil
}

// CertFingerprint returns a certificate's entry for a list: "sha256:" and the hex SHA-256 of
// its DER encoding.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}
