package pop3_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/pop3"
	"github.com/crmsync/crmsync/schedule"
)

const (
	ann   = "ann@example.test"
	annPW = "ann-pw"
)

// fakeEnv is a fake server with the user ann, and a Dialer for it.
type fakeEnv struct {
	srv    *fakeServer
	ca     *testCA
	sec    crmsync.Security
	dialer *pop3.Dialer
}

func newFakeEnv(t *testing.T, sec crmsync.Security, configure ...func(*fakeServer)) *fakeEnv {
	t.Helper()
	ca := newTestCA(t)
	configure = append([]func(*fakeServer){func(s *fakeServer) {
		s.tlsConfig = ca.server
		s.implicitTLS = sec == crmsync.SecurityTLS
	}}, configure...)
	srv := newFakeServer(t, configure...)
	srv.addUser(ann, annPW)
	return &fakeEnv{srv: srv, ca: ca, sec: sec,
		dialer: pop3.NewDialer(pop3.Config{TLSConfig: &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}})}
}

func (e *fakeEnv) target(user, password string) provider.Target {
	return provider.Target{
		Profile: &crmsync.ServerProfile{ID: "p1", Kind: crmsync.ServerPOP3,
			Incoming: crmsync.Endpoint{Host: "127.0.0.1", Port: e.srv.port(), Security: e.sec}},
		Mailbox: &crmsync.Mailbox{ID: "mbx-ann", Address: user, ProfileID: "p1",
			Credentials: crmsync.Credentials{Username: user, Password: password}},
	}
}

// conn dials ann's mailbox (or tg) and closes it at the end of the test.
func (e *fakeEnv) conn(t *testing.T, tg ...provider.Target) *pop3.Conn {
	t.Helper()
	target := e.target(ann, annPW)
	if len(tg) > 0 {
		target = tg[0]
	}
	c, err := e.dialer.DialConn(context.Background(), target)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// fetch runs one FetchIncoming on a new connection, as the engine does per cycle.
func (e *fakeEnv) fetch(t *testing.T, req provider.FetchRequest) *provider.Batch {
	t.Helper()
	c := e.conn(t)
	b, err := c.FetchIncoming(ctxTimeout(t), req)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	return b
}

func (e *fakeEnv) deliver(t *testing.T, first, n int) {
	for i := first; i < first+n; i++ {
		e.srv.deliver(ann, fmt.Sprintf("uidl-%04d", i), message(i))
	}
}

// received is the date of the newest Received field of message(i).
var received = time.Date(2024, 5, 7, 10, 0, 0, 0, time.UTC)

func message(i int, extra ...string) []byte {
	h := []string{
		"Received: from mx.example.test by pop.example.test; Tue, 07 May 2024 10:00:00 +0000",
		"Received: from client.example.test by mx.example.test; Tue, 07 May 2024 09:59:00 +0000",
		"From: Bob <bob@example.test>",
		"To: Ann <ann@example.test>",
		fmt.Sprintf("Subject: message %d", i),
		"Date: Tue, 07 May 2024 09:00:00 +0000",
		fmt.Sprintf("Message-ID: <m%d@example.test>", i),
	}
	h = append(h, extra...)
	return []byte(strings.Join(h, "\r\n") + "\r\n\r\n" + fmt.Sprintf("body of message %d\r\n", i))
}

func messageIDs(emails []*crmsync.Email) []string {
	out := []string{}
	for _, e := range emails {
		out = append(out, e.MessageID)
	}
	return out
}

func ids(from, n int) []string {
	out := []string{}
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf("m%d@example.test", i))
	}
	return out
}

