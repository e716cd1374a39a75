package pop3_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/pop3"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/provider/smtp"
)

// The tests against real servers (Dovecot's POP3, fed over LMTP) share one instance
// of the servers; under -short they skip.
func TestMain(m *testing.M) { testenv.RunMain(m) }

// realHarness runs the provider against Dovecot's POP3 on one of its endpoints.
type realHarness struct {
	env    *testenv.Env
	ep     crmsync.Endpoint
	dialer *pop3.Dialer
}

var (
	_ providertest.Harness         = (*realHarness)(nil)
	_ providertest.BadCredentialer = (*realHarness)(nil)
)

func newRealHarness(t *testing.T, sec crmsync.Security) *realHarness {
	t.Helper()
	env := testenv.MailServers(t)
	addr := env.POP3Addr
	if sec == crmsync.SecurityTLS {
		addr = env.POP3SAddr
	}
	return &realHarness{env: env, ep: testenv.Endpoint(t, addr, sec), dialer: pop3.NewDialer(pop3.Config{TLSConfig: env.TLSConfig()})}
}

func (h *realHarness) target(address, password string) provider.Target {
	return provider.Target{
		Profile: &crmsync.ServerProfile{ID: "pop3-real", Kind: crmsync.ServerPOP3, Incoming: h.ep, ConnectionTimeout: 20 * time.Second},
		Mailbox: &crmsync.Mailbox{ID: "mbx-" + strings.Split(address, "@")[0], Address: address, ProfileID: "pop3-real",
			Credentials: crmsync.Credentials{Username: address, Password: password}},
	}
}

func (h *realHarness) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	return h.dialer.Dial(ctx, t)
}

func (h *realHarness) Capabilities() providertest.Capabilities {
	return providertest.Capabilities{Incoming: true}
}

func (h *realHarness) NewMailbox(_ context.Context, t *testing.T) provider.Target {
	return h.target(h.env.AddUser(t, "pop3"), h.env.Password)
}

func (h *realHarness) Deliver(ctx context.Context, to provider.Target, raw []byte) error {
	return h.env.Deliver(ctx, to.Mailbox.Address, raw)
}

func (h *realHarness) WithBadCredentials(t provider.Target) provider.Target {
	mb := *t.Mailbox
	mb.Credentials.Password += "-wrong"
	t.Mailbox = &mb
	return t
}

func TestRealConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		sec  crmsync.Security
	}{
		{"Plaintext", crmsync.SecurityPlaintext},
		{"STLS", crmsync.SecuritySTARTTLS},
		{"POP3S", crmsync.SecurityTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			providertest.RunConformance(t, newRealHarness(t, tc.sec))
		})
	}
}

func TestRealWrongPassword(t *testing.T) {
	h := newRealHarness(t, crmsync.SecuritySTARTTLS)
	addr := h.env.AddUser(t, "pop3-wrong")
	c, err := h.dialer.DialConn(t.Context(), h.target(addr, "not-the-password"))
	require.NoError(t, err)
	defer c.Close()
	err = c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "%v", err)
	assert.NotContains(t, err.Error(), "not-the-password")
}

func TestRealRefusedConnection(t *testing.T) {
	h := newRealHarness(t, crmsync.SecurityPlaintext)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h.ep.Port = ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close()) // a closed port
	c, err := h.dialer.DialConn(t.Context(), h.target(h.env.Users[0], h.env.Password))
	require.NoError(t, err)
	defer c.Close()
	err = c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
}

// fetchNew runs one cycle on a new connection: batches until More is false.
func fetchNew(t *testing.T, h *realHarness, tg provider.Target, cursor []byte) ([]*crmsync.Email, []byte) {
	t.Helper()
	c, err := h.dialer.DialConn(t.Context(), tg)
	require.NoError(t, err)
	defer c.Close()
	var all []*crmsync.Email
	for {
		b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Cursor: cursor, Max: 2})
		require.NoError(t, err)
		require.Empty(t, b.Failed)
		all = append(all, b.Emails...)
		cursor = b.Cursor
		if !b.More {
			return all, cursor
		}
	}
}

