//go:build unix

package httpapi

import (
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the peer of c has closed the connection: a
// non-blocking MSG_PEEK read returns 0 bytes (FIN) or ECONNRESET. It
// consumes nothing, so net/http's own reads see every byte; Control, unlike
// a read on the net.Conn, does not wait for net/http's background read.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || errors.Is(err, syscall.ECONNRESET)
	})
	return closed
}
