package imap

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func parse(t *testing.T, raw string, limit int64) *crmsync.Email {
	t.Helper()
	h, notes, err := readHeader(bufio.NewReader(strings.NewReader(raw)))
	require.NoError(t, err)
	e := headerEmail(h)
	e.Notes = notes
	require.NoError(t, parseMessage(e, []byte(raw), limit))
	return e
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
		{"raw 8-bit subject is valid UTF-8", "Subject: caf\xe9\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "caf\uFFFD", e.Subject)
		}},
		{"sloppy from", "From: Ann Smith ann@example.test\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, crmsync.Address{Name: "Ann Smith", Email: "ann@example.test"}, e.From)
		}},
		{"sender when no from", "Sender: s@example.test\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "s@example.test", e.From.Email)
		}},
		{"group and semicolons", "To: undisclosed-recipients:;\r\nCc: a@x; \"B, Jr\" <b@x>\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Empty(t, e.To)
			assert.Equal(t, []crmsync.Address{{Email: "a@x"}, {Name: "B, Jr", Email: "b@x"}}, e.Cc)
		}},
		{"date", "Date: Tue, 7 May 2024 08:30:00 +0200\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.True(t, e.SentAt.Equal(time.Date(2024, 5, 7, 6, 30, 0, 0, time.UTC)))
		}},
		{"bad date", "Date: someday\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.True(t, e.SentAt.IsZero())
		}},
		{"thread-index", "Thread-Index: AdqgAbCdEf==\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "AdqgAbCdEf==", e.ThreadIndex)
		}},
		{"mbox separator and bad lines", "From ann@example.test Mon May  2 16:07:05 2005\r\nSubject: ok\r\nthis is not a field\r\nTo: b@x\r\n", func(t *testing.T, e *crmsync.Email) {
			assert.Equal(t, "ok", e.Subject)
			assert.Equal(t, []crmsync.Address{{Email: "b@x"}}, e.To)
			assert.Equal(t, []string{"1 malformed header line(s) were ignored"}, e.Notes)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, parse(t, tc.header+"\r\nbody\r\n", 0))
		})
	}
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
	t.Run("undeclared 8-bit text is windows-1252", func(t *testing.T) {
		e := parse(t, "Subject: x\r\n\r\nna\xefve\r\n", 0)
		assert.Equal(t, "naïve\r\n", e.TextBody)
	})
	t.Run("unknown charset", func(t *testing.T) {
		e := parse(t, "Content-Type: text/plain; charset=x-martian\r\n\r\nhello\r\n", 0)
		assert.Equal(t, "hello\r\n", e.TextBody)
		require.Len(t, e.Notes, 1)
		assert.Contains(t, e.Notes[0], "x-martian")
	})
	t.Run("broken boundary parameter", func(t *testing.T) {
		e := parse(t, "Content-Type: multipart/mixed; boundary=----=_Part_1; charset=x; charset=y\r\n\r\n"+
			"------=_Part_1\r\n\r\ntext\r\n------=_Part_1--\r\n", 0)
		assert.Equal(t, "text", e.TextBody)
	})
	t.Run("sloppy transfer encoding", func(t *testing.T) {
		e := parse(t, "Content-Transfer-Encoding: quoted printable\r\n\r\na=3Db\r\n", 0)
		assert.Equal(t, "a=b\r\n", e.TextBody)
		e = parse(t, "Content-Transfer-Encoding: 7-bit\r\n\r\na=3Db\r\n", 0)
		assert.Equal(t, "a=3Db\r\n", e.TextBody)
	})
	t.Run("multipart without parts keeps the text", func(t *testing.T) {
		e := parse(t, "Content-Type: multipart/mixed; boundary=zz\r\n\r\nno parts here\r\n", 0)
		assert.Equal(t, "no parts here", e.TextBody)
		require.Len(t, e.Notes, 1)
	})
	t.Run("truncated multipart keeps what came", func(t *testing.T) {
		e := parse(t, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nfirst\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond, cut", 0)
		assert.Equal(t, "first\nsecond, cut", e.TextBody)
	})
	t.Run("deep nesting is bounded", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b0\r\n\r\n")
		for i := 0; i < 100; i++ {
			b.WriteString("--b" + strconv.Itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=b" + strconv.Itoa(i+1) + "\r\n\r\n")
		}
		e := parse(t, b.String(), 0)
		assert.NotEmpty(t, e.Notes)
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
		"--b--\r\n"
	e := parse(t, raw, 1024)
	assert.Equal(t, "see attached", e.TextBody)
	require.Len(t, e.Attachments, 4)

	pdf := e.Attachments[0]
	assert.Equal(t, "Résumé.pdf", pdf.Name)
	assert.Equal(t, "application/pdf", pdf.ContentType)
	assert.Equal(t, []byte("%PDF-1.4"), pdf.Content)
	assert.Equal(t, int64(8), pdf.Size)
	assert.False(t, pdf.Skipped)

	large := e.Attachments[1]
	assert.Equal(t, "groß.txt", large.Name)
	assert.True(t, large.Skipped)
	assert.Nil(t, large.Content)
	assert.Equal(t, int64(3000), large.Size)
	assert.Equal(t, "larger than 1 KiB", large.SkipReason)

	png := e.Attachments[2]
	assert.Equal(t, "logo@x", png.ContentID)
	assert.True(t, png.Skipped, "undecodable content is skipped")

	inner := e.Attachments[3]
	assert.Equal(t, "message-4.eml", inner.Name)
	assert.Equal(t, "message/rfc822", inner.ContentType)

	require.Len(t, e.Notes, 2)
	assert.Equal(t, `attachment "groß.txt" (2.9 KiB) was skipped: larger than the 1 KiB limit`, e.Notes[0])
	assert.Contains(t, e.Notes[1], "could not be decoded")

	// No limit keeps everything that decodes.
	e = parse(t, raw, 0)
	assert.False(t, e.Attachments[1].Skipped)
	assert.Len(t, e.Attachments[1].Content, 3000)
}

func TestNoHeaderFails(t *testing.T) {
	e := &crmsync.Email{}
	assert.Error(t, parseMessage(e, []byte("\x00\x01\x02 binary junk without a header"), 0))
	assert.Error(t, parseMessage(e, nil, 0))
}

func TestProviderID(t *testing.T) {
	id := providerID("INBOX/Projects/2024", 42, 7)
	assert.Equal(t, "INBOX/Projects/2024/42/7", id)
	folder, v, uid, err := parseProviderID(id)
	require.NoError(t, err)
	assert.Equal(t, "INBOX/Projects/2024", folder)
	assert.Equal(t, uint32(42), v)
	assert.Equal(t, imap.UID(7), uid)
	for _, bad := range []string{"", "INBOX", "INBOX/1", "/1/2", "INBOX/x/2", "INBOX/1/0", "INBOX/1/-2"} {
		_, _, _, err := parseProviderID(bad)
		assert.Error(t, err, bad)
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 5 << 20: "5 MiB", 1536: "1.5 KiB"} {
		assert.Equal(t, want, byteSize(n))
	}
}

func TestSMTPErrorKinds(t *testing.T) {
	cases := []struct {
		err      error
		dataSent bool
		want     crmsync.Kind
	}{
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}}, false, crmsync.KindAuth},
		{&smtp.SMTPError{Code: 534, EnhancedCode: smtp.EnhancedCode{5, 7, 9}}, false, crmsync.KindAuth},
		{&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}}, false, crmsync.KindAuth},
		{&smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}}, false, crmsync.KindTransient},
		{&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections"}, false, crmsync.KindThrottled},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "rate limit exceeded"}, true, crmsync.KindThrottled},
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}, false, crmsync.KindTransient},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}}, false, crmsync.KindPermanent},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content rejected"}, true, crmsync.KindPermanent},
		{&smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}}, true, crmsync.KindPermanent},
		{errors.New("connection reset"), true, crmsync.KindTransient},
		{errors.New("broken pipe"), false, crmsync.KindTransient},
	}
	for _, tc := range cases {
		got := crmsync.KindOf(smtpError("smtp send", tc.err, tc.dataSent))
		assert.Equal(t, tc.want, got, "%v", tc.err)
	}
	assert.Contains(t, smtpError("smtp send", errors.New("EOF"), true).Error(), "outcome unknown")
}

