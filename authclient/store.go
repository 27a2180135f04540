package authclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Saved is what a session persists: enough to resume it in another process.
// Times are the server's (see [Session.ClockOffset]).
//
// DeviceToken outlives the session: when a session ends (logout, or the
// server ends it) the store is left holding only Issuer, ClientID and
// DeviceToken, and the next [Client.Login] to that issuer sends the token,
// so the server knows the device and an attacker guessing the account's
// password cannot rate-limit it out (docs/design.md "Returning devices").
// A Saved without a RefreshToken holds no session: Load returns it with
// ErrNoSession.
type Saved struct {
	Issuer       string    `json:"issuer"`
	ClientID     string    `json:"client_id"`
	Email        string    `json:"email,omitempty"` // as typed at login; for display only
	SessionID    string    `json:"session_id"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Scope        string    `json:"scope,omitempty"`
	Lifetime     Duration  `json:"lifetime"`    // expires_in of the access token
	Expiry       time.Time `json:"expiry"`      // server time, conservative
	ReceivedAt   time.Time `json:"received_at"` // server time the tokens were received
	ClockOffset  Duration  `json:"clock_offset"`
	// DeviceToken is the server's device token (latch_dt_…) from the last
	// login; it is not a credential on its own.
	DeviceToken string `json:"device_token,omitempty"`
	// DPoPKey is the private key a DPoP-bound session proves (RFC 9449),
	// base64 PKCS #8, and DPoPAlg its algorithm; empty for a bearer
	// session. Whoever reads it can use the session: keep the store
	// private ([FileStore] writes mode 0600).
	DPoPKey string `json:"dpop_key,omitempty"`
	DPoPAlg string `json:"dpop_alg,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as Go syntax ("15m0s").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Store persists a session. A session calls Save after every rotation and
// before it hands the new access token to anyone, so a crash never loses
// the only valid refresh token. Implementations must be safe for
// concurrent use; a session never calls them concurrently itself.
type Store interface {
	// Load returns the saved session, or ErrNoSession. What was saved
	// without a RefreshToken (a device token kept after the session
	// ended) it may return alongside ErrNoSession.
	Load(ctx context.Context) (Saved, error)
	// Save replaces the saved session; it must be durable when it returns.
	Save(ctx context.Context, s Saved) error
	// Clear forgets everything saved. A session that ends saves its device
	// token alone instead, if it has one (see Saved).
	Clear(ctx context.Context) error
}

// MemoryStore keeps the session in memory: the default, for processes that
// log in each time they start. The zero value is ready to use.
type MemoryStore struct {
	mu sync.Mutex
	s  *Saved
}

// Load implements Store.
func (m *MemoryStore) Load(context.Context) (Saved, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.s == nil {
		return Saved{}, ErrNoSession
	}
	if m.s.RefreshToken == "" {
		return *m.s, ErrNoSession
	}
	return *m.s, nil
}

// Save implements Store.
func (m *MemoryStore) Save(_ context.Context, s Saved) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = &s
	return nil
}

// Clear implements Store.
func (m *MemoryStore) Clear(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = nil
	return nil
}

// FileStore keeps the session in a JSON file, readable by its owner only
// (0600, in a directory created 0700). Every Save writes a temporary file
// in the same directory, syncs it and renames it over the old one, so the
// file always holds either the old or the new session, never a torn mix.
// It is safe for concurrent use within one process.
type FileStore struct {
	path string
	mu   sync.Mutex
}

// NewFileStore returns a store at path.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// DefaultCredentialsPath is where the latch CLI keeps its session:
// credentials.json in the latch directory of the user's configuration
// directory ($XDG_CONFIG_HOME or ~/.config on Linux).
func DefaultCredentialsPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("authclient: no configuration directory: %w", err)
	}
	return filepath.Join(dir, "latch", "credentials.json"), nil
}

// Path returns the file's path.
func (f *FileStore) Path() string { return f.path }

// Load implements Store.
func (f *FileStore) Load(context.Context) (Saved, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s Saved
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, ErrNoSession
	}
	if err != nil {
		return s, fmt.Errorf("authclient: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("authclient: %s: %w", f.path, err)
	}
	if s.RefreshToken == "" {
		return s, ErrNoSession
	}
	return s, nil
}

// Save implements Store: write, fsync, rename, fsync the directory.
func (f *FileStore) Save(_ context.Context, s Saved) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("authclient: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".credentials-*.tmp") // created 0600
	if err != nil {
		return fmt.Errorf("authclient: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("authclient: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("authclient: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("authclient: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("authclient: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("authclient: %w", err)
	}
	syncDir(dir)
	return nil
}

// Clear implements Store.
func (f *FileStore) Clear(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("authclient: %w", err)
	}
	syncDir(filepath.Dir(f.path))
	return nil
}

// syncDir makes a rename or removal durable (best effort: some systems
// cannot sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
