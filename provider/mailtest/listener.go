package mailtest

import (
	"net"
	"sync"
)

// trackingListener remembers every connection it accepts, so that Close can close the
// ones the protocol servers do not know about yet and wait for the goroutines that serve
// them: neither imapserver.Server.Close nor smtp.Server.Close waits for its connection
// goroutines.
type trackingListener struct {
	net.Listener

	// countServed makes served count connection goroutines (IMAP only).
	countServed bool

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
	// served counts IMAP connection goroutines: one is added per accepted connection
	// and done when the connection is closed for the last time, after its session
	// closed (see trackedConn.Close).
	served sync.WaitGroup
}

func newTrackingListener(ln net.Listener, countServed bool) *trackingListener {
	return &trackingListener{Listener: ln, countServed: countServed, conns: make(map[*trackedConn]struct{})}
}

// Accept returns the next connection, tracked. After closeAll it closes new connections
// at once and reports net.ErrClosed.
func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, ln: l}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	if l.countServed {
		l.served.Add(1)
	}
	l.mu.Unlock()
	return tc, nil
}

// closeAll closes the listener and every tracked connection; later connections are
// refused.
func (l *trackingListener) closeAll() {
	l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// wait waits until every accepted connection was closed by its serving goroutine after
// its session ended (IMAP only; SMTP's Shutdown waits by itself).
func (l *trackingListener) wait() { l.served.Wait() }

// trackedConn is a connection the listener tracks.
type trackedConn struct {
	net.Conn
	ln *trackingListener

	mu          sync.Mutex
	closed      bool // Close was called
	sessionDone bool // the IMAP session on this connection ended
	released    bool // the listener's served count was released
}

// Close closes the connection. The IMAP serving goroutine's last acts are to end its
// session and close its connection; the connection is released when both happened.
// (Closing the connection from the server's side first is common, and when it is
// wrapped in TLS the goroutine's own close does not reach this one: tls.Conn closes
// its underlying connection once.)
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.ln.mu.Lock()
	delete(c.ln.conns, c)
	c.ln.mu.Unlock()
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.maybeRelease()
	return err
}

// endSession records that the IMAP session on this connection ended.
func (c *trackedConn) endSession() {
	c.mu.Lock()
	c.sessionDone = true
	c.mu.Unlock()
	c.maybeRelease()
}

func (c *trackedConn) maybeRelease() {
	c.mu.Lock()
	release := c.ln.countServed && c.closed && c.sessionDone && !c.released
	if release {
		c.released = true
	}
	c.mu.Unlock()
	if release {
		c.ln.served.Done()
	}
}