func realMessage(i int) []byte {
	return []byte(fmt.Sprintf("From: Bob <bob@example.test>\r\nTo: x@example.test\r\nSubject: leave %d\r\n"+
		"Date: %s\r\nMessage-ID: <leave.%d.%d@example.test>\r\n\r\nbody %d\r\n",
		i, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), i, i))
}

// TestRealLeaveOnServer checks that messages stay on the server, that cycles on new
// connections never return a message twice, and that a message another client deletes
// leaves the cursor.
func TestRealLeaveOnServer(t *testing.T) {
	h := newRealHarness(t, crmsync.SecuritySTARTTLS)
	tg := h.target(h.env.AddUser(t, "pop3-leave"), h.env.Password)
	ctx := ctxTimeout(t)
	for i := 1; i <= 3; i++ {
		require.NoError(t, h.env.Deliver(ctx, tg.Mailbox.Address, realMessage(i)))
	}

	first, cursor := fetchNew(t, h, tg, nil)
	require.Len(t, first, 3)
	again, cursor2 := fetchNew(t, h, tg, cursor)
	assert.Empty(t, again, "a second cycle returns nothing")
	assert.Equal(t, cursor, cursor2)

	require.NoError(t, h.env.Deliver(ctx, tg.Mailbox.Address, realMessage(4)))
	fourth, cursor3 := fetchNew(t, h, tg, cursor2)
	require.Len(t, fourth, 1)
	assert.Equal(t, "leave 4", fourth[0].Subject)
	for _, m := range first {
		assert.NotEqual(t, m.ProviderID, fourth[0].ProviderID)
	}

	// All four are still on the server. Another client deletes the first.
	cl := realClient(t, h, tg)
	n, _, err := cl.Stat(ctx)
	require.NoError(t, err)
	assert.Equal(t, 4, n, "nothing was deleted")
	uids, err := cl.Uidl(ctx)
	require.NoError(t, err)
	require.Equal(t, first[0].ProviderID, uids[0].UID)
	require.NoError(t, cl.Dele(ctx, 1))
	require.NoError(t, cl.Quit(ctx))

	inCursor, err := pop3.CursorUIDs(cursor3)
	require.NoError(t, err)
	assert.Contains(t, inCursor, first[0].ProviderID)
	none, cursor4 := fetchNew(t, h, tg, cursor3)
	assert.Empty(t, none)
	inCursor, err = pop3.CursorUIDs(cursor4)
	require.NoError(t, err)
	assert.Len(t, inCursor, 3)
	assert.NotContains(t, inCursor, first[0].ProviderID, "the deleted message left the cursor")
}

// realClient logs in to tg's maildrop with the bare client, over STLS.
func realClient(t *testing.T, h *realHarness, tg provider.Target) *pop3.Client {
	t.Helper()
	ctx := ctxTimeout(t)
	cl, err := pop3.Dial(ctx, h.env.POP3Addr)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	require.NoError(t, cl.StartTLS(ctx, h.env.TLSConfig()))
	require.NoError(t, cl.User(ctx, tg.Credentials().Username))
	require.NoError(t, cl.Pass(ctx, tg.Credentials().Password))
	return cl
}

func TestRealUntrustedCA(t *testing.T) {
	for _, sec := range []crmsync.Security{crmsync.SecuritySTARTTLS, crmsync.SecurityTLS} {
		t.Run(fmt.Sprint(sec), func(t *testing.T) {
			h := newRealHarness(t, sec)
			h.dialer = pop3.NewDialer(pop3.Config{TLSConfig: &tls.Config{RootCAs: x509.NewCertPool(), ServerName: h.env.ServerName}})
			c, err := h.dialer.DialConn(t.Context(), h.target(h.env.Users[0], h.env.Password))
			require.NoError(t, err)
			defer c.Close()
			err = c.Test(ctxTimeout(t), crmsync.Incoming)
			assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
		})
	}
}

func TestRealPlaintextOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		sec     crmsync.Security
		wantTLS bool
	}{
		{crmsync.SecurityPlaintext, false},
		{crmsync.SecuritySTARTTLS, true},
		{crmsync.SecurityTLS, true},
	} {
		h := newRealHarness(t, tc.sec)
		c, err := h.dialer.DialConn(t.Context(), h.target(h.env.Users[0], h.env.Password))
		require.NoError(t, err)
		isTLS, err := c.SessionTLS(ctxTimeout(t))
		require.NoError(t, err)
		assert.Equal(t, tc.wantTLS, isTLS, "security %d", tc.sec)
		c.Close()
	}

	// Implicit TLS asked of the plaintext port fails; it never falls back.
	h := newRealHarness(t, crmsync.SecurityTLS)
	h.ep = testenv.Endpoint(t, h.env.POP3Addr, crmsync.SecurityTLS)
	c, err := h.dialer.DialConn(t.Context(), h.target(h.env.Users[0], h.env.Password))
	require.NoError(t, err)
	defer c.Close()
	err = c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
}

// TestRealSendThroughSMTP sends from a POP3 mailbox through Dovecot's submission
// service with the default SMTP sender (provider/smtp), the same as IMAP profiles use:
// the message, sent to the mailbox's own address, arrives in its maildrop. FindSent
// cannot answer without a Sent folder.
func TestRealSendThroughSMTP(t *testing.T) {
	h := newRealHarness(t, crmsync.SecuritySTARTTLS)
	tg := h.target(h.env.AddUser(t, "pop3-send"), h.env.Password)
	tg.Profile.Outgoing = testenv.Endpoint(t, h.env.SMTPAddr, crmsync.SecuritySTARTTLS)
	p, err := h.dialer.Dial(t.Context(), tg)
	require.NoError(t, err)
	defer p.Close()
	om, ok := p.(provider.OutgoingMail)
	require.True(t, ok)

	ctx := ctxTimeout(t)
	require.NoError(t, p.Test(ctx, crmsync.Outgoing))
	id := fmt.Sprintf("pop3-send.%d@crm.example", time.Now().UnixNano())
	r, err := om.Send(ctx, &crmsync.Email{
		MessageID: id, To: []crmsync.Address{{Email: tg.Mailbox.Address}},
		Subject: "sent from a POP3 mailbox", TextBody: "Hello through submission.\n",
	})
	require.NoError(t, err)
	assert.Equal(t, id, r.MessageID)

	var got []*crmsync.Email
	deadline := time.Now().Add(30 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		got, _ = fetchNew(t, h, tg, nil)
		if len(got) == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	require.Len(t, got, 1, "the message arrives through OpenSMTPD and LMTP")
	assert.Equal(t, id, got[0].MessageID)
	assert.Equal(t, tg.Mailbox.Address, got[0].From.Email)
	assert.Equal(t, "sent from a POP3 mailbox", got[0].Subject)

	_, err = om.FindSent(ctx, id)
	assert.ErrorIs(t, err, crmsync.ErrNotSupported)

	// A wrong password is an auth error; the email definitely did not go out.
	bad := tg
	mb := *tg.Mailbox
	mb.Credentials.Password += "-wrong"
	bad.Mailbox = &mb
	p2, err := h.dialer.Dial(t.Context(), bad)
	require.NoError(t, err)
	defer p2.Close()
	_, err = p2.(provider.OutgoingMail).Send(ctx, &crmsync.Email{To: []crmsync.Address{{Email: tg.Mailbox.Address}}})
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
	assert.NotContains(t, err.Error(), mb.Credentials.Password)
}
