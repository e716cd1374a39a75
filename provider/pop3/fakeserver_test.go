package pop3_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a small in-process POP3 server for unit tests: users with maildrops,
// the commands the client uses, and switches and hooks that make it misbehave.
type fakeServer struct {
	t    testing.TB
	ln   net.Listener
	addr string
	wg   sync.WaitGroup

	// Set before the first connection.
	tlsConfig    *tls.Config // offers STLS when set (unless noSTLS)
	implicitTLS  bool        // the listener speaks TLS from the first byte
	greeting     string      // default "+OK fake POP3 ready"
	noCAPA       bool
	noUIDL       bool
	noTOP        bool
	noSTLS       bool // STLS not in CAPA, and refused
	refuseSTLS   bool // STLS in CAPA, but refused
	noUSER       bool // only AUTH PLAIN
	noPipelining bool // PIPELINING not in CAPA
	extraCaps    []string
	passReply    string                                             // the answer to PASS, whatever the password
	onRetr       func(nc net.Conn, n int, raw []byte) bool          // handles RETR n itself when it returns true
	onCommand    func(nc net.Conn, verb, arg string) (string, bool) // answers a command itself when it returns true

	mu      sync.Mutex
	users   map[string]string
	boxes   map[string][]*fakeMsg
	log     []string // the commands received, "PASS" without its argument
	logins  int
	conns   map[net.Conn]bool
	deleted int // messages deleted by QUIT
	// queued is, for each command received, how many more commands the client had
	// already sent when the server read it (the ones in its read buffer): 0 for a
	// client that waits for each answer, up to the pipeline's depth for one that
	// pipelines.
	queued []int
}

type fakeMsg struct {
	uid string
	raw []byte
}

func newFakeServer(t testing.TB, configure ...func(*fakeServer)) *fakeServer {
	t.Helper()
	s := &fakeServer{t: t, users: map[string]string{}, boxes: map[string][]*fakeMsg{}, conns: map[net.Conn]bool{}}
	for _, f := range configure {
		f(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.implicitTLS {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	s.ln, s.addr = ln, ln.Addr().String()
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) addUser(user, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[user] = password
}

// deliver appends a message with a UIDL to a user's maildrop.
func (s *fakeServer) deliver(user, uid string, raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.boxes[user] = append(s.boxes[user], &fakeMsg{uid: uid, raw: raw})
}

// remove deletes the message with a UIDL, as another client would.
func (s *fakeServer) remove(user, uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	box := s.boxes[user]
	for i, m := range box {
		if m.uid == uid {
			s.boxes[user] = append(box[:i:i], box[i+1:]...)
			return
		}
	}
}

// commands returns the verbs received so far, in order.
func (s *fakeServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *fakeServer) count(verb string) int {
	n := 0
	for _, c := range s.commands() {
		if c == verb {
			n++
		}
	}
	return n
}

// maxQueued returns the most commands the client had sent ahead of one the server
// read: 0 when it never pipelined.
func (s *fakeServer) maxQueued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := 0
	for _, q := range s.queued {
		m = max(m, q)
	}
	return m
}

func (s *fakeServer) loginCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[nc] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				nc.Close()
			}()
			s.serve(nc)
		}()
	}
}

func (s *fakeServer) caps(tlsOn bool) []string {
	c := []string{"UIDL", "TOP", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL PLAIN"}
	var out []string
	for _, v := range c {
		switch {
		case v == "UIDL" && s.noUIDL, v == "TOP" && s.noTOP, v == "USER" && s.noUSER,
			v == "PIPELINING" && s.noPipelining:
			continue
		}
		out = append(out, v)
	}
	if s.tlsConfig != nil && !s.noSTLS && !s.implicitTLS && !tlsOn {
		out = append(out, "STLS")
	}
	return append(out, s.extraCaps...)
}

// session is one client's state on the fake.
type session struct {
	s       *fakeServer
	nc      net.Conn
	r       *bufio.Reader
	user    string
	authed  bool
	msgs    []*fakeMsg // the snapshot taken at login
	deleted map[int]bool
	tls     bool // after STLS
}

func (s *fakeServer) serve(nc net.Conn) {
	ss := &session{s: s, nc: nc, r: bufio.NewReader(nc), deleted: map[int]bool{}}
	greeting := s.greeting
	if greeting == "" {
		greeting = "+OK fake POP3 ready"
	}
	if !ss.line(greeting) || !strings.HasPrefix(greeting, "+OK") {
		return
	}
	for {
		nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		ahead, _ := ss.r.Peek(ss.r.Buffered())
		s.mu.Lock()
		s.log = append(s.log, verb)
		s.queued = append(s.queued, bytes.Count(ahead, []byte("\n")))
		s.mu.Unlock()
		if s.onCommand != nil {
			if reply, ok := s.onCommand(ss.nc, verb, arg); ok {
				if reply == "" || !ss.line(reply) {
					return
				}
				continue
			}
		}
		if !ss.command(verb, arg) {
			return
		}
	}
}

// line writes one line; false when the connection is gone.
func (ss *session) line(l string) bool {
	_, err := ss.nc.Write([]byte(l + "\r\n"))
	return err == nil
}

// data writes +OK, then b dot-stuffed with CRLF line ends, then ".".
func (ss *session) data(status string, b []byte) bool {
	return ss.line(status) && ss.write(stuff(b))
}

func (ss *session) write(b []byte) bool {
	_, err := ss.nc.Write(b)
	return err == nil
}

// stuff dot-stuffs a message and adds the terminating line.
func stuff(b []byte) []byte {
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if l[0] == '.' {
			out.WriteByte('.')
		}
		out.Write(l)
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteString("\r\n")
	}
	out.WriteString(".\r\n")
	return out.Bytes()
}

