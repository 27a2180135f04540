package session_test

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// BenchmarkRefresh measures refresh at the storage layer (rotate, sign a
// new access token; no HTTP) on SQLite and, when LATCH_TEST_POSTGRES names
// a server, on PostgreSQL: each parallel worker follows the rotation of
// its own session, as real clients do.
//
//	LATCH_TEST_POSTGRES=… go test -run '^$' -bench 'Refresh$' -cpu 2 ./internal/session
func BenchmarkRefresh(b *testing.B) {
	b.Run("store=sqlite", func(b *testing.B) { benchRefresh(b, testenv.Options{RealClock: true}) })
	b.Run("store=postgres", func(b *testing.B) {
		if os.Getenv(pgtest.Env) == "" {
			b.Skip(pgtest.Env + " is not set")
		}
		b.SetParallelism(8) // 16 workers on 2 cores: the database round trips leave the CPU idle otherwise
		benchRefresh(b, testenv.Options{RealClock: true, Store: func(t testing.TB) testenv.Store { return pgtest.New(t) }})
	})
}

func benchRefresh(b *testing.B, o testenv.Options) {
	env := testenv.New(b, o)
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

// BenchmarkLogin measures password logins with the OWASP Argon2id
// parameters (19 MiB, t=2, p=1) next to the bare hash they are bound by,
// both with the hasher's slots latch serve gives it (password.Slots: one
// per core) and loginClients concurrent callers. Twice as many callers as
// slots keep every slot hashing while other logins are in the database;
// their hashes/s ratio is what a login adds to its hash (the HTTP
// equivalent, with both in one run, is internal/httpapi's
// BenchmarkLoginHTTP):
//
//	go test -run '^$' -bench Login -count 5 ./internal/session
func BenchmarkLogin(b *testing.B) {
	slots, _ := password.Slots(password.OWASP, 0, runtime.GOMAXPROCS(0))
	loginClients := 2 * slots
	env := testenv.New(b, testenv.Options{RealClock: true, Argon2: password.OWASP, HashSlots: slots})
	emails := make([]string, loginClients)
	for i := range emails {
		emails[i] = fmt.Sprintf("u%d@example.com", i)
		env.Login(b, emails[i])
	}
	run := func(b *testing.B, op func(i int) error) {
		var n atomic.Int64
		b.SetParallelism(max(1, loginClients/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)-1) % loginClients
			for pb.Next() {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "hashes/s")
	}
	b.Run("login", func(b *testing.B) {
		run(b, func(i int) error {
			_, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: emails[i], Password: testenv.Password, Client: env.Client})
			return err
		})
	})
	b.Run("bare-argon2id", func(b *testing.B) {
		h, _ := password.NewHasher(password.OWASP, slots)
		enc, _ := h.Hash(ctx, "", testenv.Password)
		run(b, func(int) error { return h.Verify(ctx, "", testenv.Password, enc) })
	})
}
