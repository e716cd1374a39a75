package imap_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/provider/smtp"
	"github.com/crmsync/crmsync/schedule"
)

func outgoing() *crmsync.Email {
	return &crmsync.Email{
		ID:         "e1",
		Direction:  crmsync.DirectionOutgoing,
		MessageID:  "crm-42@crm.example",
		InReplyTo:  "m1@example.test",
		References: []string{"m0@example.test", "m1@example.test"},
		From:       crmsync.Address{Name: "Ann Müller", Email: ann},
		To:         []crmsync.Address{{Name: "Bob", Email: bob}},
		Cc:         []crmsync.Address{{Email: "Carol@Example.test"}},
		Bcc:        []crmsync.Address{{Email: "dave@example.test"}},
		Subject:    "Angebot für Q3 [CRM:0001001]",
		TextBody:   "Hallo Bob,\nanbei das Angebot.\n",
		HTMLBody:   "<p>Hallo Bob,<br>anbei das Angebot.</p>",
		Attachments: []crmsync.Attachment{
			{Name: "angebot-ä.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 fake")},
			{Name: "huge.bin", Skipped: true, SkipReason: "too large"},
		},
	}
}

func TestSendCopyAndFindSent(t *testing.T) {
	clock := schedule.NewFake(time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, mailtest.Config{})
	h.dialer = imap.NewDialer(imap.Config{Clock: clock})
	c := h.conn(t)

	r, err := c.Send(ctxTimeout(t), outgoing())
	require.NoError(t, err)
	assert.Equal(t, "crm-42@crm.example", r.MessageID)
	assert.True(t, r.SentAt.Equal(clock.Now()))
	assert.True(t, r.Copied)
	assert.Equal(t, 1, h.srv.SMTPAccepted(), "one submission for all recipients")

	// Every recipient, Bcc included, got it; no one sees the Bcc.
	for _, who := range []string{bob, "carol@example.test", "dave@example.test"} {
		msgs, err := h.srv.Messages(who, "INBOX")
		require.NoError(t, err)
		require.Len(t, msgs, 1, who)
		raw := string(msgs[0].Raw)
		assert.Contains(t, raw, "Delivered-To: "+who)
		assert.NotContains(t, strings.ToLower(raw), "dave@example.test\r\nbcc")
		assert.NotContains(t, raw, "Bcc:")
	}

	sent, err := h.srv.Messages(ann, "Sent")
	require.NoError(t, err)
	require.Len(t, sent, 1)
	assert.Contains(t, sent[0].Flags, `\Seen`)
	assert.True(t, sent[0].InternalDate.Equal(clock.Now()))

	// The copy reads back as what was sent.
	mr, err := mail.CreateReader(bytes.NewReader(sent[0].Raw))
	require.NoError(t, err)
	subject, _ := mr.Header.Subject()
	assert.Equal(t, "Angebot für Q3 [CRM:0001001]", subject)
	id, _ := mr.Header.MessageID()
	assert.Equal(t, "crm-42@crm.example", id)
	refs, _ := mr.Header.MsgIDList("References")
	assert.Equal(t, []string{"m0@example.test", "m1@example.test"}, refs)
	irt, _ := mr.Header.MsgIDList("In-Reply-To")
	assert.Equal(t, []string{"m1@example.test"}, irt)
	from, _ := mr.Header.AddressList("From")
	require.Len(t, from, 1)
	assert.Equal(t, "Ann Müller", from[0].Name)
	date, _ := mr.Header.Date()
	assert.True(t, date.Equal(clock.Now()))
	assert.Contains(t, mr.Header.Get("Content-Type"), "multipart/mixed")

	// Fetched back by the provider itself, it is the same email.
	b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Folders: []string{"Sent"}})
	require.NoError(t, err)
	require.Len(t, b.Emails, 1)
	got := b.Emails[0]
	assert.Equal(t, "Hallo Bob,\nanbei das Angebot.\n", strings.ReplaceAll(got.TextBody, "\r\n", "\n"))
	assert.Equal(t, "<p>Hallo Bob,<br>anbei das Angebot.</p>", got.HTMLBody)
	require.Len(t, got.Attachments, 1, "skipped attachments are not sent")
	assert.Equal(t, "angebot-ä.pdf", got.Attachments[0].Name)
	assert.Equal(t, "application/pdf", got.Attachments[0].ContentType)
	assert.Equal(t, []byte("%PDF-1.4 fake"), got.Attachments[0].Content)
	assert.Equal(t, []crmsync.Address{{Email: "Carol@Example.test"}}, got.Cc)
	assert.Equal(t, []crmsync.Address{{Email: "dave@example.test"}}, got.Bcc, "the sender's copy keeps Bcc")

	found, err := c.FindSent(ctxTimeout(t), "crm-42@crm.example")
	require.NoError(t, err)
	assert.True(t, found)
	found, err = c.FindSent(ctxTimeout(t), "<crm-42@crm.example>")
	require.NoError(t, err)
	assert.True(t, found, "angle brackets are ignored")
	found, err = c.FindSent(ctxTimeout(t), "crm-4@crm.example")
	require.NoError(t, err)
	assert.False(t, found, "a substring of a Message-ID is not a match")

	// A second send reuses the SMTP session.
	m2 := outgoing()
	m2.MessageID = "crm-43@crm.example"
	m2.Attachments = nil
	m2.HTMLBody = ""
	_, err = c.Send(ctxTimeout(t), m2)
	require.NoError(t, err)
	assert.Equal(t, 2, h.srv.SMTPAccepted())
}

