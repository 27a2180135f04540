package bearer

// This file verifies a compact JWS (RFC 7515 section 5.2) with no JOSE
// library in the hot path. It is not home-made cryptography: the signature
// is checked by the standard library's primitives (ed25519.Verify,
// ecdsa.Verify on the raw R||S of RFC 7518 section 3.4, rsa.VerifyPKCS1v15,
// rsa.VerifyPSS), exactly as go-jose calls them, over the ASCII signing
// input BASE64URL(header) || '.' || BASE64URL(payload) taken byte for byte
// from the token as received, never re-encoded. What is ours is only the
// bookkeeping of section 5.2: split on the two dots, decode base64url
// strictly, read three header parameters, pick the key by kid and check
// that the header's alg is the one the key is pinned to. Keys still come
// from go-jose's JWK parsing (jwks.go).
//
// The JSON of the header and of the claims is read with the same rules as
// go-jose's JSON fork (member names are case-sensitive, a duplicate name
// rejects the object) plus two stricter ones: the text must be valid UTF-8
// (RFC 8725 section 3.7) and a member name may not contain an escape, so
// each name has one spelling. Values are decoded into concrete fields with
// encoding/json where they need it; no maps, no reflection over the whole
// object.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// strictB64 refuses padding and non-zero trailing bits; canonical has
// already refused every other character (including CR and LF, which the
// standard decoder would skip).
var strictB64 = base64.RawURLEncoding.Strict()

// bufPool holds scratch buffers for the decoded header, payload, signature
// and the signing input of one verification. Nothing read from a buffer
// outlives the verification: the header and claims are copied into
// strings first.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// jwsParts is a compact JWS split and decoded (RFC 7515 section 5.2 steps
// 1 to 7). Its byte slices point into a pooled buffer: call release when
// done with them.
type jwsParts struct {
	hdr     header
	payload []byte
	sig     []byte
	input   []byte // the signing input, as received
	buf     *[]byte
}

func (p *jwsParts) release() {
	if cap(*p.buf) <= 64<<10 {
		bufPool.Put(p.buf)
	}
	p.payload, p.sig, p.input, p.buf = nil, nil, nil, nil
}

// splitJWS checks the compact shape (three canonical base64url parts, the
// signature non-empty, the header at most 1024 characters) and decodes the
// parts and the header. The caller has capped the token's length.
func splitJWS(token string) (*jwsParts, error) {
	if strings.Count(token, ".") != 2 {
		return nil, invalid("not a compact JWS (JWE or malformed)")
	}
	h, rest, _ := strings.Cut(token, ".")
	if len(h) > 1024 {
		return nil, invalid("header too long")
	}
	p, s, _ := strings.Cut(rest, ".")
	if !canonical(h) || !canonical(p) || !canonical(s) || len(s) == 0 || len(h) == 0 {
		return nil, invalid("non-canonical base64url")
	}
	nh, np, ns := strictB64.DecodedLen(len(h)), strictB64.DecodedLen(len(p)), strictB64.DecodedLen(len(s))
	ni := len(h) + 1 + len(p)
	buf := bufPool.Get().(*[]byte)
	if need := nh + np + ns + ni; cap(*buf) < need {
		*buf = make([]byte, 0, need)
	}
	b := (*buf)[:nh+np+ns+ni]
	parts := &jwsParts{buf: buf}
	hb, pb, sb, in := b[:nh:nh], b[nh:nh+np:nh+np], b[nh+np:nh+np+ns:nh+np+ns], b[nh+np+ns:]
	var err error
	var n int
	if n, err = strictB64.Decode(hb, []byte(h)); err != nil {
		parts.release()
		return nil, invalid("header: %v", err)
	}
	hb = hb[:n]
	if n, err = strictB64.Decode(pb, []byte(p)); err != nil {
		parts.release()
		return nil, invalid("payload: %v", err)
	}
	parts.payload = pb[:n]
	if n, err = strictB64.Decode(sb, []byte(s)); err != nil {
		parts.release()
		return nil, invalid("signature: %v", err)
	}
	parts.sig = sb[:n]
	copy(in, token[:ni])
	parts.input = in
	if parts.hdr, err = decodeHeader(hb); err != nil {
		parts.release()
		return nil, err
	}
	return parts, nil
}

// header holds the only JOSE header parameters a Latch access token may
// carry.
type header struct {
	alg, kid, typ string
}

