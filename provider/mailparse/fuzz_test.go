package mailparse_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"

	"github.com/crmsync/crmsync/provider/mailparse"
)

// The fuzz targets run as plain tests on their seeds: the hand seeds below and every
// file of the real-world corpus (its header alone for the header and address targets).
// In CI each also runs for a short time with -fuzz.

// corpusValues returns the values of the fields named keys in the corpus's headers.
func corpusValues(tb testing.TB, keys ...string) []string {
	var out []string
	files, names := corpusFiles(tb)
	for _, name := range names {
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(headerOf(files[name]))))
		if err != nil {
			continue
		}
		for _, key := range keys {
			out = append(out, h.Values(key)...)
		}
	}
	return out
}

// headerOf returns the header block of a raw message.
func headerOf(raw []byte) []byte {
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(raw, sep); i >= 0 {
			return raw[:i+len(sep)]
		}
	}
	return raw
}

var handSeeds = [][]byte{
	[]byte("Subject: x\r\n\r\nbody"),
	[]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!\r\n--b--"),
	[]byte("From x\r\n\tcont\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B"),
	[]byte("Received: x; Mon, 06 May 2024 08:00:00 +0000\r\nTo: ,,;\r\n\r\n"),
	[]byte("From: \"=?UTF-8?B?/w==?=\" <a@b>, (c) d@e; g:;\r\nSubject: =?x?Q?a?= =?UTF-8?Q?=C3?=\r\n\r\n"),
	[]byte("Content-Type: multipart/alternative; boundary=\"a\"\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a--\r\n"),
	[]byte("Content-Type: application/pdf; name*=iso-8859-1''%E9%\r\nContent-Disposition: attachment; filename*=x''y\r\n\r\n"),
}

// FuzzParse checks that no message makes Parse panic, fail with anything but a
// *ParseError, disagree with ParseHeader, or return an email that breaks its promises.
func FuzzParse(f *testing.F) {
	for _, s := range handSeeds {
		f.Add(s)
	}
	files, names := corpusFiles(f)
	for _, name := range names {
		f.Add(files[name])
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := mailparse.Parse(raw, mailparse.Options{AttachmentLimit: 64})
		_, herr := mailparse.ParseHeader(raw)
		if (err == nil) != (herr == nil) {
			t.Fatalf("Parse: %v, but ParseHeader: %v", err, herr)
		}
		if err != nil {
			var pe *mailparse.ParseError
			if !errors.As(err, &pe) || pe.Reason == "" {
				t.Fatalf("not a *ParseError with a reason: %v", err)
			}
			return
		}
		checkEmail(t, e, 64)
	})
}

// FuzzParseHeader checks that no header makes ParseHeader panic or return a header-only
// email that breaks its promises.
func FuzzParseHeader(f *testing.F) {
	for _, s := range handSeeds {
		f.Add(headerOf(s))
	}
	files, names := corpusFiles(f)
	for _, name := range names {
		f.Add(headerOf(files[name]))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := mailparse.ParseHeader(raw)
		if err != nil {
			var pe *mailparse.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("not a *ParseError: %v", err)
			}
			return
		}
		checkEmail(t, e, 0)
		if e.TextBody != "" || e.HTMLBody != "" || e.Attachments != nil {
			t.Fatalf("ParseHeader read a body")
		}
	})
}

// FuzzParseAddressList checks that no field value makes ParseAddressList panic or
// return an empty or invalid address, nor read it differently from its slow path.
func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{
		"", "a@b", `"B, Jr" <b@x>; c@d`, "Sender 5 <s5@x.example>, <a@b>,c@d", "A  B\t<a@b>", "a <b@c>d", "a@b <c@d>",
		"a.b <c@d>", "=?utf-8?q?x?= <a@b>", "a,,b@c", "<a..b@c>", "<.a@b>", "a@b.", " <a@b> ", "x <a@b@c>", "<a@b>>", "Ann Smith ann@x", "g: a@b, c@d;", "(c) <a(b)@c(d)>",
		`"=?UTF-8?Q?J=C3=B6rg?=" <j@x>`, "\"unbalanced <a@b>", "<<<@>>>", "J\xf6rg <j@x>", "a@b\\, c",
	} {
		f.Add(s)
	}
	for _, v := range corpusValues(f, "From", "Sender", "To", "Cc", "Bcc", "Reply-To") {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, value string) {
		if d := mailparse.AddressDisagreement(value); d != "" {
			t.Fatal(d)
		}
		list, notes := mailparse.ParseAddressList(value)
		for _, a := range list {
			if a.Name == "" && a.Email == "" {
				t.Fatalf("an empty address in %q", list)
			}
			if !utf8.ValidString(a.Name) || !utf8.ValidString(a.Email) {
				t.Fatalf("invalid UTF-8 in %q", a)
			}
		}
		for _, n := range notes {
			if !utf8.ValidString(n) {
				t.Fatalf("invalid UTF-8 in note %q", n)
			}
		}
	})
}

