package mailparse_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/mailparse"
)

// crlf turns the LF line ends of a test message into CRLF.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func parse(t *testing.T, raw string, limit int64) *crmsync.Email {
	t.Helper()
	e, err := mailparse.Parse([]byte(raw), mailparse.Options{AttachmentLimit: limit})
	require.NoError(t, err)
	checkEmail(t, e, limit)
	return e
}

func TestParseHeader(t *testing.T) {
	raw := crlf(`Return-Path: <bob@example.test>
Received: from mx.example.test
	by pop.example.test with LMTP
	for <ann@example.test>; Tue, 07 May 2024 10:00:00 +0000
Received: from client by mx.example.test; Tue, 07 May 2024 09:59:00 +0000
From: =?UTF-8?Q?Bj=C3=B6rn?= <bjorn@example.test>
To: Ann <ann@example.test>, carl@example.test
Cc: "Dee, D." <dee@example.test>
Bcc: hidden@example.test
Reply-To: replies@example.test
Subject: =?UTF-8?Q?Caf=C3=A9?= =?ISO-8859-1?Q?_cr=E8me?=
Date: Tue, 07 May 2024 09:00:00 +0200
Message-ID: <abc.123@example.test>
In-Reply-To: <parent@example.test>
References: <root@example.test>
 <parent@example.test>
Thread-Index: AQHXq1n0

body
`)
	e, err := mailparse.ParseHeader(raw)
	require.NoError(t, err)
	assert.Equal(t, crmsync.DirectionIncoming, e.Direction)
	assert.Equal(t, "abc.123@example.test", e.MessageID)
	assert.Equal(t, "parent@example.test", e.InReplyTo)
	assert.Equal(t, []string{"root@example.test", "parent@example.test"}, e.References)
	assert.Equal(t, "AQHXq1n0", e.ThreadIndex)
	assert.Equal(t, crmsync.Address{Name: "Björn", Email: "bjorn@example.test"}, e.From)
	assert.Equal(t, []crmsync.Address{{Name: "Ann", Email: "ann@example.test"}, {Email: "carl@example.test"}}, e.To)
	assert.Equal(t, []crmsync.Address{{Name: "Dee, D.", Email: "dee@example.test"}}, e.Cc)
	assert.Equal(t, []crmsync.Address{{Email: "hidden@example.test"}}, e.Bcc)
	assert.Equal(t, []crmsync.Address{{Email: "replies@example.test"}}, e.ReplyTo)
	assert.Equal(t, "Café crème", e.Subject)
	assert.True(t, e.SentAt.Equal(time.Date(2024, 5, 7, 7, 0, 0, 0, time.UTC)), "%v", e.SentAt)
	assert.True(t, e.ReceivedAt.Equal(time.Date(2024, 5, 7, 10, 0, 0, 0, time.UTC)), "the newest Received: %v", e.ReceivedAt)
	assert.Empty(t, e.TextBody, "headers only")
	assert.Empty(t, e.Notes)

	// The header block alone, as IMAP BODY[HEADER] and POP3 TOP n 0 return it.
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	h, err := mailparse.ParseHeader(head)
	require.NoError(t, err)
	assert.Equal(t, e, h)
}

