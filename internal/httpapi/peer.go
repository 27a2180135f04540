package httpapi

import (
	"context"
	"github.com/latchauth/latch/bearer"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it keeps each request's
// connection in its context, so that a refresh can tell, just before it
// commits, whether its client has closed the connection (clientGone).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// clientGone returns a function reporting whether the client of r has
// stopped waiting: r's context is done, or the connection has been closed
// by the peer. net/http notices a closed peer only by a background read
// that starts once the body has been read, on a goroutine of its own, so a
// node that resumes after a pause can run a queued request before it has
// noticed; the peek on the socket (peerClosed) sees the FIN at once. A
// connection of a client that vanished without a FIN (a phone whose
// network changed) looks open: the request time covers that case.
func clientGone(r *http.Request) func() bool {
	ctx := r.Context()
	c, _ := ctx.Value(connKey{}).(net.Conn)
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		c = nc.NetConn()
	}
	// c is settled before the closure captures it: captured and then
	// assigned, it would be moved to the heap, one more allocation a
	// refresh.
	return func() bool {
		return ctx.Err() != nil || c != nil && peerClosed(c)
	}
}

// RequestTimeParam is the token-request parameter in which a client says
// when it sent a refresh: Unix time in milliseconds, in the server's
// clock (the client's clock plus its estimate of the offset to the
// server's, from Date). docs/design.md "Abandoned and late requests".
const RequestTimeParam = "request_time"

// requestSentAt is when the client sent the token request, in server time:
// the request_time parameter, else the iat of the request's DPoP proof
// (RFC 9449 section 4.2; pass the zero time when there is none), else
// zero (unknown). request_time comes first because the client corrects it
// by its server-clock offset, and iat is the client's own clock in whole
// seconds. A client gains nothing by lying: a request found stale is
// refused and yields no tokens.
//
// An iat is taken as sent bearer.DefaultDPoPWindow later than it says: the
// proof check accepts a client clock that far off, and a client whose
// clock runs slow by more than G (and that sends no request_time, as a
// plain RFC 9449 client does not) would otherwise be refused as stale on
// every refresh. With iat alone, the stale rule then catches requests
// delayed by more than G plus that window; the connection check still
// catches those whose client left.
func requestSentAt(form url.Values, dpopIAT time.Time) (time.Time, error) {
	v := form.Get(RequestTimeParam)
	if v == "" {
		if dpopIAT.IsZero() {
			return time.Time{}, nil
		}
		return dpopIAT.Add(bearer.DefaultDPoPWindow), nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, badRequest(RequestTimeParam + " must be Unix time in milliseconds (a positive integer)")
	}
	return time.UnixMilli(ms), nil
}
