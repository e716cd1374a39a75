package imap_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailparse"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/schedule"
)

func TestFetchFromNilCursor(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	raw := "From: =?UTF-8?Q?Bj=C3=B6rn?= <bjorn@example.test>\r\n" +
		"To: Ann <ann@example.test>, carol@example.test\r\n" +
		"Cc: dave@example.test\r\n" +
		"Reply-To: replies@example.test\r\n" +
		"Subject: =?UTF-8?B?w5xiZXIgZGllIFJlY2hudW5n?=\r\n" +
		"Date: Tue, 07 May 2024 08:30:00 +0200\r\n" +
		"Message-ID: <abc-1@example.test>\r\n" +
		"In-Reply-To: <crm-7@crm.example>\r\n" +
		"References: <crm-1@crm.example> <crm-7@crm.example>\r\n" +
		"Thread-Index: AQHaoBcDEFGH\r\n" +
		"Content-Type: text/plain; charset=iso-8859-1\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		"Gr=FC=DFe aus M=FCnchen\r\n"
	received := time.Date(2024, 5, 7, 6, 31, 0, 0, time.UTC)
	require.NoError(t, h.srv.DeliverAt(ann, []byte(raw), received))
	h.deliver(t, 2, 2)

	b := h.fetch(t, provider.FetchRequest{})
	require.Len(t, b.Emails, 3)
	assert.Empty(t, b.Failed)
	assert.False(t, b.More)
	assert.NotEmpty(t, b.Cursor)

	e := b.Emails[0]
	uv, err := h.srv.UIDValidity(ann, "INBOX")
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("INBOX/%d/1", uv), e.ProviderID)
	assert.Equal(t, "INBOX", e.Folder)
	assert.Equal(t, crmsync.DirectionIncoming, e.Direction)
	assert.Equal(t, "abc-1@example.test", e.MessageID)
	assert.Equal(t, "crm-7@crm.example", e.InReplyTo)
	assert.Equal(t, []string{"crm-1@crm.example", "crm-7@crm.example"}, e.References)
	assert.Equal(t, "AQHaoBcDEFGH", e.ThreadIndex)
	assert.Equal(t, crmsync.Address{Name: "Björn", Email: "bjorn@example.test"}, e.From)
	assert.Equal(t, []crmsync.Address{{Name: "Ann", Email: ann}, {Email: "carol@example.test"}}, e.To)
	assert.Equal(t, []crmsync.Address{{Email: "dave@example.test"}}, e.Cc)
	assert.Equal(t, []crmsync.Address{{Email: "replies@example.test"}}, e.ReplyTo)
	assert.Equal(t, "Über die Rechnung", e.Subject)
	assert.True(t, e.SentAt.Equal(time.Date(2024, 5, 7, 6, 30, 0, 0, time.UTC)), e.SentAt)
	assert.True(t, e.ReceivedAt.Equal(received), e.ReceivedAt)
	assert.Equal(t, int64(len(raw)), e.Size)
	assert.Equal(t, "Grüße aus München", strings.TrimSpace(e.TextBody))
	assert.Equal(t, ids(2, 2), messageIDs(b.Emails[1:]))

	// Fetching never sets \Seen.
	msgs, err := h.srv.Messages(ann, "INBOX")
	require.NoError(t, err)
	for _, m := range msgs {
		assert.NotContains(t, m.Flags, `\Seen`)
	}
}

func TestHeadersFirst(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 4)
	before := h.srv.Stats().BodyFetches

	var screened []*crmsync.Email
	b := h.fetch(t, provider.FetchRequest{Screen: func(ctx context.Context, headers []*crmsync.Email) ([]bool, error) {
		screened = headers
		verdicts := make([]bool, len(headers))
		for i, e := range headers {
			verdicts[i] = e.MessageID == "m2@example.test" || e.MessageID == "m4@example.test"
		}
		return verdicts, nil
	}})

	require.Len(t, screened, 4)
	for _, e := range screened[:1] { // m1 was screened out: it stays header-only
		assert.Empty(t, e.TextBody)
		assert.Empty(t, e.HTMLBody)
		assert.Empty(t, e.Attachments)
		assert.NotEmpty(t, e.ProviderID)
		assert.Equal(t, "message 1", e.Subject)
		assert.NotZero(t, e.Size)
	}
	assert.Equal(t, []string{"m2@example.test", "m4@example.test"}, messageIDs(b.Emails))
	assert.Equal(t, "body of message 2\r\n", b.Emails[0].TextBody)
	assert.Equal(t, 2, h.srv.Stats().BodyFetches-before, "only accepted messages are fetched in full")

	// The cursor covers the screened-out messages too.
	again := h.fetch(t, provider.FetchRequest{Cursor: b.Cursor})
	assert.Empty(t, again.Emails)
}

