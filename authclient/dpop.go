package authclient

// DPoP (RFC 9449): a key pair made at sign-in and kept with the session; a
// proof, signed per request, binds each token request and each API call
// to it, so the tokens alone are useless to whoever copies them. The
// proof is a compact JWS made here with the standard library (this
// package imports no JOSE library): ES256 (R||S, RFC 7518 section 3.4) or
// EdDSA (RFC 8037), the public key as a JWK in the header.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// DPoPMode says when a [Client] uses DPoP.
type DPoPMode int

const (
	// DPoPAuto (the default) uses DPoP when the server's metadata offers
	// it (dpop_signing_alg_values_supported names the client's algorithm).
	DPoPAuto DPoPMode = iota
	// DPoPRequire always uses DPoP; a server that does not offer it, or
	// answers a proof with a bearer token, fails the login.
	DPoPRequire
	// DPoPOff never uses DPoP: bearer tokens only.
	DPoPOff
)

var b64 = base64.RawURLEncoding

// dpopKey is a session's DPoP key.
type dpopKey struct {
	alg    string
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	header string // the proof's JOSE header, base64url
	jkt    string // RFC 7638 thumbprint
}

// newDPoPKey generates a key for alg ("ES256" or "EdDSA").
func newDPoPKey(alg string) (*dpopKey, error) {
	switch alg {
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return keyFrom(alg, k)
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return keyFrom(alg, k)
	}
	return nil, fmt.Errorf("authclient: DPoP algorithm %q: want ES256 or EdDSA", alg)
}

// parseDPoPKey reads a key saved with marshal.
func parseDPoPKey(alg, saved string) (*dpopKey, error) {
	der, err := base64.StdEncoding.DecodeString(saved)
	if err != nil {
		return nil, fmt.Errorf("authclient: saved DPoP key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("authclient: saved DPoP key: %w", err)
	}
	return keyFrom(alg, k)
}

func keyFrom(alg string, k any) (*dpopKey, error) {
	d := &dpopKey{alg: alg}
	// The JWK members in lexicographic order, as RFC 7638 section 3.2
	// hashes them; the same JSON goes into the header.
	var jwk string
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if alg != "ES256" || k.Curve != elliptic.P256() {
			return nil, errors.New("authclient: DPoP key does not fit ES256")
		}
		pub, err := k.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil, err
		}
		d.ec = k
		jwk = `{"crv":"P-256","kty":"EC","x":"` + b64.EncodeToString(pub[1:33]) + `","y":"` + b64.EncodeToString(pub[33:]) + `"}`
	case ed25519.PrivateKey:
		if alg != "EdDSA" {
			return nil, errors.New("authclient: DPoP key does not fit EdDSA")
		}
		d.ed = k
		jwk = `{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(k.Public().(ed25519.PublicKey)) + `"}`
	default:
		return nil, fmt.Errorf("authclient: DPoP key of type %T", k)
	}
	sum := sha256.Sum256([]byte(jwk))
	d.jkt = b64.EncodeToString(sum[:])
	d.header = b64.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"` + alg + `","jwk":` + jwk + `}`))
	return d, nil
}

// marshal returns the private key as base64 PKCS #8, for Saved.
func (d *dpopKey) marshal() string {
	var k any = d.ec
	if d.ed != nil {
		k = d.ed
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // both key types marshal
	}
	return base64.StdEncoding.EncodeToString(der)
}

// proof signs a DPoP proof (RFC 9449 section 4.2) for a request with
// method to target (its query and fragment are left out of htu), issued
// at now; accessToken, when set, is bound by ath (section 4.2, for
// resource requests), nonce when the server asked for one (section 8).
func (d *dpopKey) proof(method string, target *url.URL, accessToken, nonce string, now time.Time) (string, error) {
	u := *target
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment, u.User = "", false, "", "", nil
	var jti [16]byte
	rand.Read(jti[:])
	c := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		ATH   string `json:"ath,omitempty"`
		Nonce string `json:"nonce,omitempty"`
	}{JTI: b64.EncodeToString(jti[:]), HTM: method, HTU: u.String(), IAT: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c.ATH = b64.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := d.header + "." + b64.EncodeToString(payload)
	var sig []byte
	if d.ed != nil {
		sig = ed25519.Sign(d.ed, []byte(input))
	} else {
		h := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, d.ec, h[:])
		if err != nil {
			return "", err
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// nonces remembers the last DPoP-Nonce each origin sent (RFC 9449 section
// 8: a nonce is the server's, per origin), for the next proof to it.
type nonces struct {
	mu sync.Mutex
	m  map[string]string
}

func origin(u *url.URL) string {
	p, _ := port(u)
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + p
}

func (n *nonces) get(u *url.URL) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[origin(u)]
}

// observe keeps the DPoP-Nonce of a response from u, if it has one.
func (n *nonces) observe(u *url.URL, h http.Header) {
	v := h.Get("DPoP-Nonce")
	if v == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]string{}
	}
	n.m[origin(u)] = v
}

// useDPoP decides whether a new session uses DPoP, from the mode and the
// server's metadata.
func (c *Client) useDPoP(m *metadata) (bool, error) {
	offered := slices.Contains(m.DPoPAlgs, c.cfg.DPoPAlgorithm)
	switch c.cfg.DPoP {
	case DPoPOff:
		return false, nil
	case DPoPRequire:
		if !offered {
			return false, fmt.Errorf("authclient: DPoP is required but %s does not offer it with %s (dpop_signing_alg_values_supported %q)", c.base, c.cfg.DPoPAlgorithm, m.DPoPAlgs)
		}
	}
	return offered, nil
}

// sessionKey returns the DPoP key of a saved session, nil for a bearer
// session.
func sessionKey(s Saved) (*dpopKey, error) {
	if s.DPoPKey == "" {
		return nil, nil
	}
	return parseDPoPKey(s.DPoPAlg, s.DPoPKey)
}

// dpopChallenge reports a 401's DPoP challenge error code, "" for none
// (RFC 9449 section 7.1).
func dpopChallenge(h http.Header) string {
	for _, v := range h.Values("WWW-Authenticate") {
		if len(v) < 5 || !strings.EqualFold(v[:5], "dpop ") {
			continue
		}
		for _, code := range []string{"use_dpop_nonce", "invalid_token", "invalid_dpop_proof"} {
			if strings.Contains(v, `error="`+code+`"`) {
				return code
			}
		}
	}
	return ""
}
