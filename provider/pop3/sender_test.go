package pop3_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/provider/pop3"
	"github.com/crmsync/crmsync/provider/smtp"
)

// Without Config.Outgoing, a profile with an outgoing endpoint sends through
// provider/smtp; FindSent cannot answer, since a POP3 mailbox has no Sent folder.
func TestDefaultSMTPSender(t *testing.T) {
	srv, err := mailtest.NewServer(mailtest.Config{})
	require.NoError(t, err)
	require.NoError(t, srv.AddUser(ann, annPW))
	require.NoError(t, srv.AddUser("bob@example.test", "bob-pw"))
	require.NoError(t, srv.Start())
	t.Cleanup(func() { require.NoError(t, srv.Close()) })

	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	tg := e.target(ann, annPW)
	tg.Profile.Outgoing = srv.Profile("smtp").Outgoing
	p, err := e.dialer.Dial(context.Background(), tg)
	require.NoError(t, err)
	defer p.Close()
	om, ok := p.(provider.OutgoingMail)
	require.True(t, ok, "a profile with an outgoing endpoint sends")
	_, ok = p.(provider.IncomingMail)
	require.True(t, ok)

	ctx := ctxTimeout(t)
	require.NoError(t, p.Test(ctx, crmsync.Outgoing))
	r, err := om.Send(ctx, &crmsync.Email{
		MessageID: "<out-1@crm.example>", To: []crmsync.Address{{Email: "bob@example.test"}},
		Subject: "from POP3", TextBody: "hello",
	})
	require.NoError(t, err)
	assert.Equal(t, "out-1@crm.example", r.MessageID)
	assert.False(t, r.Copied, "no Sent folder")
	assert.Equal(t, 1, srv.SMTPAccepted())
	msgs, err := srv.Messages("bob@example.test", "INBOX")
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0].Raw), "From: <"+ann+">", "the mailbox's address is the default sender")
	assert.Empty(t, e.srv.commands(), "sending never touches POP3")

	found, err := om.FindSent(ctx, "out-1@crm.example")
	assert.False(t, found)
	assert.ErrorIs(t, err, crmsync.ErrNotSupported)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))

	// A refused recipient is permanent, and the email definitely did not go out.
	_, err = om.Send(ctx, &crmsync.Email{To: []crmsync.Address{{Email: "nobody@example.test"}}})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
}

// A server that cannot be reached leaves the email not submitted, and a transient error.
func TestDefaultSMTPSenderUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	e := newFakeEnv(t, crmsync.SecurityPlaintext)
	tg := e.target(ann, annPW)
	tg.Profile.Outgoing = crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: crmsync.SecurityPlaintext}
	p, err := pop3.NewDialer(pop3.Config{}).Dial(context.Background(), tg)
	require.NoError(t, err)
	defer p.Close()
	_, err = p.(provider.OutgoingMail).Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: "bob@example.test"}}})
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(p.Test(ctxTimeout(t), crmsync.Outgoing)))
}
