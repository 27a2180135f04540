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
	enc, err := h.Hash(ctx, "ada@example.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string with the parameters", enc)
	}
	if enc2, _ := h.Hash(ctx, "ada@example.com", "correct horse battery"); enc2 == enc {
		t.Fatal("two hashes of one password are equal: salt missing")
	}
	if err := h.Verify(ctx, "ada@example.com", "correct horse battery", enc); err != nil {
		t.Fatalf("Verify(right) = %v", err)
	}
	for _, wrong := range []string{"correct horse batter", "Correct horse battery", "", strings.Repeat("x", MaxBytes+1)} {
		if err := h.Verify(ctx, "ada@example.com", wrong, enc); !errors.Is(err, ErrMismatch) {
			t.Fatalf("Verify(%.10q) = %v, want ErrMismatch", wrong, err)
		}
	}
	if err := h.Verify(ctx, "ada@example.com", "anything at all", ""); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify against the dummy = %v, want ErrMismatch", err)
	}
}

func TestUnknownAccountCostsAHash(t *testing.T) {
	// The dummy path must run Argon2id like the real one. Compare the
	// minimum of several runs, interleaved, so both paths see the same
	// load from other test packages and scheduling noise does not decide.
	h, _ := NewHasher(Params{MemoryKiB: 16 * 1024, Iterations: 2, Parallelism: 1}, 1)
	ctx := context.Background()
	enc, _ := h.Hash(ctx, "ada@example.com", "correct horse battery")
	timed := func(fn func()) time.Duration {
		start := time.Now()
		fn()
		return time.Since(start)
	}
	real, dummy := time.Hour, time.Hour
	for range 7 {
		real = min(real, timed(func() { h.Verify(ctx, "ada@example.com", "wrong password!", enc) }))
		dummy = min(dummy, timed(func() { h.Verify(ctx, "ada@example.com", "wrong password!", "") }))
	}
	if dummy < real/2 {
		t.Fatalf("unknown account took %s, known %s: timing reveals accounts", dummy, real)
	}
}

func TestNeedsRehash(t *testing.T) {
	ctx := context.Background()
	old, _ := NewHasher(fast, 1)
	enc, _ := old.Hash(ctx, "ada@example.com", "correct horse battery")
	if old.NeedsRehash(enc) {
		t.Fatal("hash with current parameters needs rehash")
	}
	stronger, _ := NewHasher(Params{MemoryKiB: 16 * 1024, Iterations: 1, Parallelism: 1}, 1)
	if !stronger.NeedsRehash(enc) {
		t.Fatal("hash with weaker parameters does not need rehash")
	}
	if err := stronger.Verify(ctx, "ada@example.com", "correct horse battery", enc); err != nil {
		t.Fatalf("old hash no longer verifies: %v", err)
	}
}

