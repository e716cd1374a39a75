package gmail_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail"
	"github.com/crmsync/crmsync/provider/gmail/gmailtest"
)

func TestSignInAndFetchWithGmailIdentity(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	c := f.dial(ann)
	require.NoError(t, c.Test(f.ctx, crmsync.Incoming))
	require.NoError(t, c.Test(f.ctx, crmsync.Outgoing))
	assert.True(t, gmail.HasGmailExtensions(c))
	assert.Equal(t, 1, f.dialer.Refreshes(ann.ID), "one refresh serves both sign-ins")
	assert.Equal(t, 2, f.srv.SignIns()[gmail.XOAUTH2], "IMAP and SMTP signed in with XOAUTH2")

	require.NoError(t, f.srv.Deliver(ann.Address, message("x@example.test", ann.Address, "m1@example.test", "first")))
	emails, _ := fetchAll(t, f.ctx, c, nil)
	require.Len(t, emails, 1)
	assert.True(t, strings.HasPrefix(emails[0].ProviderID, "gm:"), "ProviderID %q", emails[0].ProviderID)
	assert.Equal(t, "INBOX", emails[0].Folder)
	assert.Equal(t, "first", emails[0].Subject)
}

func TestACTNotSupported(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial(f.mailbox("ann"))
	err := c.Test(f.ctx, crmsync.ACT)
	assert.True(t, errors.Is(err, crmsync.ErrNotSupported))
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
}

// A message in the inbox that also carries a tracked label is tracked once, under the label; a message that
// gets a label later is the same message (the same ProviderID) under it.
func TestLabelsAreFolders(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	c := f.dial(ann)
	require.NoError(t, f.srv.Deliver(ann.Address, message("x@example.test", ann.Address, "m1@example.test", "plain")))
	require.NoError(t, f.srv.Deliver(ann.Address, message("y@example.test", ann.Address, "m2@example.test", "for a client")))
	require.NoError(t, f.srv.AddLabel(ann.Address, "m2@example.test", "Clients"))

	emails, cursor := fetchAll(t, f.ctx, c, nil, "Clients")
	require.Len(t, emails, 2, "m2 is in INBOX and in Clients, and returned once")
	bySubject := map[string]*crmsync.Email{}
	for _, e := range emails {
		bySubject[e.Subject] = e
	}
	assert.Equal(t, "INBOX", bySubject["plain"].Folder)
	assert.Equal(t, "Clients", bySubject["for a client"].Folder, "a tracked label wins over the inbox")
	m1 := bySubject["plain"].ProviderID

	// The user labels m1 later: it shows up under Clients, as the same message.
	require.NoError(t, f.srv.AddLabel(ann.Address, "m1@example.test", "Clients"))
	again, _ := fetchAll(t, f.ctx, f.dial(ann), cursor, "Clients")
	require.Len(t, again, 1)
	assert.Equal(t, m1, again[0].ProviderID, "same X-GM-MSGID under another label")
	assert.Equal(t, "Clients", again[0].Folder)
	assert.Positive(t, f.srv.GmailFetches())
}

// A message without a Message-ID, copied under another label, keeps its identity: the Message-ID check the
// Store also does cannot catch this one, the X-GM-MSGID does.
func TestIdentityWithoutMessageID(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	raw := []byte("From: x@example.test\r\nTo: " + ann.Address + "\r\nSubject: no id\r\n\r\nbody\r\n")
	require.NoError(t, f.srv.Deliver(ann.Address, raw))
	first, cursor := fetchAll(t, f.ctx, f.dial(ann), nil, "Projects")
	require.Len(t, first, 1)
	require.NoError(t, f.srv.Mail().CreateMailbox(ann.Address, "Projects"))
	require.NoError(t, f.srv.Mail().AppendAt(ann.Address, "Projects", raw, time.Now()))
	again, _ := fetchAll(t, f.ctx, f.dial(ann), cursor, "Projects")
	require.Len(t, again, 1)
	assert.Equal(t, first[0].ProviderID, again[0].ProviderID)
}

