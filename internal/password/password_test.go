package password

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

var fast = Params{MemoryKiB: 8 * 1024, Iterations: 1, Parallelism: 1}

func TestCheckPolicy(t *testing.T) {
	tests := []struct {
		name, pw string
		want     error
	}{
		{"ok", "correct horse battery", nil},
		{"eight characters", "abcdefgh", nil},
		{"64 characters", strings.Repeat("x", 64), nil},
		{"unicode counts runes", "пароль-ок", nil},
		{"seven characters", "abcdefg", ErrTooShort},
		{"four emoji are four characters", "🔑🔑🔑🔑", ErrTooShort},
		{"too many characters", strings.Repeat("x", MaxRunes+1), ErrTooLong},
		{"too many bytes", strings.Repeat("é", MaxBytes/2+1), ErrTooLong},
		{"common", "Password123", ErrCommon},
		{"the email", "ada@example.com", ErrCommon},
		{"the email's local part", "ada.lovelace", ErrCommon},
		{"control character", "abc\x00defgh", ErrInvalid},
		{"invalid UTF-8", "abcdefgh\xff", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			email := "ada@example.com"
			if tt.name == "the email's local part" {
				email = "ada.lovelace@example.com"
			}
			if err := CheckPolicy(tt.pw, email); !errors.Is(err, tt.want) {
				t.Fatalf("CheckPolicy(%q) = %v, want %v", tt.pw, err, tt.want)
			}
		})
	}
}

func TestHashVerify(t *testing.T) {
	h, err := NewHasher(fast, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string with the parameters", enc)
	}
	if enc2, _ := h.Hash(ctx, "correct horse battery"); enc2 == enc {
		t.Fatal("two hashes of one password are equal: salt missing")
	}
	if err := h.Verify(ctx, "correct horse battery", enc); err != nil {
		t.Fatalf("Verify(right) = %v", err)
	}
	for _, wrong := range []string{"correct horse batter", "Correct horse battery", "", strings.Repeat("x", MaxBytes+1)} {
		if err := h.Verify(ctx, wrong, enc); !errors.Is(err, ErrMismatch) {
			t.Fatalf("Verify(%.10q) = %v, want ErrMismatch", wrong, err)
		}
	}
	if err := h.Verify(ctx, "anything at all", ""); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify against the dummy = %v, want ErrMismatch", err)
	}
}

func TestUnknownAccountCostsAHash(t *testing.T) {
	// The dummy path must run Argon2id like the real one; compare the
	// minimum of a few runs so scheduling noise does not decide.
	h, _ := NewHasher(Params{MemoryKiB: 16 * 1024, Iterations: 2, Parallelism: 1}, 1)
	ctx := context.Background()
	enc, _ := h.Hash(ctx, "correct horse battery")
	minOf := func(fn func()) time.Duration {
		best := time.Hour
		for range 5 {
			start := time.Now()
			fn()
			best = min(best, time.Since(start))
		}
		return best
	}
	real := minOf(func() { h.Verify(ctx, "wrong password!", enc) })
	dummy := minOf(func() { h.Verify(ctx, "wrong password!", "") })
	if dummy < real/2 {
		t.Fatalf("unknown account took %s, known %s: timing reveals accounts", dummy, real)
	}
}

func TestNeedsRehash(t *testing.T) {
	ctx := context.Background()
	old, _ := NewHasher(fast, 1)
	enc, _ := old.Hash(ctx, "correct horse battery")
	if old.NeedsRehash(enc) {
		t.Fatal("hash with current parameters needs rehash")
	}
	stronger, _ := NewHasher(Params{MemoryKiB: 16 * 1024, Iterations: 1, Parallelism: 1}, 1)
	if !stronger.NeedsRehash(enc) {
		t.Fatal("hash with weaker parameters does not need rehash")
	}
	if err := stronger.Verify(ctx, "correct horse battery", enc); err != nil {
		t.Fatalf("old hash no longer verifies: %v", err)
	}
}

func TestBusy(t *testing.T) {
	h, _ := NewHasher(fast, 1)
	h.slots <- struct{}{} // the only slot is taken
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(ctx, "correct horse battery"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash with no free slot = %v, want ErrBusy", err)
	}
}

func TestParamsValidate(t *testing.T) {
	if err := OWASP.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Params{{MemoryKiB: 1024, Iterations: 2, Parallelism: 1}, {MemoryKiB: 19456, Parallelism: 1}, {MemoryKiB: 19456, Iterations: 2}} {
		if p.Validate() == nil {
			t.Errorf("Validate(%+v) accepted weak parameters", p)
		}
	}
}
