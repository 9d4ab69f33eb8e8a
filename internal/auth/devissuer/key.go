package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// keyBits is the size of generated keys; 2048 is what Keycloak generates by default.
const keyBits = 2048

// LoadOrCreateKey reads an RSA private key from the PEM file at path (PKCS#8 or PKCS#1), or
// generates one and stores it there (mode 0600, parent directory 0700) when the file does not
// exist. Persisting the key lets dev tokens survive restarts of `make run`.
func LoadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	key, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, err = rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return nil, fmt.Errorf("devissuer: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("devissuer: encode key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devissuer: key dir: %w", err)
	}
	// Write to a private temp file and hard-link it into place: the key file appears
	// complete or not at all, and if another process won the race we use its key so both
	// agree on the kid.
	tmp, err := os.CreateTemp(dir, ".devissuer-key-*")
	if err != nil {
		return nil, fmt.Errorf("devissuer: write key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("devissuer: write key: %w", err)
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("devissuer: write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("devissuer: write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path)
		}
		return nil, fmt.Errorf("devissuer: write key: %w", err)
	}
	return key, nil
}

func loadKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // keeps fs.ErrNotExist visible to LoadOrCreateKey
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("devissuer: %s: no PEM block", path)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("devissuer: %s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("devissuer: %s: not an RSA key", path)
		}
		return rk, nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("devissuer: %s: %w", path, err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("devissuer: %s: unexpected PEM type %q", path, block.Type)
	}
}