func TestIMAPErrorKinds(t *testing.T) {
	c := &Conn{}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	cases := []struct {
		err  error
		want crmsync.Kind
	}{
		{no(imap.ResponseCodeNonExistent, ""), crmsync.KindNotFound},
		{no(imap.ResponseCodeTryCreate, ""), crmsync.KindNotFound},
		{no(imap.ResponseCodeLimit, ""), crmsync.KindThrottled},
		{no("", "Too many simultaneous connections"), crmsync.KindThrottled},
		{no(imap.ResponseCodeOverQuota, ""), crmsync.KindPermanent},
		{no(imap.ResponseCodeServerBug, ""), crmsync.KindTransient},
		{&imap.Error{Type: imap.StatusResponseTypeBad, Text: "parse error"}, crmsync.KindPermanent},
		{errors.New("EOF"), crmsync.KindTransient},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, crmsync.KindOf(c.imapError("imap x", tc.err)), "%v", tc.err)
	}
	login := []struct {
		err  error
		want crmsync.Kind
	}{
		{no(imap.ResponseCodeAuthenticationFailed, ""), crmsync.KindAuth},
		{no("", "Login failed"), crmsync.KindAuth},
		{no(imap.ResponseCodeUnavailable, ""), crmsync.KindTransient},
		{no("", "Maximum number of connections: too many"), crmsync.KindThrottled},
		{no(imap.ResponseCodePrivacyRequired, ""), crmsync.KindPermanent},
	}
	for _, tc := range login {
		assert.Equal(t, tc.want, crmsync.KindOf(c.loginError(tc.err)), "%v", tc.err)
	}
}

