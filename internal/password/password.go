// Package password hashes and checks user passwords with Argon2id.
//
// Hashes are PHC strings ($argon2id$v=19$m=...,t=...,p=...$salt$hash) so the
// parameters travel with each hash and can be raised without breaking old
// ones; NeedsRehash tells the caller when a stored hash is weaker than the
// current policy.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id cost parameters.
type Params struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
}

// OWASP is the OWASP Password Storage Cheat Sheet's minimum for Argon2id:
// 19 MiB, 2 iterations, 1 lane.
var OWASP = Params{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1}

// Validate reports parameters too weak to use.
func (p Params) Validate() error {
	switch {
	case p.MemoryKiB < 8*1024:
		return errors.New("password: argon2 memory must be at least 8192 KiB")
	case p.Iterations < 1:
		return errors.New("password: argon2 iterations must be at least 1")
	case p.Parallelism < 1:
		return errors.New("password: argon2 parallelism must be at least 1")
	}
	return nil
}

// Policy limits, after NIST SP 800-63B section 5.1.1.2: a minimum length,
// no composition rules, at least 64 characters accepted, a blocklist of
// common passwords. MaxBytes is checked before hashing so a huge password
// cannot be used to burn CPU.
const (
	MinRunes = 8
	MaxRunes = 256
	MaxBytes = 1024
)

var (
	// ErrTooShort, ErrTooLong, ErrCommon and ErrInvalid are policy failures
	// reported to the user.
	ErrTooShort = fmt.Errorf("password: must be at least %d characters", MinRunes)
	ErrTooLong  = fmt.Errorf("password: must be at most %d characters", MaxRunes)
	ErrCommon   = errors.New("password: too common; choose another")
	ErrInvalid  = errors.New("password: must be valid UTF-8 without control characters")
	// ErrMismatch reports a wrong password.
	ErrMismatch = errors.New("password: mismatch")
	// ErrBusy reports that too many hashes are already running.
	ErrBusy = errors.New("password: too many concurrent hash operations")
)

// IsPolicy reports whether err is one of CheckPolicy's failures.
func IsPolicy(err error) bool {
	return errors.Is(err, ErrTooShort) || errors.Is(err, ErrTooLong) || errors.Is(err, ErrCommon) || errors.Is(err, ErrInvalid)
}

// CheckPolicy reports whether pw may be set as a new password for email.
func CheckPolicy(pw, email string) error {
	if err := checkLength(pw); err != nil {
		return err
	}
	for _, r := range pw {
		if r < 0x20 || r == 0x7f {
			return ErrInvalid
		}
	}
	lower := strings.ToLower(pw)
	if _, ok := common[lower]; ok || (email != "" && (lower == email || lower == localPart(email))) {
		return ErrCommon
	}
	return nil
}

func checkLength(pw string) error {
	if len(pw) > MaxBytes {
		return ErrTooLong
	}
	if !utf8.ValidString(pw) {
		return ErrInvalid
	}
	switch n := utf8.RuneCountInString(pw); {
	case n < MinRunes:
		return ErrTooShort
	case n > MaxRunes:
		return ErrTooLong
	}
	return nil
}

func localPart(email string) string {
	if i := strings.LastIndexByte(email, '@'); i > 0 {
		return email[:i]
	}
	return email
}

