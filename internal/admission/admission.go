// Package admission bounds the work a node takes on, so that overload is
// shed (a fast 503 with Retry-After) rather than queued until clients time
// out: a cap on open connections, where an idle keep-alive connection is
// closed to make room for a new one, and defaults derived from the
// machine.
package admission

import (
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// Limits are a node's admission limits.
type Limits struct {
	// MaxConnections caps open client connections (Listener).
	MaxConnections int
	// MaxInFlight caps requests being served at once (httpapi).
	MaxInFlight int
}

// Reserved descriptors: what a node needs besides client connections
// (database files or connections, Redis, webhook deliveries, logs, the
// listener itself), kept free of client connections so that a flood of
// them never starves the node's own I/O.
const reservedFDs = 256

// Defaults derives limits from the machine: connections from the
// descriptor limit (RLIMIT_NOFILE, which Go raises to the hard limit at
// start), less the storage pool's connections and a reserve, and at most
// 8,192 per core (an idle connection costs about 10 KiB); requests in
// flight from the pool size and GOMAXPROCS: four per storage connection
// and per core, enough to keep every connection and core busy with the
// next request ready, few enough that a request admitted gets a
// connection well within the pool's wait bound instead of queueing (by
// Little's law the queue, not the cap, is what a client waits on).
func Defaults(poolSize int) Limits {
	procs := runtime.GOMAXPROCS(0)
	conns := 8192 * procs
	if fds, ok := descriptorLimit(); ok {
		conns = min(conns, int(min(fds, 1<<30))-poolSize-reservedFDs)
	}
	return Limits{
		MaxConnections: max(conns, 64),
		MaxInFlight:    max(32, 4*poolSize+4*procs),
	}
}

// Listener is a net.Listener that holds at most max connections open. At
// the cap, a new connection takes the place of an idle keep-alive one
// (closed, as IdleTimeout would); when none is idle it is answered 503
// with Retry-After and closed, at once, rather than left in the kernel's
// backlog. Install ConnState as the http.Server's ConnState hook, or no
// connection is ever known idle.
type Listener struct {
	net.Listener
	max    int
	onShed func()

	mu   sync.Mutex
	open map[*conn]bool // open connections: idle or not
	// onStep, if set, hears the open count each time it enters another
	// multiple of step (OnStep).
	step   int
	onStep func(open int)
}

// OnStep has fn called with the number of open connections whenever that
// number moves into another band of step (0 to step-1, step to 2·step-1,
// …), and once now. fn runs under the listener's lock, so calls come in
// the order of the changes and must be quick: it sizes what depends on
// the open connections (serve's memory limit) without a call for every
// accept. Set it before Accept runs.
func (l *Listener) OnStep(step int, fn func(open int)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.step, l.onStep = max(1, step), fn
	if fn != nil {
		fn(len(l.open))
	}
}

// changed reports the open count to onStep when it moved from before into
// another band; l.mu is held.
func (l *Listener) changed(before int) {
	if l.onStep != nil && before/l.step != len(l.open)/l.step {
		l.onStep(len(l.open))
	}
}

// NewListener caps ln at max open connections; onShed, if set, is called
// for each connection refused (metrics).
func NewListener(ln net.Listener, max int, onShed func()) *Listener {
	return &Listener{Listener: ln, max: max, onShed: onShed, open: map[*conn]bool{}}
}

// Open returns the number of open connections.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		wc := &conn{Conn: c, l: l}
		l.mu.Lock()
		var victim *conn
		before := len(l.open)
		if len(l.open) >= l.max {
			for o, idle := range l.open {
				if idle {
					victim = o
					delete(l.open, o)
					break
				}
			}
			if victim == nil {
				l.mu.Unlock()
				l.refuse(c)
				continue
			}
		}
		l.open[wc] = false
		l.changed(before)
		l.mu.Unlock()
		if victim != nil {
			victim.Close()
		}
		return wc, nil
	}
}

// refusal is the whole answer to a connection over the cap (RFC 9110
// section 15.6.4, with Retry-After, section 10.2.3).
var refusal = func() string {
	body := `{"error":"temporarily_unavailable","error_description":"too many connections; retry"}` + "\n"
	return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nCache-Control: no-store\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}()

func (l *Listener) refuse(c net.Conn) {
	if l.onShed != nil {
		l.onShed()
	}
	// The request is not read: a client that sent one sees the answer and
	// the close; the write cannot block the accept loop for long.
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write([]byte(refusal))
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.Close()
}

// ConnState is the http.Server ConnState hook that tells the listener
// which connections are idle between requests.
func (l *Listener) ConnState(c net.Conn, s http.ConnState) {
	wc, ok := c.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, open := l.open[wc]; open && (s == http.StateIdle || s == http.StateActive) {
		l.open[wc] = s == http.StateIdle
	}
}

type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		before := len(c.l.open)
		delete(c.l.open, c)
		c.l.changed(before)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
