package testenv_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.RunMain(m) }

// TestMailChain proves the chain the full suite relies on: SMTP submission (STARTTLS, verified against the
// test CA, AUTH PLAIN) → OpenSMTPD → LMTP → Dovecot, and the message shows up in the recipient's POP3 INBOX.
func TestMailChain(t *testing.T) {
	env := testenv.MailServers(t)
	alice := "alice@" + env.Domain
	bob := env.AddUser(t, "bob") // a mailbox of this run's own, so the count below is exact

	c := dialSMTP(t, env, env.SMTPAddr, false)
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatalf("%s does not offer STARTTLS", env.SMTPAddr)
	}
	if err := c.StartTLS(env.TLSConfig()); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := c.Auth(smtp.PlainAuth("", alice, env.Password, env.ServerName)); err != nil {
		t.Fatalf("AUTH PLAIN as %s: %v", alice, err)
	}
	sendMessage(t, c, alice, bob, "chain test")

	// An unknown user of the local domain is refused at RCPT, permanently.
	if err := c.Mail(alice); err != nil {
		t.Fatalf("MAIL FROM: %v", err)
	}
	err := c.Rcpt("nobody-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "@" + env.Domain)
	var perr *textproto.Error
	if !errors.As(err, &perr) || perr.Code/100 != 5 {
		t.Errorf("RCPT TO an unknown local user: got %v, want a 5xx reply", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}

	waitPOP3Count(t, env.POP3Addr, nil, bob, env.Password, 1)
}

// TestMailChainImplicitTLS does the same over submissions and POP3S, between two users made by AddUser (which
// proves AddUser's users can log in and receive at once).
func TestMailChainImplicitTLS(t *testing.T) {
	env := testenv.MailServers(t)
	from := env.AddUser(t, "Sender")
	to := env.AddUser(t, "rcpt")
	if !strings.HasPrefix(from, "sender-") || !strings.HasSuffix(from, "@"+env.Domain) {
		t.Errorf("AddUser(Sender) = %q, want sender-…@%s", from, env.Domain)
	}

	c := dialSMTP(t, env, env.SMTPSAddr, true)
	defer c.Close()
	if err := c.Auth(smtp.PlainAuth("", from, env.Password, env.ServerName)); err != nil {
		t.Fatalf("AUTH PLAIN as %s: %v", from, err)
	}
	sendMessage(t, c, from, to, "implicit TLS test")
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	waitPOP3Count(t, env.POP3SAddr, env.TLSConfig(), to, env.Password, 1)
}

// TestIMAPSLogin checks that IMAPS completes a TLS handshake verified with the test CA, accepts a LOGIN, and
// offers what the IMAP provider relies on.
func TestIMAPSLogin(t *testing.T) {
	env := testenv.MailServers(t)
	conn, err := tls.Dial("tcp", env.IMAPSAddr, env.TLSConfig())
	if err != nil {
		t.Fatalf("TLS to IMAPS %s: %v", env.IMAPSAddr, err)
	}
	c := newIMAP(t, conn)
	defer c.Close()

	ok, _ := c.cmd("a", "LOGIN bob@"+env.Domain+" "+env.Password)
	if !strings.HasPrefix(ok, "a OK") {
		t.Fatalf("LOGIN bob: %q, want a OK", ok)
	}
	_, caps := c.cmd("b", "CAPABILITY")
	for _, want := range []string{"CONDSTORE", "QRESYNC", "MOVE", "UIDPLUS", "SPECIAL-USE", "IDLE", "ESEARCH"} {
		if !strings.Contains(" "+strings.Join(caps, " ")+" ", " "+want+" ") {
			t.Errorf("capabilities %q lack %s", caps, want)
		}
	}
	done, list := c.cmd("c", `LIST "" "*" RETURN (SPECIAL-USE)`)
	if !strings.HasPrefix(done, "c OK") {
		t.Fatalf("LIST: %q", done)
	}
	for _, want := range []string{`\Sent`, `\Drafts`, `\Trash`, `\Junk`} {
		if !strings.Contains(strings.Join(list, "\n"), want) {
			t.Errorf("LIST %q has no %s mailbox", list, want)
		}
	}
	c.cmd("z", "LOGOUT")
}

// TestIMAPWrongPassword checks that a wrong password is refused (on the plaintext port, where plaintext LOGIN is
// allowed on loopback), that STARTTLS works there, and that SMTP AUTH refuses a wrong password too.
func TestIMAPWrongPassword(t *testing.T) {
	env := testenv.MailServers(t)
	conn, err := net.DialTimeout("tcp", env.IMAPAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := newIMAP(t, conn)
	defer c.Close()
	res, _ := c.cmd("a", "LOGIN bob@"+env.Domain+" not-the-password")
	if !strings.HasPrefix(res, "a NO") {
		t.Fatalf("LOGIN with a wrong password: %q, want a NO", res)
	}
	c.Close()

	// A new connection: after a failure Dovecot delays the next attempt on the same connection by seconds.
	conn, err = net.DialTimeout("tcp", env.IMAPAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c = newIMAP(t, conn)
	defer c.Close()
	if res, _ := c.cmd("b", "STARTTLS"); !strings.HasPrefix(res, "b OK") {
		t.Fatalf("STARTTLS: %q", res)
	}
	tc := tls.Client(conn, env.TLSConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatalf("STARTTLS handshake: %v", err)
	}
	c = newIMAPNoGreeting(t, tc)
	if res, _ := c.cmd("c", "LOGIN bob@"+env.Domain+" "+env.Password); !strings.HasPrefix(res, "c OK") {
		t.Fatalf("LOGIN after STARTTLS: %q", res)
	}
	c.cmd("z", "LOGOUT")

	s := dialSMTP(t, env, env.SMTPAddr, false)
	defer s.Close()
	if err := s.StartTLS(env.TLSConfig()); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	err = s.Auth(smtp.PlainAuth("", "bob@"+env.Domain, "not-the-password", env.ServerName))
	var perr *textproto.Error
	if !errors.As(err, &perr) || perr.Code != 535 {
		t.Errorf("SMTP AUTH with a wrong password: got %v, want 535", err)
	}
}

// dialSMTP connects to a submission port, over TLS from the first byte if implicitTLS.
func dialSMTP(t *testing.T, env *testenv.Env, addr string, implicitTLS bool) *smtp.Client {
	t.Helper()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: 10 * time.Second}
	if implicitTLS {
		conn, err = tls.DialWithDialer(d, "tcp", addr, env.TLSConfig())
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial SMTP %s: %v", addr, err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// The client's server name must be the certificate's: net/smtp's PlainAuth checks it.
	c, err := smtp.NewClient(conn, env.ServerName)
	if err != nil {
		conn.Close()
		t.Fatalf("SMTP greeting from %s: %v", addr, err)
	}
	if err := c.Hello("client.example.test"); err != nil {
		c.Close()
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

func sendMessage(t *testing.T, c *smtp.Client, from, to, subject string) {
	t.Helper()
	if err := c.Mail(from); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", from, err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatalf("RCPT TO:<%s>: %v", to, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.testenv@example.test>\r\n\r\nHello from testenv.\r\n",
		from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatalf("DATA write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
}

// waitPOP3Count polls a user's POP3 maildrop (a new session each time, as POP3 fixes the maildrop at login)
// until STAT reports want messages, for at most 10 s.
func waitPOP3Count(t *testing.T, addr string, tlsConfig *tls.Config, user, pass string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := pop3Count(addr, tlsConfig, user, pass)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("POP3 %s as %s: %d messages (err %v), want %d within 10 s", addr, user, n, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pop3Count(addr string, tlsConfig *tls.Config, user, pass string) (int, error) {
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if tlsConfig != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsConfig)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	tp := textproto.NewConn(conn)
	ok := func() (string, error) {
		line, err := tp.ReadLine()
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(line, "+OK") {
			return "", fmt.Errorf("POP3: %q", line)
		}
		return line, nil
	}
	if _, err := ok(); err != nil {
		return 0, err
	}
	for _, cmd := range []string{"USER " + user, "PASS " + pass} {
		if err := tp.PrintfLine("%s", cmd); err != nil {
			return 0, err
		}
		if _, err := ok(); err != nil {
			return 0, err
		}
	}
	if err := tp.PrintfLine("STAT"); err != nil {
		return 0, err
	}
	line, err := ok()
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line) // +OK count size
	if len(f) < 3 {
		return 0, fmt.Errorf("POP3 STAT: %q", line)
	}
	n, err := strconv.Atoi(f[1])
	_ = tp.PrintfLine("QUIT")
	return n, err
}

// imapConn speaks just enough raw IMAP for these checks.
type imapConn struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Conn
}

func newIMAP(t *testing.T, c net.Conn) *imapConn {
	t.Helper()
	ic := newIMAPNoGreeting(t, c)
	line, err := ic.tp.ReadLine()
	if err != nil || !strings.HasPrefix(line, "* OK") {
		t.Fatalf("IMAP greeting: %q, %v", line, err)
	}
	return ic
}

func newIMAPNoGreeting(t *testing.T, c net.Conn) *imapConn {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &imapConn{t: t, c: c, tp: textproto.NewConn(c)}
}

// cmd sends "tag command" and returns the tagged reply line and the untagged lines before it.
func (ic *imapConn) cmd(tag, command string) (string, []string) {
	ic.t.Helper()
	if err := ic.tp.PrintfLine("%s %s", tag, command); err != nil {
		ic.t.Fatalf("IMAP %s: %v", command, err)
	}
	var untagged []string
	for {
		line, err := ic.tp.ReadLine()
		if err != nil {
			ic.t.Fatalf("IMAP %s: %v", command, err)
		}
		if strings.HasPrefix(line, tag+" ") {
			return line, untagged
		}
		untagged = append(untagged, line)
	}
}

func (ic *imapConn) Close() error { return ic.c.Close() }