func TestCompose(t *testing.T) {
	m := &crmsync.Email{
		To:       []crmsync.Address{{Name: "Zoë", Email: "z@x"}},
		Bcc:      []crmsync.Address{{Email: "hidden@x"}},
		Subject:  "Hello",
		HTMLBody: "<b>hi</b>",
	}
	raw, err := compose(m, crmsync.Address{Email: "a@x"}, "id@x", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), false)
	require.NoError(t, err)
	s := string(raw)
	assert.Contains(t, s, "Content-Type: text/html; charset=utf-8")
	assert.Contains(t, s, "Message-Id: <id@x>")
	assert.Contains(t, s, "Date: Tue, 02 Jan 2024 03:04:05 +0000")
	assert.NotContains(t, s, "hidden@x")
	assert.Contains(t, s, "=?utf-8?q?Zo=C3=AB?=")
	assert.True(t, bytes.Contains(raw, []byte("\r\n\r\n")), "CRLF line endings")
	assert.Equal(t, "id@x", messageIDOf(raw))

	got := parse(t, s, 0)
	assert.Equal(t, "<b>hi</b>", got.HTMLBody)
	assert.Equal(t, "Zoë", got.To[0].Name)

	withBcc, err := compose(m, crmsync.Address{Email: "a@x"}, "id@x", time.Now(), true)
	require.NoError(t, err)
	assert.Contains(t, string(withBcc), "Bcc: <hidden@x>")
}

// FuzzParseMessage checks that no input makes the parser panic or return invalid UTF-8.
func FuzzParseMessage(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!\r\n--b--"))
	f.Add([]byte("From x\r\n\tcont\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, _, err := readHeader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		e := headerEmail(h)
		if parseMessage(e, raw, 64) != nil {
			return
		}
		for _, s := range []string{e.Subject, e.TextBody, e.HTMLBody, e.From.Name} {
			if !utf8Valid(s) {
				t.Fatalf("invalid UTF-8: %q", s)
			}
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }
