package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A Proxy is a TCP proxy on loopback in front of a line-based server (IMAP, POP3, SMTP)
// that counts what a client costs: bytes each way, the client's lines, and its turns,
// the times the client spoke after the server had, which are the session's round trips
// (commands the client pipelines go out together and count once). It can also delay
// the server's answers like a network, rewrite them, and cut a connection with a TCP
// reset in the middle of one.
//
// The benchmark uses it as the tests do, so it takes no testing.TB: StartProxy is the
// tests' shorthand.
type Proxy struct {
	ln     net.Listener
	target string
	opts   ProxyOptions
	ctx    context.Context // canceled by Close, which ends the dials under way
	cancel context.CancelFunc

	up, down, lines, turns, resets atomic.Int64

	mu     sync.Mutex
	log    []string
	conns  map[net.Conn]struct{}
	closed bool
	bufs   [][]byte // the buffers of finished connections, for the next ones
	wg     sync.WaitGroup
}

// ProxyOptions are a Proxy's options. The zero value passes everything on at once and
// unchanged.
type ProxyOptions struct {
	// Latency delays each chunk the server sends by this much, as a network would,
	// without limiting the throughput: a chunk is queued with the time it is due and
	// passed on then, while the next ones are read. A latency also keeps commands the
	// client pipelines from being taken for turns: the proxy has read the client's
	// whole write before the answer to its first command comes back.
	Latency time.Duration
	// Rewrite, if not nil, replaces each chunk read from the server by what it
	// returns (it may change chunk in place, and must not keep it). A chunk is what
	// one read returned: part of a line, or several lines.
	Rewrite func(chunk []byte) []byte
	// ResetAfter, if not nil, is called with each line the client sends (line end
	// included; its first 64 KiB only; not to be kept), before the line is passed on.
	// When it returns ok, the proxy resets the connection (a TCP RST to the client)
	// once n more bytes of the server's answer have been passed on, counted from the
	// first chunk the proxy reads from the server after the line (so an answer to a
	// command pipelined before it counts too). A connection's first ok counts, later
	// ones do not. It is called from every connection's goroutine: a count over all
	// connections needs an atomic.
	ResetAfter func(line []byte) (n int, ok bool)
	// DiscardLines keeps Lines empty, and the proxy from keeping a string per line,
	// for a long run that only wants the Counts.
	DiscardLines bool
}

// Counts is a snapshot of a Proxy's counters.
type Counts struct {
	Up, Down int64 // bytes client→server, server→client
	Lines    int64 // the client's whole lines (commands, and literal lines if any)
	Turns    int64 // times the client spoke after the server had: round trips
	Resets   int64 // connections reset because of ResetAfter
}

// Sub returns c minus o: what went through between two snapshots.
func (c Counts) Sub(o Counts) Counts {
	return Counts{c.Up - o.Up, c.Down - o.Down, c.Lines - o.Lines, c.Turns - o.Turns, c.Resets - o.Resets}
}

const (
	proxyInFlight = 64        // chunks of one connection's answers queued at most
	proxyBufSize  = 256 << 10 // one read from the server
	proxyLineSize = 64 << 10  // one read from the client, and the most of a line kept
)

