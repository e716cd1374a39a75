package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// tapProc is a tap in a process of its own (this program, run with -serve-tap), so that
// the proxy's work never competes with the Engine's goroutines for the Engine's
// processors, nor shares its garbage collector: the tools are measured alike.
type tapProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	addr int
}

// startTap starts a tap process in front of target.
func startTap(target string, latency time.Duration) (*tapProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-tap", target, "-latency", latency.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &tapProc{cmd: cmd, in: in, out: bufio.NewReader(outp)}
	line, err := t.out.ReadString('\n')
	if err == nil {
		t.addr, err = strconv.Atoi(strings.TrimSpace(line))
	}
	if err != nil {
		t.close()
		return nil, fmt.Errorf("tap process: %w", err)
	}
	return t, nil
}

func (t *tapProc) port() int { return t.addr }

// snapshot asks the tap process for its counters.
func (t *tapProc) snapshot() counts {
	var c counts
	if _, err := io.WriteString(t.in, "snapshot\n"); err != nil {
		panic(fmt.Sprintf("tap process: %v", err))
	}
	line, err := t.out.ReadString('\n')
	if err == nil {
		_, err = fmt.Sscan(line, &c.up, &c.down, &c.lines, &c.turns)
	}
	if err != nil {
		panic(fmt.Sprintf("tap process: %v", err))
	}
	return c
}

// close stops the tap process and waits for it.
func (t *tapProc) close() {
	t.in.Close()
	t.cmd.Wait()
}

// serveTap is the tap process: it prints its port, then answers each line on stdin
// with its counters, and stops at the end of stdin.
func serveTap(target string, latency time.Duration) error {
	t, err := newTap(target, latency)
	if err != nil {
		return err
	}
	defer t.close()
	fmt.Println(t.port())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		c := t.snapshot()
		fmt.Println(c.up, c.down, c.lines, c.turns)
	}
	return sc.Err()
}
