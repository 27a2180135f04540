package session_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"pgregory.net/rapid"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestPropertySessionRotation is the property-based test that docs/design.md
// ("Sessions and rotation") asks for. Each rapid check builds a fresh stack
// (the real session service over SQLite, fake clock) with randomly drawn
// windows (G; L = 0, 3G or 24h; idle timeout; absolute lifetime or none;
// access TTL), logs in once, and runs a random state machine over that one
// session.
//
// Actors:
//   - An honest client that keeps the client contract: it keeps only the
//     newest refresh token it received; it ignores the answer to a request
//     that failed or was lost; it does not refresh within G of receiving a
//     token (the test lets time pass instead) unless it is retrying a lost
//     answer; it retries a lost answer inside the window (within L of the
//     lost request; within G of it when L is 0), at once, within G or
//     after G; and none of its requests is delivered late (except those
//     held up by a paused node, below, whose answers it never reads). It may change
//     networks (a new IP) at any time. In thief runs it may also go idle
//     for a while and come back.
//   - In half of the checks, an attacker: a thief that copies the honest
//     client's token at a random moment and then either keeps refreshing
//     with the newest token it gets (a cloned client; sometimes racing the
//     honest client on the same token, sometimes with a replayer that
//     presents any token older than the honest client's), or keeps
//     presenting its original copy (exploiting lost-response tolerance).
//   - Requests held up by a paused node: the honest client's refresh
//     reaches a node that stops (a GC pause, a frozen VM, SIGSTOP); the
//     client gives up on it and carries on; much later the node acts on
//     it, with the connection closed, or (a connection that died without
//     a FIN) only its request time more than G old. A thief may fake
//     either signal.
//
// Other actions: duplicates of one request (2 to 4 copies, concurrent, or
// back to back with gaps of at most G; the honest client's copies all
// within G of the first, as the contract has it, the thief's chained
// without end); clock moves (0 to 4G, exactly G,
// G+1µs, to the edge of the grace window or of the parent's lost-response
// window or just past it, far ahead, or back by up to 2G; never so far that
// the live session would idle out or pass its absolute expiry, nor past the
// honest client's retry deadline); a storage fault injected at one point of
// the refresh transaction (before or after locking, updating, auditing,
// revoking, or at commit), which makes it roll back, followed by the
// client's immediate retry.
//
// Beside the service, the test keeps its own model of the rotation table
// (current generation, parent, last hand-out of the current token, when the
// parent was made, revoked; windows inclusive) and predicts every answer.
// "Theft is detected at the next refresh of whichever holder is behind"
// is checked with exactly the two documented exceptions and nothing more:
//   - lock-step: the holder that is behind presents the parent within G of
//     the current token's last hand-out and gets the identical current
//     token (both holders are then in step again);
//   - the parent within L (after G): the holder that is behind gets a
//     lost-response successor and the other holder's token is abandoned,
//     so that holder is detected at its next refresh. This is "a thief who
//     refreshes first and then stops" (the victim's next refresh succeeds)
//     and "the price of lost-response tolerance" (a thief holding the
//     parent of an idle victim's token), which lasts at most L from the
//     rotation that made the parent: L does not restart. The audit log must
//     carry a refresh.lost_response event with the presenter's IP and user
//     agent.
//
// docs/design.md does not say where G starts when the clock has stepped back
// since an earlier hand-out; the model accepts either the last hand-out's
// clock reading or the latest reading of any hand-out (an anchor that never
// moves back), per answer, and nothing else.
//
// Grace answers restart G but end L after the rotation that made the parent
// (G after it when L is 0): replaying the parent every < G does not extend
// the thief's use past L. A grace answer to another IP or user agent than
// the rotation's must be audited as refresh.suspicious_grace with the
// presenter's IP and user agent (and revoke nothing); one to the rotating
// client must not.
//
// Any other presentation of a token that is not the current one (older
// ancestors, abandoned successors even within G, the parent after L, or
// after G when L is 0) must revoke the session with reason
// refresh_token_reuse, and from then on every token ever issued fails with
// invalid_grant. Properties asserted:
//   - no false logout: until an attacker acts, every honest refresh
//     succeeds and the session is never revoked, whatever lost answers,
//     duplicates, faults and clock steps happen;
//   - duplicates and concurrent refreshes of one token never yield two
//     different successors: all successful answers carry one refresh token,
//     and a grace answer is the identical current token;
//   - a fault mid-refresh fails the call (not with invalid_grant, which
//     would log the client out), leaves the session row and the size of
//     every table exactly as before, and the client's retry with its old
//     token gets the answer the untouched state predicts;
//   - theft detection as above: reuse answers ErrReused and revokes;
//   - reuse is decided first: the replayer sometimes adds a scope wider
//     than the grant or comes as another client; an old token is still
//     reuse (or, for a dead session, invalid_grant), and a token that is
//     not reuse is refused for the scope or client with nothing changed;
//   - bounded grace: no answer to the parent later than L after its
//     rotation (G when L is 0), checked apart from the model too; each
//     suspicious grace answer audited, and the session's stored rotation
//     origin matches the model's;
//   - O(1) refresh state: one session row, no table but audit_events grows
//     (revocations by one entry when the session is revoked); generations
//     never decrease and every successor is new;
//   - an access token never outlives its session: exp = min(now + ttl,
//     absolute expiry); its sid names the session;
//   - a stale request (abandoned, or sent more than G before the server
//     acts) changes nothing and fails with ErrStale, never invalid_grant:
//     a held-up honest request never logs anyone out, and a thief that
//     fakes staleness gets no tokens (and no answer it would not get
//     otherwise: reuse still revokes at its next on-time request).
//
// DPoP (RFC 9449 section 5, docs/design.md "Sender-constrained tokens"): in
// half of the checks the session is bound at login to the honest client's
// key, and the thief and the replayer, who copy tokens but not the key,
// present them without a proof or with their own key. Then theft of the
// bound session is never a success, with no exception: every presentation
// without the key fails with ErrDPoPMismatch (invalid_grant), before and
// whatever the rotation table would answer, lock-step and lost-response
// cases included; it changes nothing (no rotation, no revocation: the model
// stays as it was) and is audited as refresh.dpop_mismatch; and the honest
// client's refreshes never fail, thief or no thief. Its access tokens carry
// cnf.jkt of its key.
//
// Cost: under -race on two cores each check (stack, login, about 30
// actions) takes roughly 0.2 s, so the test runs propDefaultChecks checks
// (about 10 s) unless -rapid.checks or RAPID_CHECKS says otherwise. With -v
// it logs how often each answer was seen.
func TestPropertySessionRotation(t *testing.T) {
	propLimitChecks(t, propDefaultChecks)
	start := time.Now()
	stats := &propStats{n: map[string]int{}}
	rapid.Check(t, func(rt *rapid.T) {
		pm := propStart(t, rt)
		pm.stats = stats
		rt.Repeat(rapid.StateMachineActions(pm))
		pm.finish(rt)
	})
	t.Logf("property run took %s; answers seen: %s", time.Since(start).Round(time.Millisecond), stats)
}

// propDefaultChecks replaces rapid's default of 100 checks, which under
// -race on two cores takes over 20 s. An explicit -rapid.checks or
// RAPID_CHECKS wins.
const propDefaultChecks = 50

// propLimitChecks lowers rapid's check count for this test unless the
// caller chose one, and restores it afterwards. (Safe: this test is not
// parallel, so no other test reads the flag meanwhile.)
func propLimitChecks(t *testing.T, n int) {
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return
	}
	f := flag.Lookup("rapid.checks")
	if f == nil {
		return
	}
	explicit := false
	flag.Visit(func(v *flag.Flag) { explicit = explicit || v == f })
	if explicit {
		return
	}
	old := f.Value.String()
	if err := f.Value.Set(strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Value.Set(old) })
}

// propStats counts the answers seen across checks, to show in -v output
// that every row of the table (and each exception) was exercised.
type propStats struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *propStats) add(key string) {
	s.mu.Lock()
	s.n[key]++
	s.mu.Unlock()
}

func (s *propStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.n))
	for k := range s.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, s.n[k])
	}
	return strings.Join(parts, ", ")
}

var propCtx = context.Background()

// propErrInjected is the storage fault the wrapper injects.
var propErrInjected = errors.New("prop: injected storage fault")

// propFaultPoints are the places in a refresh transaction where a fault can
// be injected; each makes the transaction roll back.
var propFaultPoints = []string{
	"lock-before", "lock-after", "update-before", "update-after",
	"audit-before", "audit-after", "revoke-before", "revoke-after", "commit",
	"rotate-before",
}