func TestSendSentCopyOff(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	tg := h.target(ann, annPW)
	off := false
	tg.Profile.KeepSentCopy = &off
	c := h.conn(t, tg)
	before := h.srv.Stats()

	r, err := c.Send(ctxTimeout(t), outgoing())
	require.NoError(t, err)
	assert.False(t, r.Copied)
	sent, err := h.srv.Messages(ann, "Sent")
	require.NoError(t, err)
	assert.Empty(t, sent)
	assert.Equal(t, before.IMAPLogins, h.srv.Stats().IMAPLogins, "no IMAP session without a Sent copy")

	// No copy can be found: FindSent cannot answer, and says so rather than "not found",
	// which would make the engine send again an email whose outcome is unknown.
	found, err := c.FindSent(ctxTimeout(t), "crm-42@crm.example")
	assert.False(t, found)
	assert.ErrorIs(t, err, crmsync.ErrNotSupported)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	assert.Equal(t, before.IMAPLogins, h.srv.Stats().IMAPLogins, "FindSent does not touch the server")
}

func TestSendCreatesSentFolder(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	require.NoError(t, h.srv.DeleteMailbox(ann, "Sent"))
	c := h.conn(t)
	found, err := c.FindSent(ctxTimeout(t), "crm-42@crm.example")
	require.NoError(t, err)
	assert.False(t, found, "no Sent folder: not found, and none is created")

	r, err := c.Send(ctxTimeout(t), outgoing())
	require.NoError(t, err)
	assert.True(t, r.Copied)
	sent, err := h.srv.Messages(ann, "Sent")
	require.NoError(t, err)
	assert.Len(t, sent, 1)
}

func TestSendDefaults(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	c := h.conn(t)
	m := &crmsync.Email{To: []crmsync.Address{{Email: bob}}, TextBody: "plain"}
	r, err := c.Send(ctxTimeout(t), m)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(r.MessageID, "@example.test"), r.MessageID)
	msgs, err := h.srv.Messages(bob, "INBOX")
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	raw := string(msgs[0].Raw)
	assert.Contains(t, raw, "From: <"+ann+">")
	assert.Contains(t, raw, "Message-Id: <"+r.MessageID+">")
	assert.Contains(t, raw, "Content-Type: text/plain; charset=utf-8")
}

func TestSendRefused(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	c := h.conn(t)
	cases := []struct {
		name string
		m    *crmsync.Email
	}{
		{"unknown recipient", &crmsync.Email{MessageID: "x1@crm.example", To: []crmsync.Address{{Email: "nobody@example.test"}}}},
		{"no recipients", &crmsync.Email{MessageID: "x2@crm.example"}},
		{"nil", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Send(ctxTimeout(t), tc.m)
			assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
			assert.ErrorIs(t, err, smtp.ErrNotSubmitted, "the engine knows it did not go out")
		})
	}
	// The session survives a refused recipient.
	_, err := c.Send(ctxTimeout(t), &crmsync.Email{MessageID: "x3@crm.example", To: []crmsync.Address{{Email: bob}}})
	require.NoError(t, err)
}

func TestSendLoginMechanism(t *testing.T) {
	h := newHarness(t, mailtest.Config{SMTPAuthMechanisms: []string{"LOGIN"}})
	c := h.conn(t)
	_, err := c.Send(ctxTimeout(t), outgoing())
	require.NoError(t, err)
	assert.Equal(t, 1, h.srv.SMTPAccepted())
}

func TestSendWrongPassword(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	c := h.conn(t, h.target(ann, "wrong"))
	_, err := c.Send(ctxTimeout(t), outgoing())
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "%v", err)
	assert.NotContains(t, err.Error(), "wrong", "the password is never in an error")
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
	assert.Zero(t, h.srv.SMTPAccepted())
}
