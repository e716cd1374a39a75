package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// deliver hands messages 0..n-1 of g to Dovecot's LMTP server for rcpt, over sessions
// parallel sessions, each pipelining MAIL FROM, RCPT TO and DATA. When it returns, every
// message is in the mailbox (LMTP answers after the message is saved).
func deliver(ctx context.Context, socket, rcpt string, g *generator, n, sessions int) error {
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := lmtpSession(ctx, socket, rcpt, g, next); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

func lmtpSession(ctx context.Context, socket, rcpt string, g *generator, next <-chan int) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReader(nc)
	w := bufio.NewWriterSize(nc, 64<<10)
	expect := func(code string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("lmtp: reading the reply: %w", err)
			}
			if !strings.HasPrefix(line, code) {
				return fmt.Errorf("lmtp: want %s, got %q", code, strings.TrimSpace(line))
			}
			if len(line) < 4 || line[3] != '-' {
				return nil
			}
		}
	}
	if err := expect("220"); err != nil {
		return err
	}
	fmt.Fprintf(w, "LHLO mailbench\r\n")
	if err := w.Flush(); err != nil {
		return err
	}
	if err := expect("250"); err != nil {
		return err
	}
	for i := range next {
		// PIPELINING: the envelope and DATA in one write, then the message.
		fmt.Fprintf(w, "MAIL FROM:<mailbench@customers.example>\r\nRCPT TO:<%s>\r\nDATA\r\n", rcpt)
		if err := w.Flush(); err != nil {
			return err
		}
		for _, code := range []string{"250", "250", "354"} {
			if err := expect(code); err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
		}
		writeDotStuffed(w, g.message(i))
		w.WriteString(".\r\n")
		if err := w.Flush(); err != nil {
			return err
		}
		if err := expect("250"); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	fmt.Fprintf(w, "QUIT\r\n")
	w.Flush()
	return nil
}

// writeDotStuffed writes msg (CRLF line ends, ending in CRLF) with lines that start with
// a dot doubled.
func writeDotStuffed(w *bufio.Writer, msg []byte) {
	for len(msg) > 0 {
		if msg[0] == '.' {
			w.WriteByte('.')
		}
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			w.Write(msg)
			w.WriteString("\r\n")
			return
		}
		w.Write(msg[:i+1])
		msg = msg[i+1:]
	}
}