// propFaultStore wraps the real store; when armed it fails the next pass
// through the armed point, once.
type propFaultStore struct {
	session.Store
	mu    sync.Mutex
	point string
	hit   bool
}

func (f *propFaultStore) arm(point string) {
	f.mu.Lock()
	f.point, f.hit = point, false
	f.mu.Unlock()
}

// disarm clears the armed point and reports whether it was hit.
func (f *propFaultStore) disarm() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	hit := f.hit
	f.point, f.hit = "", false
	return hit
}

func (f *propFaultStore) trip(point string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.point != "" && f.point == point {
		f.point, f.hit = "", true
		return fmt.Errorf("%w at %s", propErrInjected, point)
	}
	return nil
}

func (f *propFaultStore) InTx(ctx context.Context, fn func(session.Tx) error) error {
	return f.Store.InTx(ctx, func(tx session.Tx) error {
		if err := fn(&propFaultTx{Tx: tx, f: f}); err != nil {
			return err
		}
		return f.trip("commit")
	})
}

// RotateSession passes the store's one-statement rotation on, so that the
// machine drives Refresh as serve does: the common row in one UPDATE, every
// other row through InTx, and both racing each other.
func (f *propFaultStore) RotateSession(ctx context.Context, r session.Rotation) (session.Session, error) {
	rs, ok := f.Store.(session.Rotator)
	if !ok {
		return session.Session{}, session.ErrNotFound
	}
	if err := f.trip("rotate-before"); err != nil {
		return session.Session{}, err
	}
	return rs.RotateSession(ctx, r)
}

type propFaultTx struct {
	session.Tx
	f *propFaultStore
}

func (t *propFaultTx) LockSession(ctx context.Context, id string) (session.Session, error) {
	if err := t.f.trip("lock-before"); err != nil {
		return session.Session{}, err
	}
	s, err := t.Tx.LockSession(ctx, id)
	if err != nil {
		return s, err
	}
	if err := t.f.trip("lock-after"); err != nil {
		return session.Session{}, err
	}
	return s, nil
}

func (t *propFaultTx) UpdateSession(ctx context.Context, s session.Session) error {
	if err := t.f.trip("update-before"); err != nil {
		return err
	}
	if err := t.Tx.UpdateSession(ctx, s); err != nil {
		return err
	}
	return t.f.trip("update-after")
}

func (t *propFaultTx) AppendAudit(ctx context.Context, e audit.Event) error {
	if err := t.f.trip("audit-before"); err != nil {
		return err
	}
	if err := t.Tx.AppendAudit(ctx, e); err != nil {
		return err
	}
	return t.f.trip("audit-after")
}

