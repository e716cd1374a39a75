package pop3_test

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// turnProxy is a TCP proxy in front of a plaintext POP3 server that counts the client's
// turns: the times the client spoke after the server did, which is the number of
// round trips the session cost. Commands the client pipelines go out together, before
// the answers, and count as one turn.
type turnProxy struct {
	ln     net.Listener
	target string

	// latency delays what the server sends, like a network would, and above all so
	// that the proxy has read a write of pipelined commands whole before the answer
	// to the first one comes back, and does not take the rest for new turns.
	latency time.Duration
	// stripPipelining removes PIPELINING from the server's CAPA answers: a server
	// that does not offer it.
	stripPipelining bool

	turns atomic.Int64

	mu    sync.Mutex
	verbs []string // the client's commands' verbs, in order
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// newTurnProxy starts a proxy to target and stops it at the end of the test.
func newTurnProxy(t testing.TB, target string) *turnProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &turnProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *turnProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// reset sets the counters to zero.
func (p *turnProxy) reset() {
	p.turns.Store(0)
	p.mu.Lock()
	p.verbs = nil
	p.mu.Unlock()
}

// count returns how many commands of verb the client sent since the last reset.
func (p *turnProxy) count(verb string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.verbs {
		if v == verb {
			n++
		}
	}
	return n
}

func (p *turnProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *turnProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *turnProxy) serve() {
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
func (p *turnProxy) pipe(client, server *net.TCPConn) {
	var serverSpoke atomic.Bool // the server spoke since the client last did
	serverSpoke.Store(true)     // the greeting comes first
	done := make(chan struct{})
	go func() { // server → client
		defer close(done)
		defer client.CloseWrite()
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				time.Sleep(p.latency)
				chunk := buf[:n]
				if p.stripPipelining {
					// A CAPA answer is small, and comes in one read.
					chunk = bytes.ReplaceAll(chunk, []byte("\r\nPIPELINING\r\n"), []byte("\r\n"))
				}
				serverSpoke.Store(true) // before the client can have it
				if _, err := client.Write(chunk); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()

	r := bufio.NewReader(client)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			if serverSpoke.Swap(false) {
				p.turns.Add(1)
			}
			verb, _, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
			p.mu.Lock()
			p.verbs = append(p.verbs, strings.ToUpper(verb))
			p.mu.Unlock()
			if _, err := server.Write(line); err != nil {
				break
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	server.CloseWrite()
	<-done
	client.Close()
	server.Close()
}
