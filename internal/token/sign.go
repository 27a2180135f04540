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
	"errors"
	"fmt"
)

// signer makes compact JWS (RFC 7515 section 7.1) with one key. It does what
// go-jose's signer did for Issue, without its reflection-based JSON and its
// JWK round trip per token: the protected header is encoded once per key,
// the claims with encoding/json, and the signature with the standard
// library. On the refresh path go-jose's builder took 16% of the server's
// CPU beside the signature's 9% (docs/performance.md "Refresh and login at
// the floor").
type signer struct {
	// header is the base64url of the protected header: alg, kid and typ
	// at+jwt (RFC 9068 section 2.1), nothing else (RFC 8725 section 3.10:
	// no jku, x5u, jwk).
	header string
	sign   func(input []byte) ([]byte, error)
}

// newSigner returns the signer for priv under kid. The algorithm follows
// the key's type and must be the stored one (RFC 8725 section 3.1: one
// algorithm per key).
func newSigner(alg, kid string, priv any) (*signer, error) {
	var sign func([]byte) ([]byte, error)
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		if alg != "EdDSA" {
			return nil, fmt.Errorf("an Ed25519 key stored for %s", alg)
		}
		// RFC 8037 section 3.1: the signature over the signing input itself.
		sign = func(in []byte) ([]byte, error) { return ed25519.Sign(k, in), nil }
	case *ecdsa.PrivateKey:
		if alg != "ES256" || k.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("an ECDSA %s key stored for %s", k.Curve.Params().Name, alg)
		}
		sign = func(in []byte) ([]byte, error) { return signES256(k, in) }
	case *rsa.PrivateKey:
		if alg != "RS256" {
			return nil, fmt.Errorf("an RSA key stored for %s", alg)
		}
		sign = func(in []byte) ([]byte, error) {
			h := sha256.Sum256(in)
			return rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:]) // RFC 7518 section 3.3
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
	return &signer{header: base64.RawURLEncoding.EncodeToString(h), sign: sign}, nil
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

// jws returns the compact JWS of claims, with extra's entries as further
// top-level claims, before claims' own. extra must not name a claim that
// claims holds: the caller drops reserved names.
func (s *signer) jws(claims any, extra map[string]json.RawMessage) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token: encode claims: %w", err)
	}
	if len(extra) > 0 {
		if len(payload) < 2 || payload[len(payload)-1] != '}' {
			return "", errors.New("token: claims are not a JSON object")
		}
		// encoding/json sorts a map's keys and checks each raw value, so
		// the token is valid JSON with a stable order. The custom claims
		// go first: a decoder that matches names regardless of case and
		// keeps the last (encoding/json, which many resource servers use)
		// must read a custom "Sub" or "EXP" before the real sub and exp.
		more, err := json.Marshal(extra)
		if err != nil {
			return "", fmt.Errorf("token: encode custom claims: %w", err)
		}
		obj := make([]byte, 0, len(more)+len(payload))
		obj = append(obj, more[:len(more)-1]...) // '{' and the custom claims
		if len(payload) > 2 {
			obj = append(obj, ',')
		}
		payload = append(obj, payload[1:]...)
	}
	enc := base64.RawURLEncoding
	n := len(s.header) + 1 + enc.EncodedLen(len(payload))
	buf := make([]byte, 0, n+1+enc.EncodedLen(512)) // room for an RSA-4096 signature
	buf = append(buf, s.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := s.sign(buf)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}
