package smtp_test

import (
	"bufio"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/crmsync/crmsync"
)

// Replies of a fakeServer's script with a special meaning.
const (
	drop = "drop" // close the connection without an answer
	hang = "hang" // answer nothing until the client goes away
)

// fakeServer is a scripted SMTP server on loopback, for the failures a real server
// cannot be made to show on cue. It speaks just enough SMTP: a greeting, EHLO with
// AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP and QUIT, each answered with success unless
// the script says otherwise.
type fakeServer struct {
	t  *testing.T
	ln net.Listener
	// script returns the answer to one command line of connection conn (numbered from
	// 1): "" for the default answer, drop or hang, or a full reply such as "550 5.1.1
	// no". The greeting is asked for as the line "", the end of a message as ".".
	script func(conn int, line string) string

	mu       sync.Mutex
	conns    int
	commands []string // every command line, "." for the end of a message
	accepted int

	wg     sync.WaitGroup
	closed chan struct{}
}

func newFakeServer(t *testing.T, script func(conn int, line string) string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, script: script, closed: make(chan struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		close(s.closed)
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) endpoint() crmsync.Endpoint {
	port := s.ln.Addr().(*net.TCPAddr).Port
	return crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: crmsync.SecurityPlaintext}
}

func (s *fakeServer) serve() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		n := s.conns
		s.mu.Unlock()
		s.wg.Add(2)
		done := make(chan struct{})
		go func() {
			defer s.wg.Done()
			select {
			case <-s.closed:
			case <-done:
			}
			nc.Close()
		}()
		go func() {
			defer s.wg.Done()
			defer close(done)
			s.session(n, nc)
		}()
	}
}

// session serves one connection until QUIT, a drop, or the client going away.
func (s *fakeServer) session(n int, nc net.Conn) {
	tc := textproto.NewConn(nc)
	ask := func(line string) string {
		if s.script == nil {
			return ""
		}
		return s.script(n, line)
	}
	// respond sends reply, or def when reply is "", and reports whether to go on.
	respond := func(reply, def string) bool {
		switch reply {
		case "":
			reply = def
		case drop:
			return false
		case hang:
			_, _ = bufio.NewReader(nc).ReadByte() // until the client goes away
			return false
		}
		return tc.PrintfLine("%s", reply) == nil
	}
	if !respond(ask(""), "220 fake.test ESMTP") {
		return
	}
	for {
		line, err := tc.ReadLine()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.commands = append(s.commands, line)
		s.mu.Unlock()
		var def string
		switch verb(line) {
		case "EHLO":
			def = "250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250-SIZE 1000000\r\n250 8BITMIME"
		case "AUTH":
			def = "235 2.7.0 Authentication successful"
		case "MAIL", "RCPT", "RSET", "NOOP":
			def = "250 2.0.0 OK"
		case "QUIT":
			respond(ask(line), "221 2.0.0 Bye")
			return
		case "DATA":
			reply := ask(line)
			if !respond(reply, "354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			if reply != "" && !strings.HasPrefix(reply, "354") {
				continue // DATA refused
			}
			if _, err := tc.ReadDotBytes(); err != nil {
				return
			}
			s.mu.Lock()
			s.commands = append(s.commands, ".")
			s.mu.Unlock()
			reply = ask(".")
			if reply == "" {
				s.mu.Lock()
				s.accepted++
				s.mu.Unlock()
			}
			if !respond(reply, "250 2.0.0 Queued as "+strconv.Itoa(n)) {
				return
			}
			continue
		default:
			def = "502 5.5.2 Command not recognized"
		}
		if !respond(ask(line), def) {
			return
		}
	}
}

// verb returns the upper-case command verb of a line.
func verb(line string) string { return strings.ToUpper(strings.Fields(line + " x")[0]) }

// stats returns the connections accepted, the command verbs seen, and the messages
// accepted.
func (s *fakeServer) stats() (conns int, verbs []string, accepted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.commands {
		verbs = append(verbs, verb(c))
	}
	return s.conns, verbs, s.accepted
}
