package gmailtest_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync/provider/gmail/gmailtest"
)

func start(t *testing.T) *gmailtest.Server {
	t.Helper()
	s, err := gmailtest.NewServer(gmailtest.Config{Validate: func(_ context.Context, user, token string) error {
		if token != "good-"+user {
			return errors.New("bad token")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("ann@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type session struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, s *gmailtest.Server) *session {
	c, err := net.Dial("tcp", s.IMAPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &session{t: t, c: c, br: bufio.NewReader(c)}
}

func (s *session) line() string {
	l, err := s.br.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// until sends cmd (tagged t1) and returns the lines up to its tagged answer, which comes last.
func (s *session) until(cmd string) []string {
	fmt.Fprintf(s.c, "t1 %s\r\n", cmd)
	var out []string
	for {
		l := s.line()
		out = append(out, l)
		if strings.HasPrefix(l, "t1 ") {
			return out
		}
	}
}

func xoauth2(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}

func TestSignInAsGmail(t *testing.T) {
	s := start(t)
	c := dial(t, s)
	greeting := c.line()
	for _, want := range []string{"AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "X-GM-EXT-1"} {
		if !strings.Contains(greeting, want) {
			t.Errorf("greeting %q lacks %s", greeting, want)
		}
	}
	// A refused token: the error challenge, the client's empty answer, then NO.
	fmt.Fprintf(c.c, "a1 AUTHENTICATE XOAUTH2 %s\r\n", xoauth2("ann@example.test", "stolen"))
	ch := c.line()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ch, "+ "))
	if err != nil || !strings.Contains(string(raw), `"status":"400"`) {
		t.Fatalf("error challenge %q (%s)", ch, raw)
	}
	fmt.Fprintf(c.c, "\r\n")
	if got := c.line(); got != "a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)" {
		t.Errorf("refusal: %q", got)
	}
	got := c.until("AUTHENTICATE XOAUTH2 " + xoauth2("ann@example.test", "good-ann@example.test"))
	if !strings.HasPrefix(got[len(got)-1], "t1 OK") {
		t.Fatalf("sign-in: %q", got)
	}
	if s.SignIns()["XOAUTH2"] != 1 {
		t.Errorf("SignIns = %v", s.SignIns())
	}
}

func TestGmailIdentityAndLabels(t *testing.T) {
	s := start(t)
	raw := "From: x@example.test\r\nSubject: hi\r\nMessage-ID: <l1@example.test>\r\n\r\nbody\r\n"
	if err := s.Deliver("ann@example.test", []byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLabel("ann@example.test", "l1@example.test", "Clients"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLabel("ann@example.test", "nope@example.test", "Clients"); err == nil {
		t.Error("AddLabel of a message that is not there succeeded")
	}
	c := dial(t, s)
	c.line()
	c.until("AUTHENTICATE XOAUTH2 " + xoauth2("ann@example.test", "good-ann@example.test"))
	msgid := func(folder string) (string, string) {
		c.until("EXAMINE " + folder)
		got := c.until("UID FETCH 1:* (UID X-GM-MSGID X-GM-LABELS)")
		if len(got) != 2 || !strings.HasPrefix(got[1], "t1 OK") {
			t.Fatalf("fetch in %s: %q", folder, got)
		}
		f := strings.Fields(got[0])
		return f[6], got[0]
	}
	inInbox, line := msgid("INBOX")
	if !strings.Contains(line, `X-GM-LABELS (\Inbox "Clients")`) {
		t.Errorf("labels in INBOX: %q", line)
	}
	inClients, line := msgid("Clients")
	if inInbox != inClients {
		t.Errorf("X-GM-MSGID differs between labels: %s, %s", inInbox, inClients)
	}
	if !strings.Contains(line, `"Clients"`) || !strings.Contains(line, `\Inbox`) {
		t.Errorf("labels in Clients: %q", line)
	}
	got := c.until("UID SEARCH X-GM-MSGID " + inInbox)
	if got[0] != "* SEARCH 1" {
		t.Errorf("search: %q", got)
	}
	if got := c.until("UID SEARCH X-GM-MSGID 42"); got[0] != "* SEARCH" {
		t.Errorf("search for nothing: %q", got)
	}
}

func TestNoGmailExtensions(t *testing.T) {
	s, err := gmailtest.NewServer(gmailtest.Config{NoGmailExtensions: true, Validate: func(context.Context, string, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := dial(t, s)
	if g := c.line(); strings.Contains(g, "X-GM-EXT-1") || !strings.Contains(g, "AUTH=XOAUTH2") {
		t.Errorf("greeting %q", g)
	}
	if _, err := gmailtest.NewServer(gmailtest.Config{}); err == nil {
		t.Error("a server without Validate")
	}
}