func TestHeaderFields(t *testing.T) {
	cases := []struct {
		name   string
		header string
		check  func(t *testing.T, e *crmsync.Email)
	}{
		{"message-id without brackets", "Message-ID: <a.b@c>\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "a.b@c", e.MessageID)
		}},
		{"sloppy message-id", "Message-ID: a.b@c (added by relay)\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "a.b@c", e.MessageID)
		}},
		{"in-reply-to with junk", "In-Reply-To: <x@y> (Ann's message of Monday)\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "x@y", e.InReplyTo)
		}},
		{"references", "References: <a@x>\r\n <b@x>\r\n\t<c@x>\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, []string{"a@x", "b@x", "c@x"}, e.References)
		}},
		{"encoded subject", "Subject: =?ISO-8859-1?Q?Caf=E9?= =?UTF-8?B?IOKCrA==?=\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "Café €", e.Subject)
		}},
		{"broken encoded subject stays raw", "Subject: =?NONE?B?VEVTVA=?=\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "=?NONE?B?VEVTVA=?=", e.Subject)
		}},
		{"one unknown charset among encoded words", "Subject: =?x-martian?Q?zz?= =?UTF-8?Q?caf=C3=A9?=\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "=?x-martian?Q?zz?= café", e.Subject)
		}},
		{"raw 8-bit subject is Windows-1252", "Subject: caf\xe9\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "café", e.Subject)
		}},
		{"sloppy from", "From: Ann Smith ann@example.test\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, crmsync.Address{Name: "Ann Smith", Email: "ann@example.test"}, e.From)
			assert.Equal(t, []string{`From: "Ann Smith ann@example.test" is not a valid address; read as ann@example.test`}, e.Notes)
		}},
		{"sender when no from", "Sender: s@example.test\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "s@example.test", e.From.Email)
		}},
		{"group and semicolons", "To: undisclosed-recipients:;\r\nCc: a@x; \"B, Jr\" <b@x>\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Empty(t, e.To)
			assert.Equal(t, []crmsync.Address{{Email: "a@x"}, {Name: "B, Jr", Email: "b@x"}}, e.Cc)
			assert.Empty(t, e.Notes, "a list that is only sloppy about separators reads without a note")
		}},
		{"date", "Date: Tue, 7 May 2024 08:30:00 +0200\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.True(t, e.SentAt.Equal(time.Date(2024, 5, 7, 6, 30, 0, 0, time.UTC)))
		}},
		{"sloppy date", "Date: Sun, 5 May 2024 08:00:00 GMT\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.True(t, e.SentAt.Equal(time.Date(2024, 5, 5, 8, 0, 0, 0, time.UTC)), "%v", e.SentAt)
		}},
		{"bad date", "Date: someday\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.True(t, e.SentAt.IsZero())
		}},
		{"newest Received with a date", "Received: by x (no date)\r\nReceived: from y; Mon, 06 May 2024 08:00:00 +0000\r\nDate: Sun, 05 May 2024 08:00:00 +0000\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.True(t, e.ReceivedAt.Equal(time.Date(2024, 5, 6, 8, 0, 0, 0, time.UTC)), "%v", e.ReceivedAt)
		}},
		{"no Received", "Date: Sun, 05 May 2024 08:00:00 +0000\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.True(t, e.ReceivedAt.IsZero())
		}},
		{"thread-index", "Thread-Index: AdqgAbCdEf==\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "AdqgAbCdEf==", e.ThreadIndex)
		}},
		{"mbox separator and bad lines", "From ann@example.test Mon May  2 16:07:05 2005\r\nSubject: ok\r\nthis is not a field\r\nTo: b@x\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "ok", e.Subject)
			assert.Equal(t, []crmsync.Address{{Email: "b@x"}}, e.To)
			assert.Equal(t, []string{"1 malformed header line(s) were ignored"}, e.Notes)
		}},
		{"continuation before any field", " folded\r\nSubject: ok\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "ok", e.Subject)
			assert.Equal(t, []string{"1 malformed header line(s) were ignored"}, e.Notes)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, parse(t, tc.header+"\r\nbody\r\n", 0))
		})
	}
}

func TestNoHeaderFails(t *testing.T) {
	cases := []struct {
		name   string
		raw    string
		reason string
	}{
		{"nil", "", mailparse.ReasonEmpty},
		{"binary junk", "\x00\x01\x02 binary junk without a header", mailparse.ReasonNoHeader},
		{"a body without a header", "\r\nno header\r\n", mailparse.ReasonNoHeader},
		{"an mbox line alone", "From ann@example.test Mon May  2 16:07:05 2005\r\n", mailparse.ReasonNoHeader},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var raw []byte
			if tc.raw != "" {
				raw = []byte(tc.raw)
			}
			for _, f := range []func() error{
				func() error { _, err := mailparse.Parse(raw, mailparse.Options{}); return err },
				func() error { _, err := mailparse.ParseHeader(raw); return err },
				func() error { return mailparse.ParseBody(&crmsync.Email{}, raw, mailparse.Options{}) },
			} {
				err := f()
				var pe *mailparse.ParseError
				require.True(t, errors.As(err, &pe), "%v", err)
				assert.Equal(t, tc.reason, pe.Reason)
				assert.Equal(t, "mailparse: "+tc.reason, err.Error())
			}
		})
	}
}

// TestParseBodyKeepsTheHeaderEmail checks the header-first flow of the providers: what
// the caller put on the header-only email stays, and the header's notes are not added
// again.
func TestParseBodyKeepsTheHeaderEmail(t *testing.T) {
	raw := crlf("Subject: x\nbad line\n\nbody\n")
	e, err := mailparse.ParseHeader(raw)
	require.NoError(t, err)
	e.ProviderID, e.RegardingID = "INBOX/1/1", "acct-1"
	require.NoError(t, mailparse.ParseBody(e, raw, mailparse.Options{}))
	assert.Equal(t, "INBOX/1/1", e.ProviderID)
	assert.Equal(t, "acct-1", e.RegardingID)
	assert.Equal(t, "body\r\n", e.TextBody)
	assert.Equal(t, []string{"1 malformed header line(s) were ignored"}, e.Notes)
}

