package imap_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crmsync/crmsync/internal/testenv"
)

// commands returns the client's lines through p since its last ResetCounters, without
// their tags (the proxy already hides LOGIN's password).
func commands(p *testenv.Proxy) []string {
	lines := p.Lines()
	for i, l := range lines {
		if _, rest, ok := strings.Cut(l, " "); ok {
			lines[i] = rest
		}
	}
	return lines
}

// resetOnFullFetch is a testenv.ProxyOptions.ResetAfter that resets the connection that
// sends the nth "FETCH … BODY.PEEK[]" (counted over all connections) after n bytes of
// the server's answer.
func resetOnFullFetch(nth, n int) func(line []byte) (int, bool) {
	var fetches atomic.Int64
	return func(line []byte) (int, bool) {
		if bytes.Contains(line, []byte(" FETCH ")) && bytes.Contains(line, []byte("BODY.PEEK[]")) {
			return n, fetches.Add(1) == int64(nth)
		}
		return 0, false
	}
}

// silentListener accepts connections and never says a word: a server that hangs.
func silentListener(t testing.TB) int {
	return testenv.ServeTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) }).Port // read whatever comes, answer nothing
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}