func TestBusy(t *testing.T) {
	h, _ := NewHasher(fast, 1)
	h.slots <- struct{}{} // the only slot is taken
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(ctx, "ada@example.com", "correct horse battery"); !errors.Is(err, ErrBusy) {
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

// heldHasher returns a Hasher whose hashes each wait, once started, for a
// value on release; entered receives one value as each starts.
func heldHasher(t *testing.T, concurrency int) (h *Hasher, entered, release chan struct{}) {
	t.Helper()
	h, err := NewHasher(fast, concurrency)
	if err != nil {
		t.Fatal(err)
	}
	entered, release = make(chan struct{}, 1000), make(chan struct{})
	kdf := h.kdf
	h.kdf = func(pw, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		entered <- struct{}{}
		<-release
		return kdf(pw, salt, time, memory, threads, keyLen)
	}
	return h, entered, release
}

// TestPerKeyLimit: one key (an account) flooding the hasher holds at most
// MaxPerKey slots, so another key's hash starts at once instead of waiting
// out MaxWait for ErrBusy; the flood's own extra callers wait, and give up
// with ErrBusy when their context ends. docs/security.md DOS-08.
func TestPerKeyLimit(t *testing.T) {
	const flood = 10
	tests := []struct {
		name string
		// other runs, during the flood, a hash that must start (want nil)
		// or fail (want ErrBusy) within 1s.
		otherKey string
		want     error
	}{
		{"another account starts at once", "bob@example.com", nil},
		{"the flooding account waits, then is busy", "ada@example.com", ErrBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, entered, release := heldHasher(t, 4)
			done := make(chan error, flood)
			for range flood {
				go func() { done <- h.Verify(context.Background(), "ada@example.com", "a guess at it", "") }()
			}
			for range MaxPerKey {
				<-entered
			}
			if n := len(h.slots); n != MaxPerKey {
				t.Fatalf("%d hashing slots taken by one key's flood, want %d", n, MaxPerKey)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			other := make(chan error, 1)
			go func() { _, err := h.Hash(ctx, tt.otherKey, "correct horse battery"); other <- err }()
			var err error
			if tt.want == nil {
				select {
				case <-entered:
				case <-ctx.Done():
					t.Errorf("with %d hashes of one key queued, another key's hash did not start within 1s", flood)
				}
				close(release)
				err = <-other
			} else {
				err = <-other // the flood still holds its slots
				close(release)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("hash of %s during the flood = %v, want %v", tt.otherKey, err, tt.want)
			}
			for range flood {
				// Those that waited out MaxWait on a slow machine are busy.
				if err := <-done; !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrBusy) {
					t.Fatalf("flood: %v, want ErrMismatch (or ErrBusy after MaxWait)", err)
				}
			}
			if len(h.keys) != 0 || len(h.slots) != 0 {
				t.Fatalf("after the flood %d keys and %d slots are held, want none", len(h.keys), len(h.slots))
			}
		})
	}
}

func TestSlots(t *testing.T) {
	owasp := OWASP.MemoryKiB
	tests := []struct {
		budget  uint64
		procs   int
		want    int
		wantErr bool
	}{
		{0, 2, 2, false},                   // default: one per core
		{0, 0, 1, false},                   // at least one
		{uint64(owasp), 8, 1, false},       // exactly one hash
		{64 * 1024, 2, 2, false},           // 3 fit, 2 cores
		{64 * 1024, 8, 3, false},           // 3 fit, 8 cores
		{2*uint64(owasp) - 1, 8, 1, false}, // rounded down
		{uint64(owasp) - 1, 8, 0, true},    // not even one
		{1 << 40, 16, 16, false},           // cores bound it
	}
	for _, tt := range tests {
		got, err := Slots(OWASP, tt.budget, tt.procs)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Slots(OWASP, %d KiB, %d procs) = %d, %v; want %d, error %v", tt.budget, tt.procs, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestPerKeyIsAtMostHalf: one key never holds every slot of a hasher with
// two or more, so on a 2-core node another account's login still starts.
func TestPerKeyIsAtMostHalf(t *testing.T) {
	for _, tt := range []struct{ slots, perKey int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {16, 2}} {
		h, err := NewHasher(fast, tt.slots)
		if err != nil {
			t.Fatal(err)
		}
		if h.Slots() != tt.slots || h.perKey != tt.perKey {
			t.Errorf("NewHasher(%d): %d slots, %d per key; want %d, %d", tt.slots, h.Slots(), h.perKey, tt.slots, tt.perKey)
		}
	}
}

// TestMemoryLimit: the limit holds every slot's block and as many
// finished ones awaiting collection, plus the base.
func TestMemoryLimit(t *testing.T) {
	if got, want := MemoryLimit(OWASP, 2), int64(4*19<<20+HeapBase); got != want {
		t.Fatalf("MemoryLimit(OWASP, 2) = %d, want %d", got, want)
	}
}

// TestOneSlot: a 1-core node has one slot, and its one account may hold it
// (perKey is at least one): a user logs in, and while one account floods
// the hasher another's login still gets the slot in turn.
func TestOneSlot(t *testing.T) {
	h, err := NewHasher(fast, 1)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash(context.Background(), "ada@example.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(context.Background(), "ada@example.com", "correct horse battery", enc); err != nil {
		t.Fatalf("the only slot's login: %v", err)
	}
	const flood = 20
	done := make(chan error, flood)
	for range flood {
		go func() { done <- h.Verify(context.Background(), "eve@example.com", "a guess", enc) }()
	}
	if err := h.Verify(context.Background(), "ada@example.com", "correct horse battery", enc); err != nil {
		t.Fatalf("another account's login during the flood: %v", err)
	}
	for range flood {
		if err := <-done; !errors.Is(err, ErrMismatch) {
			t.Fatalf("flood: %v, want ErrMismatch", err)
		}
	}
}
