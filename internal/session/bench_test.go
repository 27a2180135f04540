package session_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// BenchmarkRefresh measures refresh (rotate, sign a new access token) on
// SQLite: each parallel worker follows the rotation of its own session, as
// real clients do.
func BenchmarkRefresh(b *testing.B) {
	env := testenv.New(b, testenv.Options{RealClock: true})
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		b.StopTimer()
		tok := env.Login(b, fmt.Sprintf("u%d@example.com", n.Add(1)))
		b.StartTimer()
		rt := tok.RefreshToken
		for pb.Next() {
			got, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: rt, Client: env.Client})
			if err != nil {
				b.Fatal(err)
			}
			rt = got.RefreshToken
		}
	})
}

// BenchmarkLogin measures a password login with the OWASP Argon2id
// parameters (19 MiB, t=2, p=1), next to the bare hash it is bound by.
func BenchmarkLogin(b *testing.B) {
	env := testenv.New(b, testenv.Options{RealClock: true, Argon2: password.OWASP})
	env.Login(b, "u@example.com")
	b.Run("login", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "u@example.com", Password: testenv.Password, Client: env.Client}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-argon2id", func(b *testing.B) {
		h, _ := password.NewHasher(password.OWASP, 4)
		enc, _ := h.Hash(ctx, testenv.Password)
		b.ResetTimer()
		for b.Loop() {
			h.Verify(ctx, testenv.Password, enc)
		}
	})
}
