package imap_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/mailtest"
)

func TestTestWorkloads(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	c := h.conn(t)
	assert.NoError(t, c.Test(ctxTimeout(t), crmsync.Incoming))
	assert.NoError(t, c.Test(ctxTimeout(t), crmsync.Outgoing))

	err := c.Test(ctxTimeout(t), crmsync.ACT)
	assert.ErrorIs(t, err, crmsync.ErrNotSupported)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	assert.Contains(t, err.Error(), "IMAP/SMTP profiles do not sync appointments, contacts and tasks (use a CalDAV/CardDAV profile)")
}

func TestDialIsLazy(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	c := h.conn(t)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is safe twice")
	assert.Zero(t, h.srv.Stats().Commands(), "Dial and Close without use do no I/O")
	_, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	assert.Error(t, err, "a closed Conn refuses work")

	_, err = h.dialer.Dial(context.Background(), provider.Target{})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
}

func TestWrongPassword(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	c := h.conn(t, h.target(ann, "not-the-password"))
	for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
		err := c.Test(ctxTimeout(t), w)
		assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "%s: %v", w, err)
		assert.NotContains(t, err.Error(), "not-the-password")
	}
	_, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))

	c = h.conn(t, h.target("nobody@example.test", "x"))
	err = c.Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))

	tg := h.target(ann, "")
	tg.Mailbox.Credentials = crmsync.Credentials{}
	err = h.conn(t, tg).Test(ctxTimeout(t), crmsync.Incoming)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))
}

func TestProfileCredentials(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	tg := h.target(ann, "ignored")
	tg.Profile.CredentialSource = crmsync.CredentialsFromProfile
	tg.Profile.Credentials = crmsync.Credentials{Username: bob, Password: bobPW}
	require.NoError(t, h.srv.Deliver(bob, simple(1)))
	b, err := h.conn(t, tg).FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	require.NoError(t, err)
	assert.Equal(t, ids(1, 1), messageIDs(b.Emails))
}

func TestRefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close()) // nothing listens there now

	ep := crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: crmsync.SecurityPlaintext}
	tg := provider.Target{
		Profile: &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerIMAP, Incoming: ep, Outgoing: ep},
		Mailbox: &crmsync.Mailbox{ID: "m", Address: ann, Credentials: crmsync.Credentials{Username: ann, Password: annPW}},
	}
	c, err := imap.NewDialer(imap.Config{}).Dial(context.Background(), tg)
	require.NoError(t, err)
	defer c.Close()
	for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
		err := c.Test(ctxTimeout(t), w)
		assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%s: %v", w, err)
	}
}

func TestConnectionTimeout(t *testing.T) {
	// A server that accepts and never greets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	ep := crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: crmsync.SecurityPlaintext}
	tg := provider.Target{
		Profile: &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerIMAP, Incoming: ep, Outgoing: ep, ConnectionTimeout: 200 * time.Millisecond},
		Mailbox: &crmsync.Mailbox{ID: "m", Address: ann, Credentials: crmsync.Credentials{Username: ann, Password: annPW}},
	}
	c, err := imap.NewDialer(imap.Config{}).Dial(context.Background(), tg)
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
		err = c.Test(context.Background(), w)
		assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%s: %v", w, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "no answer within 200ms")
	}
	assert.Less(t, time.Since(start), 5*time.Second, "the profile's timeout bounds the connection")
}

func TestTLS(t *testing.T) {
	for _, mode := range []mailtest.TLSMode{mailtest.ImplicitTLS, mailtest.StartTLS} {
		h := newHarness(t, mailtest.Config{TLS: mode})
		t.Run(securityOf(h).String()+"/untrusted", func(t *testing.T) {
			c := h.conn(t)
			for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
				err := c.Test(ctxTimeout(t), w)
				assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%s: %v", w, err)
			}
		})
		t.Run(securityOf(h).String()+"/trusted", func(t *testing.T) {
			h.dialer = imap.NewDialer(imap.Config{TLSConfig: &tls.Config{RootCAs: h.srv.RootCAs()}})
			c := h.conn(t)
			h.deliver(t, 1, 1)
			b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
			require.NoError(t, err)
			assert.Len(t, b.Emails, 1)
			r, err := c.Send(ctxTimeout(t), outgoing())
			require.NoError(t, err)
			assert.True(t, r.Copied)
		})
		t.Run(securityOf(h).String()+"/skip verify", func(t *testing.T) {
			h.dialer = imap.NewDialer(imap.Config{})
			tg := h.target(ann, annPW)
			tg.Profile.Incoming.InsecureSkipVerify = true
			tg.Profile.Outgoing.InsecureSkipVerify = true
			c := h.conn(t, tg)
			assert.NoError(t, c.Test(ctxTimeout(t), crmsync.Incoming))
			assert.NoError(t, c.Test(ctxTimeout(t), crmsync.Outgoing))
		})
	}
}

