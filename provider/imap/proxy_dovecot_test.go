package imap_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tapProxy is a TCP proxy between the provider and Dovecot's plaintext IMAP port. It
// counts what the client sends (command lines, turns, bytes) and can break a connection
// with a TCP reset in the middle of the server's answer to a FETCH of whole messages.
type tapProxy struct {
	ln     net.Listener
	target string

	// resetOnFullFetch, when n > 0, resets the connection that sends the n-th
	// "FETCH … BODY.PEEK[]" (counted over all connections) after resetAfter bytes of
	// the server's answer have been passed on.
	resetOnFullFetch int
	resetAfter       int
	// latency delays what the server sends, like a network would. A turn is counted
	// when the client speaks after the server's answer reached it, so with a latency
	// commands the client pipelines are never taken for round trips because the server
	// answered the first before the proxy had read the next.
	latency time.Duration

	fullFetches atomic.Int64
	resets      atomic.Int64
	lines       atomic.Int64 // client lines (commands, and literal lines if any)
	turns       atomic.Int64 // times the client spoke after the server (round trips)
	up, down    atomic.Int64 // bytes client→server, server→client

	mu      sync.Mutex
	lineLog []string
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// newTapProxy starts a proxy to target and stops it at the end of the test; set, if
// not nil, sets its options (latency, resets) before it serves anything.
func newTapProxy(t testing.TB, target string, set ...func(*tapProxy)) *tapProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tapProxy{ln: ln, target: target, conns: make(map[net.Conn]bool)}
	for _, f := range set {
		f(p)
	}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// addr returns the proxy's "127.0.0.1:port".
func (p *tapProxy) addr() string { return p.ln.Addr().String() }

// port returns the proxy's port.
func (p *tapProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// reset sets the counters to zero.
func (p *tapProxy) resetCounters() {
	p.lines.Store(0)
	p.turns.Store(0)
	p.up.Store(0)
	p.down.Store(0)
	p.mu.Lock()
	p.lineLog = nil
	p.mu.Unlock()
}

// commands returns the client's lines since the last resetCounters, tags stripped.
func (p *tapProxy) commands() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lineLog...)
}

func (p *tapProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *tapProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *tapProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.track(client, true)
		p.track(server, true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pipe(client.(*net.TCPConn), server.(*net.TCPConn))
			p.track(client, false)
			p.track(server, false)
		}()
	}
}

// pipe copies both ways until one side ends.
func (p *tapProxy) pipe(client, server *net.TCPConn) {
	var (
		serverSpoke atomic.Bool // the server spoke since the client last did
		armed       atomic.Bool // reset during the answer now flowing
		once        sync.Once
	)
	serverSpoke.Store(true) // the greeting comes first; the client's first line is a turn
	rst := func() {
		once.Do(func() {
			p.resets.Add(1)
			client.SetLinger(0) // Close sends RST instead of FIN
			client.Close()
			server.Close()
		})
	}
	done := make(chan struct{})
	go func() { // server → client
		defer close(done)
		buf := make([]byte, 32<<10)
		passed := 0
		for {
			n, err := server.Read(buf)
			if n > 0 {
				if p.latency > 0 {
					time.Sleep(p.latency)
				}
				chunk := buf[:n]
				if armed.Load() {
					if left := p.resetAfter - passed; left < len(chunk) {
						client.Write(chunk[:max(left, 0)])
						p.down.Add(int64(max(left, 0)))
						rst()
						return
					}
					passed += len(chunk)
				}
				serverSpoke.Store(true) // before the client can have it
				if _, werr := client.Write(chunk); werr != nil {
					break
				}
				p.down.Add(int64(n))
			}
			if err != nil {
				break
			}
		}
		client.CloseWrite()
	}()

	r := bufio.NewReaderSize(client, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			if serverSpoke.Swap(false) {
				p.turns.Add(1)
			}
			p.lines.Add(1)
			p.up.Add(int64(len(line)))
			p.logLine(line)
			if n := p.resetOnFullFetch; n > 0 && bytes.Contains(line, []byte(" FETCH ")) && bytes.Contains(line, []byte("BODY.PEEK[]")) {
				if int(p.fullFetches.Add(1)) == n {
					armed.Store(true)
				}
			}
			if _, werr := server.Write(line); werr != nil {
				break
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			break
		}
	}
	server.CloseWrite()
	<-done
	client.Close()
	server.Close()
}

// logLine records a client line without its tag (and without a LOGIN's password).
func (p *tapProxy) logLine(line []byte) {
	s := strings.TrimRight(string(line), "\r\n")
	if _, rest, ok := strings.Cut(s, " "); ok {
		s = rest
	}
	if strings.HasPrefix(strings.ToUpper(s), "LOGIN ") {
		s = "LOGIN …"
	}
	p.mu.Lock()
	p.lineLog = append(p.lineLog, s)
	p.mu.Unlock()
}

// silentListener accepts connections and never says a word: a server that hangs.
func silentListener(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c) // read whatever comes, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().(*net.TCPAddr).Port
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

// hostPort returns "127.0.0.1:port".
func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