// NewProxy listens on a loopback port and serves at once (like httptest.NewServer),
// passing each connection on to target; Close stops it.
func NewProxy(target string, opts ProxyOptions) (*Proxy, error) {
	if target == "" {
		return nil, errors.New("testenv: proxy: no target")
	}
	if opts.Latency < 0 {
		return nil, fmt.Errorf("testenv: proxy to %s: Latency %v is negative", target, opts.Latency)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testenv: proxy to %s: %w", target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{ln: ln, target: target, opts: opts, ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.serve)
	return p, nil
}

// StartProxy is NewProxy for a test, which it fails if the proxy cannot start, and
// which closes the proxy when it ends.
func StartProxy(t testing.TB, target string, opts ProxyOptions) *Proxy {
	t.Helper()
	p, err := NewProxy(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port returns the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Counts returns the counters since the last ResetCounters.
func (p *Proxy) Counts() Counts {
	return Counts{p.up.Load(), p.down.Load(), p.lines.Load(), p.turns.Load(), p.resets.Load()}
}

// ResetCounters sets the counters to zero and forgets the lines.
func (p *Proxy) ResetCounters() {
	for _, c := range []*atomic.Int64{&p.up, &p.down, &p.lines, &p.turns, &p.resets} {
		c.Store(0)
	}
	p.mu.Lock()
	p.log = nil
	p.mu.Unlock()
}

// Lines returns the client's lines since the last ResetCounters, over all connections,
// without their line ends. The arguments of LOGIN, PASS, AUTH and AUTHENTICATE (the
// first word, or the second after an IMAP tag) are replaced by "…"; the lines of a SASL
// exchange that follow are not recognized.
func (p *Proxy) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// Close stops the proxy: it closes the listener and every connection, and waits for
// all of its goroutines. It is safe to call twice.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.cancel()
		p.ln.Close()
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	p.bufs = nil
	p.mu.Unlock()
}

// track adds c to the connections Close closes, or reports false once Close has run.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// drop closes c and forgets it.
func (p *Proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() {
			defer p.drop(c)
			s, err := (&net.Dialer{}).DialContext(p.ctx, "tcp", p.target)
			if err != nil {
				return
			}
			if !p.track(s) {
				s.Close()
				return
			}
			defer p.drop(s)
			p.pipe(c.(*net.TCPConn), s.(*net.TCPConn))
		})
	}
}

// logLine keeps a client line for Lines, without its line end or credentials.
func (p *Proxy) logLine(line []byte) {
	if p.opts.DiscardLines {
		return
	}
	s := hideCredentials(strings.TrimRight(string(line), "\r\n"))
	p.mu.Lock()
	p.log = append(p.log, s)
	p.mu.Unlock()
}

// hideCredentials replaces the arguments of a command that carries a password.
func hideCredentials(s string) string {
	words := strings.SplitN(s, " ", 3)
	for i, w := range words[:min(2, len(words)-1)] {
		switch strings.ToUpper(w) {
		case "LOGIN", "PASS", "AUTH", "AUTHENTICATE":
			return strings.Join(words[:i+1], " ") + " …"
		}
	}
	return s
}

// takeBuffer returns a buffer of a finished connection, or a new one.
func (p *Proxy) takeBuffer() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.bufs); n > 0 {
		b := p.bufs[n-1]
		p.bufs = p.bufs[:n-1]
		return b
	}
	return make([]byte, proxyBufSize)
}

// pipe copies both ways until the client is done and the server's answers passed on.
func (p *Proxy) pipe(client, server *net.TCPConn) {
	c := &proxyConn{
		p: p, client: client, server: server,
		chunks: make(chan proxyChunk, proxyInFlight),
		free:   make(chan []byte, proxyInFlight),
	}
	c.spoke.Store(true) // the greeting comes first: the client's first line is a turn
	c.resetAt.Store(-1)
	var wg sync.WaitGroup
	wg.Go(c.readServer)
	wg.Go(c.writeClient)
	c.readClient()
	server.CloseWrite()
	wg.Wait()
	p.mu.Lock()
	for range c.allocated {
		p.bufs = append(p.bufs, <-c.free) // all are back: both goroutines have ended
	}
	p.mu.Unlock()
}

// proxyConn is one connection through a Proxy. The server's answers go through two
// goroutines, a reader that queues each chunk with the time it is due and a writer that
// passes it on then, and buffers go round between them: a latency does not limit the
// throughput, and the proxy makes no garbage per chunk (the benchmark may run it in the
// process it measures).
type proxyConn struct {
	p              *Proxy
	client, server *net.TCPConn
	spoke          atomic.Bool  // the server spoke since the client last did
	resetAt        atomic.Int64 // ResetAfter's n, once armed; -1 before
	chunks         chan proxyChunk
	free           chan []byte // buffers the writer is done with
	allocated      int         // buffers taken by the reader (its own)
}