// Without X-GM-EXT-1 the provider is provider/imap: its identities, its cursor, no Gmail command.
func TestPlainIMAPWithoutGmailExtensions(t *testing.T) {
	f := newFixture(t, fixtureOpts{server: gmailtest.Config{NoGmailExtensions: true}})
	ann := f.mailbox("ann")
	c := f.dial(ann)
	require.NoError(t, f.srv.Deliver(ann.Address, message("x@example.test", ann.Address, "m1@example.test", "hello")))
	emails, _ := fetchAll(t, f.ctx, c, nil)
	require.Len(t, emails, 1)
	assert.Regexp(t, `^INBOX/\d+/1$`, emails[0].ProviderID)
	assert.False(t, gmail.HasGmailExtensions(c))
	assert.Zero(t, f.srv.GmailFetches())
}

func TestSendFilesOneSentCopy(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann, bob := f.mailbox("ann"), f.mailbox("bob")
	c := f.dial(ann)
	m := &crmsync.Email{ID: "e1", MessageID: "out-1@example.test", From: crmsync.Address{Email: ann.Address},
		To: []crmsync.Address{{Email: bob.Address}}, Subject: "quote", TextBody: "the quote"}
	r, err := c.Send(f.ctx, m)
	require.NoError(t, err)
	assert.Equal(t, "out-1@example.test", r.MessageID)
	assert.True(t, r.Copied, "Gmail filed the copy itself")

	inbox, err := f.srv.Mail().Messages(bob.Address, "INBOX")
	require.NoError(t, err)
	require.Len(t, inbox, 1)
	sent, err := f.srv.Mail().Messages(ann.Address, "Sent")
	require.NoError(t, err)
	assert.Len(t, sent, 1, "one copy in Sent: Gmail's, not a second one")
	found, err := c.FindSent(f.ctx, "out-1@example.test")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, 1, f.srv.Submitted(ann.Address))
}

// Where the server does not file sent mail (a plain IMAP server), the copy is appended as provider/imap does.
func TestSendAppendsCopyOnPlainIMAP(t *testing.T) {
	f := newFixture(t, fixtureOpts{server: gmailtest.Config{NoGmailExtensions: true, NoSentCopies: true}})
	ann, bob := f.mailbox("ann"), f.mailbox("bob")
	r, err := f.dial(ann).Send(f.ctx, &crmsync.Email{ID: "e1", MessageID: "out-2@example.test",
		To: []crmsync.Address{{Email: bob.Address}}, Subject: "s", TextBody: "b"})
	require.NoError(t, err)
	assert.True(t, r.Copied)
	sent, err := f.srv.Mail().Messages(ann.Address, "Sent")
	require.NoError(t, err)
	assert.Len(t, sent, 1)
}

func TestMoveToFolderByGmailID(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	for _, id := range []string{"a@example.test", "b@example.test"} {
		require.NoError(t, f.srv.Deliver(ann.Address, message("x@example.test", ann.Address, id, id)))
	}
	c := f.dial(ann)
	emails, _ := fetchAll(t, f.ctx, c, nil)
	require.Len(t, emails, 2)

	// On the connection that fetched it, and on a new one (found by X-GM-MSGID).
	require.NoError(t, c.MoveToFolder(f.ctx, provider.ItemRef{Folder: "INBOX", ID: emails[0].ProviderID}, ""))
	require.NoError(t, f.dial(ann).MoveToFolder(f.ctx, provider.ItemRef{Folder: "INBOX", ID: emails[1].ProviderID}, "Undeliverable"))
	inbox, err := f.srv.Mail().Messages(ann.Address, "INBOX")
	require.NoError(t, err)
	assert.Empty(t, inbox)
	moved, err := f.srv.Mail().Messages(ann.Address, "Undeliverable")
	require.NoError(t, err)
	assert.Len(t, moved, 2)

	err = f.dial(ann).MoveToFolder(f.ctx, provider.ItemRef{Folder: "INBOX", ID: "gm:12345"}, "")
	assert.Equal(t, crmsync.KindNotFound, crmsync.KindOf(err), "%v", err)
}

func TestTooManyRecipients(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	m := &crmsync.Email{ID: "big", Subject: "s", TextBody: "b"}
	for i := range gmail.RecipientsPerMessage + 1 {
		m.To = append(m.To, crmsync.Address{Email: fmt.Sprintf("r%d@example.test", i)})
	}
	_, err := f.dial(ann).Send(f.ctx, m)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	assert.Contains(t, err.Error(), "at most 100")
}
