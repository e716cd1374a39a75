package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync/internal/testenv"
)

// tapProc is the counting proxy, a testenv.Proxy, in a process of its own (this
// program, run with -serve-tap), so that the proxy's work never competes with the
// Engine's goroutines for the Engine's processors, nor shares its garbage collector:
// the tools are measured alike.
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
func (t *tapProc) snapshot() testenv.Counts {
	var c testenv.Counts
	if _, err := io.WriteString(t.in, "snapshot\n"); err != nil {
		panic(fmt.Sprintf("tap process: %v", err))
	}
	line, err := t.out.ReadString('\n')
	if err == nil {
		_, err = fmt.Sscan(line, &c.Up, &c.Down, &c.Lines, &c.Turns)
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
	p, err := testenv.NewProxy(target, testenv.ProxyOptions{Latency: latency, DiscardLines: true})
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Println(p.Port())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		c := p.Counts()
		fmt.Println(c.Up, c.Down, c.Lines, c.Turns)
	}
	return sc.Err()
}
