package modelrepo

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgeloop/edgeloop/internal/fsutil"
)

// File names that GenerateKey writes.
const (
	PrivateKeyFile = "edgeloop.key"
	PublicKeyFile  = "edgeloop.pub"
)

// KeyID names a public key: the first 16 hex digits (8 bytes) of the SHA-256 of its 32 raw
// bytes. It is what a manifest's signature.key_id holds, so a verifier trusting several keys
// (during a rotation) knows which one to check.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hexKeyID(sum[:])
}

// KeyFiles are the paths GenerateKey wrote.
type KeyFiles struct {
	// Private is the private key: PEM "PRIVATE KEY" (PKCS #8), mode 0600.
	Private string
	// Public is the public key: PEM "PUBLIC KEY" (PKIX), mode 0644.
	Public string
	// KeyID is the public key's KeyID.
	KeyID string
}

// GenerateKey creates a new ed25519 key pair in dir (creating it, mode 0700, if needed) as
// edgeloop.key and edgeloop.pub. It never overwrites: a key that signed published versions
// must not vanish by accident. The files are the formats OpenSSL reads
// (`openssl pkey -in edgeloop.key -pubout` prints edgeloop.pub).
func GenerateKey(dir string) (KeyFiles, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return KeyFiles{}, fmt.Errorf("keygen: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return KeyFiles{}, fmt.Errorf("keygen: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return KeyFiles{}, fmt.Errorf("keygen: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return KeyFiles{}, fmt.Errorf("keygen: %w", err)
	}
	kf := KeyFiles{
		Private: filepath.Join(dir, PrivateKeyFile),
		Public:  filepath.Join(dir, PublicKeyFile),
		KeyID:   KeyID(pub),
	}
	if err := fsutil.WriteNew(kf.Private, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return KeyFiles{}, fmt.Errorf("keygen: %w", err)
	}
	if err := fsutil.WriteNew(kf.Public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(kf.Private)
		return KeyFiles{}, fmt.Errorf("keygen: %w", err)
	}
	return kf, nil
}

// ParsePrivateKey reads an ed25519 private key from PEM "PRIVATE KEY" (PKCS #8).
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 key", key)
	}
	return priv, nil
}

// ParsePublicKey reads an ed25519 public key from PEM "PUBLIC KEY" (PKIX).
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\" block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 key", key)
	}
	return pub, nil
}

// Signer signs manifests with one private key.
type Signer struct {
	priv  ed25519.PrivateKey
	keyID string
}

// NewSigner returns a Signer for priv.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	return &Signer{priv: priv, keyID: KeyID(priv.Public().(ed25519.PublicKey))}
}

// LoadSigner reads the private key file at path (as GenerateKey writes it).
func LoadSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return NewSigner(priv), nil
}

// KeyID is the KeyID of the signer's public key.
func (s *Signer) KeyID() string { return s.keyID }

// Public returns the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Sign validates m and sets its Signature over m.SigningBytes(). An invalid manifest is not
// signed: a signature vouches for a version the exporter can load.
func (s *Signer) Sign(m *Manifest) error {
	m.Signature = nil
	if err := m.Validate(); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	msg, err := m.SigningBytes()
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	m.Signature = &Signature{
		KeyID:     s.keyID,
		Algorithm: AlgorithmEd25519,
		Value:     base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg)),
	}
	return nil
}

// Verifier checks manifest signatures against a set of trusted public keys. Several keys are
// trusted at once during a key rotation. It is safe for concurrent use once built.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier returns a Verifier trusting keys.
func NewVerifier(keys ...ed25519.PublicKey) *Verifier {
	v := &Verifier{keys: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		v.keys[KeyID(k)] = slices.Clone(k)
	}
	return v
}

// LoadVerifier reads the trusted public keys at paths: PEM files (as GenerateKey writes them),
// or directories, from which every *.pub file is read. At least one key must result.
func LoadVerifier(paths ...string) (*Verifier, error) {
	var keys []ed25519.PublicKey
	for _, p := range paths {
		files := []string{p}
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			files, err = filepath.Glob(filepath.Join(p, "*.pub"))
			if err != nil {
				return nil, fmt.Errorf("trusted keys: %w", err)
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("trusted keys: no *.pub file in directory %s", p)
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("trusted keys: %w", err)
			}
			pub, err := ParsePublicKey(data)
			if err != nil {
				return nil, fmt.Errorf("trusted keys: %s: %w", f, err)
			}
			keys = append(keys, pub)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("trusted keys: none given")
	}
	return NewVerifier(keys...), nil
}

// KeyIDs lists the IDs of the trusted keys, sorted.
func (v *Verifier) KeyIDs() []string { return sortedKeys(v.keys) }

// Verify checks m's signature: ErrNoSignature when it has none, ErrUnknownKey when the key
// is not trusted, ErrBadSignature when it does not match. It does not validate the rest of m.
func (v *Verifier) Verify(m *Manifest) error {
	if m.Signature == nil || m.Signature.Value == "" {
		return ErrNoSignature
	}
	msg, err := m.SigningBytes()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return v.verifySignature(m.Signature, msg)
}
