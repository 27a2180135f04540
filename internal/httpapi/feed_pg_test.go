package httpapi_test

import (
	"bufio"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// TestStreamCursorPerTransaction: on PostgreSQL the cursor counts
// transactions. A "log out everywhere" writes several entries in one
// transaction; all but its last carry the cursor before it, so a stream
// cut in the middle resumes with the whole transaction, not past its rest.
func TestStreamCursorPerTransaction(t *testing.T) {
	st := pgtest.New(t)
	env, srv := newServer(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }})
	ctx := context.Background()
	if err := env.Sessions.EnsureClient(ctx, session.Client{ID: "rs", Name: "rs", Audiences: []string{"app"}, AccessTTL: time.Minute,
		SecretHash: session.HashClientSecret("secret")}); err != nil {
		t.Fatal(err)
	}
	single := env.Login(t, "single@example.com")
	if err := env.Sessions.RevokeSession(ctx, "", single.SessionID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	all := []string{env.Login(t, "all@example.com").SessionID}
	for range 2 {
		tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "all@example.com", Password: testenv.Password, Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, tok.SessionID)
	}
	ses, err := st.Session(ctx, all[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Sessions.Logout(ctx, ses.UserID, all[0], session.ScopeAll, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	type event struct {
		id  int64
		sid string
	}
	// read returns the revoke events before "event: ready" of a stream resumed
	// from lastID.
	read := func(lastID string) []event {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+"/v1/revocations", nil)
		req.SetBasicAuth("rs", "secret")
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Last-Event-ID", lastID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []event
		var cur event
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && sc.Text() != "event: ready" {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				cur.id, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, `data: {"sid":"`):
				cur.sid = strings.Split(strings.TrimPrefix(line, `data: {"sid":"`), `"`)[0]
				out = append(out, cur)
			}
		}
		return out
	}
	// The hub reads the database every 250 ms or when woken; a writing
	// transaction held open anywhere on the cluster (another package's
	// slow-commit test) holds entries back until it ends.
	var got []event
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < 4 && time.Now().Before(deadline) {
		got = read("0")
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 4 || got[0].sid != single.SessionID {
		t.Fatalf("stream from 0: %+v; want the single revocation, then the three of the logout", got)
	}
	first, last := got[0].id, got[3].id
	if first <= 0 || last <= first {
		t.Fatalf("cursors %d then %d; want two increasing transaction cursors", first, last)
	}
	for i, e := range got[1:3] {
		if e.id != first {
			t.Errorf("entry %d of the logout carries cursor %d, want %d (the cursor before its transaction)", i+1, e.id, first)
		}
	}
	var sids []string
	for _, e := range got[1:] {
		sids = append(sids, e.sid)
	}
	slices.Sort(sids)
	slices.Sort(all)
	if !slices.Equal(sids, all) {
		t.Fatalf("the logout's entries %v, want %v", sids, all)
	}
	// Cut after the logout's first entry: resuming gives all three again.
	if again := read(strconv.FormatInt(got[1].id, 10)); len(again) != 3 {
		t.Fatalf("resumed from the middle of a transaction: %+v; want its three entries", again)
	}
	if none := read(strconv.FormatInt(last, 10)); len(none) != 0 {
		t.Fatalf("resumed after the transaction: %+v; want nothing", none)
	}
}
