package providertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// The sender of the suite's test messages.
const (
	senderName    = "Conformance Sender"
	senderAddress = "sender@conformance.crmsync.test"
)

// raw assembles a message from header lines and a body, with CRLF line ends.
func raw(headers []string, body string) []byte {
	var b bytes.Buffer
	for _, h := range headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))
	return b.Bytes()
}

// headers returns the usual header lines of a test message to the subtest's mailbox.
func (e *env) headers(id, subject string, date time.Time) []string {
	return []string{
		fmt.Sprintf("From: %s <%s>", senderName, senderAddress),
		"To: <" + e.address() + ">",
		"Subject: " + subject,
		"Date: " + date.Format(time.RFC1123Z),
		"Message-ID: <" + id + ">",
		"MIME-Version: 1.0",
	}
}

// deliverPlain delivers a short text/plain message and returns its Message-ID.
func (s *suite) deliverPlain(t *testing.T, e *env, subject string) string {
	t.Helper()
	id := s.messageID()
	h := append(e.headers(id, subject, time.Now()), "Content-Type: text/plain; charset=utf-8")
	if err := s.h.Deliver(e.ctx, e.target, raw(h, "Body of "+subject+".\n")); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return id
}

func (s *suite) testEmpty(t *testing.T, e *env) {
	im := s.incomingConn(t, e)
	b, err := im.FetchIncoming(e.ctx, provider.FetchRequest{})
	if err != nil {
		t.Fatalf("FetchIncoming of an empty mailbox: %v", err)
	}
	if len(b.Emails) != 0 || len(b.Failed) != 0 || b.More {
		t.Errorf("FetchIncoming of an empty mailbox = %d emails, %d failed, More %v; want none", len(b.Emails), len(b.Failed), b.More)
	}
}

// testParse checks the headers of a fetched message.
func (s *suite) testParse(t *testing.T, e *env) {
	id, date := s.messageID(), time.Now().Add(-time.Hour).Truncate(time.Second)
	h := e.headers(id, "=?UTF-8?Q?Caf=C3=A9?= order 7", date)
	h = append(h,
		"Cc: Second Person <second@conformance.crmsync.test>",
		"In-Reply-To: <parent.1@conformance.crmsync.test>",
		"References: <root.1@conformance.crmsync.test> <parent.1@conformance.crmsync.test>",
		"Thread-Index: AQHXq1n0abcdefghijklmnopqrstuv",
		"Content-Type: text/plain; charset=utf-8",
	)
	if err := s.h.Deliver(e.ctx, e.target, raw(h, "Hello from the conformance suite.\n")); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	emails, _ := fetchAll(t, e.ctx, s.incomingConn(t, e), provider.FetchRequest{})
	wantIDs(t, "first fetch", emails, id)
	if len(emails) != 1 {
		return
	}
	m := emails[0]
	check := func(field string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
	check("Subject", m.Subject, "Café order 7")
	check("From.Name", m.From.Name, senderName)
	check("From.Email", strings.ToLower(m.From.Email), senderAddress)
	check("InReplyTo", m.InReplyTo, "parent.1@conformance.crmsync.test")
	check("References", m.References, []string{"root.1@conformance.crmsync.test", "parent.1@conformance.crmsync.test"})
	check("ThreadIndex", m.ThreadIndex, "AQHXq1n0abcdefghijklmnopqrstuv")
	check("TextBody", strings.TrimSpace(m.TextBody), "Hello from the conformance suite.")
	if len(m.To) != 1 || !strings.EqualFold(m.To[0].Email, e.address()) {
		t.Errorf("To = %v, want %s", m.To, e.address())
	}
	if len(m.Cc) != 1 || m.Cc[0].Email != "second@conformance.crmsync.test" || m.Cc[0].Name != "Second Person" {
		t.Errorf("Cc = %v, want Second Person <second@conformance.crmsync.test>", m.Cc)
	}
	if !m.SentAt.Equal(date) {
		t.Errorf("SentAt = %v, want the Date header %v", m.SentAt, date)
	}
	if m.ReceivedAt.IsZero() {
		t.Error("ReceivedAt is zero")
	}
}

const (
	altBoundary = "conformance-alt-boundary"
	mixBoundary = "conformance-mix-boundary"
)

// multipartBody returns a multipart body of parts, each given as header lines and a
// body.
func multipartBody(boundary string, parts ...[2]string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\n%s\n\n%s\n", boundary, p[0], p[1])
	}
	fmt.Fprintf(&b, "--%s--\n", boundary)
	return b.String()
}