func TestBodies(t *testing.T) {
	t.Run("alternative", func(t *testing.T) {
		e := parse(t, "Content-Type: multipart/alternative; boundary=b\r\n\r\n"+
			"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n"+
			"--b\r\nContent-Type: text/html; charset=windows-1252\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>=80</p>\r\n"+
			"--b--\r\n", 0)
		assert.Equal(t, "plain", e.TextBody)
		assert.Equal(t, "<p>€</p>", e.HTMLBody)
		assert.Empty(t, e.Attachments)
	})
	t.Run("nested with charsets", func(t *testing.T) {
		e := parse(t, string(crlf(`From: bob@example.test
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Cr=E8me br=FBl=E9e
--alt
Content-Type: text/html; charset=utf-8

<p>Crème</p>
--alt--
--mix--
`)), 0)
		assert.Equal(t, "Crème brûlée", e.TextBody)
		assert.Equal(t, "<p>Crème</p>", e.HTMLBody)
	})

	damaged := []struct {
		name, raw, text string
		notes           int
	}{
		{"no Content-Type", "Subject: x\n\nplain text\n", "plain text\r\n", 0},
		{"undeclared 8-bit text is windows-1252", "Subject: x\n\nna\xefve\n", "naïve\r\n", 0},
		{"declared text/plain without charset", "Subject: x\nContent-Type: text/plain\n\ncaf\xe9\n", "café\r\n", 0},
		{"unknown charset", "Subject: x\nContent-Type: text/plain; charset=x-klingon\n\nqapla'\n", "qapla'\r\n", 1},
		{"multipart without boundary", "Subject: x\nContent-Type: multipart/mixed\n\nraw body\n", "raw body", 1},
		{"multipart without parts keeps the text", "Subject: x\nContent-Type: multipart/mixed; boundary=zz\n\nno parts here\n", "no parts here", 1},
		{"truncated multipart keeps what came", "Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\nContent-Type: text/plain\n\nsecond, cut", "first\nsecond, cut", 2},
		{"broken boundary parameter", "Subject: x\nContent-Type: multipart/mixed; boundary=----=_Part_1; charset=x; charset=y\n\n------=_Part_1\n\ntext\n------=_Part_1--\n", "text", 0},
		{"sloppy transfer encoding", "Subject: x\nContent-Transfer-Encoding: Quoted Printable\n\na=3Db\n", "a=b\r\n", 0},
		{"not an encoding", "Subject: x\nContent-Transfer-Encoding: 7-bit\n\na=3Db\n", "a=3Db\r\n", 0},
		{"base64 with a semicolon", "Subject: x\nContent-Transfer-Encoding: base64;\n\naGVsbG8=\n", "hello", 0},
		{"empty body", "Subject: x\n\n", "", 0},
	}
	for _, tc := range damaged {
		t.Run(tc.name, func(t *testing.T) {
			e := parse(t, string(crlf(tc.raw)), 0)
			assert.Equal(t, strings.ReplaceAll(tc.text, "\r\n", "\n"), strings.ReplaceAll(e.TextBody, "\r\n", "\n"))
			assert.Len(t, e.Notes, tc.notes, "%q", e.Notes)
		})
	}

	t.Run("deep nesting is bounded", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b0\r\n\r\n")
		for i := 0; i < 100; i++ {
			b.WriteString("--b" + strconv.Itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=b" + strconv.Itoa(i+1) + "\r\n\r\n")
		}
		e := parse(t, b.String(), 0)
		assert.Contains(t, e.Notes, "MIME parts nested deeper than 32 levels were not read")
	})
}

