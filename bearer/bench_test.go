package bearer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
)

// Run: go test -run XXX -bench . -benchmem ./bearer
// BenchmarkVerify and BenchmarkEd25519Raw verify the same token, so their
// ratio is the overhead of parsing and checking over the signature itself.

// BenchmarkVerify is a full verification (the repeat-token cache off).
func BenchmarkVerify(b *testing.B) {
	f := newFakeIssuer(b)
	v := f.verifierWith(b, bearer.Config{CacheSize: -1})
	tok := f.good()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRepeat verifies a token seen before (the cache on, the
// default): exp, nbf and the feed are still checked.
func BenchmarkVerifyRepeat(b *testing.B) {
	f := newFakeIssuer(b)
	v := f.verifier(b)
	tok := f.good()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDPoPProofCheck is the proof check alone (DPoPChecker.Check of
// an ES256 proof with ath, the jti replay cache included), on proofs
// signed in advance; BenchmarkES256Raw is the bare signature check of the
// same kind of proof, and BenchmarkVerifyDPoP the whole of a DPoP request's
// token check (the token from the cache, then the proof).
func BenchmarkDPoPProofCheck(b *testing.B) {
	k := newDPoPKey(b, "ES256")
	d, err := bearer.NewDPoPChecker(bearer.DPoPConfig{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	const u = "https://api.example/v1/notes"
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = k.proof("GET", u, "the-token", now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.Check(proofs[i], "GET", u, "the-token"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyDPoP(b *testing.B) {
	f := newFakeIssuer(b)
	v := f.verifier(b)
	k := newDPoPKey(b, "ES256")
	tok := f.token(goodHeader, with(f.claims(), "cnf", map[string]string{"jkt": k.jkt}))
	const u = "https://api.example/v1/notes"
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = k.proof("GET", u, tok, now)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := v.VerifyDPoP(ctx, tok, proofs[i], "GET", u); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkES256Raw(b *testing.B) {
	k := newDPoPKey(b, "ES256")
	p := k.proof("GET", "https://api.example/v1/notes", "the-token", now)
	i := strings.LastIndexByte(p, '.')
	input := sha256.Sum256([]byte(p[:i]))
	sig, err := base64.RawURLEncoding.DecodeString(p[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := k.priv.Public().(*ecdsa.PublicKey)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.Verify(pub, input[:], r, s) {
			b.Fatal("bad signature")
		}
	}
}

// BenchmarkDPoPSign is a client's cost per request: signing one ES256
// proof (as the benchmarks above do in advance).
func BenchmarkDPoPSign(b *testing.B) {
	k := newDPoPKey(b, "ES256")
	b.ReportAllocs()
	for b.Loop() {
		k.proof("GET", "https://api.example/v1/notes", "the-token", now)
	}
}

func BenchmarkEd25519Raw(b *testing.B) {
	f := newFakeIssuer(b)
	tok := f.good()
	i := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:i])
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := f.ed.Public().(ed25519.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, input, sig) {
			b.Fatal("bad signature")
		}
	}
}

// BenchmarkVerifyRevokedSet100k verifies with the revocation feed on and
// 100,000 revoked sessions in the set (the token's own session is not one).
func BenchmarkVerifyRevokedSet100k(b *testing.B) {
	f := newFakeIssuer(b)
	sids := make([]string, 100_000)
	for i := range sids {
		sids[i] = fmt.Sprintf("sid-%d", i)
	}
	feed := fakeFeed(b, sids...)
	v, err := bearer.New(context.Background(), bearer.Config{
		Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"}, Now: func() time.Time { return now },
		Revocations: &bearer.FeedConfig{URL: feed.URL, ClientID: "rs", ClientSecret: "x", MaxStaleness: time.Hour},
		CacheSize:   -1, // full verifications, comparable with BenchmarkVerify
	})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	if n := v.Revoked(); n != 100_000 {
		b.Fatalf("revoked set holds %d", n)
	}
	tok := f.good()
	revoked := f.token(goodHeader, with(f.claims(), "sid", "sid-4242"))
	ctx := context.Background()
	b.Run("valid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("revoked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, revoked); err == nil {
				b.Fatal("accepted a revoked session")
			}
		}
	})
}

// fakeFeed serves entries for sids in the feed's poll format, and a stream
// that only says it is up to date.
func fakeFeed(t cleaner, sids ...string) *httptest.Server {
	entries := make([]map[string]any, len(sids))
	for i, sid := range sids {
		entries[i] = map[string]any{"sid": sid, "revoked_at": now.Unix(), "until": now.Add(time.Hour).Unix()}
	}
	page, _ := json.Marshal(map[string]any{"entries": entries, "cursor": fmt.Sprint(len(sids))})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "text/event-stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("event: ready\ndata: {\"time\":0}\n\n"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		w.Write(page)
	}))
	t.Cleanup(srv.Close)
	return srv
}
