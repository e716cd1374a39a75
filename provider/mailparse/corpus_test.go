package mailparse_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider/mailparse"
)

// corpusDir returns the real-world corpus; see testenv.MIMECorpus.
func corpusDir(tb testing.TB) (dir string, ok bool) { return testenv.MIMECorpus(tb) }

// corpusFiles returns every regular file of the corpus, by path relative to it, and
// their bytes; nil under -short when the corpus is missing.
func corpusFiles(tb testing.TB) (map[string][]byte, []string) {
	tb.Helper()
	dir, ok := corpusDir(tb)
	if !ok {
		return nil, nil
	}
	files := make(map[string][]byte)
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		files[rel] = raw
		names = append(names, rel)
		return nil
	})
	require.NoError(tb, err)
	require.NotEmpty(tb, names, "the corpus at %s has no files", dir)
	return files, names
}

// TestCorpus parses every file of the real-world corpus, broken ones included: each is
// an email or a *ParseError, never a panic, and the parts that must read right do.
func TestCorpus(t *testing.T) {
	files, names := corpusFiles(t)
	if names == nil {
		t.Skip("no MIME corpus (-short)")
	}
	const limit = 1024
	emails := make(map[string]*crmsync.Email)
	var failed []string
	for _, name := range names {
		raw := files[name]
		t.Run(name, func(t *testing.T) {
			e, err := mailparse.Parse(raw, mailparse.Options{AttachmentLimit: limit})
			h, herr := mailparse.ParseHeader(raw)
			if err != nil {
				var pe *mailparse.ParseError
				require.True(t, errors.As(err, &pe), "%v is not a *ParseError", err)
				assert.NotEmpty(t, pe.Reason)
				assert.Error(t, herr, "ParseHeader agrees that the header cannot be read")
				failed = append(failed, name)
				return
			}
			require.NoError(t, herr)
			checkEmail(t, e, limit)
			assert.Equal(t, h.Subject, e.Subject)
			assert.Equal(t, h.MessageID, e.MessageID)
			assert.Empty(t, h.TextBody+h.HTMLBody, "ParseHeader reads no body")
			emails[name] = e
		})
	}

	// What fails is what is not a message at all.
	assert.ElementsMatch(t, []string{"LICENSE", "sample_output_multipart"}, failed)
	for _, name := range names {
		if strings.HasSuffix(name, ".eml") {
			assert.Contains(t, emails, name, "every .eml file is an email")
		}
	}

	get := func(name string) *crmsync.Email {
		e := emails[name]
		require.NotNil(t, e, name)
		return e
	}
	t.Run("known files", func(t *testing.T) {
		// Encoded words in subjects and names, raw 8-bit and UTF-8 headers.
		assert.Equal(t, "Säying Hello", get("rfc6532/utf8_headers.eml").Subject)
		assert.Equal(t, crmsync.Address{Name: "Jöhn Doe", Email: "jdöe@mächine.example"}, get("rfc6532/utf8_headers.eml").From)
		assert.Equal(t, "まみむめも", get("multi_charset/japanese.eml").Subject)
		assert.Equal(t, "みける", get("multi_charset/japanese.eml").To[0].Name)
		assert.Equal(t, "Re: TEST テストテスト", get("rfc2822/example14.eml").Subject)
		assert.Equal(t, `Re: Test: "漢字" mid "漢字" tail`, get("plain_emails/raw_email_with_partially_quoted_subject.eml").Subject)
		assert.Equal(t, "Another PDF with 🎉 Unicode chars in it 🍿", get("attachment_emails/attachment_pdf.eml").Subject)
		assert.Equal(t, "=?NONE?B?VEVTVA=?=", get("error_emails/bad_encoded_subject.eml").Subject, "an unknown charset stays encoded")
		bad := get("error_emails/invalid_subject_characters.eml")
		assert.Equal(t, "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro", bad.Subject, "raw 8-bit is Windows-1252")
		assert.Equal(t, "Formação Frenetikpolis", bad.From.Name, "encoded words inside quotes")

		// Attachment names: RFC 2047, RFC 2231 in several charsets, quoted and not.
		names := func(file string) []string {
			var out []string
			for _, a := range get(file).Attachments {
				out = append(out, a.Name)
			}
			return out
		}
		assert.Equal(t, []string{"ciële.txt"}, names("attachment_emails/attachment_nonascii_filename.eml"))
		assert.Equal(t, []string{"かきくけこかきくけこかきくけこかきくけこかきくけこ.txt"}, names("multi_charset/japanese_attachment_long_name.eml"))
		assert.Equal(t, []string{"てすと.txt"}, names("multi_charset/japanese_attachment.eml"))
		assert.Equal(t, []string{"This is a test.pdf"}, names("attachment_emails/attachment_with_base64_encoded_name.eml"))
		assert.Equal(t, []string{"Eelanalüüsi päring.jpg"}, names("attachment_emails/attachment_with_quoted_filename.eml"))
		assert.Equal(t, []string{"This is a test.txt"}, names("attachment_emails/attachment_with_unquoted_name.eml"))
		assert.Equal(t, []string{"test.rb", "test.pdf", "smime.p7s"}, names("mime_emails/raw_email7.eml"))
		assert.Equal(t, []string{"delivery-status-1.txt", "message-2.eml"}, names("mime_emails/raw_email_with_mimepart_without_content_type.eml"))

		// Bodies in other charsets, decoded to UTF-8.
		assert.Contains(t, get("multi_charset/japanese_iso_2022.eml").TextBody, "すみません。")
		assert.Contains(t, get("multi_charset/japanese_shift_jis.eml").TextBody, "このメールはテスト用のメールです。")
		assert.Equal(t, "스티해", strings.TrimSpace(get("multi_charset/ks_c_5601-1987.eml").TextBody))
		assert.Contains(t, get("plain_emails/raw_email.eml").Subject, "한국말로")

		// Limits, damage and notes.
		pdf := get("attachment_emails/attachment_pdf.eml").Attachments[0]
		assert.Equal(t, "broken.pdf", pdf.Name)
		assert.Equal(t, "application/pdf", pdf.ContentType)
		assert.Equal(t, int64(1026), pdf.Size)
		assert.True(t, pdf.Skipped)
		assert.Equal(t, "larger than 1 KiB", pdf.SkipReason)
		nested := get("mime_emails/raw_email_with_nested_attachment.eml")
		assert.Contains(t, nested.Notes, `attachment "truncated.png" (1.9 KiB) was skipped: larger than the 1 KiB limit`)
		assert.Contains(t, get("error_emails/missing_body.eml").Notes, "the message body is missing")
		assert.Equal(t, "REDACTED", get("error_emails/missing_body.eml").Subject)
		uu := get("error_emails/content_transfer_encoding_x_uuencode.eml")
		assert.Contains(t, uu.Notes, `a part in transfer encoding "x-uuencode", which is not supported, was kept encoded`)
		assert.Contains(t, get("plain_emails/raw_email_incorrect_header.eml").Notes, "1 malformed header line(s) were ignored")

		// Sloppy addresses are read as well as they can be.
		assert.Equal(t, crmsync.Address{Name: "Big Bug", Email: "bb@bug.com"}, get("plain_emails/mix_caps_content_type.eml").From)
		assert.Equal(t, []crmsync.Address{{Email: "user-example@aol.com"}, {Email: "e-s-a-s-2200@app.ar.com"}}, get("error_emails/weird_to_header.eml").To)
		at := get("plain_emails/raw_email_with_at_display_name.eml").To
		require.Len(t, at, 3)
		assert.Equal(t, crmsync.Address{Name: "Mikel@Lindsaar", Email: "raasdnil@gmail.com"}, at[1])
		rfc := get("rfc2822/example10.eml")
		assert.Equal(t, crmsync.Address{Name: "Pete", Email: "pete@silly.test"}, rfc.From, "comments are not names")
		assert.Empty(t, rfc.Cc, "an empty group")

		// Threading fields.
		refs := get("error_emails/multiple_references_with_one_invalid.eml")
		assert.NotEmpty(t, refs.References)
		for _, id := range refs.References {
			assert.NotContains(t, id, "<")
		}
		assert.Equal(t, "7oh6b1$1clhrjk@badger-vip.apple.com", get("error_emails/cant_parse_from.eml").MessageID)
	})
}