func TestTestWorkloads(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	c := e.conn(t)
	ctx := ctxTimeout(t)
	assert.NoError(t, c.Test(ctx, crmsync.Incoming))
	assert.Equal(t, 1, e.srv.count("STAT"))
	assert.Equal(t, 1, e.srv.count("QUIT"), "Test ends its session")

	err := c.Test(ctx, crmsync.Outgoing)
	assert.ErrorIs(t, err, crmsync.ErrNotSupported)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))

	err = c.Test(ctx, crmsync.ACT)
	assert.ErrorIs(t, err, crmsync.ErrNotSupported)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	assert.Contains(t, err.Error(), "POP3 profiles sync email only: appointments, contacts and tasks need Exchange or a CalDAV/CardDAV server")

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is safe twice")
	_, err = c.FetchIncoming(ctx, provider.FetchRequest{})
	assert.Error(t, err, "a closed Conn refuses work")
}

func TestDial(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	p, err := e.dialer.Dial(context.Background(), e.target(ann, annPW))
	require.NoError(t, err)
	defer p.Close()
	_, isOut := p.(provider.OutgoingMail)
	_, isIn := p.(provider.IncomingMail)
	assert.False(t, isOut, "no sender, no OutgoingMail")
	assert.True(t, isIn)
	assert.Empty(t, e.srv.commands(), "Dial does no I/O")

	_, err = e.dialer.Dial(context.Background(), provider.Target{})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	tg := e.target(ann, annPW)
	tg.Profile.Incoming.Host = ""
	_, err = e.dialer.Dial(context.Background(), tg)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
}

// fakeSender records what the POP3 connection delegates to it.
type fakeSender struct {
	mu      sync.Mutex
	sent    []string
	tested  int
	closed  int
	testErr error
}

func (s *fakeSender) Send(_ context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, m.MessageID)
	return provider.SendReceipt{MessageID: m.MessageID, Copied: true}, nil
}

func (s *fakeSender) FindSent(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.sent {
		if v == id {
			return true, nil
		}
	}
	return false, nil
}

func (s *fakeSender) Test(_ context.Context, w crmsync.Workload) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tested++
	return s.testErr
}

func (s *fakeSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed++
	return nil
}

func TestOutgoingDelegates(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	snd := &fakeSender{}
	opened := 0
	var openedFor provider.Target
	d := pop3.NewDialer(pop3.Config{Outgoing: func(_ context.Context, tg provider.Target) (provider.OutgoingMail, error) {
		opened++
		openedFor = tg
		return snd, nil
	}})
	tg := e.target(ann, annPW)
	p, err := d.Dial(context.Background(), tg)
	require.NoError(t, err)
	om, ok := p.(provider.OutgoingMail)
	require.True(t, ok, "with a sender, the connection is an OutgoingMail")
	_, ok = p.(provider.IncomingMail)
	require.True(t, ok, "and still an IncomingMail")
	assert.Equal(t, 0, opened, "the sender opens on first use")

	ctx := ctxTimeout(t)
	require.NoError(t, p.Test(ctx, crmsync.Outgoing))
	assert.Equal(t, 1, snd.tested)
	r, err := om.Send(ctx, &crmsync.Email{MessageID: "out-1@example.test"})
	require.NoError(t, err)
	assert.Equal(t, "out-1@example.test", r.MessageID)
	found, err := om.FindSent(ctx, "out-1@example.test")
	require.NoError(t, err)
	assert.True(t, found, "FindSent is the sender's")
	found, err = om.FindSent(ctx, "never@example.test")
	require.NoError(t, err)
	assert.False(t, found)
	assert.Equal(t, 1, opened, "one sender per connection")
	assert.Equal(t, tg.Mailbox, openedFor.Mailbox)
	assert.Empty(t, e.srv.commands(), "sending never touches POP3")

	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	assert.Equal(t, 1, snd.closed)

	// The sender's errors keep their kind; unclassified ones are classified.
	snd.testErr = crmsync.Errorf(crmsync.KindAuth, "smtp auth", "refused")
	p, err = d.Dial(context.Background(), tg)
	require.NoError(t, err)
	defer p.Close()
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(p.Test(ctx, crmsync.Outgoing)))
	failing := pop3.NewDialer(pop3.Config{Outgoing: func(context.Context, provider.Target) (provider.OutgoingMail, error) {
		return nil, &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	}})
	p, err = failing.Dial(context.Background(), tg)
	require.NoError(t, err)
	defer p.Close()
	err = p.Test(ctx, crmsync.Outgoing)
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err))
}

func TestFetch(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	e.deliver(t, 1, 3)

	b := e.fetch(t, provider.FetchRequest{})
	require.Equal(t, ids(1, 3), messageIDs(b.Emails))
	assert.False(t, b.More)
	assert.Empty(t, b.Failed)
	m := b.Emails[0]
	assert.Equal(t, "uidl-0001", m.ProviderID)
	assert.Equal(t, pop3.Inbox, m.Folder)
	assert.Equal(t, int64(len(message(1))), m.Size)
	assert.Equal(t, "message 1", m.Subject)
	assert.Equal(t, crmsync.Address{Name: "Bob", Email: "bob@example.test"}, m.From)
	assert.Equal(t, []crmsync.Address{{Name: "Ann", Email: "ann@example.test"}}, m.To)
	assert.Equal(t, "body of message 1", strings.TrimSpace(m.TextBody))
	assert.True(t, m.ReceivedAt.Equal(received), "ReceivedAt is the newest Received field: %v", m.ReceivedAt)
	assert.True(t, m.SentAt.Equal(received.Add(-time.Hour)), "SentAt is the Date field: %v", m.SentAt)
	assert.Equal(t, crmsync.DirectionIncoming, m.Direction)

	uids, err := pop3.CursorUIDs(b.Cursor)
	require.NoError(t, err)
	assert.Equal(t, []string{"uidl-0001", "uidl-0002", "uidl-0003"}, uids)

	// Nothing new: nothing returned, on a new connection.
	again := e.fetch(t, provider.FetchRequest{Cursor: b.Cursor})
	assert.Empty(t, again.Emails)
	assert.Equal(t, b.Cursor, again.Cursor, "the same set, the same bytes")

	// A new message, and one deleted by another client: the cursor forgets it.
	e.deliver(t, 4, 1)
	e.srv.remove(ann, "uidl-0002")
	b = e.fetch(t, provider.FetchRequest{Cursor: again.Cursor})
	assert.Equal(t, ids(4, 1), messageIDs(b.Emails))
	uids, err = pop3.CursorUIDs(b.Cursor)
	require.NoError(t, err)
	assert.Equal(t, []string{"uidl-0001", "uidl-0003", "uidl-0004"}, uids)

	assert.Zero(t, e.srv.count("DELE"), "messages are left on the server")
	assert.Equal(t, 4, e.srv.count("RETR"), "one RETR per tracked message")
}

func TestFetchMaxAndMore(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	e.deliver(t, 1, 5)
	c := e.conn(t)
	ctx := ctxTimeout(t)
	var got []*crmsync.Email
	var cursor []byte
	for i := 0; ; i++ {
		require.Less(t, i, 10)
		b, err := c.FetchIncoming(ctx, provider.FetchRequest{Cursor: cursor, Max: 2})
		require.NoError(t, err)
		assert.LessOrEqual(t, len(b.Emails), 2)
		got = append(got, b.Emails...)
		cursor = b.Cursor
		if !b.More {
			break
		}
	}
	assert.Equal(t, ids(1, 5), messageIDs(got))
	assert.Equal(t, 1, e.srv.loginCount(), "the batches of one cycle share a session")
	assert.Equal(t, 1, e.srv.count("UIDL"), "and its listing")

	// A new message after the last batch: a new session sees it.
	e.deliver(t, 6, 1)
	b, err := c.FetchIncoming(ctx, provider.FetchRequest{Cursor: cursor, Max: 2})
	require.NoError(t, err)
	assert.Equal(t, ids(6, 1), messageIDs(b.Emails))
	assert.Equal(t, 2, e.srv.loginCount())
}

