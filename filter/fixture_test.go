package filter

import (
	"context"
	"encoding/base64"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// fixedClock is a Clock that always says t.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

var testNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// countingIndex counts the lookups made on a MemIndex.
type countingIndex struct {
	*MemIndex
	byID, byToken, byConv, bySubject atomic.Int32
	err                              error
}

func (c *countingIndex) EmailsByMessageID(ctx context.Context, ids []string) ([]*crmsync.Email, error) {
	c.byID.Add(1)
	if c.err != nil {
		return nil, c.err
	}
	return c.MemIndex.EmailsByMessageID(ctx, ids)
}

func (c *countingIndex) EmailsByTrackingToken(ctx context.Context, ts []string) (map[string][]*crmsync.Email, error) {
	c.byToken.Add(1)
	return c.MemIndex.EmailsByTrackingToken(ctx, ts)
}

func (c *countingIndex) EmailsByConversationID(ctx context.Context, ids []string) (map[string][]*crmsync.Email, error) {
	c.byConv.Add(1)
	return c.MemIndex.EmailsByConversationID(ctx, ids)
}

func (c *countingIndex) EmailsBySubjectHash(ctx context.Context, hs []string, since time.Time) (map[string][]*crmsync.Email, error) {
	c.bySubject.Add(1)
	return c.MemIndex.EmailsBySubjectHash(ctx, hs, since)
}

type countingDirectory struct {
	*MemDirectory
	calls atomic.Int32
}

func (c *countingDirectory) PartiesByAddress(ctx context.Context, as []string) (map[string][]Party, error) {
	c.calls.Add(1)
	return c.MemDirectory.PartiesByAddress(ctx, as)
}

type countingMailboxes struct {
	*MemMailboxes
	calls atomic.Int32
}

func (c *countingMailboxes) MailboxesByAddress(ctx context.Context, as []string) (map[string]*crmsync.Mailbox, error) {
	c.calls.Add(1)
	return c.MemMailboxes.MailboxesByAddress(ctx, as)
}

// world is a small CRM: three mailboxes, a directory, and a few CRM emails.
type world struct {
	ann, bob, support *crmsync.Mailbox
	index             *countingIndex
	dir               *countingDirectory
	mbs               *countingMailboxes
	root              string // the Thread-Index of the offer
}

func addr(s string) crmsync.Address { return crmsync.Address{Email: s} }

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{
		ann:     &crmsync.Mailbox{ID: "mb-ann", Address: "ann@crm.example", Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-ann"}},
		bob:     &crmsync.Mailbox{ID: "mb-bob", Address: "bob@crm.example", Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-bob"}},
		support: &crmsync.Mailbox{ID: "mb-support", Address: "support@crm.example", Owner: crmsync.Owner{Kind: crmsync.OwnerQueue, ID: "q-support"}},
	}
	mi, err := NewMemIndex(CorrelationConfig{})
	require.NoError(t, err)
	w.index = &countingIndex{MemIndex: mi}
	w.dir = &countingDirectory{MemDirectory: NewMemDirectory()}
	w.mbs = &countingMailboxes{MemMailboxes: NewMemMailboxes(w.ann, w.bob, w.support)}

	d := w.dir
	d.Add("ann@crm.example", Party{Kind: PartyUser, ID: "u-ann", OwnerID: "u-ann"})
	d.Add("bob@crm.example", Party{Kind: PartyUser, ID: "u-bob", OwnerID: "u-bob"})
	d.Add("support@crm.example", Party{Kind: PartyQueue, ID: "q-support"})
	d.Add("carl@customer.example", Party{Kind: PartyContact, ID: "c-carl", OwnerID: "u-ann"})
	d.Add("info@acme.example", Party{Kind: PartyAccount, ID: "a-acme", OwnerID: "u-bob"})
	d.Add("lena@lead.example", Party{Kind: PartyLead, ID: "l-lena", OwnerID: "u-bob"})
	d.Add("vendor@other.example", Party{Kind: PartyOther, ID: "o-vendor"})

	w.root = ThreadIndex{Start: testNow.Add(-48 * time.Hour), GUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}.String()
	mi.Add(&crmsync.Email{ID: "e-offer", MailboxID: "mb-ann", Direction: crmsync.DirectionOutgoing,
		MessageID: "offer@crm.example", Subject: "Offer for 20 chairs CRM:0001001", ThreadIndex: w.root,
		From: addr("ann@crm.example"), To: []crmsync.Address{addr("carl@customer.example")},
		Cc: []crmsync.Address{addr("lena@lead.example")}, RegardingID: "opp-1", CreatedAt: testNow.Add(-48 * time.Hour)})
	mi.Add(&crmsync.Email{ID: "e-meeting", MailboxID: "mb-ann", Direction: crmsync.DirectionOutgoing,
		MessageID: "meeting@crm.example", Subject: "Meeting", RegardingID: "acct-2", CreatedAt: testNow.Add(-24 * time.Hour)})
	mi.Add(&crmsync.Email{ID: "e-seen", MailboxID: "mb-ann", Direction: crmsync.DirectionIncoming,
		MessageID: "seen@customer.example", Subject: "Seen", CreatedAt: testNow.Add(-time.Hour)})
	mi.Add(&crmsync.Email{ID: "e-bobs", MailboxID: "mb-bob", Direction: crmsync.DirectionIncoming,
		MessageID: "bobs@customer.example", Subject: "For Bob", CreatedAt: testNow.Add(-time.Hour)})
	return w
}

func (w *world) screener(t testing.TB, mod func(*Config)) *Screener {
	t.Helper()
	cfg := Config{Index: w.index, Directory: w.dir, Mailboxes: w.mbs, Clock: fixedClock{testNow}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewScreener(cfg)
	require.NoError(t, err)
	return s
}

// childOf returns a Thread-Index answering parent.
func childOf(parent string) string {
	raw, _ := base64.StdEncoding.DecodeString(parent)
	return base64.StdEncoding.EncodeToString(append(raw, 0, 0, 0x10, 0, 0x51))
}

// message is one header of the shared set, by name.
type message struct {
	name  string
	email *crmsync.Email
}

// messages is the set every incoming option is tested against. All arrive in Ann's
// mailbox, addressed to Ann only.
func (w *world) messages() []message {
	to := []crmsync.Address{addr("ann@crm.example")}
	m := func(name, id, from, subject string, mod func(*crmsync.Email)) message {
		e := &crmsync.Email{MessageID: id, From: addr(from), To: to, Subject: subject, Folder: "INBOX"}
		if mod != nil {
			mod(e)
		}
		return message{name, e}
	}
	return []message{
		m("reply by in-reply-to", "r1@customer.example", "carl@customer.example", "RE: Offer for 20 chairs",
			func(e *crmsync.Email) { e.InReplyTo = "offer@crm.example" }),
		m("reply by references", "r2@web.example", "someone@web.example", "Re: Meeting",
			func(e *crmsync.Email) { e.References = []string{"unknown@x.example", "meeting@crm.example"} }),
		m("reply by token", "r3@web.example", "someone@web.example", "AW: Offer for 20 chairs CRM:0001001", nil),
		m("reply by thread-index", "r4@web.example", "someone@web.example", "RE: Angebot",
			func(e *crmsync.Email) { e.ThreadIndex = childOf(w.root) }),
		m("from contact", "n1@customer.example", "Carl@Customer.example", "New topic", nil),
		m("from lead", "n2@lead.example", "lena@lead.example", "Question", nil),
		m("from account", "n3@acme.example", "info@acme.example", "Invoice", nil),
		m("from other record", "n4@other.example", "vendor@other.example", "Catalogue", nil),
		m("from colleague", "n5@crm.example", "bob@crm.example", "Lunch?", nil),
		m("from stranger", "n6@web.example", "someone@web.example", "Hello", nil),
		m("invalid sender", "n7@web.example", "", "No sender", nil),
		m("duplicate", "seen@customer.example", "carl@customer.example", "Seen", nil),
		m("tracked by another mailbox", "bobs@customer.example", "carl@customer.example", "For Bob", nil),
	}
}

func headers(ms []message) []*crmsync.Email {
	out := make([]*crmsync.Email, len(ms))
	for i, m := range ms {
		out[i] = m.email
	}
	return out
}