// decodeHeader reads a JOSE header that holds alg, kid and typ, each a
// string, and nothing else: crit, jku, x5u, jwk, x5c, zip, cty, b64,
// nonce, a case variant such as "ALG" or any other name rejects the token,
// so no key is ever taken from the token (RFC 8725 section 3.10) and no
// extension is half-understood (RFC 7515 section 4.1.11).
func decodeHeader(b []byte) (header, error) {
	var h header
	if !validJSON(b) {
		return h, invalid("header: not valid UTF-8 JSON")
	}
	var seen uint8
	err := jsonObject(string(b), func(name, val string) error {
		var bit uint8
		var dst *string
		switch name {
		case "alg":
			bit, dst = 1, &h.alg
		case "kid":
			bit, dst = 2, &h.kid
		case "typ":
			bit, dst = 4, &h.typ
		default:
			return errors.New("only alg, kid and typ are accepted")
		}
		if seen&bit != 0 {
			return errors.New("duplicate parameter")
		}
		seen |= bit
		if val[0] != '"' {
			return errors.New("parameters must be strings")
		}
		return jsonString(val, dst)
	})
	if err != nil {
		return h, invalid("header: %v", err)
	}
	return h, nil
}

// verifySignature checks sig over input with key for alg (RFC 7515 section
// 5.2 step 8, RFC 7518 section 3 and RFC 8037 section 3.1), with the calls
// go-jose makes. The key's type must fit the algorithm.
func verifySignature(alg jose.SignatureAlgorithm, key any, input, sig []byte) error {
	bad := errors.New("signature does not verify")
	switch alg {
	case jose.EdDSA:
		pub, ok := key.(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return bad
		}
		if !ed25519.Verify(pub, input, sig) {
			return bad
		}
		return nil
	case jose.ES256, jose.ES384, jose.ES512:
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return bad
		}
		var curve elliptic.Curve
		var size int
		var d []byte
		switch alg {
		case jose.ES256:
			curve, size = elliptic.P256(), 32
			s := sha256.Sum256(input)
			d = s[:]
		case jose.ES384:
			curve, size = elliptic.P384(), 48
			s := sha512.Sum384(input)
			d = s[:]
		default:
			curve, size = elliptic.P521(), 66
			s := sha512.Sum512(input)
			d = s[:]
		}
		// RFC 7518 section 3.4: R||S, each exactly the curve's size; a
		// DER signature or any other length is refused. ecdsa.Verify
		// refuses r or s outside [1, n-1] (no "psychic signature").
		if pub.Curve != curve || len(sig) != 2*size {
			return bad
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, d, r, s) {
			return bad
		}
		return nil
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return bad
		}
		var h crypto.Hash
		var d []byte
		switch alg {
		case jose.RS256, jose.PS256:
			s := sha256.Sum256(input)
			h, d = crypto.SHA256, s[:]
		case jose.RS384, jose.PS384:
			s := sha512.Sum384(input)
			h, d = crypto.SHA384, s[:]
		default:
			s := sha512.Sum512(input)
			h, d = crypto.SHA512, s[:]
		}
		var err error
		if alg == jose.RS256 || alg == jose.RS384 || alg == jose.RS512 {
			err = rsa.VerifyPKCS1v15(pub, h, d, sig)
		} else {
			err = rsa.VerifyPSS(pub, h, d, sig, nil) // salt length as go-jose verifies it
		}
		if err != nil {
			return bad
		}
		return nil
	}
	return errors.New("unsupported algorithm")
}

// claimsAlloc holds a Claims and its three dates in one allocation.
type claimsAlloc struct {
	c             Claims
	exp, iat, nbf jwt.NumericDate
}

// decodeClaims reads the JWT claims set (RFC 7519 section 7.2 step 10).
// Names are case-sensitive ("EXP" is an unknown claim, ignored) and a
// duplicate name rejects the token; iss, sub, jti, client_id, sid and scope
// must be strings (or null), aud a string or an array of strings, exp, iat
// and nbf numbers (or null). The strings share one copy of the payload.
func decodeClaims(payload []byte) (*Claims, error) {
	if !validJSON(payload) {
		return nil, invalid("claims: not valid UTF-8 JSON")
	}
	a := new(claimsAlloc)
	c := &a.c
	var seenBuf [16]string
	seen := seenBuf[:0]
	err := jsonObject(string(payload), func(name, val string) error {
		for _, n := range seen {
			if n == name {
				return errors.New("duplicate claim")
			}
		}
		seen = append(seen, name)
		switch name {
		case "iss":
			return jsonString(val, &c.Issuer)
		case "sub":
			return jsonString(val, &c.Subject)
		case "jti":
			return jsonString(val, &c.ID)
		case "client_id":
			return jsonString(val, &c.ClientID)
		case "sid":
			return jsonString(val, &c.SessionID)
		case "scope":
			return jsonString(val, &c.Scope)
		case "aud":
			return jsonAudience(val, &c.Audience)
		case "exp":
			return jsonDate(val, &c.Expiry, &a.exp)
		case "iat":
			return jsonDate(val, &c.IssuedAt, &a.iat)
		case "nbf":
			return jsonDate(val, &c.NotBefore, &a.nbf)
		case "cnf":
			return jsonConfirmation(val, &c.Confirmation)
		}
		// Any other claim is kept raw for the application (Claims.Extra);
		// only tokens that carry one pay for the map.
		if c.Extra == nil {
			c.Extra = make(map[string]json.RawMessage, 2)
		}
		c.Extra[name] = json.RawMessage(val)
		return nil
	})
	if err != nil {
		return nil, invalid("claims: %v", err)
	}
	return c, nil
}