func TestFetchKeptSessionExpires(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	clock := schedule.NewFake(time.Date(2024, 5, 7, 12, 0, 0, 0, time.UTC))
	e.dialer = pop3.NewDialer(pop3.Config{Clock: clock})
	e.deliver(t, 1, 3)
	c := e.conn(t)
	b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Max: 2})
	require.NoError(t, err)
	require.True(t, b.More)
	clock.Advance(2 * time.Minute) // the engine was slow to ask for the next batch
	b, err = c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Cursor: b.Cursor, Max: 2})
	require.NoError(t, err)
	assert.Equal(t, ids(3, 1), messageIDs(b.Emails))
	assert.Equal(t, 2, e.srv.loginCount(), "a stale kept session is replaced")
	assert.Equal(t, 2, e.srv.count("QUIT"))
}

func TestCloseAbortsFetch(t *testing.T) {
	release := make(chan struct{})
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
		s.onRetr = func(nc net.Conn, n int, raw []byte) bool {
			nc.Write([]byte("+OK\r\nSubject: x\r\n"))
			<-release
			return true
		}
	})
	defer close(release)
	e.deliver(t, 1, 1)
	c := e.conn(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
		done <- err
	}()
	for e.srv.count("RETR") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, c.Close())
	select {
	case err := <-done:
		assert.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not abort the running FetchIncoming")
	}
}

func TestFetchScreenAndSince(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	e.deliver(t, 1, 4)
	// Message 5 was received long before the others.
	e.srv.deliver(ann, "uidl-old", []byte("Received: from x by y; Mon, 01 Jan 2024 00:00:00 +0000\r\n"+
		"From: old@example.test\r\nSubject: old\r\nMessage-ID: <old@example.test>\r\n\r\nold\r\n"))

	var screened []*crmsync.Email
	b := e.fetch(t, provider.FetchRequest{
		Since: received.Add(-24 * time.Hour),
		Screen: func(_ context.Context, headers []*crmsync.Email) ([]bool, error) {
			screened = headers
			v := make([]bool, len(headers))
			for i, h := range headers {
				assert.Empty(t, h.TextBody, "header-only")
				assert.NotEmpty(t, h.ProviderID)
				v[i] = h.MessageID != "m2@example.test"
			}
			return v, nil
		},
	})
	assert.Equal(t, ids(1, 4), messageIDs(screened), "the old message is not screened")
	assert.Equal(t, []string{"m1@example.test", "m3@example.test", "m4@example.test"}, messageIDs(b.Emails))
	assert.Equal(t, 3, e.srv.count("RETR"), "only accepted messages are downloaded")
	assert.Equal(t, 5, e.srv.count("TOP"))
	uids, err := pop3.CursorUIDs(b.Cursor)
	require.NoError(t, err)
	assert.Len(t, uids, 5, "the cursor covers screened-out and too old messages")

	boom := errors.New("screen failed")
	c := e.conn(t)
	_, err = c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{
		Screen: func(context.Context, []*crmsync.Email) ([]bool, error) { return nil, boom },
	})
	assert.ErrorIs(t, err, boom)
}

func TestFetchFailedMessages(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	e.deliver(t, 1, 2)
	e.srv.deliver(ann, "uidl-bad", []byte("\r\nno header at all\r\n"))
	e.deliver(t, 4, 1)
	b := e.fetch(t, provider.FetchRequest{})
	assert.Equal(t, []string{"m1@example.test", "m2@example.test", "m4@example.test"}, messageIDs(b.Emails))
	require.Len(t, b.Failed, 1)
	assert.Equal(t, provider.ItemRef{Folder: pop3.Inbox, ID: "uidl-bad"}, b.Failed[0].Ref)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(b.Failed[0].Err))
	uids, err := pop3.CursorUIDs(b.Cursor)
	require.NoError(t, err)
	assert.Contains(t, uids, "uidl-bad", "a failed message is in the cursor")
}

