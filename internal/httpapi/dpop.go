package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/latchauth/latch/bearer"
)

// Error codes of DPoP (RFC 9449 sections 5 and 8).
const (
	CodeInvalidDPoPProof = "invalid_dpop_proof"
	CodeUseDPoPNonce     = "use_dpop_nonce"
)

// dpopProof checks the DPoP proof of a token request (the token endpoint,
// /v1/login, /v1/signup: RFC 9449 section 4.3, no access token so no ath)
// and returns it, or the zero Proof (no JKT, no IssuedAt) when the request
// has no DPoP header. htu is the issuer URL and the request path, as clients address
// Latch. A proof that fails is invalid_dpop_proof (section 5); one without
// the current server nonce is use_dpop_nonce with a DPoP-Nonce header
// (section 8).
func (s *Server) dpopProof(w http.ResponseWriter, r *http.Request) (bearer.Proof, error) {
	proofs := r.Header.Values("DPoP")
	switch len(proofs) {
	case 0:
		return bearer.Proof{}, nil
	case 1:
	default:
		return bearer.Proof{}, apiError(http.StatusBadRequest, CodeInvalidDPoPProof, "send one DPoP header")
	}
	htu := strings.TrimSuffix(s.cfg.Issuer, "/") + r.URL.EscapedPath()
	p, err := s.dpop.Check(proofs[0], r.Method, htu, "")
	switch {
	case err == nil:
		return *p, nil
	case errors.Is(err, bearer.ErrUseNonce):
		w.Header().Set("DPoP-Nonce", s.dpop.Nonce())
		return bearer.Proof{}, &Error{Status: http.StatusBadRequest, Code: CodeUseDPoPNonce, Message: "the DPoP proof must carry the nonce of the DPoP-Nonce header", Err: err}
	case errors.Is(err, bearer.ErrInvalidProof):
		return bearer.Proof{}, &Error{Status: http.StatusBadRequest, Code: CodeInvalidDPoPProof, Message: "the DPoP proof is invalid", Err: err}
	case errors.Is(err, bearer.ErrReplayCacheFull):
		return bearer.Proof{}, &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable, Message: "cannot check DPoP proofs now; retry shortly", Err: err, RetryAfter: 5 * time.Second}
	}
	return bearer.Proof{}, err
}

// nonces are stateless server nonces (RFC 9449 section 8): the number of
// the current period and a MAC of it, so any node holding the key accepts
// another's nonce, and a nonce is good for one to two periods.
type nonces struct {
	key    []byte
	period time.Duration
	now    func() time.Time
}

const noncePeriod = 5 * time.Minute

func (n *nonces) make(slot int64) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(slot))
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("latch dpop nonce"))
	m.Write(b[:8])
	copy(b[8:], m.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (n *nonces) slot() int64 { return n.now().UnixNano() / int64(n.period) }

// Nonce implements bearer.NonceSource.
func (n *nonces) Nonce() string { return n.make(n.slot()) }

// Valid implements bearer.NonceSource: a nonce of this period or the one
// before.
func (n *nonces) Valid(nonce string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(nonce)
	if err != nil || len(b) != 24 {
		return false
	}
	slot := int64(binary.BigEndian.Uint64(b[:8]))
	if cur := n.slot(); slot != cur && slot != cur-1 {
		return false
	}
	return hmac.Equal([]byte(n.make(slot)), []byte(nonce))
}
