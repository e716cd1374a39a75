package gmail

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crmsync/crmsync/provider/gmail/internal/imapwire"
)

// The bridge lets a provider/imap connection sign in with OAuth 2.0, which provider/imap cannot do on its
// own: it signs in with LOGIN/PLAIN and exposes no hook for another SASL mechanism. So each gmail Conn
// listens on two loopback ports and points its provider/imap Conn at them, with a one-time secret as the
// password. On a connection the bridge checks the secret, opens the real IMAP or SMTP session (TLS,
// XOAUTH2 or OAUTHBEARER with a fresh access token), answers the LOGIN or AUTH as the real server did, and
// from then on copies bytes both ways. provider/imap does everything else (fetching, parsing, sending, the
// Sent copy), so plain IMAP behaves exactly as provider/imap does.
//
// The IMAP half also lets this package send commands go-imap's client cannot (Gmail's X-GM-MSGID and
// X-GM-LABELS) on the same session, between two of provider/imap's commands: see imapSession.command.
//
// When provider/imap grows an authentication hook (see the package documentation), the bridge goes and
// only the side channel stays.

// bridge is one Conn's pair of loopback listeners and the sessions they carry.
type bridge struct {
	c      *Conn
	secret string
	imapLn net.Listener
	smtpLn net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex
	ctx      context.Context // of the call in progress: upstream sessions open under it
	err      error           // the first upstream failure during that call
	caps     []string        // the upstream IMAP capabilities after sign-in
	imapSess *imapSession    // the current IMAP session
	conns    map[io.Closer]bool
	closed   bool
}

// bridgeUser is the user name provider/imap logs in with; the password is the bridge's secret.
const bridgeUser = "gmail-bridge"

func newBridge(c *Conn) (*bridge, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	br := &bridge{c: c, secret: hex.EncodeToString(b[:]), conns: map[io.Closer]bool{}}
	var err error
	if br.imapLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if br.smtpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		br.imapLn.Close()
		return nil, err
	}
	br.wg.Add(2)
	go br.accept(br.imapLn, br.serveIMAP)
	go br.accept(br.smtpLn, br.serveSMTP)
	return br, nil
}

func (b *bridge) imapPort() int { return b.imapLn.Addr().(*net.TCPAddr).Port }
func (b *bridge) smtpPort() int { return b.smtpLn.Addr().(*net.TCPAddr).Port }

// begin marks the start of a Conn call: upstream sessions opened meanwhile use ctx, and their failure is
// kept for takeErr.
func (b *bridge) begin(ctx context.Context) {
	b.mu.Lock()
	b.ctx, b.err = ctx, nil
	b.mu.Unlock()
}

// end marks the end of the call.
func (b *bridge) end() {
	b.mu.Lock()
	b.ctx = nil
	b.mu.Unlock()
}

// fail records an upstream failure of the call in progress (the first one wins).
func (b *bridge) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// takeErr returns and clears the upstream failure of the call in progress.
func (b *bridge) takeErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.err
	b.err = nil
	return err
}

func (b *bridge) callCtx() context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ctx
}

func (b *bridge) capabilities() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.caps
}

func (b *bridge) session() *imapSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.imapSess; s != nil && !s.isClosed() {
		return s
	}
	return nil
}

// track registers a connection to close with the bridge; false when the bridge is closed.
func (b *bridge) track(c io.Closer) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.conns[c] = true
	return true
}

func (b *bridge) untrack(c io.Closer) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

// close stops both listeners, ends every session and waits for the goroutines.
func (b *bridge) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	b.imapLn.Close()
	b.smtpLn.Close()
	for c := range conns {
		c.Close()
	}
	b.wg.Wait()
}

func (b *bridge) accept(ln net.Listener, serve func(net.Conn)) {
	defer b.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		if !b.track(nc) {
			nc.Close()
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.untrack(nc)
			defer nc.Close()
			serve(nc)
		}()
	}
}

// checkSecret compares a password with the secret in constant time.
func (b *bridge) checkSecret(user, pass string) bool {
	return user == bridgeUser && subtle.ConstantTimeCompare([]byte(pass), []byte(b.secret)) == 1
}

// preAuthTimeout bounds the bridge's own sign-in, a little under the profile's timeout so that provider/imap
// hears of an upstream failure before it gives up waiting.
func (b *bridge) preAuthTimeout() time.Duration {
	return b.c.t.Profile.Timeout() * 9 / 10
}

