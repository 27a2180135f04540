//go:build !unix

package httpapi

import "net"

// peerClosed cannot peek at a socket here; the request context and the
// request time still apply.
func peerClosed(net.Conn) bool { return false }
