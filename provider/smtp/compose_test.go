package smtp_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/mailparse"
	"github.com/crmsync/crmsync/provider/smtp"
)

func TestCompose(t *testing.T) {
	m := &crmsync.Email{
		From:     crmsync.Address{Email: "a@x"},
		To:       []crmsync.Address{{Name: "Zoë", Email: "z@x"}},
		Bcc:      []crmsync.Address{{Email: "hidden@x"}},
		Subject:  "Hello",
		HTMLBody: "<b>hi</b>",
	}
	m.MessageID = "<id@x>"
	raw, err := smtp.Compose(m, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	require.NoError(t, err)
	s := string(raw)
	assert.Contains(t, s, "Content-Type: text/html; charset=utf-8")
	assert.Contains(t, s, "Message-Id: <id@x>")
	assert.Contains(t, s, "Date: Tue, 02 Jan 2024 03:04:05 +0000")
	assert.NotContains(t, s, "hidden@x")
	assert.Contains(t, s, "=?utf-8?q?Zo=C3=AB?=")
	assert.True(t, bytes.Contains(raw, []byte("\r\n\r\n")), "CRLF line endings")

	got, err := mailparse.Parse(raw, mailparse.Options{})
	require.NoError(t, err)
	assert.Equal(t, "id@x", got.MessageID)
	assert.Equal(t, "<b>hi</b>", got.HTMLBody)
	assert.Equal(t, "Zoë", got.To[0].Name)
	assert.Empty(t, got.Bcc)

	withBcc, err := smtp.ComposeSentCopy(m, time.Now())
	require.NoError(t, err)
	assert.Contains(t, string(withBcc), "Bcc: <hidden@x>")
}

// TestComposeRoundTrip checks that what Compose writes reads back, through the
// project's parser, as the email it was made from.
func TestComposeRoundTrip(t *testing.T) {
	date := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	m := &crmsync.Email{
		MessageID:   "crm-42@crm.example",
		InReplyTo:   "<m1@example.test>",
		References:  []string{"m0@example.test", "<m1@example.test>", ""},
		ThreadIndex: "AQHXq1n0",
		From:        crmsync.Address{Name: "Ann Müller", Email: "ann@example.test"},
		To:          []crmsync.Address{{Name: "Bob", Email: "bob@example.test"}, {Name: "no address"}},
		Cc:          []crmsync.Address{{Email: "carol@example.test"}},
		ReplyTo:     []crmsync.Address{{Email: "replies@example.test"}},
		Subject:     "Angebot für Q3 [CRM:0001001]",
		TextBody:    "Hallo Bob,\nanbei das Angebot.\n",
		HTMLBody:    "<p>Hallo Bob,<br>anbei das Angebot.</p>",
		Attachments: []crmsync.Attachment{
			{Name: "angebot-ä.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 fake")},
			{Name: "logo.png", ContentID: "<logo@crm>", Content: []byte("png")},
			{Content: []byte("no name, no type")},
			{Name: "huge.bin", Skipped: true, SkipReason: "too large"},
		},
	}
	raw, err := smtp.Compose(m, date)
	require.NoError(t, err)
	got, err := mailparse.Parse(raw, mailparse.Options{})
	require.NoError(t, err)
	assert.Equal(t, "crm-42@crm.example", got.MessageID)
	assert.Equal(t, "m1@example.test", got.InReplyTo)
	assert.Equal(t, []string{"m0@example.test", "m1@example.test"}, got.References)
	assert.Equal(t, "AQHXq1n0", got.ThreadIndex)
	assert.Equal(t, m.From, got.From)
	assert.Equal(t, []crmsync.Address{{Name: "Bob", Email: "bob@example.test"}}, got.To, "an address without an email is not written")
	assert.Equal(t, m.Cc, got.Cc)
	assert.Equal(t, m.ReplyTo, got.ReplyTo)
	assert.Equal(t, m.Subject, got.Subject)
	assert.True(t, got.SentAt.Equal(date))
	assert.Equal(t, m.TextBody, strings.ReplaceAll(got.TextBody, "\r\n", "\n"))
	assert.Equal(t, m.HTMLBody, got.HTMLBody)
	require.Len(t, got.Attachments, 3, "skipped attachments are not sent")
	assert.Equal(t, "angebot-ä.pdf", got.Attachments[0].Name)
	assert.Equal(t, "application/pdf", got.Attachments[0].ContentType)
	assert.Equal(t, []byte("%PDF-1.4 fake"), got.Attachments[0].Content)
	assert.Equal(t, "image/png", got.Attachments[1].ContentType, "the type from the name")
	assert.Equal(t, "logo@crm", got.Attachments[1].ContentID)
	assert.Equal(t, "attachment-3", got.Attachments[2].Name)
	assert.Equal(t, "application/octet-stream", got.Attachments[2].ContentType)
	assert.Empty(t, got.Notes)

	for name, body := range map[string]*crmsync.Email{
		"text only": {TextBody: "plain"},
		"html only": {HTMLBody: "<p>x</p>"},
		"empty":     {},
	} {
		t.Run(name, func(t *testing.T) {
			body.From, body.MessageID = m.From, "x@y"
			raw, err := smtp.Compose(body, date)
			require.NoError(t, err)
			got, err := mailparse.Parse(raw, mailparse.Options{})
			require.NoError(t, err)
			assert.Equal(t, body.TextBody, got.TextBody)
			assert.Equal(t, body.HTMLBody, got.HTMLBody)
		})
	}
}

func TestComposeRefuses(t *testing.T) {
	for name, m := range map[string]*crmsync.Email{
		"nil":           nil,
		"no sender":     {MessageID: "x@y"},
		"no Message-ID": {From: crmsync.Address{Email: "a@x"}, MessageID: "<>"},
	} {
		_, err := smtp.Compose(m, time.Now())
		assert.Error(t, err, name)
	}
}