func TestFetchMessageGone(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
		s.onCommand = func(_ net.Conn, verb, arg string) (string, bool) {
			if verb == "RETR" && arg == "2" {
				return "-ERR Message 2 was deleted by another session", true
			}
			return "", false
		}
	})
	e.deliver(t, 1, 3)
	b := e.fetch(t, provider.FetchRequest{})
	assert.Equal(t, []string{"m1@example.test", "m3@example.test"}, messageIDs(b.Emails))
	require.Len(t, b.Failed, 1)
	assert.Equal(t, "uidl-0002", b.Failed[0].Ref.ID)
	assert.Equal(t, "m2@example.test", b.Failed[0].MessageID)
	assert.Equal(t, crmsync.KindNotFound, crmsync.KindOf(b.Failed[0].Err))
}

func TestFetchWithoutTOP(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) { s.noTOP = true })
	e.deliver(t, 1, 2)
	b := e.fetch(t, provider.FetchRequest{})
	assert.Equal(t, ids(1, 2), messageIDs(b.Emails))
	assert.Zero(t, e.srv.count("TOP"), "CAPA says no TOP")
	assert.Equal(t, 2, e.srv.count("RETR"), "each message is read once")
}

func TestFetchLargeMessage(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	e.dialer = pop3.NewDialer(pop3.Config{MaxMessageSize: 1000})
	e.deliver(t, 1, 1)
	e.srv.deliver(ann, "uidl-big", message(2, "X-Pad: "+strings.Repeat("p", 2000)))
	b := e.fetch(t, provider.FetchRequest{})
	assert.Equal(t, ids(1, 1), messageIDs(b.Emails))
	require.Len(t, b.Failed, 1)
	assert.Equal(t, "uidl-big", b.Failed[0].Ref.ID)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(b.Failed[0].Err))
	assert.Equal(t, 1, e.srv.count("RETR"), "the large message is not downloaded")
}

func TestFetchNoUIDL(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) { s.noUIDL = true })
	e.deliver(t, 1, 1)
	c := e.conn(t)
	_, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	assert.Contains(t, err.Error(), "does not support UIDL")
	assert.Contains(t, err.Error(), "mbx-ann", "the error names the mailbox")

	err = c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "Test & Enable finds it out: %v", err)
}

func TestFetchBadCursor(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	_, err := e.conn(t).FetchIncoming(ctxTimeout(t), provider.FetchRequest{Cursor: []byte{9, 9, 9}})
	assert.Equal(t, crmsync.KindCursorExpired, crmsync.KindOf(err))
	assert.Empty(t, e.srv.commands(), "the cursor is checked before connecting")
}

func TestFetchCanceled(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
		s.onRetr = func(nc net.Conn, n int, raw []byte) bool {
			nc.Write([]byte("+OK\r\nSubject: x\r\n"))
			time.Sleep(time.Second)
			return true
		}
	})
	e.deliver(t, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := e.conn(t).FetchIncoming(ctx, provider.FetchRequest{})
	assert.ErrorIs(t, err, context.Canceled)
}

func TestConnectionResetMidRETR(t *testing.T) {
	for _, name := range []string{"reset", "closed"} {
		t.Run(name, func(t *testing.T) {
			e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
				s.onRetr = func(nc net.Conn, n int, raw []byte) bool {
					nc.Write([]byte("+OK\r\n"))
					nc.Write(raw[:len(raw)/2])
					if tc, ok := nc.(*net.TCPConn); ok && name == "reset" {
						tc.SetLinger(0) // Close sends RST
					}
					nc.Close()
					return true
				}
			})
			e.deliver(t, 1, 1)
			_, err := e.conn(t).FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
			require.Error(t, err)
			assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
		})
	}
}

