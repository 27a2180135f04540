package bearer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
)

// TestStats checks that every Verify call is counted once, as accepted or
// by the cause of its rejection.
func TestStats(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	feed := fakeFeed(t, "revoked-sid")
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v, err := bearer.New(context.Background(), bearer.Config{
		Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"},
		Now: func() time.Time { return time.Unix(0, clock.Load()) },
		Revocations: &bearer.FeedConfig{URL: feed.URL, ClientID: "rs", ClientSecret: "x",
			MaxStaleness: 45 * time.Second, FailClosed: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	good := f.good()
	h, p, _ := split(good)
	_, _, otherSig := split(f.token(goodHeader, with(f.claims(), "sub", "user-2")))

	accept := func(tok string) {
		t.Helper()
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	reject := func(tok string) {
		t.Helper()
		if _, err := v.Verify(ctx, tok); err == nil {
			t.Fatal("Verify accepted a bad token")
		}
	}
	accept(good)
	accept(good) // a cache hit
	reject("not-a-jwt")
	reject(f.token(`{"alg":"EdDSA","kid":"ed","typ":"JWT"}`, f.claims()))
	reject(h + "." + p + "." + otherSig)
	clock.Add(int64(31 * time.Second)) // past MinRefreshInterval: an unknown kid refetches
	reject(f.token(`{"alg":"EdDSA","kid":"nope","typ":"at+jwt"}`, f.claims()))
	reject(f.token(goodHeader, with(f.claims(), "iss", "https://evil.example")))
	reject(f.token(goodHeader, with(f.claims(), "aud", []string{"other"})))
	reject(f.token(goodHeader, with(f.claims(), "exp", now.Add(-time.Hour).Unix())))
	reject(f.token(goodHeader, with(f.claims(), "sid", "revoked-sid")))

	st := v.Stats()
	want := bearer.Rejections{Malformed: 2, Signature: 2, Claims: 2, Expired: 1, Revoked: 1}
	if st.Verified != 2 || st.CacheHits != 1 || st.Rejected != want {
		t.Errorf("Stats = verified %d, cache hits %d, rejected %+v; want 2, 1, %+v", st.Verified, st.CacheHits, st.Rejected, want)
	}
	if st.Rejected.Total() != 8 {
		t.Errorf("Rejected.Total() = %d, want 8", st.Rejected.Total())
	}
	if st.Revoked != 1 {
		t.Errorf("Revoked = %d, want 1", st.Revoked)
	}
	if st.JWKSFetches < 2 { // the first, and the refetch for kid "nope"
		t.Errorf("JWKSFetches = %d, want at least 2", st.JWKSFetches)
	}

	// The feed goes quiet past MaxStaleness: fail closed, counted apart.
	clock.Add(int64(50 * time.Second)) // past MaxStaleness even if the stream spoke after the last step
	reject(good)
	st = v.Stats()
	if st.Rejected.FeedStale != 1 || st.FeedStaleness < 50*time.Second {
		t.Errorf("after 50s of silence: FeedStale %d, FeedStaleness %s; want 1, ≥50s", st.Rejected.FeedStale, st.FeedStaleness)
	}
}

// TestStatsJWKSFailures counts a refetch that failed and kept the old keys.
func TestStatsJWKSFailures(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v, err := bearer.New(context.Background(), bearer.Config{Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"},
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	f.down.Store(true)
	clock.Add(int64(time.Minute))
	if _, err := v.Verify(context.Background(), f.token(`{"alg":"EdDSA","kid":"unknown","typ":"at+jwt"}`, f.claims())); err == nil {
		t.Fatal("accepted an unknown kid")
	}
	if st := v.Stats(); st.JWKSFailures != 1 || st.JWKSFetches != 2 || st.Rejected.Signature != 1 {
		t.Errorf("Stats = %+v; want 1 JWKS failure of 2 fetches, 1 signature rejection", st)
	}
}
