package imap_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailtest"
)

// TestRealWorldCorpus delivers real-world messages, broken ones included, and fetches
// them: nothing fails the batch, and every message is either an email or a failed item.
func TestRealWorldCorpus(t *testing.T) {
	corpusDir, ok := testenv.MIMECorpus(t)
	if !ok {
		t.Skip("the corpus is missing; -short allows that")
	}
	var files []string
	for _, dir := range []string{"attachment_emails", "multi_charset", "error_emails", "mime_emails", "multipart_report_emails", "plain_emails", "rfc2822", "rfc6532"} {
		m, _ := filepath.Glob(filepath.Join(corpusDir, dir, "*.eml"))
		files = append(files, m...)
	}
	require.NotEmpty(t, files, "no messages in %s", corpusDir)
	h := newHarness(t, mailtest.Config{})
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, h.srv.Deliver(ann, raw))
	}
	// One message with no header at all.
	require.NoError(t, h.srv.Deliver(ann, []byte("\x00\x01 not a message\r\n")))

	var emails []*crmsync.Email
	var failed []provider.FailedItem
	var cursor []byte
	for {
		b := h.fetch(t, provider.FetchRequest{Cursor: cursor, Max: 25, AttachmentLimit: 1024})
		emails = append(emails, b.Emails...)
		failed = append(failed, b.Failed...)
		cursor = b.Cursor
		if !b.More {
			break
		}
	}
	assert.Equal(t, len(files)+1, len(emails)+len(failed))

	// What fails is the message without a header, and the few whose header
	// imapmemserver cannot parse: it then serves them empty (Dovecot would not).
	uv, err := h.srv.UIDValidity(ann, "INBOX")
	require.NoError(t, err)
	failedUID := make(map[int]bool)
	for _, f := range failed {
		assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(f.Err))
		var uid int
		_, err := fmt.Sscanf(strings.TrimPrefix(f.Ref.ID, fmt.Sprintf("INBOX/%d/", uv)), "%d", &uid)
		require.NoError(t, err, f.Ref.ID)
		failedUID[uid] = true
		if uid == len(files)+1 {
			continue
		}
		raw, _ := os.ReadFile(files[uid-1])
		assert.False(t, strictHeaderOK(raw), "%s failed: %v", files[uid-1], f.Err)
	}
	assert.True(t, failedUID[len(files)+1], "the message without a header fails")
	assert.LessOrEqual(t, len(failed), 5)

	byName := make(map[string]*crmsync.Email)
	i := 0
	for uid := 1; uid <= len(files); uid++ {
		if !failedUID[uid] {
			byName[filepath.Base(files[uid-1])] = emails[i]
			i++
		}
	}
	// A few spot checks of what real mail turns into.
	if e := byName["japanese_shift_jis.eml"]; assert.NotNil(t, e) {
		assert.NotEmpty(t, e.TextBody)
	}
	if e := byName["attachment_nonascii_filename.eml"]; assert.NotNil(t, e) && assert.Len(t, e.Attachments, 1) {
		assert.Equal(t, "ciële.txt", e.Attachments[0].Name)
	}
	if e := byName["japanese_attachment_long_name.eml"]; assert.NotNil(t, e) && assert.Len(t, e.Attachments, 1) {
		assert.Equal(t, "かきくけこかきくけこかきくけこかきくけこかきくけこ.txt", e.Attachments[0].Name)
	}
	if e := byName["attachment_pdf.eml"]; assert.NotNil(t, e) && assert.Len(t, e.Attachments, 1) {
		assert.Equal(t, "broken.pdf", e.Attachments[0].Name)
		assert.Equal(t, "application/pdf", e.Attachments[0].ContentType)
		assert.Equal(t, int64(1026), e.Attachments[0].Size)
	}
	if e := byName["raw_email_with_nested_attachment.eml"]; assert.NotNil(t, e) && assert.Len(t, e.Attachments, 2) {
		png := e.Attachments[0]
		assert.True(t, png.Skipped, "over the 1 KiB limit")
		assert.Nil(t, png.Content)
		assert.Greater(t, png.Size, int64(1024))
		assert.Contains(t, e.Notes, `attachment "truncated.png" (1.9 KiB) was skipped: larger than the 1 KiB limit`)
	}
	if e := byName["missing_body.eml"]; assert.NotNil(t, e) {
		assert.Equal(t, "REDACTED", e.Subject)
		assert.Contains(t, e.Notes, "the message body is missing")
	}
	if e := byName["raw_email7.eml"]; assert.NotNil(t, e) && assert.Len(t, e.Attachments, 3) {
		assert.Equal(t, "test.rb", e.Attachments[0].Name)
		assert.False(t, e.Attachments[0].Skipped)
		assert.NotEmpty(t, e.Attachments[0].Content)
	}
	if e := byName["utf8_headers.eml"]; assert.NotNil(t, e) {
		assert.Equal(t, "Säying Hello", e.Subject)
	}
	for _, e := range emails {
		assert.NotEmpty(t, e.ProviderID)
		assert.Equal(t, "INBOX", e.Folder)
	}
}

// strictHeaderOK reports whether go-message reads the header of raw (after an mbox
// "From " line, which delivery drops) without error, as imapmemserver must to serve it.
func strictHeaderOK(raw []byte) bool {
	if bytes.HasPrefix(raw, []byte("From ")) && !bytes.HasPrefix(bytes.TrimLeft(raw[5:], " "), []byte(":")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	_, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	return err == nil
}