func TestLoginErrors(t *testing.T) {
	tests := []struct {
		name      string
		greeting  string
		passReply string
		caps      []string
		want      crmsync.Kind
		retry     time.Duration
	}{
		{name: "too many connections at the greeting", greeting: "-ERR [SYS/TEMP] Too many connections, try later", want: crmsync.KindThrottled},
		{name: "other -ERR greeting", greeting: "-ERR server shutting down", want: crmsync.KindTransient},
		{name: "Dovecot's connection limit", passReply: "-ERR [IN-USE] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)", want: crmsync.KindThrottled},
		{name: "mailbox in use", passReply: "-ERR [IN-USE] Unable to lock maildrop", want: crmsync.KindTransient},
		{name: "temporary failure", passReply: "-ERR [SYS/TEMP] Temporary authentication failure", want: crmsync.KindTransient},
		{name: "permanent failure", passReply: "-ERR [SYS/PERM] Your account is disabled", want: crmsync.KindPermanent},
		{name: "login delay", passReply: "-ERR [LOGIN-DELAY] Minimum time between logins not reached", caps: []string{"LOGIN-DELAY 900"}, want: crmsync.KindThrottled, retry: 900 * time.Second},
		{name: "refused without a code", passReply: "-ERR Invalid login", want: crmsync.KindAuth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
				s.greeting, s.passReply, s.extraCaps = tc.greeting, tc.passReply, tc.caps
			})
			err := e.conn(t).Test(ctxTimeout(t), crmsync.Incoming)
			assert.Equal(t, tc.want, crmsync.KindOf(err), "%v", err)
			assert.Equal(t, tc.retry, crmsync.RetryAfter(err))
		})
	}
}

func TestWrongPassword(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	c := e.conn(t, e.target(ann, "not-the-password"))
	err := c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))
	assert.NotContains(t, err.Error(), "not-the-password")
	assert.Contains(t, err.Error(), "mbx-ann")
	_, err = c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))

	tg := e.target(ann, "")
	tg.Mailbox.Credentials = crmsync.Credentials{}
	err = e.conn(t, tg).Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))
}

func TestLogsHoldNoSecrets(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecuritySTARTTLS)
	var logs bytes.Buffer
	e.dialer = pop3.NewDialer(pop3.Config{
		TLSConfig: &tls.Config{RootCAs: e.ca.pool, ServerName: "localhost"},
		Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	e.deliver(t, 1, 1)
	e.fetch(t, provider.FetchRequest{})
	err := e.conn(t, e.target(ann, "wrong-secret")).Test(ctxTimeout(t), crmsync.Incoming)
	require.Error(t, err)
	assert.Contains(t, logs.String(), "pop3 session opened")
	assert.Contains(t, logs.String(), "mbx-ann")
	assert.NotContains(t, logs.String(), annPW)
	assert.NotContains(t, logs.String(), "wrong-secret")
}

func TestProfileCredentialsAndAuthPlain(t *testing.T) {
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) { s.noUSER = true })
	e.srv.addUser("queue@example.test", "queue-pw")
	e.srv.deliver("queue@example.test", "q1", message(1))
	tg := e.target(ann, "ignored")
	tg.Profile.CredentialSource = crmsync.CredentialsFromProfile
	tg.Profile.Credentials = crmsync.Credentials{Username: "queue@example.test", Password: "queue-pw"}
	b, err := e.conn(t, tg).FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	require.NoError(t, err)
	assert.Equal(t, ids(1, 1), messageIDs(b.Emails))
	assert.Zero(t, e.srv.count("USER"), "AUTH PLAIN where USER is not offered")
	assert.Equal(t, 1, e.srv.count("AUTH"))
}