func TestScreenSeesNoBodies(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 2)
	b := h.fetch(t, provider.FetchRequest{Screen: func(ctx context.Context, headers []*crmsync.Email) ([]bool, error) {
		for _, e := range headers {
			if e.TextBody != "" || e.HTMLBody != "" || e.Attachments != nil {
				return nil, errors.New("screen saw a body")
			}
		}
		return []bool{true, true}, nil
	}})
	assert.Len(t, b.Emails, 2)
}

func TestScreenError(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 1)
	boom := errors.New("store unavailable")
	c := h.conn(t)
	_, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Screen: func(context.Context, []*crmsync.Email) ([]bool, error) {
		return nil, boom
	}})
	assert.ErrorIs(t, err, boom)
	assert.Same(t, boom, err, "the screen's error comes back as it is")

	_, err = c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Screen: func(context.Context, []*crmsync.Email) ([]bool, error) {
		return []bool{true, false}, nil
	}})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
}

func TestCursorIdempotence(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 3)
	first := h.fetch(t, provider.FetchRequest{})
	require.Len(t, first.Emails, 3)

	second := h.fetch(t, provider.FetchRequest{Cursor: first.Cursor})
	assert.Empty(t, second.Emails)
	assert.False(t, second.More)

	// Replaying the first cursor (a crash before commit) returns the same messages.
	replay := h.fetch(t, provider.FetchRequest{})
	assert.Equal(t, messageIDs(first.Emails), messageIDs(replay.Emails))

	h.deliver(t, 4, 1)
	third := h.fetch(t, provider.FetchRequest{Cursor: second.Cursor})
	assert.Equal(t, ids(4, 1), messageIDs(third.Emails))
}

func TestBadCursor(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	c := h.conn(t)
	for _, cur := range []string{"not json", `{"v":99,"f":{}}`} {
		_, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Cursor: []byte(cur)})
		assert.Equal(t, crmsync.KindCursorExpired, crmsync.KindOf(err), cur)
	}
}

// TestNoChangeCycleIsConstant checks the round trips of a cycle with no new mail: one
// LOGIN and one STATUS per folder (pipelined), whatever the mailbox's size.
func TestNoChangeCycleIsConstant(t *testing.T) {
	cost := func(messages int) map[string]int {
		h := newHarness(t, mailtest.Config{})
		require.NoError(t, h.srv.CreateMailbox(ann, "Projects"))
		h.deliver(t, 1, messages)
		req := provider.FetchRequest{Folders: []string{"Projects"}, Max: messages + 1}
		b := h.fetch(t, req)
		require.Len(t, b.Emails, messages)
		req.Cursor = b.Cursor
		before := h.srv.Stats()
		again := h.fetch(t, req)
		require.Empty(t, again.Emails)
		after := h.srv.Stats()
		diff := make(map[string]int)
		for k, v := range after.IMAPCommands {
			if d := v - before.IMAPCommands[k]; d != 0 {
				diff[k] = d
			}
		}
		assert.Zero(t, after.BodyFetches-before.BodyFetches)
		return diff
	}
	small, large := cost(3), cost(300)
	assert.Equal(t, map[string]int{"LOGIN": 1, "STATUS": 2}, small)
	assert.Equal(t, small, large)
}

func TestMaxPaging(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 7)
	var got []string
	var cursor []byte
	for i, want := range []struct {
		n    int
		more bool
	}{{3, true}, {3, true}, {1, false}} {
		b := h.fetch(t, provider.FetchRequest{Cursor: cursor, Max: 3})
		require.Len(t, b.Emails, want.n, "page %d", i)
		assert.Equal(t, want.more, b.More, "page %d", i)
		got = append(got, messageIDs(b.Emails)...)
		cursor = b.Cursor
	}
	assert.Equal(t, ids(1, 7), got, "lowest UIDs first, each once")
}

func TestMaxCountsScreenedOut(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 5)
	reject := func(_ context.Context, headers []*crmsync.Email) ([]bool, error) {
		return make([]bool, len(headers)), nil
	}
	b := h.fetch(t, provider.FetchRequest{Max: 2, Screen: reject})
	assert.Empty(t, b.Emails)
	assert.True(t, b.More)
	b = h.fetch(t, provider.FetchRequest{Cursor: b.Cursor, Max: 10})
	assert.Equal(t, ids(3, 3), messageIDs(b.Emails), "the cursor advanced over the screened-out messages")
}

func TestMaxAcrossFolders(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	require.NoError(t, h.srv.CreateMailbox(ann, "Projects"))
	h.deliver(t, 1, 2)
	for i := 10; i < 13; i++ {
		require.NoError(t, h.srv.AppendAt(ann, "Projects", simple(i), time.Now()))
	}
	req := provider.FetchRequest{Folders: []string{"Projects"}, Max: 3}
	b := h.fetch(t, req)
	assert.Equal(t, append(ids(1, 2), "m10@example.test"), messageIDs(b.Emails))
	assert.True(t, b.More)
	req.Cursor = b.Cursor
	b = h.fetch(t, req)
	assert.Equal(t, ids(11, 2), messageIDs(b.Emails))
	assert.False(t, b.More)
}

func TestSince(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	since := time.Date(2024, 5, 10, 12, 0, 0, 0, time.UTC)
	dates := []time.Time{
		since.AddDate(0, 0, -10),    // m1: days before
		since.Add(-time.Hour),       // m2: the same day, an hour before
		since,                       // m3: exactly at the start
		since.Add(30 * time.Minute), // m4
		since.AddDate(0, 0, 2),      // m5
	}
	for i, d := range dates {
		require.NoError(t, h.srv.DeliverAt(ann, simple(i+1), d))
	}
	b := h.fetch(t, provider.FetchRequest{Since: since})
	assert.Equal(t, ids(3, 3), messageIDs(b.Emails))
	again := h.fetch(t, provider.FetchRequest{Since: since, Cursor: b.Cursor})
	assert.Empty(t, again.Emails)

	// A start in another time zone is the same instant.
	b = h.fetch(t, provider.FetchRequest{Since: since.In(time.FixedZone("UTC+14", 14*3600))})
	assert.Equal(t, ids(3, 3), messageIDs(b.Emails))
}

func TestUIDValidityChangeRestarts(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	require.NoError(t, h.srv.CreateMailbox(ann, "Projects"))
	for i := 1; i <= 2; i++ {
		require.NoError(t, h.srv.AppendAt(ann, "Projects", simple(i), time.Now()))
	}
	req := provider.FetchRequest{Folders: []string{"Projects"}}
	b := h.fetch(t, req)
	require.Equal(t, ids(1, 2), messageIDs(b.Emails))
	old := b.Emails[0].ProviderID

	// Recreating the folder gives it a new UIDVALIDITY; its messages come again (the
	// Store refuses the ones it has by Message-ID), with new provider ids.
	require.NoError(t, h.srv.DeleteMailbox(ann, "Projects"))
	require.NoError(t, h.srv.CreateMailbox(ann, "Projects"))
	for i := 1; i <= 3; i++ {
		require.NoError(t, h.srv.AppendAt(ann, "Projects", simple(i), time.Now()))
	}
	req.Cursor = b.Cursor
	c := h.conn(t)
	b2, err := c.FetchIncoming(ctxTimeout(t), req)
	require.NoError(t, err, "a changed UIDVALIDITY is not an error")
	assert.Equal(t, ids(1, 3), messageIDs(b2.Emails))
	assert.NotEqual(t, old, b2.Emails[0].ProviderID)

	req.Cursor = b2.Cursor
	assert.Empty(t, h.fetch(t, req).Emails)
}

func TestInboxUIDValidityChange(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 1)
	b := h.fetch(t, provider.FetchRequest{})
	require.Len(t, b.Emails, 1)
	require.NoError(t, h.srv.DeleteMailbox(ann, "INBOX"))
	require.NoError(t, h.srv.CreateMailbox(ann, "INBOX"))
	h.deliver(t, 1, 2)
	b = h.fetch(t, provider.FetchRequest{Cursor: b.Cursor})
	assert.Equal(t, ids(1, 2), messageIDs(b.Emails))
}

