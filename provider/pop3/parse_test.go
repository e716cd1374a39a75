package pop3

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

var firstSeen = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestParseHeaders(t *testing.T) {
	raw := crlf(`Return-Path: <bob@example.test>
Received: from mx.example.test
	by pop.example.test with LMTP
	for <ann@example.test>; Tue, 07 May 2024 10:00:00 +0000
Received: from client by mx.example.test; Tue, 07 May 2024 09:59:00 +0000
From: =?UTF-8?Q?Bj=C3=B6rn?= <bjorn@example.test>
To: Ann <ann@example.test>, carl@example.test
Cc: "Dee, D." <dee@example.test>
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
	e, err := parseHeaders(raw, firstSeen)
	require.NoError(t, err)
	assert.Equal(t, "abc.123@example.test", e.MessageID)
	assert.Equal(t, "parent@example.test", e.InReplyTo)
	assert.Equal(t, []string{"root@example.test", "parent@example.test"}, e.References)
	assert.Equal(t, "AQHXq1n0", e.ThreadIndex)
	assert.Equal(t, crmsync.Address{Name: "Björn", Email: "bjorn@example.test"}, e.From)
	assert.Equal(t, []crmsync.Address{{Name: "Ann", Email: "ann@example.test"}, {Email: "carl@example.test"}}, e.To)
	assert.Equal(t, []crmsync.Address{{Name: "Dee, D.", Email: "dee@example.test"}}, e.Cc)
	assert.Equal(t, []crmsync.Address{{Email: "replies@example.test"}}, e.ReplyTo)
	assert.Equal(t, "Café crème", e.Subject)
	assert.True(t, e.SentAt.Equal(time.Date(2024, 5, 7, 7, 0, 0, 0, time.UTC)), "%v", e.SentAt)
	assert.True(t, e.ReceivedAt.Equal(time.Date(2024, 5, 7, 10, 0, 0, 0, time.UTC)), "the newest Received: %v", e.ReceivedAt)
	assert.Equal(t, Inbox, e.Folder)
	assert.Empty(t, e.TextBody, "headers only")
}

func TestParseHeadersReceivedAt(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want time.Time
	}{
		{"newest Received with a date", "Received: by x (no date)\nReceived: from y; Mon, 06 May 2024 08:00:00 +0000\nDate: Sun, 05 May 2024 08:00:00 +0000\n\n",
			time.Date(2024, 5, 6, 8, 0, 0, 0, time.UTC)},
		{"no Received: the Date field", "Date: Sun, 05 May 2024 08:00:00 +0000\nSubject: x\n\n", time.Date(2024, 5, 5, 8, 0, 0, 0, time.UTC)},
		{"no date at all: first seen", "Subject: x\n\n", firstSeen},
		{"a sloppy Date", "Date: Sun, 5 May 2024 08:00:00 GMT\n\n", time.Date(2024, 5, 5, 8, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := parseHeaders(crlf(tc.raw), firstSeen)
			require.NoError(t, err)
			assert.True(t, e.ReceivedAt.Equal(tc.want), "got %v, want %v", e.ReceivedAt, tc.want)
		})
	}
}

func TestParseHeadersLenient(t *testing.T) {
	raw := crlf("From Bob Tue May  7 10:00:00 2024\nFrom: Bob <bob@example.test>\nthis line is broken\nSubject: still read\nTo: ann@example.test; carl@example.test\nMessage-ID: not-bracketed@example.test\n\nbody\n")
	e, err := parseHeaders(raw, firstSeen)
	require.NoError(t, err)
	assert.Equal(t, "still read", e.Subject)
	assert.Equal(t, "bob@example.test", e.From.Email)
	assert.Equal(t, "not-bracketed@example.test", e.MessageID)
	assert.Len(t, e.To, 2)
	assert.NotEmpty(t, e.Notes)

	_, err = parseHeaders(crlf("\nno header\n"), firstSeen)
	assert.Error(t, err)
	_, err = parseHeaders(nil, firstSeen)
	assert.Error(t, err)
}

func parseAll(t *testing.T, raw []byte, limit int64) *crmsync.Email {
	t.Helper()
	e, err := parseHeaders(raw, firstSeen)
	require.NoError(t, err)
	require.NoError(t, parseBody(e, raw, limit))
	return e
}

func TestParseBody(t *testing.T) {
	pdf := bytes.Repeat([]byte("%PDF-1.4 binary \x00\x01\x02"), 100)
	raw := crlf(`From: bob@example.test
Subject: parts
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
--mix
Content-Type: application/pdf; name="=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?="
Content-Disposition: attachment; filename="=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?="
Content-Transfer-Encoding: base64

` + base64.StdEncoding.EncodeToString(pdf) + `
--mix
Content-Type: text/plain
Content-Disposition: attachment; filename*=iso-8859-1''na%EFve.txt

small
--mix
Content-Type: image/png
Content-ID: <logo@example.test>
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--mix--
`)
	e := parseAll(t, raw, 0)
	assert.Equal(t, "Crème brûlée", strings.TrimSpace(e.TextBody))
	assert.Equal(t, "<p>Crème</p>", strings.TrimSpace(e.HTMLBody))
	require.Len(t, e.Attachments, 3)
	assert.Equal(t, "résumé.pdf", e.Attachments[0].Name)
	assert.Equal(t, "application/pdf", e.Attachments[0].ContentType)
	assert.Equal(t, pdf, e.Attachments[0].Content)
	assert.Equal(t, int64(len(pdf)), e.Attachments[0].Size)
	assert.Equal(t, "naïve.txt", e.Attachments[1].Name)
	assert.Equal(t, "small", strings.TrimSpace(string(e.Attachments[1].Content)))
	assert.Equal(t, "logo@example.test", e.Attachments[2].ContentID)
	assert.Equal(t, "attachment-3.png", e.Attachments[2].Name)
	assert.Empty(t, e.Notes)

	// Over the limit: kept as Skipped, without content, with a note.
	e = parseAll(t, raw, 1024)
	a := e.Attachments[0]
	assert.True(t, a.Skipped)
	assert.Nil(t, a.Content)
	assert.Equal(t, int64(len(pdf)), a.Size)
	assert.Equal(t, "larger than 1 KiB", a.SkipReason)
	assert.False(t, e.Attachments[1].Skipped)
	require.Len(t, e.Notes, 1)
	assert.Contains(t, e.Notes[0], `"résumé.pdf"`)
}

func TestParseBodyDamaged(t *testing.T) {
	tests := []struct {
		name, raw, text string
		notes           bool
	}{
		{"no Content-Type", "Subject: x\n\nplain text\n", "plain text", false},
		{"undeclared 8-bit text", "Subject: x\nContent-Type: text/plain\n\ncaf\xe9\n", "café", false},
		{"unknown charset", "Subject: x\nContent-Type: text/plain; charset=x-klingon\n\nqapla'\n", "qapla'", true},
		{"multipart without boundary", "Subject: x\nContent-Type: multipart/mixed\n\nraw body\n", "raw body", true},
		{"truncated multipart", "Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nfirst part\n--b\nContent-Type: text/plain\n\ncut", "first part", false},
		{"sloppy transfer encoding", "Subject: x\nContent-Transfer-Encoding: Quoted Printable\n\na=3Db\n", "a=b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := parseAll(t, crlf(tc.raw), 0)
			assert.Contains(t, e.TextBody, tc.text)
			if tc.notes {
				assert.NotEmpty(t, e.Notes)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(crlf("From: a@b\nSubject: x\n\nbody\n"))
	f.Add(crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n"))
	f.Add(crlf("Received: x; Mon, 06 May 2024 08:00:00 +0000\nTo: ,,;\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := parseHeaders(raw, firstSeen)
		if err != nil {
			return
		}
		if e.ReceivedAt.IsZero() {
			t.Fatal("ReceivedAt is zero")
		}
		if err := parseBody(e, raw, 64); err != nil {
			t.Fatalf("parseBody failed after parseHeaders succeeded: %v", err)
		}
	})
}