type securityName crmsync.Security

func (s securityName) String() string {
	switch crmsync.Security(s) {
	case crmsync.SecurityTLS:
		return "tls"
	case crmsync.SecuritySTARTTLS:
		return "starttls"
	}
	return "plaintext"
}

func securityOf(h *harness) securityName { return securityName(h.srv.Profile("p").Incoming.Security) }

func TestStartTLSRequired(t *testing.T) {
	// A plaintext server asked for STARTTLS does not offer it: a configuration error.
	h := newHarness(t, mailtest.Config{})
	tg := h.target(ann, annPW)
	tg.Profile.Incoming.Security = crmsync.SecuritySTARTTLS
	tg.Profile.Outgoing.Security = crmsync.SecuritySTARTTLS
	c := h.conn(t, tg)
	for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
		err := c.Test(ctxTimeout(t), w)
		assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%s: %v", w, err)
	}
}

func TestMoveToFolder(t *testing.T) {
	for _, noMove := range []bool{false, true} {
		name := "MOVE"
		if noMove {
			name = "COPY+EXPUNGE"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, mailtest.Config{DisableMove: noMove})
			h.deliver(t, 1, 2)
			c := h.conn(t)
			b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
			require.NoError(t, err)
			require.Len(t, b.Emails, 2)
			e := b.Emails[0]
			ref := provider.ItemRef{Folder: e.Folder, ID: e.ProviderID}

			require.NoError(t, c.MoveToFolder(ctxTimeout(t), ref, ""), "the Undeliverable folder is created")
			moved, err := h.srv.Messages(ann, imap.DefaultUndeliverableFolder)
			require.NoError(t, err)
			require.Len(t, moved, 1)
			assert.Contains(t, string(moved[0].Raw), "Message-ID: <m1@example.test>")
			inbox, err := h.srv.Messages(ann, "INBOX")
			require.NoError(t, err)
			require.Len(t, inbox, 1)
			assert.Contains(t, string(inbox[0].Raw), "<m2@example.test>")
			assert.Equal(t, 1, h.srv.Stats().IMAPCommands["CREATE"])

			// To an existing folder, by name.
			e2 := b.Emails[1]
			require.NoError(t, c.MoveToFolder(ctxTimeout(t), provider.ItemRef{Folder: "INBOX", ID: e2.ProviderID}, "Junk"))
			junk, err := h.srv.Messages(ann, "Junk")
			require.NoError(t, err)
			assert.Len(t, junk, 1)

			// The cursor does not bring moved messages back into INBOX.
			again, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Cursor: b.Cursor})
			require.NoError(t, err)
			assert.Empty(t, again.Emails)

			// A message already moved is gone.
			err = c.MoveToFolder(ctxTimeout(t), ref, "Junk")
			assert.Equal(t, crmsync.KindNotFound, crmsync.KindOf(err), "%v", err)
		})
	}
}

func TestMoveToFolderErrors(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 1)
	c := h.conn(t)
	b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	require.NoError(t, err)
	id := b.Emails[0].ProviderID

	err = c.MoveToFolder(ctxTimeout(t), provider.ItemRef{ID: "garbage"}, "Junk")
	assert.Equal(t, crmsync.KindNotFound, crmsync.KindOf(err), "an id this provider never gave out names no message")

	err = c.MoveToFolder(ctxTimeout(t), provider.ItemRef{ID: strings.Replace(id, "INBOX", "Nope", 1)}, "Junk")
	assert.Equal(t, crmsync.KindNotFound, crmsync.KindOf(err))

	// The folder was recreated since the fetch: the message's identity is gone.
	require.NoError(t, h.srv.DeleteMailbox(ann, "INBOX"))
	require.NoError(t, h.srv.CreateMailbox(ann, "INBOX"))
	h.deliver(t, 1, 1)
	err = c.MoveToFolder(ctxTimeout(t), provider.ItemRef{ID: id}, "Junk")
	assert.Equal(t, crmsync.KindNotFound, crmsync.KindOf(err))
	assert.True(t, errors.Is(err, crmsync.ErrNotFound))
}