// validJSON reports whether b is valid UTF-8 and one valid JSON value.
func validJSON(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

// jsonString sets *dst to the JSON string val; null leaves *dst as it is
// (as encoding/json does). An unescaped string is a substring of val.
func jsonString(val string, dst *string) error {
	switch {
	case val == "null":
		return nil
	case val[0] != '"':
		return errors.New("want a string")
	case strings.IndexByte(val, '\\') < 0:
		*dst = val[1 : len(val)-1]
		return nil
	}
	return json.Unmarshal([]byte(val), dst)
}

// jsonAudience reads aud: one string or an array of strings (RFC 7519
// section 4.1.3), as jwt.Audience does.
func jsonAudience(val string, dst *jwt.Audience) error {
	switch val[0] {
	case '"':
		var s string
		if err := jsonString(val, &s); err != nil {
			return err
		}
		*dst = jwt.Audience{s}
		return nil
	case '[':
		aud := make(jwt.Audience, 0, 2)
		err := jsonArray(val, func(e string) error {
			if e[0] != '"' {
				return errors.New("aud: want strings")
			}
			var s string
			if err := jsonString(e, &s); err != nil {
				return err
			}
			aud = append(aud, s)
			return nil
		})
		*dst = aud
		return err
	}
	return errors.New("aud: want a string or an array of strings")
}

// jsonConfirmation reads cnf (RFC 7800 section 3.1): an object whose jkt,
// if present, is a string. Members of other confirmation methods are kept
// out of Confirmation but still make it non-nil, so a token bound some
// other way is not taken for a bearer token.
func jsonConfirmation(val string, dst **Confirmation) error {
	if val == "null" {
		return nil
	}
	if val[0] != '{' {
		return errors.New("cnf: want an object")
	}
	c := new(Confirmation)
	seen := false
	err := jsonObject(val, func(name, v string) error {
		if name != "jkt" {
			return nil
		}
		if seen {
			return errors.New("cnf: duplicate jkt")
		}
		seen = true
		return jsonString(v, &c.JKT)
	})
	*dst = c
	return err
}

// jsonDate reads a NumericDate with go-jose's own parser (which also
// refuses values that would overflow); null leaves it unset.
func jsonDate(val string, dst **jwt.NumericDate, d *jwt.NumericDate) error {
	if val == "null" {
		return nil
	}
	if err := d.UnmarshalJSON([]byte(val)); err != nil {
		return err
	}
	*dst = d
	return nil
}

// jsonObject calls fn with the name and the raw value (without surrounding
// white space) of each member of the JSON object s, in order. s must have
// passed validJSON: the scan relies on that for its bounds. A member name
// holding an escape is refused.
func jsonObject(s string, fn func(name, val string) error) error {
	i := skipSpace(s, 0)
	if s[i] != '{' {
		return errors.New("not a JSON object")
	}
	i = skipSpace(s, i+1)
	if s[i] == '}' {
		return nil
	}
	for {
		j := i + 1 // s[i] is the opening quote of a name
		for s[j] != '"' {
			if s[j] == '\\' {
				return errors.New("escaped member name")
			}
			j++
		}
		name := s[i+1 : j]
		i = skipSpace(s, j+1) // the colon
		i = skipSpace(s, i+1)
		end := skipValue(s, i)
		if err := fn(name, s[i:end]); err != nil {
			return err
		}
		i = skipSpace(s, end)
		if s[i] == '}' {
			return nil
		}
		i = skipSpace(s, i+1) // past the comma
	}
}

// jsonArray calls fn with each element of the JSON array s (validated as
// part of a valid document).
func jsonArray(s string, fn func(val string) error) error {
	i := skipSpace(s, 1)
	if s[i] == ']' {
		return nil
	}
	for {
		end := skipValue(s, i)
		if err := fn(s[i:end]); err != nil {
			return err
		}
		i = skipSpace(s, end)
		if s[i] == ']' {
			return nil
		}
		i = skipSpace(s, i+1)
	}
}

// skipValue returns the end of the JSON value that starts at s[i], in a
// valid document.
func skipValue(s string, i int) int {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '"':
			for i++; s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object or array
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}
