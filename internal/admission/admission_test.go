package admission

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve runs an http.Server on a capped listener; the handler blocks while
// block is open for paths under /block.
func serve(t *testing.T, max int, block, entered chan struct{}) (*Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, max, nil)
	srv := &http.Server{ConnState: l.ConnState, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/block") {
			entered <- struct{}{}
			<-block
		}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// get sends one keep-alive request on c and returns the status.
func get(t *testing.T, c net.Conn, path string) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitOpen waits until the listener holds n connections (the server's
// goroutines see accept and close a moment after the client does).
func waitOpen(t *testing.T, l *Listener, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); l.Open() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("open connections = %d, want %d", l.Open(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestListenerClosesIdleForNew(t *testing.T) {
	t.Parallel()
	l, addr := serve(t, 2, nil, nil)
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []net.Conn{a, b} {
		if s := get(t, c, "/"); s != 200 {
			t.Fatalf("status %d", s)
		}
	}
	waitOpen(t, l, 2)
	// Both idle now: a third connection is served, in place of one of them.
	c := dial(t, addr)
	if s := get(t, c, "/"); s != 200 {
		t.Fatalf("third connection: status %d, want 200", s)
	}
	waitOpen(t, l, 2)
	closed := 0
	for _, old := range []net.Conn{a, b} {
		old.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := old.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("%d idle connections closed, want 1", closed)
	}
}

func TestListenerRefusesWhenAllBusy(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{})
	l, addr := serve(t, 2, block, entered)
	for range 2 {
		c := dial(t, addr)
		io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
		<-entered // in the handler: the connection is active
	}
	start := time.Now()
	c := dial(t, addr)
	if s := get(t, c, "/"); s != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", s)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %s", d)
	}
	if l.Open() != 2 {
		t.Errorf("open = %d, want 2", l.Open())
	}
}

func TestDefaults(t *testing.T) {
	l := Defaults(16)
	if l.MaxConnections < 64 || l.MaxInFlight < 32 {
		t.Fatalf("%+v", l)
	}
	if fds, ok := descriptorLimit(); ok && uint64(l.MaxConnections) > fds {
		t.Errorf("MaxConnections %d above the descriptor limit %d", l.MaxConnections, fds)
	}
}

// TestOnStep: the hook hears the open count once at once, then each time
// it enters another band of step, opening and closing, in order.
func TestOnStep(t *testing.T) {
	l, addr := serve(t, 100, nil, nil)
	var mu sync.Mutex
	var heard []int
	l.OnStep(2, func(n int) {
		mu.Lock()
		heard = append(heard, n)
		mu.Unlock()
	})
	var conns []net.Conn
	for i := 1; i <= 5; i++ {
		c := dial(t, addr)
		if got := get(t, c, "/"); got != http.StatusOK {
			t.Fatalf("GET: %d", got)
		}
		waitOpen(t, l, i)
		conns = append(conns, c)
	}
	for i := 4; i >= 0; i-- {
		conns[i].Close()
		waitOpen(t, l, i)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{0, 2, 4, 3, 1}; !slices.Equal(heard, want) {
		t.Errorf("heard %v, want %v", heard, want)
	}
}
