package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// PauseEnv turns on TestPausedNode, which freezes a node (SIGSTOP) under
// load for about 45 s.
const PauseEnv = "LATCH_TEST_PAUSE"

// TestPausedNode is issue 19's pause run, bounded: two `latch serve` nodes
// on one PostgreSQL schema with --refresh-grace 3s --refresh-lost-window
// 12s; 64 clients that keep the client contract (refresh every 3.2 s, give
// up on an attempt after 2 s, which closes its connection, and try the other
// node at once; back off when both fail), each sending request_time, half
// of them phones whose abandoned connections die without a FIN; node A
// is frozen for 10 s and resumed, three times. On resuming, A holds
// requests whose clients have long since refreshed through B: acting on
// them would take the clients' tokens for reuse and revoke their sessions.
// No session may be revoked and no client may be told invalid_grant.
func TestPausedNode(t *testing.T) {
	if os.Getenv(PauseEnv) != "1" {
		t.Skip(PauseEnv + " is not 1; skipping the paused-node run (about 50 s)")
	}
	const (
		clients  = 64
		every    = 3200 * time.Millisecond
		giveUp   = 2 * time.Second
		pauses   = 3
		pauseFor = 10 * time.Second
		between  = 4 * time.Second
	)
	c := newCluster(t, pgtest.URL(t))
	c.env = append(c.env, "LATCH_REFRESH_GRACE=3s", "LATCH_REFRESH_LOST_WINDOW=12s")
	nodes := []*node{c.start(t, ""), c.start(t, "")}
	paused := nodes[0]
	var frozen atomic.Bool
	t.Cleanup(func() { paused.cmd.Process.Signal(syscall.SIGCONT) }) // before the node's own cleanup stops it

	toks := make([]string, clients)
	for i := range toks {
		toks[i] = nodes[i%2].signup(t, fmt.Sprintf("pause-%d@example.com", i)).RefreshToken
	}

	// One transport for the clients, with keep-alive, as a real client
	// library has; an attempt that times out closes its connection. Half
	// the clients are phones whose network changes when an attempt times
	// out: the connection dies without a FIN (its Close sends nothing), so
	// the node cannot see that nobody waits; only request_time tells.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var (
		deadMu    sync.Mutex
		deadConns []net.Conn
	)
	t.Cleanup(func() {
		deadMu.Lock()
		defer deadMu.Unlock()
		for _, c := range deadConns {
			c.Close()
		}
	})
	var dialer net.Dialer
	phones := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			deadMu.Lock()
			deadConns = append(deadConns, c)
			deadMu.Unlock()
			return silentClose{c}, nil
		}}}
	isPhone := func(i int) bool { return i%4 >= 2 } // both nodes' clients
	var (
		refreshes, failedAttempts, stale atomic.Int64
		mu                               sync.Mutex
		loggedOut                        []string
	)
	attempt := func(hc *http.Client, n *node, rt string) (string, int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), giveUp)
		defer cancel()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"},
			// One machine, one clock: the server-clock offset is 0.
			"request_time": {strconv.FormatInt(time.Now().UnixMilli(), 10)}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.base+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := hc.Do(req)
		if err != nil {
			return "", 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", 0, err
		}
		var tr struct {
			RefreshToken string `json:"refresh_token"`
			Error        string `json:"error"`
		}
		json.Unmarshal(body, &tr)
		if resp.StatusCode == http.StatusOK {
			return tr.RefreshToken, 200, nil
		}
		return tr.Error, resp.StatusCode, nil
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			rt := toks[i]
			// Spread the clients over the first period.
			next := time.Now().Add(time.Duration(i) * every / clients)
			backoff := 250 * time.Millisecond
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Until(next)):
				}
				ok := false
				for k := range 2 { // the client's node first, then the other
					c := hc
					if isPhone(i) {
						c = phones
					}
					tok, status, err := attempt(c, nodes[(i+k)%2], rt)
					switch {
					case err == nil && status == 200:
						rt, ok = tok, true
					case err == nil && status == http.StatusBadRequest && tok == "invalid_grant":
						mu.Lock()
						loggedOut = append(loggedOut, fmt.Sprintf("client %d, through node %d, node A frozen %v", i, (i+k)%2, frozen.Load()))
						mu.Unlock()
						return
					case err == nil && status == http.StatusServiceUnavailable && tok == "temporarily_unavailable":
						stale.Add(1)
						failedAttempts.Add(1)
					default:
						failedAttempts.Add(1)
					}
					if ok {
						break
					}
				}
				if ok {
					refreshes.Add(1)
					next, backoff = time.Now().Add(every), 250*time.Millisecond
				} else {
					next, backoff = time.Now().Add(backoff), min(2*backoff, 2*time.Second)
				}
			}
		})
	}

	time.Sleep(between)
	for p := range pauses {
		if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen.Store(true)
		t.Logf("pause %d: node A frozen for %s", p+1, pauseFor)
		time.Sleep(pauseFor)
		if err := paused.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		frozen.Store(false)
		time.Sleep(between)
	}
	close(stop)
	wg.Wait()

	db, err := pgx.Connect(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var revoked, reuseEvents int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL`).Scan(&revoked); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE type = 'refresh.reuse'`).Scan(&reuseEvents); err != nil {
		t.Fatal(err)
	}
	refused := strings.Count(nodes[0].log.String(), "refresh refused") + strings.Count(nodes[1].log.String(), "refresh refused")
	t.Logf("%d clients, %d pauses of %s: %d refreshes, %d failed attempts (%d answered 503 stale); %d stale requests refused by the nodes; "+
		"%d sessions revoked, %d reuse audit events, %d clients told invalid_grant",
		clients, pauses, pauseFor, refreshes.Load(), failedAttempts.Load(), stale.Load(), refused, revoked, reuseEvents, len(loggedOut))
	if refreshes.Load() < clients*5 {
		t.Errorf("only %d refreshes: the clients did not keep refreshing through the pauses", refreshes.Load())
	}
	if revoked != 0 || reuseEvents != 0 || len(loggedOut) != 0 {
		t.Fatalf("FALSE LOGOUT: %d of %d sessions revoked, %d reuse events; clients told invalid_grant: %v", revoked, clients, reuseEvents, loggedOut)
	}
}

// silentClose is a connection that dies without a FIN: Close sends nothing
// (the test closes the real connection when it ends).
type silentClose struct{ net.Conn }

func (silentClose) Close() error { return nil }