// base64Lines encodes data in lines of 76 characters, as mail does.
func base64Lines(data []byte) string {
	s := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

// deliverWithAttachment delivers a multipart/mixed message with a text part and a
// text/plain attachment notes.txt holding content.
func (s *suite) deliverWithAttachment(t *testing.T, e *env, content []byte) string {
	t.Helper()
	id := s.messageID()
	h := append(e.headers(id, "With attachment", time.Now()), `Content-Type: multipart/mixed; boundary="`+mixBoundary+`"`)
	body := multipartBody(mixBoundary,
		[2]string{"Content-Type: text/plain; charset=utf-8", "See the attached notes."},
		[2]string{"Content-Type: text/plain; name=\"notes.txt\"\nContent-Disposition: attachment; filename=\"notes.txt\"\nContent-Transfer-Encoding: base64",
			base64Lines(content)},
	)
	if err := s.h.Deliver(e.ctx, e.target, raw(h, body)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return id
}

// testBodies checks multipart/alternative bodies and attachments.
func (s *suite) testBodies(t *testing.T, e *env) {
	altID := s.messageID()
	h := append(e.headers(altID, "Alternative", time.Now()), `Content-Type: multipart/alternative; boundary="`+altBoundary+`"`)
	body := multipartBody(altBoundary,
		[2]string{"Content-Type: text/plain; charset=utf-8", "The plain part."},
		[2]string{"Content-Type: text/html; charset=utf-8", "<p>The <b>html</b> part.</p>"},
	)
	if err := s.h.Deliver(e.ctx, e.target, raw(h, body)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	content := []byte("Notes of the conformance suite, line 1.\r\nLine 2.\r\n")
	mixID := s.deliverWithAttachment(t, e, content)

	emails, _ := fetchAll(t, e.ctx, s.incomingConn(t, e), provider.FetchRequest{})
	wantIDs(t, "fetch", emails, altID, mixID)
	got := byMessageID(t, emails)
	if m := got[altID]; m != nil {
		if !strings.Contains(m.TextBody, "The plain part.") || !strings.Contains(m.HTMLBody, "<b>html</b>") {
			t.Errorf("multipart/alternative: TextBody %q, HTMLBody %q; want both parts", m.TextBody, m.HTMLBody)
		}
	}
	if m := got[mixID]; m != nil {
		if !strings.Contains(m.TextBody, "See the attached notes.") {
			t.Errorf("multipart/mixed: TextBody %q, want the text part", m.TextBody)
		}
		if len(m.Attachments) != 1 {
			t.Fatalf("multipart/mixed: %d attachments, want 1", len(m.Attachments))
		}
		a := m.Attachments[0]
		if a.Name != "notes.txt" || !bytes.Equal(a.Content, content) || a.Skipped ||
			!strings.HasPrefix(strings.ToLower(a.ContentType), "text/plain") {
			t.Errorf("attachment = %q %q skipped %v content %q; want notes.txt text/plain with its content",
				a.Name, a.ContentType, a.Skipped, a.Content)
		}
	}
}

// testAttachmentLimit checks that an attachment over FetchRequest.AttachmentLimit is
// kept as a Skipped entry without content.
func (s *suite) testAttachmentLimit(t *testing.T, e *env) {
	id := s.deliverWithAttachment(t, e, bytes.Repeat([]byte("0123456789abcdef"), 256)) // 4 KiB
	emails, _ := fetchAll(t, e.ctx, s.incomingConn(t, e), provider.FetchRequest{AttachmentLimit: 1024})
	wantIDs(t, "fetch", emails, id)
	if len(emails) != 1 {
		return
	}
	if len(emails[0].Attachments) != 1 {
		t.Fatalf("%d attachments, want 1 (skipped)", len(emails[0].Attachments))
	}
	a := emails[0].Attachments[0]
	if !a.Skipped || len(a.Content) != 0 || a.Name != "notes.txt" {
		t.Errorf("attachment over the limit: Name %q Skipped %v, %d bytes of content; want notes.txt skipped, no content",
			a.Name, a.Skipped, len(a.Content))
	}
}

// testCursor checks that a cursor covers what was fetched: no duplicates, and new
// messages after it.
func (s *suite) testCursor(t *testing.T, e *env) {
	im := s.incomingConn(t, e)
	a, b := s.deliverPlain(t, e, "first"), s.deliverPlain(t, e, "second")
	emails, cursor := fetchAll(t, e.ctx, im, provider.FetchRequest{})
	wantIDs(t, "first fetch", emails, a, b)
	if cursor == nil {
		t.Error("the cursor after two messages is nil")
	}

	again, cursor2 := fetchAll(t, e.ctx, im, provider.FetchRequest{Cursor: cursor})
	wantIDs(t, "fetch with the cursor, nothing new", again)

	c := s.deliverPlain(t, e, "third")
	emails, _ = fetchAll(t, e.ctx, im, provider.FetchRequest{Cursor: cursor2})
	wantIDs(t, "fetch after a new delivery", emails, c)

	// A new connection resumes from the saved cursor too.
	emails, _ = fetchAll(t, e.ctx, s.incomingConn(t, e), provider.FetchRequest{Cursor: cursor})
	wantIDs(t, "fetch on a new connection", emails, c)
}

// testMaxAndMore checks paging: no batch beyond Max, More until the last, nothing lost
// or repeated.
func (s *suite) testMaxAndMore(t *testing.T, e *env) {
	var ids []string
	for i := range 5 {
		ids = append(ids, s.deliverPlain(t, e, fmt.Sprintf("paged %d", i)))
	}
	im := s.incomingConn(t, e)
	b, err := im.FetchIncoming(e.ctx, provider.FetchRequest{Max: 2})
	if err != nil {
		t.Fatalf("FetchIncoming: %v", err)
	}
	if len(b.Emails) == 0 || len(b.Emails) > 2 || !b.More {
		t.Errorf("first batch of 5 with Max 2: %d emails, More %v; want 1–2 and More", len(b.Emails), b.More)
	}
	rest, cursor := fetchAll(t, e.ctx, im, provider.FetchRequest{Cursor: b.Cursor, Max: 2})
	wantIDs(t, "all batches", append(b.Emails, rest...), ids...)
	after, _ := fetchAll(t, e.ctx, im, provider.FetchRequest{Cursor: cursor, Max: 2})
	wantIDs(t, "after the last batch", after)
}

// testSince checks that messages received before Since are left out.
func (s *suite) testSince(t *testing.T, e *env) {
	a, b := s.deliverPlain(t, e, "since 1"), s.deliverPlain(t, e, "since 2")
	im := s.incomingConn(t, e)
	future, _ := fetchAll(t, e.ctx, im, provider.FetchRequest{Since: time.Now().Add(48 * time.Hour)})
	wantIDs(t, "Since two days ahead", future)
	past, _ := fetchAll(t, e.ctx, im, provider.FetchRequest{Since: time.Now().Add(-48 * time.Hour)})
	wantIDs(t, "Since two days ago", past, a, b)
}

// testSinceDated checks Since against messages the harness dates in the past.
func (s *suite) testSinceDated(t *testing.T, e *env) {
	dd, ok := s.h.(DatedDeliverer)
	if !ok {
		t.Skip("the harness is not a DatedDeliverer")
	}
	now := time.Now()
	deliver := func(subject string, received time.Time) string {
		id := s.messageID()
		h := append(e.headers(id, subject, received), "Content-Type: text/plain; charset=utf-8")
		if err := dd.DeliverAt(e.ctx, e.target, raw(h, "Dated.\n"), received); err != nil {
			t.Fatalf("DeliverAt: %v", err)
		}
		return id
	}
	deliver("old", now.AddDate(0, 0, -30))
	recent := deliver("recent", now.Add(-time.Hour))
	emails, _ := fetchAll(t, e.ctx, s.incomingConn(t, e), provider.FetchRequest{Since: now.AddDate(0, 0, -10)})
	wantIDs(t, "Since ten days ago", emails, recent)
}

// testScreen checks screening: headers only, rejected messages not returned, and the
// cursor past them all.
func (s *suite) testScreen(t *testing.T, e *env) {
	keep1, reject, keep2 := s.deliverPlain(t, e, "keep 1"), s.deliverPlain(t, e, "reject 2"), s.deliverPlain(t, e, "keep 3")
	_ = s.deliverWithAttachment(t, e, []byte("rejected attachment"))
	var seen []string
	screen := func(ctx context.Context, headers []*crmsync.Email) ([]bool, error) {
		v := make([]bool, len(headers))
		for i, m := range headers {
			seen = append(seen, m.MessageID)
			if m.TextBody != "" || m.HTMLBody != "" || len(m.Attachments) != 0 {
				t.Errorf("Screen got message %s with a body or attachments", m.MessageID)
			}
			if m.ProviderID == "" || m.MessageID == "" || m.Subject == "" || m.From.Email == "" {
				t.Errorf("Screen got message %+v without ProviderID, MessageID, Subject or From", m)
			}
			v[i] = strings.HasPrefix(m.Subject, "keep")
		}
		return v, nil
	}
	im := s.incomingConn(t, e)
	emails, cursor := fetchAll(t, e.ctx, im, provider.FetchRequest{Screen: screen})
	wantIDs(t, "screened fetch", emails, keep1, keep2)
	if !slices.Contains(seen, reject) {
		t.Errorf("Screen never saw message %s", reject)
	}
	seen = nil
	again, _ := fetchAll(t, e.ctx, im, provider.FetchRequest{Cursor: cursor, Screen: screen})
	wantIDs(t, "fetch after the screened batch", again)
	if len(seen) != 0 {
		t.Errorf("Screen saw %v again: the cursor must cover screened-out messages", seen)
	}
}

// testScreenError checks that a Screen error fails the fetch.
func (s *suite) testScreenError(t *testing.T, e *env) {
	s.deliverPlain(t, e, "screen error")
	boom := errors.New("conformance: screen failed")
	_, err := s.incomingConn(t, e).FetchIncoming(e.ctx, provider.FetchRequest{
		Screen: func(context.Context, []*crmsync.Email) ([]bool, error) { return nil, boom },
	})
	if !errors.Is(err, boom) {
		t.Errorf("FetchIncoming with a failing Screen = %v, want an error wrapping the Screen's", err)
	}
}

const moveFolder = "crmsync-conformance"

// testMove checks MoveToFolder and FetchRequest.Folders.
func (s *suite) testMove(t *testing.T, e *env) {
	stay, move := s.deliverPlain(t, e, "stays"), s.deliverPlain(t, e, "moves")
	p := s.dial(t, e)
	im, ok1 := p.(provider.IncomingMail)
	fm, ok2 := p.(provider.FolderMover)
	if !ok1 || !ok2 {
		t.Fatal("Capabilities.Folders is set but the connection is not a provider.IncomingMail and provider.FolderMover")
	}
	emails, _ := fetchAll(t, e.ctx, im, provider.FetchRequest{})
	got := byMessageID(t, emails)
	if got[move] == nil {
		t.Fatalf("message %s not fetched", move)
	}
	m := got[move]
	ref := provider.ItemRef{Folder: m.Folder, ID: m.ProviderID}
	if err := fm.MoveToFolder(e.ctx, ref, moveFolder); err != nil {
		t.Fatalf("MoveToFolder(%s, %s): %v", ref, moveFolder, err)
	}
	inbox, _ := fetchAll(t, e.ctx, im, provider.FetchRequest{})
	wantIDs(t, "inbox after the move", inbox, stay)
	both, _ := fetchAll(t, e.ctx, im, provider.FetchRequest{Folders: []string{moveFolder}})
	wantIDs(t, "inbox and the tracked folder", both, stay, move)
	if m := byMessageID(t, both)[move]; m != nil && m.Folder != moveFolder {
		t.Errorf("moved message has Folder %q, want %q", m.Folder, moveFolder)
	}
}

// testMoveNotFound checks that moving a message that is not there is a not-found error.
func (s *suite) testMoveNotFound(t *testing.T, e *env) {
	fm, ok := s.dial(t, e).(provider.FolderMover)
	if !ok {
		t.Fatal("Capabilities.Folders is set but the connection is not a provider.FolderMover")
	}
	err := fm.MoveToFolder(e.ctx, provider.ItemRef{Folder: Inbox, ID: "no-such-message-4711"}, moveFolder)
	if k := crmsync.KindOf(err); k != crmsync.KindNotFound {
		t.Errorf("MoveToFolder of a missing message = %v (kind %s), want kind not found", err, k)
	}
}

func (s *suite) outgoingConn(t *testing.T, e *env) provider.OutgoingMail {
	t.Helper()
	om, ok := s.dial(t, e).(provider.OutgoingMail)
	if !ok {
		t.Fatal("Capabilities.Outgoing is set but the connection is not a provider.OutgoingMail")
	}
	return om
}

// send sends a message from the mailbox to itself.
func (s *suite) send(t *testing.T, e *env, om provider.OutgoingMail, subject string) (string, provider.SendReceipt) {
	t.Helper()
	id := s.messageID()
	self := crmsync.Address{Email: e.address()}
	r, err := om.Send(e.ctx, &crmsync.Email{
		MessageID: id, From: self, To: []crmsync.Address{self}, Subject: subject,
		TextBody: "Sent by the conformance suite.\n",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if r.MessageID != "" && r.MessageID != id {
		t.Errorf("SendReceipt.MessageID = %q, want %q", r.MessageID, id)
	}
	return id, r
}

func (s *suite) testSendFindSent(t *testing.T, e *env) {
	om := s.outgoingConn(t, e)
	id, r := s.send(t, e, om, "find me")
	if !r.Copied {
		t.Skip("the provider saved no copy to Sent Items (SendReceipt.Copied is false)")
	}
	found, err := eventually(e.ctx, s.caps.DeliveryWait, func() (bool, error) { return om.FindSent(e.ctx, id) })
	if err != nil || !found {
		t.Errorf("FindSent(%s) after Send = %v, %v; want true", id, found, err)
	}
}

func (s *suite) testFindSentUnknown(t *testing.T, e *env) {
	om := s.outgoingConn(t, e)
	found, err := om.FindSent(e.ctx, s.messageID())
	if err != nil || found {
		t.Errorf("FindSent of a Message-ID never sent = %v, %v; want false, nil", found, err)
	}
}

func (s *suite) testSendDelivers(t *testing.T, e *env) {
	om := s.outgoingConn(t, e)
	im, ok := om.(provider.IncomingMail)
	if !ok {
		t.Skip("the connection is not also a provider.IncomingMail")
	}
	id, _ := s.send(t, e, om, "round trip")
	var got *crmsync.Email
	found, err := eventually(e.ctx, s.caps.DeliveryWait, func() (bool, error) {
		b, err := im.FetchIncoming(e.ctx, provider.FetchRequest{})
		if err != nil {
			return false, err
		}
		for _, m := range b.Emails {
			if m.MessageID == id {
				got = m
			}
		}
		return got != nil, nil
	})
	if err != nil || !found {
		t.Fatalf("message %s sent to the mailbox itself never arrived: %v", id, err)
	}
	if got.Subject != "round trip" || !strings.Contains(got.TextBody, "Sent by the conformance suite.") {
		t.Errorf("arrived message: Subject %q, TextBody %q", got.Subject, got.TextBody)
	}
}
