package mailtest_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/schedule"
)

func start(t *testing.T, cfg mailtest.Config) *mailtest.Server {
	t.Helper()
	srv, err := mailtest.NewServer(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.AddUser("ann@example.test", "ann-pw"))
	require.NoError(t, srv.AddUser("Bob@Example.test", "bob-pw"))
	require.NoError(t, srv.Start())
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return srv
}

const note = "From: ann@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\nMessage-ID: <n1@example.test>\r\n\r\nhello\r\n"

func TestLifecycle(t *testing.T) {
	t.Run("close before start", func(t *testing.T) {
		srv, err := mailtest.NewServer(mailtest.Config{})
		require.NoError(t, err)
		assert.NotEmpty(t, srv.IMAPAddr())
		require.NoError(t, srv.Close())
		require.NoError(t, srv.Close())
		assert.Error(t, srv.Start())
	})
	t.Run("start twice", func(t *testing.T) {
		srv := start(t, mailtest.Config{})
		assert.Error(t, srv.Start())
	})
	t.Run("bad config", func(t *testing.T) {
		_, err := mailtest.NewServer(mailtest.Config{SMTPAuthMechanisms: []string{"CRAM-MD5"}})
		assert.Error(t, err)
	})
}

// TestCloseWaits checks that Close leaves no goroutine behind, even with clients
// connected.
func TestCloseWaits(t *testing.T) {
	before := runtime.NumGoroutine()
	srv, err := mailtest.NewServer(mailtest.Config{})
	require.NoError(t, err)
	require.NoError(t, srv.AddUser("ann@example.test", "ann-pw"))
	require.NoError(t, srv.Start())

	ic, err := imapclient.DialInsecure(srv.IMAPAddr(), nil)
	require.NoError(t, err)
	require.NoError(t, ic.Login("ann@example.test", "ann-pw").Wait())
	sc, err := smtp.Dial(srv.SMTPAddr())
	require.NoError(t, err)
	require.NoError(t, sc.Hello("client"))

	require.NoError(t, srv.Close())
	ic.Close()
	sc.Close()
	// The clients' own goroutines end when they see the connections closed.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before)
}

func TestAddUser(t *testing.T) {
	srv := start(t, mailtest.Config{})
	assert.Error(t, srv.AddUser("ANN@example.test", "x"), "addresses are case-insensitive")
	assert.Error(t, srv.AddUser("not an address", "x"))
	for _, mbox := range []string{mailtest.Inbox, mailtest.Sent, mailtest.Drafts, mailtest.Junk, mailtest.Trash} {
		_, err := srv.UIDValidity("ann@example.test", mbox)
		assert.NoError(t, err, mbox)
	}
}

func TestDeliverAndMessages(t *testing.T) {
	clock := schedule.NewFake(time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC))
	srv := start(t, mailtest.Config{Clock: clock})
	require.NoError(t, srv.Deliver("bob@example.test", []byte(note)))
	old := time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, srv.DeliverAt("bob@example.test", []byte(note), old))
	assert.Error(t, srv.Deliver("nobody@example.test", []byte(note)))

	msgs, err := srv.Messages("bob@example.test", mailtest.Inbox)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	assert.Equal(t, uint32(1), msgs[0].UID)
	assert.True(t, msgs[0].InternalDate.Equal(clock.Now()))
	assert.True(t, msgs[1].InternalDate.Equal(old))
	assert.Equal(t, note, string(msgs[0].Raw))
	assert.Empty(t, msgs[0].Flags, "reading with Messages does not set \\Seen")

	empty, err := srv.Messages("bob@example.test", mailtest.Trash)
	require.NoError(t, err)
	assert.Empty(t, empty)
	assert.Zero(t, srv.Stats().Commands(), "the server's own sessions are not counted")
}

func TestMailboxes(t *testing.T) {
	srv := start(t, mailtest.Config{})
	require.NoError(t, srv.CreateMailbox("ann@example.test", "Projects"))
	v1, err := srv.UIDValidity("ann@example.test", "Projects")
	require.NoError(t, err)
	require.NoError(t, srv.DeleteMailbox("ann@example.test", "Projects"))
	require.NoError(t, srv.CreateMailbox("ann@example.test", "Projects"))
	v2, err := srv.UIDValidity("ann@example.test", "Projects")
	require.NoError(t, err)
	assert.NotEqual(t, v1, v2, "a recreated mailbox has a new UIDVALIDITY")
}