func TestAttachments(t *testing.T) {
	big := strings.Repeat("x", 3000)
	raw := "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/pdf; name=\"=?UTF-8?Q?R=C3=A9sum=C3=A9.pdf?=\"\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename*=utf-8''gro%C3%9F.txt\r\n\r\n" + big + "\r\n" +
		"--b\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n" +
		"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename*=iso-8859-1''na%EFve.txt\r\n\r\nsmall\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=\"report.bin\"; broken\r\nContent-Disposition: attachment; filename=\"=?ISO-8859-1?B?cORwZXIuYmlu?=\"; size=x=y\r\n\r\nbin\r\n" +
		"--b--\r\n"
	e := parse(t, raw, 1024)
	assert.Equal(t, "see attached", e.TextBody)
	require.Len(t, e.Attachments, 6)

	pdf := e.Attachments[0]
	assert.Equal(t, "Résumé.pdf", pdf.Name, "RFC 2047 in a name")
	assert.Equal(t, "application/pdf", pdf.ContentType)
	assert.Equal(t, []byte("%PDF-1.4"), pdf.Content)
	assert.Equal(t, int64(8), pdf.Size)
	assert.False(t, pdf.Skipped)

	large := e.Attachments[1]
	assert.Equal(t, "groß.txt", large.Name, "RFC 2231 in UTF-8")
	assert.True(t, large.Skipped)
	assert.Nil(t, large.Content)
	assert.Equal(t, int64(3000), large.Size)
	assert.Equal(t, "larger than 1 KiB", large.SkipReason)

	png := e.Attachments[2]
	assert.Equal(t, "logo@x", png.ContentID)
	assert.Equal(t, "attachment-3.png", png.Name)
	assert.True(t, png.Skipped, "undecodable content is skipped")
	assert.Contains(t, png.SkipReason, "could not be decoded")

	inner := e.Attachments[3]
	assert.Equal(t, "message-4.eml", inner.Name)
	assert.Equal(t, "message/rfc822", inner.ContentType)

	assert.Equal(t, "naïve.txt", e.Attachments[4].Name, "RFC 2231 in ISO-8859-1")
	assert.Equal(t, "small", strings.TrimSpace(string(e.Attachments[4].Content)))
	assert.Equal(t, "päper.bin", e.Attachments[5].Name, "a filename from broken parameters")

	require.Len(t, e.Notes, 2)
	assert.Equal(t, `attachment "groß.txt" (2.9 KiB) was skipped: larger than the 1 KiB limit`, e.Notes[0])
	assert.Contains(t, e.Notes[1], "could not be decoded")

	// No limit keeps everything that decodes.
	e = parse(t, raw, 0)
	assert.False(t, e.Attachments[1].Skipped)
	assert.Len(t, e.Attachments[1].Content, 3000)
}

func TestAttachmentLimitBinary(t *testing.T) {
	pdf := bytes.Repeat([]byte("%PDF-1.4 binary \x00\x01\x02"), 100)
	raw := "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n" +
		"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(pdf) + "\r\n--m--\r\n"
	e := parse(t, raw, 0)
	require.Len(t, e.Attachments, 1)
	assert.Equal(t, pdf, e.Attachments[0].Content)
	assert.Equal(t, int64(len(pdf)), e.Attachments[0].Size)
	assert.Empty(t, e.Notes)

	e = parse(t, raw, int64(len(pdf)))
	assert.False(t, e.Attachments[0].Skipped, "a limit is inclusive")
	e = parse(t, raw, int64(len(pdf))-1)
	assert.True(t, e.Attachments[0].Skipped)
	assert.Equal(t, int64(len(pdf)), e.Attachments[0].Size, "the size of a skipped attachment is its decoded size")
	assert.Equal(t, []string{`attachment "résumé.pdf" (1.9 KiB) was skipped: larger than the 1.9 KiB limit`}, e.Notes)
}

// A message without a Message-ID gets one from a hash of its header: the same from the
// header alone as from the whole message, the same every time, different for a
// different header; a message with one keeps it.
func TestHeaderMessageID(t *testing.T) {
	head := "From: monitor@example.test\r\nSubject: disk full\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\n"
	whole, err := mailparse.ParseHeader([]byte(head + "\r\nbody\r\n"))
	require.NoError(t, err)
	alone, err := mailparse.ParseHeader([]byte(head + "\r\n"))
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(whole.MessageID, "@"+mailparse.NoMessageIDDomain), whole.MessageID)
	assert.Equal(t, whole.MessageID, alone.MessageID, "header alone or whole message")
	again, err := mailparse.ParseHeader([]byte(head + "\r\nanother body\r\n"))
	require.NoError(t, err)
	assert.Equal(t, whole.MessageID, again.MessageID, "the body does not count")
	other, err := mailparse.ParseHeader([]byte(strings.Replace(head, "disk full", "disk fuller", 1) + "\r\n"))
	require.NoError(t, err)
	assert.NotEqual(t, whole.MessageID, other.MessageID)
	own, err := mailparse.ParseHeader([]byte("Message-ID: <a@b>\r\n" + head + "\r\n"))
	require.NoError(t, err)
	assert.Equal(t, "a@b", own.MessageID)
}