// command answers one command; false ends the connection.
func (ss *session) command(verb, arg string) bool {
	s := ss.s
	switch verb {
	case "CAPA":
		if s.noCAPA {
			return ss.line("-ERR unknown command")
		}
		return ss.data("+OK capabilities", []byte(strings.Join(s.caps(ss.tls), "\r\n")+"\r\n"))
	case "STLS":
		if s.tlsConfig == nil || s.noSTLS || s.refuseSTLS || s.implicitTLS {
			return ss.line("-ERR STLS not available")
		}
		if !ss.line("+OK begin TLS") {
			return false
		}
		tc := tls.Server(ss.nc, s.tlsConfig)
		if err := tc.Handshake(); err != nil {
			return false
		}
		ss.nc, ss.r, ss.tls = tc, bufio.NewReader(tc), true
		return true
	case "USER":
		if s.noUSER {
			return ss.line("-ERR USER disabled")
		}
		ss.user = arg
		return ss.line("+OK")
	case "PASS":
		return ss.login(ss.user, arg)
	case "AUTH":
		mech, ir, _ := strings.Cut(arg, " ")
		b, err := base64.StdEncoding.DecodeString(ir)
		parts := strings.Split(string(b), "\x00")
		if !strings.EqualFold(mech, "PLAIN") || err != nil || len(parts) != 3 {
			return ss.line("-ERR bad AUTH")
		}
		return ss.login(parts[1], parts[2])
	case "QUIT":
		if ss.authed {
			s.mu.Lock()
			for n := range ss.deleted {
				uid := ss.msgs[n-1].uid
				box := s.boxes[ss.user]
				for i, m := range box {
					if m.uid == uid {
						s.boxes[ss.user] = append(box[:i:i], box[i+1:]...)
						s.deleted++
						break
					}
				}
			}
			s.mu.Unlock()
		}
		ss.line("+OK bye")
		return false
	}
	if !ss.authed {
		return ss.line("-ERR not logged in")
	}
	switch verb {
	case "STAT":
		n, size := 0, 0
		for i, m := range ss.msgs {
			if !ss.deleted[i+1] {
				n++
				size += len(m.raw)
			}
		}
		return ss.line(fmt.Sprintf("+OK %d %d", n, size))
	case "LIST", "UIDL":
		if verb == "UIDL" && s.noUIDL {
			return ss.line("-ERR unknown command")
		}
		var b strings.Builder
		for i, m := range ss.msgs {
			if ss.deleted[i+1] {
				continue
			}
			if verb == "LIST" {
				fmt.Fprintf(&b, "%d %d\r\n", i+1, len(m.raw))
			} else {
				fmt.Fprintf(&b, "%d %s\r\n", i+1, m.uid)
			}
		}
		return ss.data("+OK listing follows", []byte(b.String()))
	case "TOP", "RETR", "DELE":
		f := strings.Fields(arg)
		n, err := strconv.Atoi(firstOr(f, ""))
		if err != nil || n < 1 || n > len(ss.msgs) || ss.deleted[n] {
			return ss.line(fmt.Sprintf("-ERR There's no message %s.", firstOr(f, "")))
		}
		raw := ss.msgs[n-1].raw
		switch verb {
		case "DELE":
			ss.deleted[n] = true
			return ss.line("+OK marked")
		case "TOP":
			if s.noTOP {
				return ss.line("-ERR unknown command")
			}
			head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
			return ss.data("+OK", append(head, "\r\n\r\n"...))
		}
		if s.onRetr != nil && s.onRetr(ss.nc, n, raw) {
			return false
		}
		return ss.data(fmt.Sprintf("+OK %d octets", len(raw)), raw)
	case "NOOP", "RSET":
		if verb == "RSET" {
			ss.deleted = map[int]bool{}
		}
		return ss.line("+OK")
	}
	return ss.line("-ERR unknown command " + verb)
}

func (ss *session) login(user, password string) bool {
	s := ss.s
	if s.passReply != "" {
		return ss.line(s.passReply)
	}
	s.mu.Lock()
	want, ok := s.users[user]
	if ok && want == password {
		ss.user, ss.authed = user, true
		ss.msgs = append([]*fakeMsg(nil), s.boxes[user]...)
		s.logins++
	}
	s.mu.Unlock()
	if !ss.authed {
		return ss.line("-ERR [AUTH] Authentication failed.")
	}
	return ss.line("+OK Logged in.")
}

func firstOr(f []string, def string) string {
	if len(f) > 0 {
		return f[0]
	}
	return def
}

// testCA is a CA and a certificate for localhost and 127.0.0.1 it signed.
type testCA struct {
	pool   *x509.CertPool
	server *tls.Config
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pop3 test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testCA{
		pool: pool,
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}},
			MinVersion: tls.VersionTLS12},
	}
}

// hangUp ends a scripted reply after which the server closes the connection.
const hangUp = "\x04"

// scripted is a server for one connection that writes greeting, then answers each
// line it reads with the next reply, written as it is (line ends included), and
// records what it read. An empty reply closes the connection instead of answering; a
// reply that ends with hangUp closes it after answering.
func scripted(t testing.TB, greeting string, replies ...string) (addr string, got func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := nc.Write([]byte(greeting)); err != nil {
			return
		}
		r := bufio.NewReader(nc)
		for _, reply := range replies {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			lines = append(lines, strings.TrimRight(l, "\r\n"))
			mu.Unlock()
			if reply == "" {
				return
			}
			if _, err := nc.Write([]byte(strings.TrimSuffix(reply, hangUp))); err != nil || strings.HasSuffix(reply, hangUp) {
				return
			}
		}
		// Keep the connection open, answering nothing, until the client closes it.
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lines...)
	}
}