func TestSMTP(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			srv := start(t, mailtest.Config{SMTPAuthMechanisms: []string{mech}})
			sc, err := smtp.Dial(srv.SMTPAddr())
			require.NoError(t, err)
			defer sc.Close()
			require.NoError(t, sc.Hello("client.example"))

			// Unauthenticated submission is refused.
			err = sc.Mail("ann@example.test", nil)
			var se *smtp.SMTPError
			require.True(t, errors.As(err, &se), "%v", err)
			assert.Equal(t, 530, se.Code)
			require.NoError(t, sc.Reset())

			var client sasl.Client = sasl.NewPlainClient("", "ann@example.test", "ann-pw")
			if mech == "LOGIN" {
				client = sasl.NewLoginClient("ann@example.test", "ann-pw")
			}
			require.NoError(t, sc.Auth(client))
			require.NoError(t, sc.Mail("ann@example.test", nil))
			err = sc.Rcpt("nobody@example.test", nil)
			require.True(t, errors.As(err, &se), "%v", err)
			assert.Equal(t, 550, se.Code)
			require.NoError(t, sc.Rcpt("bob@example.test", nil))
			w, err := sc.Data()
			require.NoError(t, err)
			_, err = w.Write([]byte(note))
			require.NoError(t, err)
			require.NoError(t, w.Close())
			require.NoError(t, sc.Quit())

			assert.Equal(t, 1, srv.SMTPAccepted())
			msgs, err := srv.Messages("bob@example.test", mailtest.Inbox)
			require.NoError(t, err)
			require.Len(t, msgs, 1)
			raw := string(msgs[0].Raw)
			assert.True(t, strings.HasPrefix(raw, "Return-Path: <ann@example.test>\r\nDelivered-To: bob@example.test\r\nReceived: from client.example"), raw)
			assert.Contains(t, raw, "by mailtest.localhost with ESMTPA")
			assert.True(t, strings.HasSuffix(raw, note))
		})
	}
}

func TestSMTPWrongPassword(t *testing.T) {
	srv := start(t, mailtest.Config{})
	sc, err := smtp.Dial(srv.SMTPAddr())
	require.NoError(t, err)
	defer sc.Close()
	err = sc.Auth(sasl.NewPlainClient("", "ann@example.test", "wrong"))
	var se *smtp.SMTPError
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, 535, se.Code)
}

func TestIMAPStats(t *testing.T) {
	srv := start(t, mailtest.Config{})
	require.NoError(t, srv.Deliver("ann@example.test", []byte(note)))
	c, err := imapclient.DialInsecure(srv.IMAPAddr(), nil)
	require.NoError(t, err)
	defer c.Close()
	assert.Error(t, c.Login("ann@example.test", "wrong").Wait())
	require.NoError(t, c.Login("ann@example.test", "ann-pw").Wait())
	_, err = c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err)
	_, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}}).Collect()
	require.NoError(t, err)
	_, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	require.NoError(t, err)
	require.NoError(t, c.Logout().Wait())

	st := srv.Stats()
	assert.Equal(t, 1, st.IMAPLogins)
	assert.Equal(t, map[string]int{"LOGIN": 2, "EXAMINE": 1, "FETCH": 2}, st.IMAPCommands)
	assert.Equal(t, 1, st.BodyFetches, "header fetches are not body fetches")
}

func TestTLSModes(t *testing.T) {
	for _, mode := range []mailtest.TLSMode{mailtest.ImplicitTLS, mailtest.StartTLS} {
		srv := start(t, mailtest.Config{TLS: mode})
		require.NotNil(t, srv.RootCAs())
		cfg := &tls.Config{RootCAs: srv.RootCAs(), ServerName: "127.0.0.1"}
		var c *imapclient.Client
		var err error
		if mode == mailtest.ImplicitTLS {
			c, err = imapclient.DialTLS(srv.IMAPAddr(), &imapclient.Options{TLSConfig: cfg})
			assert.Equal(t, crmsync.SecurityTLS, srv.Profile("p").Incoming.Security)
		} else {
			c, err = imapclient.DialStartTLS(srv.IMAPAddr(), &imapclient.Options{TLSConfig: cfg})
			assert.Equal(t, crmsync.SecuritySTARTTLS, srv.Profile("p").Outgoing.Security)
		}
		require.NoError(t, err)
		require.NoError(t, c.Login("ann@example.test", "ann-pw").Wait())
		c.Close()

		msgs, err := srv.Messages("ann@example.test", mailtest.Inbox)
		require.NoError(t, err)
		assert.Empty(t, msgs)
	}
}

func TestProfile(t *testing.T) {
	srv := start(t, mailtest.Config{})
	p := srv.Profile("p1")
	require.NoError(t, p.Validate())
	assert.Equal(t, crmsync.ServerIMAP, p.Kind)
	assert.Equal(t, crmsync.SecurityPlaintext, p.Incoming.Security)
	assert.Equal(t, srv.IMAPAddr(), p.Incoming.Address())
	assert.Equal(t, srv.SMTPAddr(), p.Outgoing.Address())
	assert.True(t, bytes.Contains([]byte(p.Name), []byte("mailtest")))
}
