package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DPoPKey is a test client's DPoP key (ES256), signing RFC 9449 proofs
// with go-jose, independently of the code under test.
type DPoPKey struct {
	signer jose.Signer
	// JKT is the key's RFC 7638 thumbprint, as cnf.jkt names it.
	JKT string
	// Now dates the proofs; default time.Now.
	Now func() time.Time
}

var proofSeq atomic.Int64

// NewDPoPKey returns a fresh key.
func NewDPoPKey(t testing.TB) *DPoPKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &DPoPKey{signer: s, JKT: base64.RawURLEncoding.EncodeToString(tp), Now: time.Now}
}

// Proof signs a proof for method and htu; accessToken, when set, is bound
// by ath, and nonce, when set, is included.
func (k *DPoPKey) Proof(method, htu, accessToken, nonce string) string {
	c := map[string]any{"jti": "t" + strconv.FormatInt(proofSeq.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		"htm": method, "htu": htu, "iat": k.Now().Unix()}
	if accessToken != "" {
		s := sha256.Sum256([]byte(accessToken))
		c["ath"] = base64.RawURLEncoding.EncodeToString(s[:])
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	p, err := jwt.Signed(k.signer).Claims(c).Serialize()
	if err != nil {
		panic(err)
	}
	return p
}