func TestSecurity(t *testing.T) {
	t.Run("STLS", func(t *testing.T) {
		e := newFakeEnv(t, crmsync.SecuritySTARTTLS)
		isTLS, err := e.conn(t).SessionTLS(ctxTimeout(t))
		require.NoError(t, err)
		assert.True(t, isTLS)
		assert.Equal(t, []string{"CAPA", "STLS", "CAPA", "USER", "PASS", "QUIT"}, e.srv.commands())
	})
	t.Run("implicit TLS", func(t *testing.T) {
		e := newFakeEnv(t, crmsync.SecurityTLS)
		isTLS, err := e.conn(t).SessionTLS(ctxTimeout(t))
		require.NoError(t, err)
		assert.True(t, isTLS)
	})
	t.Run("plaintext only when asked", func(t *testing.T) {
		e := newFakeEnv(t, crmsync.SecurityPlaintext)
		isTLS, err := e.conn(t).SessionTLS(ctxTimeout(t))
		require.NoError(t, err)
		assert.False(t, isTLS)
		assert.Zero(t, e.srv.count("STLS"))
	})
	for _, tc := range []struct {
		name      string
		configure func(*fakeServer)
	}{
		{"STLS not offered", func(s *fakeServer) { s.noSTLS = true }},
		{"STLS refused", func(s *fakeServer) { s.refuseSTLS = true }},
		{"STLS refused without CAPA", func(s *fakeServer) { s.refuseSTLS, s.noCAPA = true, true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv(t, crmsync.SecuritySTARTTLS, tc.configure)
			err := e.conn(t).Test(ctxTimeout(t), crmsync.Incoming)
			assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
			assert.Contains(t, err.Error(), "STLS")
			assert.Zero(t, e.srv.count("USER")+e.srv.count("PASS")+e.srv.count("AUTH"), "no credentials in plaintext")
		})
	}
	for _, sec := range []crmsync.Security{crmsync.SecuritySTARTTLS, crmsync.SecurityTLS} {
		t.Run(fmt.Sprintf("untrusted certificate %d", sec), func(t *testing.T) {
			e := newFakeEnv(t, sec)
			e.dialer = pop3.NewDialer(pop3.Config{TLSConfig: &tls.Config{ServerName: "localhost"}})
			err := e.conn(t).Test(ctxTimeout(t), crmsync.Incoming)
			assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
			assert.Zero(t, e.srv.count("USER"))

			tg := e.target(ann, annPW)
			tg.Profile.Incoming.InsecureSkipVerify = true
			assert.NoError(t, e.conn(t, tg).Test(ctxTimeout(t), crmsync.Incoming), "InsecureSkipVerify opts out")
		})
	}
	t.Run("unknown security", func(t *testing.T) {
		e := newFakeEnv(t, crmsync.SecurityPlaintext)
		tg := e.target(ann, annPW)
		tg.Profile.Incoming.Security = 42
		err := e.conn(t, tg).Test(ctxTimeout(t), crmsync.Incoming)
		assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	})
}

func TestRefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	tg := provider.Target{
		Profile: &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerPOP3,
			Incoming: crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: crmsync.SecurityPlaintext}},
		Mailbox: &crmsync.Mailbox{ID: "m", Credentials: crmsync.Credentials{Username: ann, Password: annPW}},
	}
	c, err := pop3.NewDialer(pop3.Config{}).Dial(context.Background(), tg)
	require.NoError(t, err)
	defer c.Close()
	err = c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
}

func TestConnectionTimeout(t *testing.T) {
	addr, _ := scripted(t, "") // accepts, never greets
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	tg := provider.Target{
		Profile: &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerPOP3, ConnectionTimeout: 200 * time.Millisecond,
			Incoming: crmsync.Endpoint{Host: "127.0.0.1", Port: p, Security: crmsync.SecurityPlaintext}},
		Mailbox: &crmsync.Mailbox{ID: "m", Credentials: crmsync.Credentials{Username: ann, Password: annPW}},
	}
	c, err := pop3.NewDialer(pop3.Config{Clock: schedule.Real{}}).Dial(context.Background(), tg)
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	err = c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
	assert.Less(t, time.Since(start), 5*time.Second)
}