// headerSeeds are header blocks at the edges of what a header reader must agree on.
var headerSeeds = []string{
	":x\r\n\r\n", " cont\r\nContent-Type: text/html\r\n\r\n", "Content-Type : text/plain;\r\n charset=utf-8\r\nbad line\r\n charset=x\r\n\r\n",
	"From a@b Mon\r\ncontent-type: text/plain\r\n\r\n", "CONTENT-TRANSFER-ENCODING: base64\r\nContent\x01: x\r\n\r\n", "",
	"Received: x\r\n\tContent-Type: y\r\nContent-Type: z", "Content-Type: a\nContent-Type: b\n\n",
	"Subject: a\r\r\nSubject: b\r", "Content-Type: x\r", "To: a\r\n \r\n\tb \r\n", "X: \r\n\r", ": x\r\n y\r\nFrom: a",
	"FROM: a\r\nfrom: b\r\nReceived: 1\r\nreceived: 2\r\n", "Subject: x\n  \t\n y\n", "A\x80: b\r\n",
}

// FuzzHeaderFields checks the header reader the parser uses against go-message's
// textproto.ReadHeader, which it stands in for.
func FuzzHeaderFields(f *testing.F) {
	fuzzHeaderReader(f, mailparse.HeaderDisagreement)
}

// FuzzMIMEHeader checks the header ParseBody reads (only the Content-* fields) against
// go-message's textproto.ReadHeader.
func FuzzMIMEHeader(f *testing.F) {
	fuzzHeaderReader(f, mailparse.MIMEHeaderDisagreement)
}

// fuzzHeaderReader runs a header reader's differential check on the hand seeds, the
// header seeds and the corpus, and on what the fuzzer makes of them.
func fuzzHeaderReader(f *testing.F, disagreement func(raw []byte) string) {
	for _, s := range handSeeds {
		f.Add(s)
	}
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	files, names := corpusFiles(f)
	for _, name := range names {
		f.Add(files[name])
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if d := disagreement(raw); d != "" {
			t.Fatal(d)
		}
	})
}

// FuzzBase64 checks the line-by-line base64 decoding of attachments against base64's
// decoder over the whole body.
func FuzzBase64(f *testing.F) {
	for _, s := range []string{
		"", "QUJD\r\nREVG\r\n", "QUJD\nREVG", "QQ==\r\n", "QQ==\r\nQUJD\r\n", "QUJ D\r\n", "QUJD\r\r\r\rQUJD\r\n",
		"QUJ\r\nDREVG\r\n", "QQ=\r\n=\r\n", "QQ==\r\n\r\n\r\n", "QUJDREVG\r\nQQ", "\r\n\r\nQUJD", "QU\tJD\r\n",
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("attachment "), 40)),
	} {
		f.Add([]byte(s))
	}
	var b bytes.Buffer
	enc := base64.NewEncoder(base64.StdEncoding, &lineWriter{w: &b})
	enc.Write(bytes.Repeat([]byte{0, 1, 2, 0xff, 'x'}, 100))
	enc.Close()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, src []byte) {
		if d := mailparse.Base64Disagreement(src); d != "" {
			t.Fatal(d)
		}
	})
}

// lineWriter breaks what it is given into lines of 76 characters, as MIME encoders do.
type lineWriter struct {
	w   *bytes.Buffer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if l.col == 76 {
			l.w.WriteString("\r\n")
			l.col = 0
		}
		l.w.WriteByte(c)
		l.col++
	}
	return len(p), nil
}

// FuzzMessageIDs checks the shortcuts of NormalizeMessageID and SplitMessageIDs
// against the slow ways they stand in for.
func FuzzMessageIDs(f *testing.F) {
	for _, s := range []string{
		"<a@b>", "<a.b@c.d>", " <a@b> <c@d>\t<e@f> ", "<a@b><c@d>", "<a@b>, <c@d>", "<@b>", "<a@>", "<a@b@c>",
		"<a..b@c>", "<.a@b.>", "<a b@c>", "<a@[1.2.3.4]>", "<a@b> (relay)", "a@b", "<=?x?=@b>", "<a\xff@b>",
		"<a(b)@c>", "<<a@b>>", "<a@b>>", "<a\"b@c>", "<a@b>\r\n <c@d>", "<{|}~!#$%&'*+-/=?^_`@x>",
	} {
		f.Add(s)
	}
	for _, v := range corpusValues(f, "Message-Id", "In-Reply-To", "References") {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d := mailparse.MessageIDDisagreement(v); d != "" {
			t.Fatal(d)
		}
	})
}
