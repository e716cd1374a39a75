package storetest

import (
	"slices"

	"github.com/crmsync/crmsync"
)

// The parties of emails (the sender and recipients and the CRM records they resolved
// to), which every store keeps as it was given: order, roles, addresses and records,
// resolved or not. A store may give back nil for an empty list.

var partyTests = []test{{"RoundTrip", partiesRoundTrip}}

// resolvedParties are the parties of a tracked email: a resolved sender and recipient,
// and an unresolved cc.
var resolvedParties = []crmsync.Party{
	{Role: crmsync.PartyFrom, Address: crmsync.Address{Name: "Carl", Email: "carl@customer.example"}, RecordKind: "contact", RecordID: "c-carl"},
	{Role: crmsync.PartyTo, Address: crmsync.Address{Email: "ann@example.com"}, RecordKind: "user", RecordID: "u-ann"},
	{Role: crmsync.PartyCc, Address: crmsync.Address{Name: "Nobody", Email: "nobody@example.org"}},
}

// wantParties fails unless email id, as Email and as ListEmails return it, has parties
// ps (nil and empty alike).
func (h *harness) wantParties(what, mailboxID, id string, ps []crmsync.Party) {
	h.t.Helper()
	if got := h.email(id).Parties; !slices.Equal(got, ps) {
		h.t.Fatalf("%s: Email(%s) has parties %+v, want %+v", what, id, got, ps)
	}
	for _, e := range h.emailsOf(mailboxID) {
		if e.ID == id {
			if !slices.Equal(e.Parties, ps) {
				h.t.Fatalf("%s: ListEmails gives email %s parties %+v, want %+v", what, id, e.Parties, ps)
			}
			return
		}
	}
	h.t.Fatalf("%s: ListEmails(%s) has no email %s", what, mailboxID, id)
}

func partiesRoundTrip(h *harness) {
	e := &crmsync.Email{MailboxID: "m1", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft, Subject: "Quote", CreatedAt: base,
		Parties: slices.Clone(resolvedParties)}
	h.must(h.s.CreateEmail(h.ctx, e), "CreateEmail")
	h.wantParties("CreateEmail", "m1", e.ID, resolvedParties)
	e.Parties[0].RecordID = "changed input"
	got := h.email(e.ID)
	got.Parties[1].RecordID = "changed copy"
	h.wantParties("the store shares parties with its callers", "m1", e.ID, resolvedParties)
	empty := &crmsync.Email{MailboxID: "m1", Status: crmsync.EmailDraft, CreatedAt: base, Parties: []crmsync.Party{}}
	h.must(h.s.CreateEmail(h.ctx, empty), "CreateEmail with no parties")
	h.wantParties("CreateEmail with no parties", "m1", empty.ID, nil)

	l := h.leaseOn("m2", crmsync.Incoming)
	in := incoming("INBOX/1", "reply@x", "RE: Quote")
	in.Parties = []crmsync.Party{resolvedParties[2], {Role: crmsync.PartyBcc, Address: crmsync.Address{Email: "lena@lead.example"}, RecordKind: "lead", RecordID: "l-lena"}}
	r := h.track(l, "c1", in, incoming("INBOX/2", "other@x", "no parties"))
	h.wantParties("TrackIncoming", "m2", r.IDs[0], in.Parties)
	h.wantParties("TrackIncoming without parties", "m2", r.IDs[1], nil)

	for _, step := range []struct {
		name string
		id   string
		to   []crmsync.Party
	}{
		{"set by UpdateEmail", empty.ID, resolvedParties[1:]},
		{"changed by UpdateEmail", e.ID, append(slices.Clone(resolvedParties[:1]), crmsync.Party{Role: crmsync.PartyTo, Address: crmsync.Address{Email: "info@acme.example"}, RecordKind: "account", RecordID: "a-acme"})},
		{"cleared by UpdateEmail", r.IDs[0], nil},
		{"emptied by UpdateEmail", e.ID, []crmsync.Party{}},
	} {
		got, err := h.s.UpdateEmail(h.ctx, step.id, func(x *crmsync.Email) error {
			x.Parties = slices.Clone(step.to)
			return nil
		})
		h.must(err, "UpdateEmail(%s)", step.id)
		if !slices.Equal(got.Parties, step.to) {
			h.t.Fatalf("parties %s: UpdateEmail returned %+v, want %+v", step.name, got.Parties, step.to)
		}
		h.wantParties("parties "+step.name, got.MailboxID, step.id, step.to)
	}
	// An update of other fields keeps the parties.
	_, err := h.s.UpdateEmail(h.ctx, empty.ID, func(x *crmsync.Email) error {
		x.RegardingID = "case-7"
		return nil
	})
	h.must(err, "UpdateEmail(%s)", empty.ID)
	h.wantParties("an update of other fields", "m1", empty.ID, resolvedParties[1:])
}