// Hasher hashes and verifies passwords with fixed parameters and bounds how
// many hashes run at once, since each takes MemoryKiB of memory: at most
// concurrency in all and at most [MaxPerKey] for one key (an account), so
// that one account flooding the server cannot take every slot and make
// other users' logins wait out [MaxWait]. It is safe for concurrent use.
type Hasher struct {
	params Params
	slots  chan struct{} // one token per running hash; its capacity is Slots
	dummy  string

	perKey int
	mu     sync.Mutex
	keys   map[string]*keySlots // only keys with a hash running or waiting

	// kdf is argon2.IDKey; tests replace it to hold a slot.
	kdf func(pw, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte
}

// keySlots bounds the hashes of one key; refs counts the callers holding or
// waiting for a slot, so that the entry goes once none is left.
type keySlots struct {
	slots chan struct{}
	refs  int
}

// MaxWait bounds how long a request waits for a free hashing slot (its
// key's, then a global one) before it gets ErrBusy (a 503): a login flood
// queues briefly, then sheds load instead of piling up memory.
const MaxWait = 3 * time.Second

// MaxPerKey is how many hashes of one key run or wait for a global slot at
// once; further callers with that key wait for one of them to finish. Two
// lets a user's login and password change run side by side, on a hasher of
// four slots or more (NewHasher gives a key at most half of them).
const MaxPerKey = 2

// Slots returns how many hashes with p may run at once within budgetKiB of
// Argon2id memory on procs cores: as many as the budget holds, but no more
// than procs, since a hash is CPU-bound and a hash past the cores only
// waits its turn while holding its memory (and delays the others). A budget
// smaller than one hash is an error; 0 means one hash per core.
func Slots(p Params, budgetKiB uint64, procs int) (int, error) {
	procs = max(1, procs)
	if budgetKiB == 0 {
		return procs, nil
	}
	if budgetKiB < uint64(p.MemoryKiB) {
		return 0, fmt.Errorf("password: a memory budget of %d KiB does not hold one Argon2id hash of %d KiB", budgetKiB, p.MemoryKiB)
	}
	return int(min(budgetKiB/uint64(p.MemoryKiB), uint64(procs))), nil
}

// HeapBase is the Go memory a server needs beside its running password
// hashes, in MemoryLimit: idle, a node's heap, stacks and runtime metadata
// are about 15 MiB; the rest is room for caches and buffers under load.
const HeapBase = 32 << 20

// MemoryLimit is the Go runtime soft memory limit (debug.SetMemoryLimit)
// for a process running at most slots hashes with p at once: twice their
// memory plus HeapBase. Each hash allocates p.MemoryKiB (x/crypto/argon2
// offers no way to reuse it) that is garbage once the hash returns. With
// GOGC alone the heap grows to twice what is live before a collection
// frees those blocks (a burst of logins took a node from 45 to over 200
// MiB of RSS). Under the limit the collector runs as the blocks die, which
// is cheap, as they hold no pointers. Twice, not once: while a collection
// runs, the hashes finishing meanwhile have started their successors, so
// the heap holds up to two blocks a slot; a limit of one block a slot
// (measured: 3,000 page faults a login against 150) made the runtime
// return blocks to the OS between hashes, and each new one was faulted in
// and zeroed by the kernel again (46 against 31 ms of CPU a login in one
// run of BenchmarkLoginHTTP).
func MemoryLimit(p Params, slots int) int64 {
	return 2*int64(max(1, slots))*int64(p.MemoryKiB)<<10 + HeapBase
}

// NewHasher returns a Hasher allowing at most concurrency hashes at once,
// and at most MaxPerKey for one key, but never more than half of them
// (and at least one), so that one key cannot take every slot of a small
// node: one of a 2-core node's two.
func NewHasher(p Params, concurrency int) (*Hasher, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if concurrency < 1 {
		concurrency = 1
	}
	h := &Hasher{params: p, slots: make(chan struct{}, concurrency), perKey: min(MaxPerKey, max(1, concurrency/2)),
		keys: map[string]*keySlots{}, kdf: argon2.IDKey}
	// A hash of a random password, verified when the account does not exist
	// so both paths cost one Argon2id run.
	var pw [32]byte
	rand.Read(pw[:])
	h.dummy = h.hash(base64.StdEncoding.EncodeToString(pw[:]))
	return h, nil
}

// Params returns the hasher's parameters.
func (h *Hasher) Params() Params { return h.params }

// Slots returns how many hashes run at once at most.
func (h *Hasher) Slots() int { return cap(h.slots) }

// Hash returns the PHC string for pw. key names whose hash this is (the
// account's email) for the per-key limit; "" is limited only globally.
func (h *Hasher) Hash(ctx context.Context, key, pw string) (string, error) {
	if err := checkLength(pw); err != nil {
		return "", err
	}
	release, err := h.acquire(ctx, key)
	if err != nil {
		return "", err
	}
	defer release()
	return h.hash(pw), nil
}

func (h *Hasher) hash(pw string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := h.kdf([]byte(pw), salt, h.params.Iterations, h.params.MemoryKiB, h.params.Parallelism, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.params.MemoryKiB, h.params.Iterations, h.params.Parallelism,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// Verify checks pw against encoded; key is as for [Hasher.Hash]. An empty
// encoded (unknown account) is checked against a dummy hash so the answer
// takes as long as a real one; it always returns ErrMismatch.
func (h *Hasher) Verify(ctx context.Context, key, pw, encoded string) error {
	if len(pw) > MaxBytes {
		return ErrMismatch
	}
	release, err := h.acquire(ctx, key)
	if err != nil {
		return err
	}
	defer release()
	unknown := encoded == ""
	if unknown {
		encoded = h.dummy
	}
	p, salt, want, err := decode(encoded)
	if err != nil {
		return err
	}
	got := h.kdf([]byte(pw), salt, p.Iterations, p.MemoryKiB, p.Parallelism, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 || unknown {
		return ErrMismatch
	}
	return nil
}

// NeedsRehash reports whether encoded was made with other parameters than
// the hasher's.
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, _, _, err := decode(encoded)
	return err != nil || p != h.params
}

// acquire takes a slot of key, then a global slot, waiting at most MaxWait
// in all, and returns the function that gives both back.
func (h *Hasher) acquire(ctx context.Context, key string) (release func(), err error) {
	t := time.NewTimer(MaxWait)
	defer t.Stop()
	var ks *keySlots
	if key != "" {
		ks = h.enter(key)
		if err := wait(ctx, t.C, ks.slots); err != nil {
			h.leave(key, ks, false)
			return nil, err
		}
	}
	if err := wait(ctx, t.C, h.slots); err != nil {
		if ks != nil {
			h.leave(key, ks, true)
		}
		return nil, err
	}
	return func() {
		<-h.slots
		if ks != nil {
			h.leave(key, ks, true)
		}
	}, nil
}

// wait puts a token in slots, giving up with ErrBusy when expired fires or
// ctx ends.
func wait(ctx context.Context, expired <-chan time.Time, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case slots <- struct{}{}:
		return nil
	case <-expired:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
}

// enter returns key's slots, counting the caller in.
func (h *Hasher) enter(key string) *keySlots {
	h.mu.Lock()
	defer h.mu.Unlock()
	ks := h.keys[key]
	if ks == nil {
		ks = &keySlots{slots: make(chan struct{}, h.perKey)}
		h.keys[key] = ks
	}
	ks.refs++
	return ks
}

// leave counts the caller out of key's slots, giving back its slot if it
// held one, and forgets the key when nobody holds or waits for it.
func (h *Hasher) leave(key string, ks *keySlots, held bool) {
	if held {
		<-ks.slots
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ks.refs--; ks.refs == 0 {
		delete(h.keys, key)
	}
}

func decode(s string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("password: unsupported hash format")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, errors.New("password: unsupported argon2 version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Iterations, &p.Parallelism); err != nil {
		return p, nil, nil, fmt.Errorf("password: bad parameters: %w", err)
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return p, nil, nil, fmt.Errorf("password: bad salt: %w", err)
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, errors.New("password: bad hash")
	}
	return p, salt, key, nil
}
