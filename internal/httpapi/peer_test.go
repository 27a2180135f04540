package httpapi

import (
	"github.com/latchauth/latch/bearer"
	"net"
	"net/url"
	"testing"
	"time"
)

// TestPeerClosed: the peek tells a closed connection from an open one
// (also one with unread bytes waiting) and consumes nothing. A FIN behind
// unread bytes is not seen; the token endpoint asks only after reading
// its whole request.
func TestPeerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	// eventually: the FIN crosses loopback at once, but not synchronously.
	eventually := func(want bool, s net.Conn, what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); peerClosed(s) != want; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: peerClosed = %v, want %v", what, !want, want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	c, s := accept()
	if peerClosed(s) {
		t.Fatal("an open, idle connection reads as closed")
	}
	c.Write([]byte("GET / HTTP/1.1\r\n"))
	eventually(false, s, "open with unread bytes")
	b := make([]byte, 64)
	if n, _ := s.Read(b); string(b[:n]) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("the peek consumed bytes: the server then read %q", b[:n])
	}
	// The check runs once the request has been read (the token endpoint
	// has parsed its form), so what is left is the FIN: a request written
	// in full and then abandoned while the node was paused.
	c.Close()
	eventually(true, s, "closed after its request was read")

	c2, s2 := accept()
	c2.(*net.TCPConn).CloseWrite() // half-close: the client sends nothing more
	eventually(true, s2, "half-closed by the client")
}

func TestRequestSentAt(t *testing.T) {
	iat := time.Unix(1767225600, 0)
	for _, tt := range []struct {
		v       string
		iat     time.Time
		want    time.Time
		wantErr bool
	}{
		{v: "", want: time.Time{}},
		{v: "", iat: iat, want: iat.Add(bearer.DefaultDPoPWindow)}, // a slow client clock the proof check accepts is not stale
		{v: "1767225600123", iat: iat, want: time.UnixMilli(1767225600123)},
		{v: "1767225600.5", wantErr: true},
		{v: "-1", wantErr: true},
		{v: "0", wantErr: true},
		{v: "soon", wantErr: true},
	} {
		form := url.Values{}
		if tt.v != "" {
			form.Set(RequestTimeParam, tt.v)
		}
		got, err := requestSentAt(form, tt.iat)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("request_time %q, iat %v: %v, %v; want %v (error %v)", tt.v, tt.iat, got, err, tt.want, tt.wantErr)
		}
	}
}
