package main

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tap is a TCP proxy in front of a server that counts what goes through it, the same
// way for every client: bytes each way, the client's lines (commands) and its turns
// (times the client spoke after the server had: round trips, pipelining counted once).
type tap struct {
	ln     net.Listener
	target string
	// latency delays what the server sends by this much, as a network's round trip
	// would, without limiting the throughput.
	latency time.Duration

	up, down, lines, turns atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newTap(target string, latency time.Duration) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tap{ln: ln, target: target, latency: latency, conns: make(map[net.Conn]bool)}
	t.wg.Add(1)
	go t.serve()
	return t, nil
}

func (t *tap) port() int { return t.ln.Addr().(*net.TCPAddr).Port }

// counts is a snapshot of the counters.
type counts struct{ up, down, lines, turns int64 }

func (t *tap) snapshot() counts {
	return counts{t.up.Load(), t.down.Load(), t.lines.Load(), t.turns.Load()}
}

func (c counts) minus(o counts) counts {
	return counts{c.up - o.up, c.down - o.down, c.lines - o.lines, c.turns - o.turns}
}

func (t *tap) close() {
	t.ln.Close()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

func (t *tap) track(c net.Conn, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		t.conns[c] = true
	} else {
		delete(t.conns, c)
	}
}

func (t *tap) serve() {
	defer t.wg.Done()
	for {
		client, err := t.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", t.target)
		if err != nil {
			client.Close()
			continue
		}
		t.track(client, true)
		t.track(server, true)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.pipe(client.(*net.TCPConn), server.(*net.TCPConn))
			t.track(client, false)
			t.track(server, false)
		}()
	}
}

func (t *tap) pipe(client, server *net.TCPConn) {
	var serverSpoke atomic.Bool
	serverSpoke.Store(true)
	done := make(chan struct{})
	// server → client: a reader, and a writer that passes each chunk on once its
	// latency has passed.
	type chunk struct {
		due  time.Time
		data []byte
	}
	// The buffers go round between the two, so that the proxy makes no garbage: it
	// shares the process, and its garbage collector, with the Engine it measures.
	const inFlight = 64
	chunks := make(chan chunk, inFlight)
	free := make(chan []byte, inFlight+1)
	for range inFlight + 1 {
		free <- make([]byte, 256<<10)
	}
	go func() {
		defer close(chunks)
		for {
			buf := <-free
			n, err := server.Read(buf)
			if n > 0 {
				chunks <- chunk{time.Now().Add(t.latency), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(done)
		for c := range chunks {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			serverSpoke.Store(true) // before the client can have it
			t.down.Add(int64(len(c.data)))
			_, err := client.Write(c.data)
			free <- c.data[:cap(c.data)]
			if err != nil {
				server.Close()
				for c := range chunks {
					free <- c.data[:cap(c.data)]
				}
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
				t.turns.Add(1)
			}
			if line[len(line)-1] == '\n' {
				t.lines.Add(1)
			}
			t.up.Add(int64(len(line)))
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
