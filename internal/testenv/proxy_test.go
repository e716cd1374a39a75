package testenv_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/crmsync/crmsync/internal/testenv"
)

const greeting = "+OK ready\r\n"

// lineServer starts a tiny server for the test: it greets, answers "BIG n" with n bytes
// of 'x' and a line end, and any other line with "+OK " and the line.
func lineServer(t *testing.T) string { return testenv.ServeTCP(t, answerLines).String() }

func answerLines(c net.Conn) {
	io.WriteString(c, greeting)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		answer := "+OK " + line + "\r\n"
		if n, ok := strings.CutPrefix(line, "BIG "); ok {
			size, _ := strconv.Atoi(n)
			answer = strings.Repeat("x", size) + "\r\n"
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
	}
}

// dial connects to p and reads the greeting.
func dial(t *testing.T, p *testenv.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	readLine(t, r)
	return c, r
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Lines the client pipelines in one write count as one turn, and a line in two writes
// as one line.
func TestProxyCounts(t *testing.T) {
	p := testenv.StartProxy(t, lineServer(t), testenv.ProxyOptions{Latency: 20 * time.Millisecond})
	c, r := dial(t, p)
	sent := "a1 NOOP\r\nPASS secret\r\na2 LOGIN bob secret\r\n"
	io.WriteString(c, sent)
	var down int64 = int64(len(greeting))
	for range 3 {
		down += int64(len(readLine(t, r)))
	}
	io.WriteString(c, "QU") // a line in two writes is one line, and one turn
	time.Sleep(10 * time.Millisecond)
	io.WriteString(c, "IT\r\n")
	down += int64(len(readLine(t, r)))

	got := p.Counts()
	want := testenv.Counts{Up: int64(len(sent) + len("QUIT\r\n")), Down: down, Lines: 4, Turns: 2}
	if got != want {
		t.Errorf("Counts() = %+v, want %+v", got, want)
	}
	if lines, want := p.Lines(), []string{"a1 NOOP", "PASS …", "a2 LOGIN …", "QUIT"}; !slices.Equal(lines, want) {
		t.Errorf("Lines() = %q, want %q", lines, want)
	}
	p.ResetCounters()
	if got := p.Counts(); got != (testenv.Counts{}) || len(p.Lines()) != 0 {
		t.Errorf("after ResetCounters: %+v, %q", got, p.Lines())
	}
}

// Rewrite changes what the server sends, and Down counts what the client received.
func TestProxyRewrite(t *testing.T) {
	p := testenv.StartProxy(t, lineServer(t), testenv.ProxyOptions{
		Rewrite: func(chunk []byte) []byte { return bytes.ReplaceAll(chunk, []byte("ready"), []byte("set")) },
	})
	c, r := dial(t, p)
	io.WriteString(c, "ready?\r\n")
	if got := readLine(t, r); got != "+OK set?\r\n" {
		t.Errorf("answer %q, want %q", got, "+OK set?\r\n")
	}
	if got, want := p.Counts().Down, int64(len("+OK set\r\n")+len("+OK set?\r\n")); got != want {
		t.Errorf("Down = %d, want %d", got, want)
	}
}

// ResetAfter cuts the answer to the line it names after n bytes, with a TCP reset.
func TestProxyResetAfter(t *testing.T) {
	const n = 1000
	p := testenv.StartProxy(t, lineServer(t), testenv.ProxyOptions{
		ResetAfter: func(line []byte) (int, bool) { return n, bytes.HasPrefix(line, []byte("BIG ")) },
	})
	c, r := dial(t, p)
	io.WriteString(c, "NOOP\r\n")
	readLine(t, r)
	io.WriteString(c, "BIG 300000\r\n")
	got, err := io.ReadAll(r)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after the reset: %v, want ECONNRESET", err)
	}
	if len(got) != n || strings.Trim(string(got), "x") != "" {
		t.Errorf("read %d bytes before the reset, want %d of the answer", len(got), n)
	}
	if c := p.Counts(); c.Resets != 1 || c.Down != int64(len(greeting)+len("+OK NOOP\r\n")+n) {
		t.Errorf("Counts() = %+v, want 1 reset after %d bytes of the answer", c, n)
	}
}

// Close ends every connection and waits for all the proxy's goroutines, even with
// chunks waiting for their latency and a client that still holds its connection.
func TestProxyCloseLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // after the server's cleanup
	p, err := testenv.NewProxy(lineServer(t), testenv.ProxyOptions{Latency: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "BIG 1000000\r\n")
	time.Sleep(50 * time.Millisecond) // the answer is on its way
	start := time.Now()
	p.Close()
	p.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Error("the proxy still accepts connections after Close")
	}
}