// serveIMAP is one IMAP connection from provider/imap: a greeting, its LOGIN with the secret, the upstream
// sign-in, then the bytes both ways.
func (b *bridge) serveIMAP(client net.Conn) {
	ctx := b.callCtx()
	if ctx == nil {
		return // no call in progress: provider/imap connects only within one
	}
	_ = client.SetDeadline(time.Now().Add(b.preAuthTimeout()))
	if _, err := io.WriteString(client, "* OK [CAPABILITY IMAP4rev1] crmsync gmail bridge ready\r\n"); err != nil {
		return
	}
	cbr := bufio.NewReader(client)
	var tag string
	for {
		msg, err := imapwire.ReadMessage(cbr, 64<<10)
		if err != nil {
			return
		}
		vals, err := imapwire.Parse(msg)
		if err != nil || len(vals) < 2 {
			fmt.Fprintf(client, "* BAD malformed command\r\n")
			continue
		}
		tag = vals[0].Text
		cmd := strings.ToUpper(vals[1].Text)
		switch {
		case cmd == "LOGIN" && len(vals) == 4:
		case cmd == "CAPABILITY":
			fmt.Fprintf(client, "* CAPABILITY IMAP4rev1\r\n%s OK done\r\n", tag)
			continue
		case cmd == "LOGOUT":
			fmt.Fprintf(client, "* BYE\r\n%s OK bye\r\n", tag)
			return
		default:
			fmt.Fprintf(client, "%s BAD only LOGIN here\r\n", tag)
			continue
		}
		if !b.checkSecret(vals[2].Text, vals[3].Text) {
			fmt.Fprintf(client, "%s NO [AUTHENTICATIONFAILED] not the bridge's secret\r\n", tag)
			return
		}
		break
	}

	octx, cancel := context.WithTimeout(ctx, b.preAuthTimeout())
	up, release, err := b.c.openUpstreamIMAP(octx)
	cancel()
	if err != nil {
		b.fail(err)
		fmt.Fprintf(client, "%s NO [UNAVAILABLE] the Gmail session could not be opened\r\n", tag)
		return
	}
	defer release()
	if !b.track(up.conn) {
		up.conn.Close()
		return
	}
	defer b.untrack(up.conn)
	if _, err := fmt.Fprintf(client, "%s OK [CAPABILITY %s] signed in\r\n", tag, strings.Join(clientCaps(up.caps), " ")); err != nil {
		up.conn.Close()
		return
	}
	_ = client.SetDeadline(time.Time{})
	s := &imapSession{client: client, cbr: cbr, up: up, closed: make(chan struct{})}
	b.mu.Lock()
	b.caps, b.imapSess = up.caps, s
	b.mu.Unlock()
	b.c.d.noteGmailExtensions(b.c.t.Profile.ID, up.caps)
	s.pump()
}

// clientCaps returns the upstream capabilities provider/imap may use after sign-in: all but those of the
// sign-in itself.
func clientCaps(caps []string) []string {
	out := []string{"IMAP4rev1"}
	for _, c := range caps {
		if c == "IMAP4REV1" || c == "STARTTLS" || c == "LOGINDISABLED" || c == "SASL-IR" || strings.HasPrefix(c, "AUTH=") {
			continue
		}
		out = append(out, c)
	}
	return out
}

// imapSession is one signed-in IMAP session: provider/imap's commands and the bridge's own share it.
type imapSession struct {
	client net.Conn
	cbr    *bufio.Reader
	up     *upstreamIMAP

	wmu    sync.Mutex // serializes writes upstream
	side   atomic.Pointer[sideCommand]
	tags   atomic.Uint64
	once   sync.Once
	closed chan struct{}
}

// sideCommand is a command of the bridge's own in flight: the untagged responses until its tagged one are
// its own, not provider/imap's.
type sideCommand struct {
	tag      string
	untagged [][]byte
	status   []byte
	done     chan struct{}
}

func (s *imapSession) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

func (s *imapSession) close() {
	s.once.Do(func() {
		close(s.closed)
		s.client.Close()
		s.up.conn.Close()
	})
}

// pump copies bytes both ways until either side closes.
func (s *imapSession) pump() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := s.cbr.Read(buf)
			if n > 0 {
				s.wmu.Lock()
				_, werr := s.up.conn.Write(buf[:n])
				s.wmu.Unlock()
				if werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		s.close()
	}()
	s.downstream()
	s.close()
	<-done
}

// downstream copies the server's responses to provider/imap, but hands those of a side command to it. A
// response's literals are streamed, not held in memory, unless it goes to a side command.
func (s *imapSession) downstream() {
	br := s.up.br
	for {
		line, n, _, err := imapwire.ReadLine(br)
		if err != nil {
			return
		}
		if sc := s.side.Load(); sc != nil {
			if tag := imapwire.Tag(line); tag == "*" || tag == sc.tag {
				msg := line
				for n >= 0 {
					lit := make([]byte, n)
					if _, err := io.ReadFull(br, lit); err != nil {
						return
					}
					msg = append(msg, lit...)
					if line, n, _, err = imapwire.ReadLine(br); err != nil {
						return
					}
					msg = append(msg, line...)
				}
				if tag == sc.tag {
					sc.status = msg
					s.side.Store(nil)
					close(sc.done)
				} else {
					sc.untagged = append(sc.untagged, msg)
				}
				continue
			}
		}
		for {
			if _, err := s.client.Write(line); err != nil {
				return
			}
			if n < 0 {
				break
			}
			if _, err := io.CopyN(s.client, br, n); err != nil {
				return
			}
			if line, n, _, err = imapwire.ReadLine(br); err != nil {
				return
			}
		}
	}
}