func (t *propFaultTx) RevokeSessions(ctx context.Context, r session.Revocation) ([]string, error) {
	if err := t.f.trip("revoke-before"); err != nil {
		return nil, err
	}
	ids, err := t.Tx.RevokeSessions(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := t.f.trip("revoke-after"); err != nil {
		return nil, err
	}
	return ids, nil
}

// ---- the model of docs/design.md's rotation table ----

type propConfig struct {
	grace, lost, idle, maxLife, ttl time.Duration
}

type propOutcome int

const (
	propRotate  propOutcome = iota // the current token: a fresh successor
	propGrace                      // the parent within G: the identical current token
	propLost                       // the parent within L: a fresh successor, current abandoned
	propReuse                      // anything else: revoke
	propDead                       // revoked or expired session: invalid_grant
	propStale                      // abandoned or sent more than G ago: ErrStale, nothing changes
	propKeyless                    // a bound session without its DPoP key: refused, nothing changed
)

func (o propOutcome) String() string {
	return [...]string{"rotate", "grace (identical token)", "lost-response successor", "reuse (revoke)", "dead session (invalid_grant)", "stale (refused, nothing changed)", "no DPoP key (refused, nothing changed)"}[o]
}

func (o propOutcome) ok() bool { return o <= propLost }

// propModel is the session's refresh state as docs/design.md describes it.
type propModel struct {
	gen, parent uint64       // current generation; its parent (0: none)
	handedAt    time.Time    // last hand-out of the current token (G's start)
	handedMax   time.Time    // the latest clock reading of any hand-out so far
	rotatedAt   time.Time    // when the parent became the parent (L's start)
	rotatedBy   session.Meta // who made the parent the parent (at login: who logged in)
	idleExp     time.Time
	absExp      time.Time // zero: none
	revoked     bool
}

// predict answers a presentation of generation gen at now from the table.
// Windows are inclusive (a repeat exactly G after the hand-out is still a
// duplicate). docs/design.md does not say where G starts when the clock has
// stepped back since an earlier hand-out: latest false measures it from the
// last hand-out's clock reading, latest true from the latest reading of any
// hand-out (an anchor that never moves back). Without a backward step the
// two agree.
func (m *propModel) predict(gen uint64, now time.Time, c propConfig, latest bool) propOutcome {
	anchor := m.handedAt
	if latest {
		anchor = m.handedMax
	}
	switch {
	case m.revoked, !now.Before(m.idleExp), !m.absExp.IsZero() && !now.Before(m.absExp):
		return propDead
	case gen == m.gen:
		return propRotate
	case m.parent == 0 || gen != m.parent:
		// older ancestors and abandoned tokens
		return propReuse
	case !now.After(anchor.Add(c.grace)) && !now.After(m.graceEnd(c)):
		return propGrace
	case c.lost > 0 && !now.After(m.rotatedAt.Add(c.lost)):
		return propLost
	}
	return propReuse
}

// graceEnd is the last instant a grace answer may be given: L after the
// rotation that made the parent, G after it when L is 0. Grace answers
// restart G but never this.
func (m *propModel) graceEnd(c propConfig) time.Time {
	if c.lost == 0 {
		return m.rotatedAt.Add(c.grace)
	}
	return m.rotatedAt.Add(c.lost)
}

// suspicious reports whether answer o to a presenter with meta is a grace
// answer to another IP or user agent than the rotation's, which the audit
// log must flag.
func (m *propModel) suspicious(o propOutcome, meta session.Meta) bool {
	return o == propGrace && meta != m.rotatedBy
}

func (m *propModel) apply(o propOutcome, now time.Time, c propConfig, meta session.Meta) {
	switch o {
	case propDead, propStale:
		return
	case propReuse:
		m.revoked = true
		return
	case propRotate:
		m.parent, m.gen = m.gen, m.gen+1
		m.rotatedAt, m.rotatedBy = now, meta
	case propLost:
		m.gen++ // the unused current token is abandoned; the parent stays
	case propGrace:
	}
	m.handedAt = now
	if now.After(m.handedMax) {
		m.handedMax = now
	}
	m.idleExp = now.Add(c.idle)
}

// ---- actors ----

type propHolder struct {
	name   string
	meta   session.Meta
	honest bool
	tok    string
	gen    uint64
	// jkt is the thumbprint of the DPoP key the holder proves ("" for
	// none): the honest client's own, a thief's own or none.
	jkt string

	// honest client only
	receivedAt   time.Time // when it received tok
	pending      bool      // the answer to its last request was lost; tok is the old token
	pendingSince time.Time // when the first lost request was sent
	lastAttempt  time.Time
	asleep       bool // idle (app closed): makes no requests

	// replayer only: the request also asks for a scope wider than the grant
	// (propProbeScope) or comes from another client (propProbeClient).
	probe string

	// stale, if set, makes the request stale: propGone (the client closed
	// the connection; sentAt is sent when not zero) or propLate (sentAt,
	// more than G before the server acts).
	stale  string
	sentAt time.Time
}

// Ways a request is stale.
const (
	propGone = "abandoned"
	propLate = "sent more than G ago"
)

// propDelayed is an honest request held up (a paused node) after its
// client gave up on it.
type propDelayed struct {
	tok    string
	gen    uint64
	sentAt time.Time
}

// Probes: what else is wrong with a replayed request.
const (
	propProbeScope  = "wider scope"
	propProbeClient = "another client"
)

const (
	propNoThief = iota
	propThiefNewest
	propThiefStolen
)

type propIssued struct {
	tok string
	gen uint64
}

type propResult struct {
	tok session.Tokens
	err error
	at  time.Time
}

type propMachine struct {
	env   *testenv.Env
	fault *propFaultStore
	db    *sql.DB
	// prepared once: row counts of every table, and of audit_events
	tables               []string
	countStmt, auditStmt *sql.Stmt
	cfg                  propConfig
	sid                  string
	t0                   time.Time
	// boundJKT is the key the session is bound to; "" for a bearer session.
	boundJKT string

	m      propModel
	curTok string       // the refresh token of the current generation
	issued []propIssued // every refresh token handed out
	seen   map[string]bool

	honest, thief, replayer propHolder
	stolen                  propIssued // the thief's original copy

	// thiefKind: propNoThief, propThiefNewest (keeps the newest token it
	// gets, like a cloned client) or propThiefStolen (keeps presenting its
	// original copy, exploiting lost-response tolerance).
	thiefKind                                int
	thiefEnabled, replayEnabled, thiefCopied bool
	thiefActed                               bool

	// delayed are honest requests that a paused node still holds; late
	// delivers them, with the honest client's meta.
	delayed []propDelayed
	late    propHolder

	maxGen   uint64
	baseline map[string]int
	stats    *propStats
	tag      string // labels answers in stats
}

func propDrawConfig(t *rapid.T) propConfig {
	g := rapid.SampledFrom([]time.Duration{2 * time.Second, 30 * time.Second}).Draw(t, "grace")
	return propConfig{
		grace:   g,
		lost:    rapid.SampledFrom([]time.Duration{0, 3 * g, 24 * time.Hour}).Draw(t, "lost_window"),
		idle:    rapid.SampledFrom([]time.Duration{12 * g, 30 * 24 * time.Hour}).Draw(t, "idle"),
		maxLife: rapid.SampledFrom([]time.Duration{0, 25 * g}).Draw(t, "max_lifetime"),
		ttl:     rapid.SampledFrom([]time.Duration{time.Minute, 15 * time.Minute}).Draw(t, "access_ttl"),
	}
}

func propStart(tt *testing.T, t *rapid.T) *propMachine {
	cfg := propDrawConfig(t)
	kind := rapid.IntRange(propNoThief, propThiefStolen+1).Draw(t, "thief_kind")
	if kind > propThiefStolen {
		kind = propNoThief // half the runs have no attacker
	}
	thief := kind != propNoThief
	replay := kind == propThiefNewest && rapid.Bool().Draw(t, "replayer")
	dir, err := os.MkdirTemp("", "latch-prop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fault := &propFaultStore{}
	env := testenv.New(tt, testenv.Options{
		Grace: cfg.grace, LostWindow: cfg.lost, NoLostWindow: cfg.lost == 0,
		Idle: cfg.idle, MaxLifetime: cfg.maxLife, AccessTTL: cfg.ttl, Dir: dir,
		WrapStore: func(s session.Store) session.Store { fault.Store = s; return fault },
		// Concurrent duplicates must not meet the load-shedding bound on a
		// slow machine: an honest refresh shed with 503 is not the property.
	})
	t.Cleanup(func() { env.Store.Close() })
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "latch.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	pm := &propMachine{env: env, fault: fault, db: db, cfg: cfg, seen: map[string]bool{}, thiefKind: kind, thiefEnabled: thief, replayEnabled: replay}
	t.Cleanup(func() {
		for _, st := range []*sql.Stmt{pm.countStmt, pm.auditStmt} {
			if st != nil {
				st.Close()
			}
		}
		db.Close()
	})

	// Half the sessions are bound to the honest client's DPoP key.
	if rapid.Bool().Draw(t, "dpop_bound") {
		pm.boundJKT = "honest-key-thumbprint"
	}
	_, login, err := env.Sessions.Signup(propCtx, session.SignupRequest{Email: "prop@example.com", Password: testenv.Password, Login: true,
		Client: env.Client, DPoPJKT: pm.boundJKT})
	if err != nil {
		t.Fatal(err)
	}
	pm.sid, pm.t0 = login.SessionID, env.Clock.Now()
	row := pm.row(t)
	gen := pm.genOf(t, login.RefreshToken)
	pm.m = propModel{gen: gen, handedAt: pm.t0, handedMax: pm.t0, rotatedAt: pm.t0, idleExp: pm.t0.Add(cfg.idle)}
	if cfg.maxLife > 0 {
		pm.m.absExp = pm.t0.Add(cfg.maxLife)
	}
	if !row.ExpiresAt.Equal(pm.m.absExp) {
		t.Fatalf("session absolute expiry %v, want %v", row.ExpiresAt, pm.m.absExp)
	}
	pm.curTok = login.RefreshToken
	pm.issued = append(pm.issued, propIssued{login.RefreshToken, gen})
	pm.seen[login.RefreshToken] = true
	pm.checkAccess(t, propResult{tok: login, at: pm.t0}, "login")
	pm.honest = propHolder{name: "honest", honest: true, tok: login.RefreshToken, gen: gen, receivedAt: pm.t0,
		meta: session.Meta{IP: "192.0.2.10", UserAgent: "honest-app/1.0"}, jkt: pm.boundJKT}
	// Without the honest key: no proof at all, or a proof by their own.
	thiefKey := rapid.SampledFrom([]string{"", "thief-key-thumbprint"}).Draw(t, "thief_key")
	pm.thief = propHolder{name: "thief", meta: session.Meta{IP: "203.0.113.66", UserAgent: "thief/0.1"}, jkt: thiefKey}
	pm.replayer = propHolder{name: "replayer", meta: session.Meta{IP: "198.51.100.7", UserAgent: "replayer/0.1"}, jkt: thiefKey}
	pm.late = propHolder{name: "honest (delayed)", jkt: pm.boundJKT}
	pm.maxGen = row.Gen
	pm.baseline = pm.tableCounts(t)
	t.Logf("config: G=%s L=%s idle=%s max=%s ttl=%s thief=%v replayer=%v dpop-bound=%v thief key %q", cfg.grace, cfg.lost, cfg.idle, cfg.maxLife, cfg.ttl,
		[...]string{"none", "keeps newest", "keeps stolen copy"}[kind], replay, pm.boundJKT != "", thiefKey)
	return pm
}

// ---- helpers ----

func (pm *propMachine) now() time.Time { return pm.env.Clock.Now() }

func (pm *propMachine) rel(at time.Time) string { return "t0+" + at.Sub(pm.t0).String() }

func (pm *propMachine) row(t *rapid.T) session.Session {
	s, err := pm.env.Store.Session(propCtx, pm.sid)
	if err != nil {
		t.Fatalf("read session: %v", err)
	}
	return s
}

func (pm *propMachine) tableCounts(t *rapid.T) map[string]int {
	if pm.countStmt == nil {
		rows, err := pm.db.QueryContext(propCtx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
		if err != nil {
			t.Fatalf("list tables: %v", err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			pm.tables = append(pm.tables, n)
		}
		rows.Close()
		parts := make([]string, len(pm.tables))
		for i, n := range pm.tables {
			parts[i] = `(SELECT count(*) FROM "` + n + `")`
		}
		if pm.countStmt, err = pm.db.PrepareContext(propCtx, `SELECT `+strings.Join(parts, ", ")); err != nil {
			t.Fatalf("prepare counts: %v", err)
		}
		if pm.auditStmt, err = pm.db.PrepareContext(propCtx, `SELECT count(*) FROM audit_events`); err != nil {
			t.Fatalf("prepare audit count: %v", err)
		}
	}
	vals := make([]int, len(pm.tables))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := pm.countStmt.QueryRowContext(propCtx).Scan(ptrs...); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	counts := make(map[string]int, len(vals))
	for i, n := range pm.tables {
		counts[n] = vals[i]
	}
	return counts
}

func (pm *propMachine) auditCount(t *rapid.T) int {
	var c int
	if err := pm.auditStmt.QueryRowContext(propCtx).Scan(&c); err != nil {
		t.Fatalf("count audit events: %v", err)
	}
	return c
}

// genOf decodes a refresh token handed out for this session.
func (pm *propMachine) genOf(t *rapid.T, tok string) uint64 {
	raw, gen, err := pm.env.Codec.Decode(tok)
	if err != nil {
		t.Fatalf("refresh token handed out does not decode: %v", err)
	}
	if id := base64.RawURLEncoding.EncodeToString(raw[:]); id != pm.sid {
		t.Fatalf("refresh token names session %s, want %s", id, pm.sid)
	}
	return gen
}

// room is how far the clock may move forward: the live session must not
// reach its idle or absolute expiry, and a pending honest retry must stay
// inside its window.
func (pm *propMachine) room() time.Duration {
	now := pm.now()
	r := 30 * 24 * time.Hour
	if !pm.m.revoked {
		limit := pm.m.idleExp
		if !pm.m.absExp.IsZero() && pm.m.absExp.Before(limit) {
			limit = pm.m.absExp
		}
		r = min(r, limit.Sub(now)-time.Microsecond)
	}
	if pm.honest.pending {
		r = min(r, pm.retryDeadline().Sub(now))
	}
	return max(r, 0)
}

// retryDeadline is the last instant at which the honest client may retry a
// lost request by the contract: within L of the first lost request, or
// within G of it when L is 0. (Retries within G of each other do not
// stretch it: grace answers end L after the rotation, G when L is 0.)
func (pm *propMachine) retryDeadline() time.Time {
	h := &pm.honest
	if pm.cfg.lost > 0 {
		return h.pendingSince.Add(pm.cfg.lost)
	}
	return h.pendingSince.Add(pm.cfg.grace)
}

// honestReady lets time pass until the honest client may refresh by the
// contract (more than G after it received its token, unless it is retrying).
// It reports false, without moving the clock, if the session would expire
// first.
func (pm *propMachine) honestReady() bool {
	h := &pm.honest
	if h.asleep {
		return false
	}
	if h.pending {
		return true
	}
	now := pm.now()
	ready := h.receivedAt.Add(pm.cfg.grace + time.Microsecond)
	if !now.Before(ready) {
		return true
	}
	d := ready.Sub(now)
	if d > pm.room() {
		return false
	}
	pm.env.Clock.Advance(d)
	return true
}

func (pm *propMachine) describe(whos []*propHolder, gen uint64, now time.Time) string {
	names := make([]string, len(whos))
	for i, w := range whos {
		names[i] = w.name
	}
	return fmt.Sprintf("%s presented gen %d at %s; model: current gen %d, parent %d, current handed out at %s (latest hand-out reading %s), parent made at %s, revoked %v; "+
		"honest holds gen %d (pending retry %v), thief holds gen %d (copied %v, acted %v); G=%s L=%s",
		strings.Join(names, "+"), gen, pm.rel(now), pm.m.gen, pm.m.parent, pm.rel(pm.m.handedAt), pm.rel(pm.m.handedMax), pm.rel(pm.m.rotatedAt), pm.m.revoked,
		pm.honest.gen, pm.honest.pending, pm.thief.gen, pm.thiefCopied, pm.thiefActed, pm.cfg.grace, pm.cfg.lost)
}

// checkAccess checks an access token: exp = min(now + ttl, absolute
// expiry), so it never outlives the session.
func (pm *propMachine) checkAccess(t *rapid.T, r propResult, what string) {
	jt, err := jwt.ParseSigned(r.tok.AccessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("%s: access token does not parse: %v", what, err)
	}
	var c bearer.Claims
	if err := jt.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatalf("%s: access token claims: %v", what, err)
	}
	want := r.at.Add(pm.cfg.ttl)
	if !pm.m.absExp.IsZero() && pm.m.absExp.Before(want) {
		want = pm.m.absExp
	}
	if c.Expiry == nil {
		t.Fatalf("%s: access token has no exp", what)
	}
	if c.Expiry.Time().Unix() != want.Unix() {
		t.Fatalf("%s: access token exp %v, want min(now+ttl, session expiry) = %v", what, c.Expiry.Time().UTC(), want)
	}
	if !pm.m.absExp.IsZero() && c.Expiry.Time().After(pm.m.absExp) {
		t.Fatalf("%s: access token exp %v outlives the session (absolute expiry %v)", what, c.Expiry.Time(), pm.m.absExp)
	}
	if !r.tok.AccessExpiry.Equal(want) {
		t.Fatalf("%s: AccessExpiry %v, want %v", what, r.tok.AccessExpiry, want)
	}
	if c.SessionID != pm.sid || r.tok.SessionID != pm.sid {
		t.Fatalf("%s: access token sid %q / session_id %q, want %q", what, c.SessionID, r.tok.SessionID, pm.sid)
	}
	if pm.boundJKT != "" && (c.Confirmation == nil || c.Confirmation.JKT != pm.boundJKT || r.tok.DPoPJKT != pm.boundJKT) {
		t.Fatalf("%s: access token of a bound session has cnf %+v (DPoPJKT %q), want jkt %q", what, c.Confirmation, r.tok.DPoPJKT, pm.boundJKT)
	}
}

// refreshAll presents whos[0]'s token once for each holder in whos, all at
// the current instant (concurrently when there are several), and checks the
// answers against the model. With faultAt set, a storage fault is armed; if
// it was hit the answers are returned unchecked, the model untouched, and
// faulted is true.
func (pm *propMachine) refreshAll(t *rapid.T, whos []*propHolder, faultAt string) (rs []propResult, faulted bool) {
	tok, gen := whos[0].tok, whos[0].gen
	now := pm.now()
	desc := pm.describe(whos, gen, now)
	auditsBefore := pm.auditCount(t)
	// The answers each reading of the grace anchor predicts (see predict);
	// they differ only after a backward clock step.
	// suspiciousBy holds the possible numbers of grace answers to another IP
	// or user agent than the rotation's: which of several concurrent
	// presenters got which answer is up to the database, so every order is
	// tried (the answers themselves are the same in any order).
	var nexts [2]propModel
	var wantsBy [2][]propOutcome
	var suspiciousBy [2][]int
	for v := range nexts {
		for _, order := range propOrders(len(whos)) {
			next := pm.m
			wants := make([]propOutcome, len(whos))
			n := 0
			for _, i := range order {
				wants[i] = next.predict(gen, now, pm.cfg, v == 1)
				if pm.keyless(whos[i]) && wants[i] != propDead {
					// RFC 9449 section 5: refused before the table is
					// consulted, and nothing changes.
					wants[i] = propKeyless
					continue
				}
				if whos[i].stale != "" && wants[i] != propDead {
					wants[i] = propStale
				}
				if next.suspicious(wants[i], whos[i].meta) {
					n++
				}
				next.apply(wants[i], now, pm.cfg, whos[i].meta)
			}
			if wantsBy[v] == nil {
				nexts[v], wantsBy[v] = next, wants
			}
			if !slices.Contains(suspiciousBy[v], n) {
				suspiciousBy[v] = append(suspiciousBy[v], n)
			}
		}
	}
	before := pm.m
	rs = make([]propResult, len(whos))
	probe := whos[0].probe
	var rowBefore session.Session
	if probe != "" || whos[0].stale != "" {
		rowBefore = pm.row(t)
	}
	present := func(i int) {
		req := session.RefreshRequest{Token: tok, Client: pm.env.Client, Meta: whos[i].meta, DPoPJKT: whos[i].jkt}
		switch whos[i].stale {
		case propGone:
			req.Gone, req.SentAt = func() bool { return true }, whos[i].sentAt
		case propLate:
			req.SentAt = whos[i].sentAt
		}
		switch whos[i].probe {
		case propProbeScope:
			req.Scope = "admin"
		case propProbeClient:
			req.Client.ID = "other"
		}
		res, err := pm.env.Sessions.Refresh(propCtx, req)
		rs[i] = propResult{tok: res, err: err, at: now}
	}
	if faultAt != "" {
		pm.fault.arm(faultAt)
	}
	if len(whos) == 1 {
		present(0)
	} else {
		var wg sync.WaitGroup
		startGate := make(chan struct{})
		for i := range whos {
			wg.Go(func() {
				<-startGate
				present(i)
			})
		}
		close(startGate)
		wg.Wait()
	}
	if faultAt != "" && pm.fault.disarm() {
		pm.stats.add("fault injected at " + faultAt)
		return rs, true
	}
	// Apart from the model: no presentation without the key of a bound
	// session ever gets a token.
	for i, w := range whos {
		if pm.keyless(w) && rs[i].err == nil {
			t.Fatalf("THEFT OF A BOUND SESSION SUCCEEDED: %s presented gen %d without the session's DPoP key (with %q) and got gen %d\n%s",
				w.name, gen, w.jkt, pm.genOf(t, rs[i].tok.RefreshToken), desc)
		}
	}
	v := 0
	if wantsBy[0][0] != wantsBy[1][0] {
		pm.stats.add("backward clock step: grace anchors disagree")
		if obs := pm.observed(rs); !propMatches(wantsBy[0][0], obs) && propMatches(wantsBy[1][0], obs) {
			v = 1
		}
		desc += fmt.Sprintf("; after a backward clock step either %v (G from the last hand-out) or %v (G from the latest hand-out reading) is accepted", wantsBy[0][0], wantsBy[1][0])
	}
	wants := wantsBy[v]
	if probe != "" {
		desc += "; with " + probe
	}
	t.Logf("  %s -> want %v", desc, wants)
	if probe != "" && wants[0].ok() {
		// Not reuse: the probe is refused for what is wrong with it, and
		// changes nothing. (Reuse and dead sessions are answered as without
		// the probe: reuse is decided first.)
		pm.checkProbeRefused(t, probe, rs[0], rowBefore, auditsBefore, desc)
		pm.stats.add(fmt.Sprintf("%v with %s: refused, nothing changed", wants[0], probe))
		return rs, false
	}
	if probe != "" {
		pm.stats.add(fmt.Sprintf("%v with %s", wants[0], probe))
	}
	role := whos[0].name + pm.tag
	if len(whos) > 1 {
		role = fmt.Sprintf("%d concurrent by %s", len(whos), whos[len(whos)-1].name)
	}
	if pm.thiefCopied && whos[0] != &pm.replayer && min(pm.honest.gen, pm.thief.gen) == gen && pm.honest.gen != pm.thief.gen {
		role += ", behind"
	}
	pm.stats.add(fmt.Sprintf("%v (%s)", wants[0], role))
	if slices.Max(suspiciousBy[v]) > 0 {
		pm.stats.add("suspicious grace audited")
	}
	pm.m = nexts[v]
	pm.verify(t, whos, wants, suspiciousBy[v], rs, desc, auditsBefore)
	pm.checkGraceBound(t, &before, gen, now, rs, desc)
	pm.checkRotatedBy(t, whos, wants, desc)
	if wants[0] == propStale {
		pm.stats.add(fmt.Sprintf("stale (%s), would have been %v", whos[0].stale, before.predict(gen, now, pm.cfg, v == 1)))
		if after := pm.row(t); after != rowBefore {
			t.Fatalf("a stale request changed the session:\nbefore %+v\nafter  %+v\n%s", rowBefore, after, desc)
		}
	}
	return rs, false
}

// keyless reports whether h presents a bound session's tokens without its
// key.
func (pm *propMachine) keyless(h *propHolder) bool { return pm.boundJKT != "" && h.jkt != pm.boundJKT }

// checkProbeRefused: a request with a wider scope or from another client,
// presenting a token that is not reuse, fails with invalid_scope or
// invalid_grant (wrong client) and leaves the session and the audit log as
// they were.
func (pm *propMachine) checkProbeRefused(t *rapid.T, probe string, r propResult, before session.Session, auditsBefore int, desc string) {
	want := session.ErrInvalidScope
	if probe == propProbeClient {
		want = session.ErrWrongClient
	}
	if !errors.Is(r.err, want) {
		t.Fatalf("probe with %s: refresh = %v, want %v\n%s", probe, r.err, want, desc)
	}
	if after := pm.row(t); after != before {
		t.Fatalf("a refused probe changed the session:\nbefore %+v\nafter  %+v\n%s", before, after, desc)
	}
	if n := pm.auditCount(t) - auditsBefore; n != 0 {
		t.Fatalf("a refused probe wrote %d audit events\n%s", n, desc)
	}
}

// propOrders returns the orders in which n concurrent presentations may be
// served: as given and reversed (enough for the two holders that race;
// copies of one holder's request are alike in any order).
func propOrders(n int) [][]int {
	fwd, rev := make([]int, n), make([]int, n)
	for i := range n {
		fwd[i], rev[i] = i, n-1-i
	}
	if n == 1 {
		return [][]int{fwd}
	}
	return [][]int{fwd, rev}
}

// checkGraceBound asserts the bound on lost-response tolerance directly,
// whatever the model says: the parent gets no answer later than L after
// the rotation that made it the parent (G when L is 0), however often it
// was replayed within G of the previous answer.
func (pm *propMachine) checkGraceBound(t *rapid.T, before *propModel, gen uint64, now time.Time, rs []propResult, desc string) {
	if gen != before.parent || before.parent == 0 || !now.After(before.graceEnd(pm.cfg)) {
		return
	}
	if !now.After(before.handedAt.Add(pm.cfg.grace)) {
		pm.stats.add("parent within G of a hand-out but past L (G when L is 0): refused")
	}
	for _, r := range rs {
		if r.err == nil {
			t.Fatalf("GRACE UNBOUNDED: the parent was answered %s after its rotation, past L (G when L is 0)\n%s", now.Sub(before.rotatedAt), desc)
		}
	}
}

// checkRotatedBy compares the stored origin of the rotation with the
// model's. When holders on different devices raced and one rotated, the
// model cannot know which won; any of them is accepted and adopted.
func (pm *propMachine) checkRotatedBy(t *rapid.T, whos []*propHolder, wants []propOutcome, desc string) {
	row := pm.row(t)
	got := session.Meta{IP: row.RotatedIP, UserAgent: row.RotatedUserAgent}
	if got == pm.m.rotatedBy {
		return
	}
	if slices.Contains(wants, propRotate) {
		for _, w := range whos {
			if w.meta == got {
				pm.m.rotatedBy = got
				return
			}
		}
	}
	t.Fatalf("stored rotation origin %+v, want %+v\n%s", got, pm.m.rotatedBy, desc)
}

// observed classifies answers: propGrace (the current token again),
// propRotate (a new token: rotate or lost-response successor), propReuse or
// propDead.
func (pm *propMachine) observed(rs []propResult) propOutcome {
	for _, r := range rs {
		if r.err == nil {
			if r.tok.RefreshToken == pm.curTok {
				return propGrace
			}
			return propRotate
		}
	}
	for _, r := range rs {
		if errors.Is(r.err, session.ErrReused) {
			return propReuse
		}
	}
	for _, r := range rs {
		if errors.Is(r.err, session.ErrStale) {
			return propStale
		}
	}
	return propDead
}

func propMatches(want, obs propOutcome) bool {
	return want == obs || (want == propLost && obs == propRotate)
}

func (pm *propMachine) verify(t *rapid.T, whos []*propHolder, wants []propOutcome, suspicious []int, rs []propResult, desc string, auditsBefore int) {
	honestInvolved := false
	for _, w := range whos {
		honestInvolved = honestInvolved || w.honest
	}
	if honestInvolved && (!pm.thiefActed || pm.boundJKT != "") {
		for i, r := range rs {
			if whos[i].honest && r.err != nil {
				t.Fatalf("NO FALSE LOGOUT violated: an honest refresh failed though no thief has acted (or the session is bound to the honest key): %v\n%s", r.err, desc)
			}
		}
	}
	// Presentations without the key: refused with ErrDPoPMismatch; the rest
	// are judged by the table below.
	allWants := wants
	var keep []int
	for i, w := range wants {
		if w != propKeyless {
			keep = append(keep, i)
			continue
		}
		if !errors.Is(rs[i].err, session.ErrDPoPMismatch) || !session.IsInvalidGrant(rs[i].err) {
			t.Fatalf("a bound session's token without its key must fail with ErrDPoPMismatch (invalid_grant), got %v\n%s", rs[i].err, desc)
		}
		pm.stats.add("without the DPoP key: refused (" + whos[i].name + ")")
	}
	if len(keep) < len(wants) {
		rs, wants = slices.Clone(rs), slices.Clone(wants)
		for i := len(allWants) - 1; i >= 0; i-- {
			if !slices.Contains(keep, i) {
				rs, wants = slices.Delete(rs, i, i+1), slices.Delete(wants, i, i+1)
			}
		}
	}
	first := propKeyless
	if len(wants) > 0 {
		first = wants[0]
	}
	switch {
	case first.ok():
		got := ""
		for i, r := range rs {
			if r.err != nil {
				if errors.Is(r.err, session.ErrReused) {
					t.Fatalf("false reuse alarm: the rotation table answers %v here, but the session was revoked: %v\n%s", first, r.err, desc)
				}
				t.Fatalf("refresh should answer %v but failed: %v\n%s", first, r.err, desc)
			}
			if i == 0 {
				got = r.tok.RefreshToken
			} else if r.tok.RefreshToken != got {
				t.Fatalf("DUPLICATES yielded two different refresh tokens (gen %d and gen %d) for one presented token\n%s",
					pm.genOf(t, got), pm.genOf(t, r.tok.RefreshToken), desc)
			}
			pm.checkAccess(t, r, first.String())
		}
		g := pm.genOf(t, got)
		if first == propGrace {
			if got != pm.curTok {
				t.Fatalf("a grace answer must be the identical current refresh token (gen %d); got gen %d\n%s", pm.m.gen, g, desc)
			}
			break
		}
		if g != pm.m.gen || pm.seen[got] {
			t.Fatalf("%v must hand out a fresh successor of generation %d; got gen %d (seen before: %v)\n%s", first, pm.m.gen, g, pm.seen[got], desc)
		}
		pm.curTok = got
		pm.seen[got] = true
		pm.issued = append(pm.issued, propIssued{got, g})
	case first == propReuse:
		reused := 0
		for _, r := range rs {
			if r.err == nil {
				t.Fatalf("THEFT NOT DETECTED: this presentation is neither the current token nor the parent inside a window "+
					"(lock-step within G, lost response within L), yet refresh answered gen %d\n%s", pm.genOf(t, r.tok.RefreshToken), desc)
			}
			if !session.IsInvalidGrant(r.err) {
				t.Fatalf("reuse must fail with invalid_grant, got %v\n%s", r.err, desc)
			}
			if errors.Is(r.err, session.ErrReused) {
				reused++
			}
		}
		if reused != 1 {
			t.Fatalf("reuse: %d of %d answers report ErrReused, want exactly 1\n%s", reused, len(rs), desc)
		}
	case first == propStale:
		for _, r := range rs {
			if r.err == nil {
				t.Fatalf("a stale request (abandoned, or sent more than G ago) was answered gen %d; it must change nothing\n%s", pm.genOf(t, r.tok.RefreshToken), desc)
			}
			if !errors.Is(r.err, session.ErrStale) || session.IsInvalidGrant(r.err) {
				t.Fatalf("a stale request must fail with ErrStale, never invalid_grant; got %v\n%s", r.err, desc)
			}
		}
	case first == propDead:
		for _, r := range rs {
			if r.err == nil {
				t.Fatalf("the session is revoked or expired, yet refresh answered gen %d\n%s", pm.genOf(t, r.tok.RefreshToken), desc)
			}
			if !session.IsInvalidGrant(r.err) {
				t.Fatalf("refresh of a dead session must fail with invalid_grant, got %v\n%s", r.err, desc)
			}
		}
	}

	// Lost-response successors, reuse and grace answers to another device
	// than the rotation's are audited, with the presenter's IP and user
	// agent; nothing else is.
	var wantTypes []string
	for _, w := range allWants {
		switch w {
		case propLost:
			wantTypes = append(wantTypes, audit.RefreshLost)
		case propReuse:
			wantTypes = append(wantTypes, audit.RefreshReuse)
		case propKeyless:
			wantTypes = append(wantTypes, audit.RefreshDPoPMismatch)
		}
	}
	got := pm.auditCount(t) - auditsBefore
	if !slices.Contains(suspicious, got-len(wantTypes)) {
		t.Fatalf("audit: %d events appended, want %v plus %v of %s (answers %v)\n%s", got, wantTypes, suspicious, audit.RefreshSuspiciousGrace, wants, desc)
	}
	for range got - len(wantTypes) {
		wantTypes = append(wantTypes, audit.RefreshSuspiciousGrace)
	}
	if len(wantTypes) == 0 {
		return
	}
	evs, err := pm.env.Store.AuditEvents(propCtx, audit.Query{Limit: len(wantTypes)})
	if err != nil || len(evs) != len(wantTypes) {
		t.Fatalf("read audit: %d events, %v", len(evs), err)
	}
	var gotTypes []string
	for _, ev := range evs {
		fromPresenter := false
		for _, w := range whos {
			fromPresenter = fromPresenter || (ev.IP == w.meta.IP && ev.UserAgent == w.meta.UserAgent)
		}
		if ev.SessionID != pm.sid || !fromPresenter {
			t.Fatalf("audit event %+v, want one for session %s with the presenter's IP and user agent\n%s", ev, pm.sid, desc)
		}
		gotTypes = append(gotTypes, ev.Type)
	}
	slices.Sort(gotTypes)
	slices.Sort(wantTypes)
	if !slices.Equal(gotTypes, wantTypes) {
		t.Fatalf("audit events %v, want %v\n%s", gotTypes, wantTypes, desc)
	}
}

// receive gives holder h the newest refresh token among the answers.
func (pm *propMachine) receive(t *rapid.T, h *propHolder, rs []propResult) {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].err == nil {
			h.tok, h.gen, h.receivedAt = rs[i].tok.RefreshToken, pm.genOf(t, rs[i].tok.RefreshToken), rs[i].at
			h.pending = false
			return
		}
	}
}

// honestAfter updates the honest client after its request(s): a lost answer
// leaves it holding its old token with a retry to make.
func (pm *propMachine) honestAfter(t *rapid.T, rs []propResult, lost bool) {
	h := &pm.honest
	h.lastAttempt = rs[len(rs)-1].at
	if lost {
		if !h.pending {
			h.pending, h.pendingSince = true, rs[0].at
		}
		return
	}
	pm.receive(t, h, rs)
}

func (pm *propMachine) checkRetryWindow(t *rapid.T) {
	if h := &pm.honest; h.pending && pm.now().After(pm.retryDeadline()) {
		t.Fatalf("test bug: honest retry at %s is past its contract deadline %s", pm.rel(pm.now()), pm.rel(pm.retryDeadline()))
	}
}

// duplicate presents who's token 2 to 4 times: concurrently, or back to
// back with gaps of at most G. The honest client's copies all arrive within
// G of the first (a request that cannot reach the server within G is
// abandoned); a thief's may chain further, replaying the parent every < G.
func (pm *propMachine) duplicate(t *rapid.T, who *propHolder) []propResult {
	n := rapid.IntRange(2, 4).Draw(t, "copies")
	if rapid.Bool().Draw(t, "concurrent") {
		whos := make([]*propHolder, n)
		for i := range whos {
			whos[i] = who
		}
		rs, _ := pm.refreshAll(t, whos, "")
		return rs
	}
	var rs []propResult
	pm.tag = ", sequential duplicate"
	defer func() { pm.tag = "" }()
	first := pm.now()
	for i := range n {
		if i > 0 {
			gap := propDur(t, "gap", pm.cfg.grace)
			if who.honest {
				gap = min(gap, first.Add(pm.cfg.grace).Sub(pm.now()))
			}
			pm.env.Clock.Advance(max(min(gap, pm.room()), 0))
		}
		r, _ := pm.refreshAll(t, []*propHolder{who}, "")
		rs = append(rs, r...)
	}
	got := ""
	for _, r := range rs {
		if r.err != nil {
			continue
		}
		if got == "" {
			got = r.tok.RefreshToken
		} else if r.tok.RefreshToken != got {
			t.Fatalf("DUPLICATES within G yielded two different refresh tokens: gen %d and gen %d", pm.genOf(t, got), pm.genOf(t, r.tok.RefreshToken))
		}
	}
	return rs
}

// ---- actions ----

// HonestRefresh: the honest client refreshes and receives the answer.
func (pm *propMachine) HonestRefresh(t *rapid.T) { pm.honestRefresh(t, false) }

// HonestRefreshLost: the server answers, the answer never arrives.
func (pm *propMachine) HonestRefreshLost(t *rapid.T) {
	if pm.m.revoked {
		t.Skip("revoked: the plain refresh actions and finish cover what remains")
	}
	pm.honestRefresh(t, true)
}

func (pm *propMachine) honestRefresh(t *rapid.T, lost bool) {
	if !pm.honestReady() {
		t.Skip("the honest client is idle, or the session would expire before it may refresh")
	}
	pm.retryLater(t)
	pm.checkRetryWindow(t)
	if pm.honest.pending {
		pm.tag = ", retry"
		defer func() { pm.tag = "" }()
	}
	t.Logf("honest refresh (lost=%v) at %s", lost, pm.rel(pm.now()))
	rs, _ := pm.refreshAll(t, []*propHolder{&pm.honest}, "")
	pm.honestAfter(t, rs, lost)
}

// retryLater lets a pending retry come at once, within G of the last
// attempt, or after G (inside the retry window), not only when the clock
// happens to move.
func (pm *propMachine) retryLater(t *rapid.T) {
	h := &pm.honest
	if !h.pending {
		return
	}
	room := pm.room()
	switch rapid.IntRange(0, 2).Draw(t, "retry_when") {
	case 1:
		pm.env.Clock.Advance(propDur(t, "retry_wait", min(room, pm.cfg.grace)))
	case 2:
		after := h.lastAttempt.Add(pm.cfg.grace + time.Microsecond).Sub(pm.now())
		if after >= 0 && after <= room {
			pm.env.Clock.Advance(after + propDur(t, "retry_wait", room-after))
		}
	}
}

// HonestDuplicate: one honest request arrives several times.
func (pm *propMachine) HonestDuplicate(t *rapid.T) {
	if pm.m.revoked {
		t.Skip("revoked: the plain refresh actions and finish cover what remains")
	}
	if !pm.honestReady() {
		t.Skip("the honest client is idle, or the session would expire before it may refresh")
	}
	pm.checkRetryWindow(t)
	t.Logf("honest duplicate at %s", pm.rel(pm.now()))
	pm.honestAfter(t, pm.duplicate(t, &pm.honest), false)
}

// HonestStorageFailure: storage fails inside the honest client's refresh;
// the client keeps its token and retries at once.
func (pm *propMachine) HonestStorageFailure(t *rapid.T) {
	if pm.m.revoked {
		t.Skip("revoked: the plain refresh actions and finish cover what remains")
	}
	if !pm.honestReady() {
		t.Skip("the honest client is idle, or the session would expire before it may refresh")
	}
	pm.checkRetryWindow(t)
	point := rapid.SampledFrom(propFaultPoints).Draw(t, "fault_point")
	t.Logf("honest refresh with a storage fault at %s, at %s", point, pm.rel(pm.now()))
	h := &pm.honest
	before, counts := pm.row(t), pm.tableCounts(t)
	rs, faulted := pm.refreshAll(t, []*propHolder{h}, point)
	if !faulted {
		// The point is not on this refresh's path; it ran normally.
		pm.honestAfter(t, rs, false)
		return
	}
	err := rs[0].err
	switch {
	case err == nil:
		t.Fatalf("storage fault at %s, yet refresh answered success", point)
	case !errors.Is(err, propErrInjected):
		t.Fatalf("storage fault at %s surfaced as %v, not as the storage error", point, err)
	case session.IsInvalidGrant(err):
		t.Fatalf("storage fault at %s surfaced as invalid_grant (the client would log out): %v", point, err)
	}
	if after := pm.row(t); after != before {
		t.Fatalf("FAULT changed the session row (fault at %s):\nbefore %+v\nafter  %+v", point, before, after)
	}
	if after := pm.tableCounts(t); fmt.Sprint(after) != fmt.Sprint(counts) {
		t.Fatalf("FAULT changed table sizes (fault at %s): before %v, after %v", point, counts, after)
	}
	// The client ignores the failed answer and retries with the same token,
	// which must still work as if nothing had happened.
	rs, _ = pm.refreshAll(t, []*propHolder{h}, "")
	pm.honestAfter(t, rs, false)
}

// propNetworks are the honest client's IPs as it moves between networks.
var propNetworks = []string{"192.0.2.10", "192.0.2.11", "2001:db8::10"}

// HonestRoam: the honest client changes networks (a phone from Wi-Fi to
// mobile data): a retry within G from the new IP is a suspicious grace
// answer, audited, never a logout.
func (pm *propMachine) HonestRoam(t *rapid.T) {
	ip := rapid.SampledFrom(propNetworks).Draw(t, "network")
	if ip == pm.honest.meta.IP {
		t.Skip("same network")
	}
	pm.honest.meta.IP = ip
	t.Logf("honest client now at %s, at %s", ip, pm.rel(pm.now()))
}

// HonestSleep: the victim goes idle (in thief runs), so the thief has the
// session to itself: the case the price-of-lost-response-tolerance bound
// (at most L) is about.
func (pm *propMachine) HonestSleep(t *rapid.T) {
	if !pm.thiefEnabled || pm.honest.asleep || pm.honest.pending {
		t.Skip("no thief, already asleep, or a retry is due")
	}
	pm.honest.asleep = true
	t.Logf("honest client idle from %s", pm.rel(pm.now()))
}

// HonestWake: the victim comes back.
func (pm *propMachine) HonestWake(t *rapid.T) {
	if !pm.honest.asleep {
		t.Skip("awake")
	}
	pm.honest.asleep = false
	t.Logf("honest client back at %s", pm.rel(pm.now()))
}

// AdvanceClock moves the fake clock.
func (pm *propMachine) AdvanceClock(t *rapid.T) {
	g := pm.cfg.grace
	room := pm.room()
	var d time.Duration
	switch kind := rapid.IntRange(0, 11).Draw(t, "clock_kind"); kind {
	case 0: // a clock step backwards
		d = -time.Microsecond - propDur(t, "back", 2*g)
	case 1:
		d = g
	case 2:
		d = g + time.Microsecond
	case 3: // to the edge: the retry deadline, or just before expiry
		d = room
	case 4:
		d = propDur(t, "forward_far", room)
	case 5: // to the end of the grace window of the last hand-out, or just past it
		d = pm.m.handedAt.Add(g).Sub(pm.now())
		if rapid.Bool().Draw(t, "past_edge") {
			d += time.Microsecond
		}
		d = max(d, 0)
	case 6: // to the end of the parent's windows (L, or G when L is 0), or just past it
		d = pm.m.graceEnd(pm.cfg).Sub(pm.now())
		if rapid.Bool().Draw(t, "past_edge") {
			d += time.Microsecond
		}
		d = max(d, 0)
	default:
		d = propDur(t, "forward", 4*g)
	}
	d = min(d, room)
	pm.env.Clock.Advance(d)
	t.Logf("clock %+v -> %s", d, pm.rel(pm.now()))
}

// propDur draws a duration in [0, span] in whole microseconds (the
// precision the service keeps). rapid biases integers towards small values,
// so it draws a permille of span rather than a count of microseconds.
func propDur(t *rapid.T, label string, span time.Duration) time.Duration {
	if span <= 0 {
		return 0
	}
	p := rapid.IntRange(0, 1000).Draw(t, label)
	return (span / 1000 * time.Duration(p)).Truncate(time.Microsecond)
}

// ThiefCopy: the thief copies the honest client's token.
func (pm *propMachine) ThiefCopy(t *rapid.T) {
	if !pm.thiefEnabled || pm.thiefCopied {
		t.Skip("no thief, or already copied")
	}
	pm.thiefCopied = true
	pm.thief.tok, pm.thief.gen = pm.honest.tok, pm.honest.gen
	pm.stolen = propIssued{pm.thief.tok, pm.thief.gen}
	t.Logf("thief copies gen %d at %s", pm.thief.gen, pm.rel(pm.now()))
}

// ThiefRefresh: the thief refreshes with what it holds.
func (pm *propMachine) ThiefRefresh(t *rapid.T) {
	if !pm.thiefCopied || pm.thiefKind != propThiefNewest {
		t.Skip("the thief holds nothing, or keeps its stolen copy")
	}
	pm.thiefActed = true
	propThiefStale(t, &pm.thief, pm.now(), pm.cfg.grace)
	defer func() { pm.thief.stale, pm.thief.sentAt = "", time.Time{} }()
	t.Logf("thief refresh at %s (stale: %q)", pm.rel(pm.now()), pm.thief.stale)
	rs, _ := pm.refreshAll(t, []*propHolder{&pm.thief}, "")
	pm.receive(t, &pm.thief, rs)
}

// ThiefUseStolenCopy: the thief presents its original stolen copy again,
// keeping whatever it gets. While that copy is the parent this is the price
// of lost-response tolerance (a successor, at most for L after the rotation
// that made it the parent); otherwise it is reuse.
func (pm *propMachine) ThiefUseStolenCopy(t *rapid.T) {
	if !pm.thiefCopied || pm.thiefKind != propThiefStolen {
		t.Skip("the thief holds nothing, or keeps the newest token")
	}
	pm.thiefActed = true
	t.Logf("thief presents its stolen copy (gen %d) at %s", pm.stolen.gen, pm.rel(pm.now()))
	copyHolder := pm.thief
	copyHolder.tok, copyHolder.gen = pm.stolen.tok, pm.stolen.gen
	propThiefStale(t, &copyHolder, pm.now(), pm.cfg.grace)
	pm.tag = ", stolen copy"
	defer func() { pm.tag = "" }()
	rs, _ := pm.refreshAll(t, []*propHolder{&copyHolder}, "")
	pm.receive(t, &pm.thief, rs)
}

// ThiefReplayStolenCopy: the thief replays its stolen copy again and again,
// each time within G of the last (the reported attack: every 2 s with G
// 5 s): while the copy is the parent, grace answers, each restarting G,
// but none later than L after the rotation (G when L is 0).
func (pm *propMachine) ThiefReplayStolenCopy(t *rapid.T) {
	if !pm.thiefCopied || pm.thiefKind != propThiefStolen {
		t.Skip("the thief holds nothing, or keeps the newest token")
	}
	pm.thiefActed = true
	n := rapid.IntRange(2, 8).Draw(t, "replays")
	t.Logf("thief replays its stolen copy (gen %d) %d times from %s", pm.stolen.gen, n, pm.rel(pm.now()))
	copyHolder := pm.thief
	copyHolder.tok, copyHolder.gen = pm.stolen.tok, pm.stolen.gen
	pm.tag = ", stolen copy replayed within G"
	defer func() { pm.tag = "" }()
	for i := range n {
		if i > 0 {
			gap := pm.cfg.grace/2 + propDur(t, "replay_gap", pm.cfg.grace/2)
			pm.env.Clock.Advance(min(gap, pm.room()))
		}
		rs, _ := pm.refreshAll(t, []*propHolder{&copyHolder}, "")
		pm.receive(t, &pm.thief, rs)
	}
}

// ThiefDuplicate: the thief's request arrives several times.
func (pm *propMachine) ThiefDuplicate(t *rapid.T) {
	if pm.m.revoked {
		t.Skip("revoked: the plain refresh actions and finish cover what remains")
	}
	if !pm.thiefCopied || pm.thiefKind != propThiefNewest {
		t.Skip("the thief holds nothing, or keeps its stolen copy")
	}
	pm.thiefActed = true
	t.Logf("thief duplicate at %s", pm.rel(pm.now()))
	pm.receive(t, &pm.thief, pm.duplicate(t, &pm.thief))
}

// RaceHonestThief: honest client and thief present the same token at once.
func (pm *propMachine) RaceHonestThief(t *rapid.T) {
	if pm.m.revoked {
		t.Skip("revoked: the plain refresh actions and finish cover what remains")
	}
	if !pm.thiefCopied || pm.thief.tok != pm.honest.tok || pm.thiefKind != propThiefNewest {
		t.Skip("the holders do not hold the same token")
	}
	if !pm.honestReady() {
		t.Skip("the honest client is idle, or the session would expire before it may refresh")
	}
	pm.checkRetryWindow(t)
	pm.thiefActed = true
	t.Logf("honest and thief race at %s", pm.rel(pm.now()))
	rs, _ := pm.refreshAll(t, []*propHolder{&pm.honest, &pm.thief}, "")
	pm.honestAfter(t, rs[:1], false)
	pm.receive(t, &pm.thief, rs[1:])
}

// ReplayOldToken: someone presents a token older than the honest client's,
// perhaps with a scope wider than the grant or as another client: an old
// token is reuse whatever else is wrong with the request.
func (pm *propMachine) ReplayOldToken(t *rapid.T) {
	if !pm.replayEnabled {
		t.Skip("no replayer in this run")
	}
	var old []propIssued
	for _, is := range pm.issued {
		if is.gen < pm.honest.gen {
			old = append(old, is)
		}
	}
	if len(old) == 0 {
		t.Skip("no old token yet")
	}
	is := old[rapid.IntRange(0, len(old)-1).Draw(t, "old_index")]
	pm.thiefActed = true
	pm.replayer.tok, pm.replayer.gen = is.tok, is.gen
	pm.replayer.probe = rapid.SampledFrom([]string{"", propProbeScope, propProbeClient}).Draw(t, "probe")
	defer func() { pm.replayer.probe = "" }()
	t.Logf("replay of gen %d at %s (probe %q)", is.gen, pm.rel(pm.now()), pm.replayer.probe)
	pm.refreshAll(t, []*propHolder{&pm.replayer}, "")
}

// HonestAbandon: the honest client's refresh reaches a node that is
// paused (a GC pause, a frozen VM, an overloaded node); the client gives up
// on it, as the contract says, and carries on with the token it holds. The
// node keeps the request and may act on it much later (DeliverDelayed).
func (pm *propMachine) HonestAbandon(t *rapid.T) {
	if pm.m.revoked || len(pm.delayed) >= 3 {
		t.Skip("revoked, or enough requests held up")
	}
	if !pm.honestReady() {
		t.Skip("the honest client is idle, or the session would expire before it may refresh")
	}
	pm.checkRetryWindow(t)
	pm.delayed = append(pm.delayed, propDelayed{pm.honest.tok, pm.honest.gen, pm.now()})
	pm.honest.lastAttempt = pm.now()
	t.Logf("honest refresh with gen %d held up by a paused node at %s; the client gives up", pm.honest.gen, pm.rel(pm.now()))
}

// DeliverDelayed: the paused node resumes and acts on a held-up request
// whose client has left: the connection is closed (the client gave up),
// or it was sent more than G ago. Whatever has happened since, it changes
// nothing: no lost-response successor abandons the token the client holds
// now, no reuse revokes the session, nothing rotates. (Before issue 19 it
// revoked sessions: "generation 27 presented; current 29, parent 28".)
func (pm *propMachine) DeliverDelayed(t *rapid.T) {
	if len(pm.delayed) == 0 {
		t.Skip("nothing held up")
	}
	i := rapid.IntRange(0, len(pm.delayed)-1).Draw(t, "delayed_index")
	d := pm.delayed[i]
	pm.delayed = slices.Delete(pm.delayed, i, i+1)
	h := &pm.late
	h.tok, h.gen, h.meta = d.tok, d.gen, pm.honest.meta
	h.stale, h.sentAt = propGone, d.sentAt
	late := pm.now().Sub(d.sentAt) > pm.cfg.grace
	switch {
	case late && rapid.Bool().Draw(t, "connection_looks_open"):
		// A phone whose network changed: its connection died without a
		// FIN, so only the request time tells.
		h.stale = propLate
	case rapid.Bool().Draw(t, "no_request_time"):
		h.sentAt = time.Time{} // a client that does not send request_time
	}
	defer func() { h.stale, h.sentAt = "", time.Time{} }()
	t.Logf("the paused node acts on the held-up gen %d (sent at %s, %s) at %s", d.gen, pm.rel(d.sentAt), h.stale, pm.rel(pm.now()))
	pm.refreshAll(t, []*propHolder{h}, "") // nobody reads the answer
}

// propThiefStale lets a thief fake a stale request (a request time long
// past, or a connection it closes at once): it must gain nothing by it.
func propThiefStale(t *rapid.T, h *propHolder, now time.Time, grace time.Duration) {
	switch rapid.IntRange(0, 5).Draw(t, "thief_fakes_stale") {
	case 0:
		h.stale, h.sentAt = propGone, time.Time{}
	case 1:
		h.stale, h.sentAt = propLate, now.Add(-grace-time.Millisecond)
	default:
		h.stale, h.sentAt = "", time.Time{}
	}
}

// Check holds after every action.
func (pm *propMachine) Check(t *rapid.T) {
	row := pm.row(t)
	if row.Gen < pm.maxGen {
		t.Fatalf("generation went backwards: %d after %d", row.Gen, pm.maxGen)
	}
	pm.maxGen = row.Gen
	if row.Gen != pm.m.gen {
		t.Fatalf("stored generation %d, model %d", row.Gen, pm.m.gen)
	}
	revoked := !row.RevokedAt.IsZero()
	if revoked && !pm.thiefActed {
		t.Fatalf("NO FALSE LOGOUT violated: session revoked (%s) though no thief has acted", row.RevokeReason)
	}
	if revoked != pm.m.revoked {
		t.Fatalf("session revoked = %v, model %v", revoked, pm.m.revoked)
	}
	if revoked && row.RevokeReason != session.ReasonReuse {
		t.Fatalf("revoke reason %q, want %q", row.RevokeReason, session.ReasonReuse)
	}
	if !row.ExpiresAt.Equal(pm.m.absExp) {
		t.Fatalf("absolute expiry changed: %v, want %v", row.ExpiresAt, pm.m.absExp)
	}
	// O(1) refresh state: one session row; no table grows with refreshes
	// (audit events are the audit log, not refresh state).
	counts := pm.tableCounts(t)
	for name, n := range counts {
		want := pm.baseline[name]
		switch name {
		case "audit_events":
			continue
		case "revocations":
			if pm.m.revoked {
				want++
			}
		}
		if n != want {
			t.Fatalf("table %s has %d rows, want %d: refresh state must be O(1)", name, n, want)
		}
	}
	if counts["sessions"] != 1 {
		t.Fatalf("sessions table has %d rows, want 1", counts["sessions"])
	}
}

// finish: once reuse was detected, every token ever handed out fails.
func (pm *propMachine) finish(t *rapid.T) {
	if !pm.m.revoked {
		return
	}
	before := pm.row(t)
	toks := []string{pm.honest.tok, pm.thief.tok}
	for _, is := range pm.issued {
		toks = append(toks, is.tok)
	}
	for _, tok := range toks {
		if tok == "" {
			continue
		}
		_, err := pm.env.Sessions.Refresh(propCtx, session.RefreshRequest{Token: tok, Client: pm.env.Client, Meta: pm.replayer.meta})
		if err == nil || !session.IsInvalidGrant(err) {
			t.Fatalf("after reuse detection, gen %d answered %v; want invalid_grant", pm.genOf(t, tok), err)
		}
	}
	if after := pm.row(t); after != before {
		t.Fatalf("refreshes of a revoked session changed it:\nbefore %+v\nafter  %+v", before, after)
	}
}