func TestTrackedFolder(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	require.NoError(t, h.srv.CreateMailbox(ann, "INBOX/Projects"))
	h.deliver(t, 1, 1)
	require.NoError(t, h.srv.AppendAt(ann, "INBOX/Projects", simple(2), time.Now()))
	require.NoError(t, h.srv.AppendAt(ann, "Trash", simple(3), time.Now()))

	b := h.fetch(t, provider.FetchRequest{Folders: []string{"INBOX/Projects", "inbox", "Gone"}})
	require.Equal(t, ids(1, 2), messageIDs(b.Emails), "untracked folders are not read")
	assert.Equal(t, "INBOX", b.Emails[0].Folder)
	assert.Equal(t, "INBOX/Projects", b.Emails[1].Folder)
	assert.True(t, strings.HasPrefix(b.Emails[1].ProviderID, "INBOX/Projects/"), b.Emails[1].ProviderID)

	// A folder tracked later is read from its start.
	require.NoError(t, h.srv.CreateMailbox(ann, "Later"))
	require.NoError(t, h.srv.AppendAt(ann, "Later", simple(4), time.Now()))
	b = h.fetch(t, provider.FetchRequest{Cursor: b.Cursor, Folders: []string{"INBOX/Projects", "Later"}})
	assert.Equal(t, ids(4, 1), messageIDs(b.Emails))
}

func TestMissingInbox(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	require.NoError(t, h.srv.DeleteMailbox(ann, "INBOX"))
	c := h.conn(t)
	_, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	assert.Equal(t, crmsync.KindNotFound, crmsync.KindOf(err))
	assert.ErrorIs(t, err, crmsync.ErrNotFound)
}

func TestFetchCanceled(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	h.deliver(t, 1, 2)
	c := h.conn(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := c.FetchIncoming(ctx, provider.FetchRequest{Screen: func(ctx context.Context, e []*crmsync.Email) ([]bool, error) {
		cancel()
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	assert.ErrorIs(t, err, context.Canceled)

	// The connection reopens for the next call.
	b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	require.NoError(t, err)
	assert.Len(t, b.Emails, 2)
}

func TestFetchWithFakeClock(t *testing.T) {
	// Delivery dates come from the server's clock; the provider compares them with
	// Since exactly.
	clock := schedule.NewFake(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	h := newHarness(t, mailtest.Config{Clock: clock})
	h.deliver(t, 1, 1)
	clock.Advance(time.Hour)
	h.deliver(t, 2, 1)
	b := h.fetch(t, provider.FetchRequest{Since: clock.Now()})
	assert.Equal(t, ids(2, 1), messageIDs(b.Emails))
}

// A message without a Message-ID keeps its identity when its folder's UIDVALIDITY
// changes: read again with a new provider id, it has the same (derived) message id, by
// which the Store refuses it the second time (storetest checks that refusal). Nothing is
// tracked twice.
func TestUIDValidityChangeWithoutMessageID(t *testing.T) {
	h := newHarness(t, mailtest.Config{})
	require.NoError(t, h.srv.CreateMailbox(ann, "Alerts"))
	bare := func(i int) []byte {
		return []byte(fmt.Sprintf("From: monitor@example.test\r\nTo: ann@example.test\r\nSubject: disk %d%% full\r\n"+
			"Date: Mon, 06 May 2024 10:00:00 +0000\r\n\r\nalert %d\r\n", 90+i, i))
	}
	for i := 1; i <= 2; i++ {
		require.NoError(t, h.srv.AppendAt(ann, "Alerts", bare(i), time.Now()))
	}
	req := provider.FetchRequest{Folders: []string{"Alerts"}}
	first := h.fetch(t, req)
	require.Len(t, first.Emails, 2)
	for _, e := range first.Emails {
		assert.True(t, strings.HasSuffix(e.MessageID, "@"+mailparse.NoMessageIDDomain), e.MessageID)
	}
	assert.NotEqual(t, first.Emails[0].MessageID, first.Emails[1].MessageID, "two messages, two ids")

	require.NoError(t, h.srv.DeleteMailbox(ann, "Alerts"))
	require.NoError(t, h.srv.CreateMailbox(ann, "Alerts"))
	for i := 1; i <= 3; i++ {
		require.NoError(t, h.srv.AppendAt(ann, "Alerts", bare(i), time.Now()))
	}
	req.Cursor = first.Cursor
	again := h.fetch(t, req)
	require.Len(t, again.Emails, 3, "the folder is read again from its start")
	assert.NotEqual(t, first.Emails[0].ProviderID, again.Emails[0].ProviderID)
	assert.Equal(t, messageIDs(first.Emails), messageIDs(again.Emails[:2]), "the same messages, the same ids")
	assert.NotContains(t, messageIDs(first.Emails), again.Emails[2].MessageID)
}