// command runs one command of the bridge's own (cmd without tag or CRLF) and returns the untagged responses
// that came before its tagged one. It must be called only between two of provider/imap's commands (the
// engine uses a connection from one goroutine, and provider/imap's calls wait for their commands), so that
// nothing but this command's answers, and perhaps unsolicited updates, arrive meanwhile. A NO or BAD answer
// is an *imapStatusError.
func (s *imapSession) command(ctx context.Context, cmd string) ([][]byte, error) {
	sc := &sideCommand{tag: fmt.Sprintf("GMX%d", s.tags.Add(1)), done: make(chan struct{})}
	if !s.side.CompareAndSwap(nil, sc) {
		return nil, errors.New("gmail: a bridge command is already in flight")
	}
	s.wmu.Lock()
	_ = s.up.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := io.WriteString(s.up.conn, sc.tag+" "+cmd+"\r\n")
	_ = s.up.conn.SetWriteDeadline(time.Time{})
	s.wmu.Unlock()
	if err != nil {
		s.side.Store(nil)
		s.close()
		return nil, err
	}
	select {
	case <-sc.done:
	case <-ctx.Done():
		s.close() // the answer would arrive later, on a session provider/imap then uses again
		return nil, ctx.Err()
	case <-s.closed:
		return nil, errors.New("gmail: the IMAP session closed")
	}
	vals, err := imapwire.Parse(sc.status)
	if err != nil || len(vals) < 2 {
		return nil, fmt.Errorf("gmail: malformed answer %q", sc.status)
	}
	if st := strings.ToUpper(vals[1].Text); st != "OK" {
		return sc.untagged, &imapStatusError{status: st, text: strings.TrimSpace(string(sc.status[len(vals[0].Text)+1:]))}
	}
	return sc.untagged, nil
}

// imapStatusError is a NO or BAD answer to a command of the bridge's own.
type imapStatusError struct {
	status, text string
}

// Error returns the server's answer.
func (e *imapStatusError) Error() string { return "imap: " + e.text }

// serveSMTP is one SMTP connection from provider/imap: a greeting, EHLO (answered with the upstream's
// extensions, once it is connected), AUTH PLAIN with the secret, the upstream sign-in, then the bytes both
// ways.
func (b *bridge) serveSMTP(client net.Conn) {
	ctx := b.callCtx()
	if ctx == nil {
		return
	}
	octx, cancel := context.WithTimeout(ctx, b.preAuthTimeout())
	defer cancel()
	_ = client.SetDeadline(time.Now().Add(b.preAuthTimeout()))
	cbr := bufio.NewReader(client)
	reply := func(lines ...string) bool {
		var sb strings.Builder
		for _, l := range lines {
			sb.WriteString(l + "\r\n")
		}
		_, err := io.WriteString(client, sb.String())
		return err == nil
	}
	if !reply("220 localhost ESMTP crmsync gmail bridge") {
		return
	}
	var up *upstreamSMTP
	defer func() {
		if up != nil {
			up.conn.Close()
		}
	}()
	for {
		line, err := cbr.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			if up == nil {
				if up, err = b.c.openUpstreamSMTP(octx); err != nil {
					up = nil
					b.fail(err)
					reply("421 4.3.0 the Gmail SMTP session could not be opened")
					return
				}
			}
			lines := []string{"250-localhost"}
			for _, e := range up.clientExtensions() {
				lines = append(lines, "250-"+e)
			}
			lines = append(lines, "250 AUTH PLAIN")
			if !reply(lines...) {
				return
			}
		case "AUTH":
			mech, ir, _ := strings.Cut(strings.TrimSpace(arg), " ")
			if !strings.EqualFold(mech, "PLAIN") || up == nil {
				reply("504 5.5.4 only AUTH PLAIN after EHLO")
				continue
			}
			if ir == "" {
				if !reply("334 ") {
					return
				}
				if ir, err = cbr.ReadString('\n'); err != nil {
					return
				}
				ir = strings.TrimSpace(ir)
			}
			raw, _ := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(raw), "\x00")
			if len(parts) != 3 || !b.checkSecret(parts[1], parts[2]) {
				reply("535 5.7.8 not the bridge's secret")
				return
			}
			if err := b.c.authUpstreamSMTP(octx, up); err != nil {
				b.fail(err)
				reply("454 4.7.0 the Gmail sign-in failed")
				return
			}
			if !reply("235 2.7.0 signed in") {
				return
			}
			if !b.track(up.conn) {
				return
			}
			defer b.untrack(up.conn)
			_ = client.SetDeadline(time.Time{})
			relay(client, cbr, up.conn, up.tp.R)
			return
		case "NOOP", "RSET":
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("530 5.7.0 authentication required")
		}
	}
}

// relay copies bytes both ways between a and b (reading through their buffered readers) until either ends.
func relay(a net.Conn, ar *bufio.Reader, b net.Conn, br *bufio.Reader) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(b, ar)
		b.Close()
		a.Close()
	}()
	_, _ = io.Copy(a, br)
	a.Close()
	b.Close()
	<-done
}