type proxyChunk struct {
	due     time.Time
	buf     []byte // to give back to free
	data    []byte // what to pass on
	resetAt int64  // proxyConn.resetAt when the chunk was read
}

// readClient passes on what the client sends, as it comes, until the client or the
// server ends. A read counts one turn if the server spoke since the last, however many
// lines it holds: commands the client pipelines in one write count once, even when the
// server answers the first before the proxy has passed the last on.
func (c *proxyConn) readClient() {
	buf := make([]byte, proxyLineSize)
	var partial []byte // the start of a line that the last read did not end
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			if c.spoke.Swap(false) {
				c.p.turns.Add(1)
			}
			c.p.up.Add(int64(n))
			for data := buf[:n]; len(data) > 0; {
				end := bytes.IndexByte(data, '\n') + 1
				if end == 0 {
					partial = append(partial, data[:min(len(data), proxyLineSize-len(partial))]...)
					break
				}
				line := data[:end]
				if len(partial) > 0 {
					line = append(partial, line[:min(len(line), proxyLineSize-len(partial))]...)
					partial = line[:0]
				}
				c.line(line)
				data = data[end:]
			}
			// Whole, before the server can answer the lines ResetAfter armed on.
			if _, werr := c.server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// line counts and logs a line of the client's, and arms the reset ResetAfter asks for.
func (c *proxyConn) line(line []byte) {
	c.p.lines.Add(1)
	c.p.logLine(line)
	if f := c.p.opts.ResetAfter; f != nil {
		if n, ok := f(line); ok && c.resetAt.Load() < 0 {
			c.resetAt.Store(int64(max(n, 0)))
		}
	}
}

// buffer returns a free buffer, taking a new one while fewer than proxyInFlight are
// out, and waiting for the writer after that.
func (c *proxyConn) buffer() []byte {
	select {
	case b := <-c.free:
		return b
	default:
	}
	if c.allocated < proxyInFlight {
		c.allocated++
		return c.p.takeBuffer()
	}
	return <-c.free
}

// readServer queues the server's chunks for writeClient until the server ends.
func (c *proxyConn) readServer() {
	defer close(c.chunks)
	for {
		buf := c.buffer()
		n, err := c.server.Read(buf)
		if n > 0 {
			data := buf[:n]
			if c.p.opts.Rewrite != nil {
				data = c.p.opts.Rewrite(data)
			}
			c.chunks <- proxyChunk{time.Now().Add(c.p.opts.Latency), buf, data, c.resetAt.Load()}
		} else {
			c.free <- buf
		}
		if err != nil {
			return
		}
	}
}

// writeClient passes each chunk on when it is due, and resets the connection where
// ResetAfter asked. It ends the server's side too when the client's fails.
func (c *proxyConn) writeClient() {
	left := int64(-1) // bytes to pass on before the reset; -1: none armed
	for ch := range c.chunks {
		if d := time.Until(ch.due); d > 0 {
			time.Sleep(d)
		}
		data, reset := ch.data, false
		if left < 0 {
			left = ch.resetAt
		}
		if left >= 0 {
			if int64(len(data)) > left {
				data, reset = data[:left], true
			}
			left -= int64(len(data))
		}
		var err error
		if len(data) > 0 {
			c.spoke.Store(true) // before the client can have it
			c.p.down.Add(int64(len(data)))
			_, err = c.client.Write(data)
		}
		c.free <- ch.buf
		if reset {
			c.p.resets.Add(1)
			c.client.SetLinger(0) // Close sends RST instead of FIN
			c.client.Close()
		}
		if err != nil || reset {
			c.server.Close() // which ends readServer
			for ch := range c.chunks {
				c.free <- ch.buf
			}
			return
		}
	}
	c.client.CloseWrite()
}
