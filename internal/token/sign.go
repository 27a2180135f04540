package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/latchauth/latch/bearer"
)

// signer makes compact JWS (RFC 7515 section 7.1) with one key. It does what
// go-jose's signer did for Issue, without its reflection-based JSON and its
// JWK round trip per token: the protected header is encoded once per key,
// the claims by appendClaims, and the signature with the standard library.
// On the refresh path go-jose's builder took 16% of the server's CPU beside
// the signature's 9% (docs/performance.md "Refresh and login at the floor").
type signer struct {
	// header is the base64url of the protected header: alg, kid and typ
	// at+jwt (RFC 9068 section 2.1), nothing else (RFC 8725 section 3.10:
	// no jku, x5u, jwk).
	header string
	// key is an ed25519.PrivateKey, *ecdsa.PrivateKey or *rsa.PrivateKey,
	// checked against the algorithm by newSigner. sign switches on it
	// rather than calling a func value: through a func value the signing
	// input would escape, and jws's stack buffers with it.
	key any
}

// newSigner returns the signer for priv under kid. The algorithm follows
// the key's type and must be the stored one (RFC 8725 section 3.1: one
// algorithm per key).
func newSigner(alg, kid string, priv any) (*signer, error) {
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		if alg != "EdDSA" {
			return nil, fmt.Errorf("an Ed25519 key stored for %s", alg)
		}
	case *ecdsa.PrivateKey:
		if alg != "ES256" || k.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("an ECDSA %s key stored for %s", k.Curve.Params().Name, alg)
		}
	case *rsa.PrivateKey:
		if alg != "RS256" {
			return nil, fmt.Errorf("an RSA key stored for %s", alg)
		}
	default:
		return nil, fmt.Errorf("unsupported key type %T", priv)
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		KID string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, TypeAccessToken})
	if err != nil {
		return nil, err
	}
	return &signer{header: base64.RawURLEncoding.EncodeToString(h), key: priv}, nil
}

// sign appends the base64url signature of in to dst.
func (s *signer) sign(dst, in []byte) ([]byte, error) {
	enc := base64.RawURLEncoding
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		// RFC 8037 section 3.1: the signature over the signing input itself.
		return enc.AppendEncode(dst, ed25519.Sign(k, in)), nil
	case *ecdsa.PrivateKey:
		sig, err := signES256(k, in)
		return enc.AppendEncode(dst, sig), err
	case *rsa.PrivateKey:
		h := sha256.Sum256(in)
		sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:]) // RFC 7518 section 3.3
		return enc.AppendEncode(dst, sig), err
	}
	return nil, fmt.Errorf("unsupported key type %T", s.key)
}

// signES256 is ECDSA P-256 over SHA-256, as the fixed-width R || S of RFC
// 7518 section 3.4 rather than the ASN.1 form crypto/ecdsa produces.
func signES256(k *ecdsa.PrivateKey, in []byte) ([]byte, error) {
	h := sha256.Sum256(in)
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

// jws returns the compact JWS of c, with extra's entries as further
// top-level claims, before c's own. extra must not name a claim that c
// holds: the caller drops reserved names.
func (s *signer) jws(c *bearer.Claims, extra map[string]json.RawMessage) (string, error) {
	// The payload and the token are built in fixed buffers that stay on
	// the stack for the usual token (append moves to the heap past them),
	// so an EdDSA token without custom claims costs one allocation, the
	// returned string.
	var pbuf [512]byte
	payload := append(pbuf[:0], '{')
	if len(extra) > 0 {
		// encoding/json sorts a map's keys and checks each raw value, so
		// the token is valid JSON with a stable order. The custom claims
		// go first: a decoder that matches names regardless of case and
		// keeps the last (encoding/json, which many resource servers use)
		// must read a custom "Sub" or "EXP" before the real sub and exp.
		more, err := json.Marshal(extra)
		if err != nil {
			return "", fmt.Errorf("token: encode custom claims: %w", err)
		}
		if len(more) > 2 {
			payload = append(payload, more[1:len(more)-1]...)
			payload = append(payload, ',')
		}
	}
	payload = appendClaimMembers(payload, c)
	payload = append(payload, '}')

	enc := base64.RawURLEncoding
	var tbuf [1024]byte
	buf := append(tbuf[:0], s.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	buf = append(buf, '.')
	buf, err := s.sign(buf, buf[:len(buf)-1])
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return string(buf), nil
}