// checkEmail checks what every parsed email promises.
func checkEmail(t *testing.T, e *crmsync.Email, limit int64) {
	t.Helper()
	strs := []string{e.Subject, e.TextBody, e.HTMLBody, e.MessageID, e.InReplyTo, e.ThreadIndex, e.From.Name, e.From.Email}
	strs = append(strs, e.References...)
	strs = append(strs, e.Notes...)
	for _, l := range [][]crmsync.Address{e.To, e.Cc, e.Bcc, e.ReplyTo} {
		for _, a := range l {
			strs = append(strs, a.Name, a.Email)
			if a.Name == "" && a.Email == "" {
				t.Errorf("an empty address")
			}
		}
	}
	for _, a := range e.Attachments {
		strs = append(strs, a.Name, a.ContentType, a.ContentID, a.SkipReason)
		switch {
		case a.Skipped:
			if a.Content != nil || a.SkipReason == "" {
				t.Errorf("skipped attachment %q has content or no reason", a.Name)
			}
		case limit > 0 && int64(len(a.Content)) > limit:
			t.Errorf("attachment %q of %d bytes is over the limit", a.Name, len(a.Content))
		case int64(len(a.Content)) != a.Size:
			t.Errorf("attachment %q: Size %d, content %d bytes", a.Name, a.Size, len(a.Content))
		}
		if a.Name == "" {
			t.Errorf("an attachment without a name")
		}
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Errorf("invalid UTF-8: %q", s)
		}
	}
	for _, id := range append([]string{e.MessageID, e.InReplyTo}, e.References...) {
		if strings.ContainsAny(id, "<> \t\r\n") {
			t.Errorf("message id %q has brackets or spaces", id)
		}
	}
	if e.Direction != crmsync.DirectionIncoming {
		t.Errorf("direction %v", e.Direction)
	}
}

// BenchmarkParseCorpus parses every message of the real-world corpus once per
// iteration, header and body as an IMAP ingest does: messy mail, where the parser's
// shortcuts apply less often than to the generated mail of internal/bench/mailbench.
//
//	go test -run '^$' -bench ParseCorpus -benchmem ./provider/mailparse
func BenchmarkParseCorpus(b *testing.B) {
	files, names := corpusFiles(b)
	if names == nil {
		b.Skip("the corpus is missing")
	}
	var size int64
	for _, name := range names {
		size += int64(len(files[name]))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for _, name := range names {
			raw := files[name]
			if e, err := mailparse.ParseHeader(raw); err == nil {
				_ = mailparse.ParseBody(e, raw, mailparse.Options{})
			}
		}
	}
}
