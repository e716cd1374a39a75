package storetest

import (
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// wantConflict fails unless err is a mapping conflict with mailbox heldBy of heldByOwner.
func (h *harness) wantConflict(err error, heldBy, heldByOwner string, sameOwner bool) {
	h.t.Helper()
	if !errors.Is(err, crmsync.ErrMappingConflict) {
		h.t.Fatalf("got error %v, want a mapping conflict", err)
	}
	var ce *crmsync.MappingConflictError
	if !errors.As(err, &ce) {
		h.t.Fatalf("error %v is not a *crmsync.MappingConflictError", err)
	}
	if ce.HeldBy != heldBy || ce.HeldByOwner.ID != heldByOwner || ce.SameOwner != sameOwner {
		h.t.Fatalf("conflict = %+v, want HeldBy %s of %s, SameOwner %v", ce, heldBy, heldByOwner, sameOwner)
	}
}

func (h *harness) wantGone(id string) {
	h.t.Helper()
	if _, err := h.s.Mailbox(h.ctx, id); !errors.Is(err, crmsync.ErrNotFound) {
		h.t.Fatalf("Mailbox(%s): got %v, want it deleted", id, err)
	}
}

var mappingTests = []test{
	{"OwnerHasAMailbox", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		_, err := h.s.MapMailbox(h.ctx, newMailbox("m2", "alice"), false)
		h.wantConflict(err, "m1", "alice", true)
		var ce *crmsync.MappingConflictError
		errors.As(err, &ce)
		if ce.Owner.ID != "alice" || ce.Owner.Kind != crmsync.OwnerUser {
			h.t.Fatalf("conflict Owner = %v, want the owner being mapped", ce.Owner)
		}
		h.wantGone("m2")
		if got := h.mailbox("m1"); got.Owner.ID != "alice" {
			h.t.Fatalf("m1 changed: %+v", got)
		}
	}},
	{"AddressHeldByAnotherOwner", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		m2 := newMailbox("m2", "bob")
		m2.Address = "M1@Example.com"
		_, err := h.s.MapMailbox(h.ctx, m2, false)
		h.wantConflict(err, "m1", "alice", false)
		var ce *crmsync.MappingConflictError
		errors.As(err, &ce)
		if !strings.EqualFold(ce.Address, "m1@example.com") || ce.Owner.ID != "bob" {
			h.t.Fatalf("conflict = %+v, want the address and owner being mapped", ce)
		}
		h.wantGone("m2")
	}},
	{"UserAndQueueAreDifferentOwners", func(h *harness) {
		h.add(newMailbox("m1", "x"))
		q := newMailbox("m2", "x")
		q.Owner.Kind = crmsync.OwnerQueue
		h.add(q)
	}},
	{"RemapSameMailbox", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		again := newMailbox("m1", "alice")
		again.Address = "M1@EXAMPLE.com"
		again.IncomingOption = crmsync.IncomingAll
		h.add(again)
		if got := h.mailbox("m1"); got.IncomingOption != crmsync.IncomingAll {
			h.t.Fatalf("remap did not replace the mailbox: %+v", got)
		}
		moved := newMailbox("m1", "alice")
		moved.Address = "alice.new@example.com"
		h.add(moved)
		_, err := h.s.MailboxByAddress(h.ctx, "m1@example.com")
		h.wantErr(err, crmsync.ErrNotFound, "the old address after the mailbox moved")
		got, err := h.s.MailboxByAddress(h.ctx, "alice.new@example.com")
		h.must(err, "MailboxByAddress(new)")
		if got.ID != "m1" {
			h.t.Fatalf("new address maps to %s", got.ID)
		}
		h.add(newMailbox("m9", "bob")) // m9@example.com: unrelated, no conflict
		other := newMailbox("m2", "carol")
		other.Address = "m1@example.com" // freed by the move
		h.add(other)
	}},
	{"RemapKeepsScheduleAndCursor", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.track(l, "c1", incoming("INBOX/1", "a@x", "a"))
		h.finish(l, base.Add(5*time.Minute))
		again := newMailbox("m1", "u-m1")
		again.IncomingOption = crmsync.IncomingAll
		h.add(again)
		if cs := h.claim(crmsync.Incoming, "engine", base.Add(4*time.Minute), 10); len(cs) != 0 {
			h.t.Fatalf("remapped mailbox claimed before its next run: %v", claimIDs(cs))
		}
		c := h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(5*time.Minute))
		if !c.Due.Equal(base.Add(5 * time.Minute)) {
			h.t.Fatalf("Due = %v, want the schedule kept", c.Due)
		}
		h.wantCursor(c, "c1")
		if c.Mailbox.IncomingOption != crmsync.IncomingAll {
			h.t.Fatalf("claim carries the old mailbox: %+v", c.Mailbox)
		}
	}},
	{"TakeOverAddress", func(h *harness) {
		// m1 has a committed cursor and a lease held at the moment of the take-over.
		first := h.leaseOn("m1", crmsync.Incoming)
		h.track(first, "c1", incoming("INBOX/1", "a@x", "a"))
		h.finish(first, base)
		held := h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(time.Minute)).Lease
		h.schedule("m1", crmsync.Outgoing, base)

		m2 := newMailbox("m2", "bob")
		m2.Address = "M1@example.com"
		displaced, err := h.s.MapMailbox(h.ctx, m2, true)
		h.must(err, "MapMailbox with takeOver")
		if len(displaced) != 1 || displaced[0].ID != "m1" || displaced[0].Owner.ID != "u-m1" {
			h.t.Fatalf("displaced = %v, want m1", displaced)
		}
		h.wantGone("m1")
		got, err := h.s.MailboxByAddress(h.ctx, "m1@example.com")
		h.must(err, "MailboxByAddress")
		if got.ID != "m2" {
			h.t.Fatalf("address maps to %s, want m2", got.ID)
		}

		// The displaced mailbox's lease is lost and writes nothing.
		_, err = h.s.TrackIncoming(h.ctx, held, []*crmsync.Email{incoming("INBOX/2", "b@x", "b")}, []byte("c2"))
		h.wantErr(err, crmstore.ErrLeaseLost, "TrackIncoming with the displaced mailbox's lease")
		h.wantErr(h.s.RenewLease(h.ctx, held, base.Add(time.Hour)), crmstore.ErrLeaseLost, "RenewLease of the displaced mailbox")
		h.wantErr(h.s.FinishCycle(h.ctx, held, crmstore.CycleResult{At: base, Status: crmsync.StatusSuccess, Next: base}),
			crmstore.ErrLeaseLost, "FinishCycle of the displaced mailbox")
		// Its schedule is gone.
		for _, w := range crmsync.AllWorkloads() {
			if cs := h.claim(w, "engine", base.Add(time.Hour), 10); len(cs) != 0 {
				h.t.Fatalf("%v claims after take-over: %v", w, claimIDs(cs))
			}
		}
		// Its emails stay.
		if es := h.emailsOf("m1"); len(es) != 1 {
			h.t.Fatalf("the displaced mailbox has %d emails, want its 1 kept", len(es))
		}

		// Mapped again, m1 starts from nothing, and the old lease is still lost.
		back := newMailbox("m1", "u-m1")
		back.Address = "m1.again@example.com"
		h.add(back)
		h.schedule("m1", crmsync.Incoming, base.Add(time.Hour))
		c := h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(time.Hour))
		h.wantCursor(c, "")
		if c.State.Failures != 0 || c.Token == held.Token {
			h.t.Fatalf("remapped mailbox's claim = %+v, want fresh state and a new token", c)
		}
		// A second cycle, so that a token counted afresh for the new mailbox would
		// reach the old lease's and let it through.
		h.finish(c.Lease, base.Add(time.Hour))
		c = h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(time.Hour))
		if c.Token == held.Token {
			h.t.Fatalf("the remapped mailbox's lease has the displaced one's token %d", c.Token)
		}
		_, err = h.s.TrackIncoming(h.ctx, held, []*crmsync.Email{incoming("INBOX/2", "b@x", "b")}, []byte("c2"))
		h.wantErr(err, crmstore.ErrLeaseLost, "TrackIncoming with the old lease after the mailbox came back")
		if es := h.emailsOf("m1"); len(es) != 1 {
			h.t.Fatalf("a lost lease wrote emails: %d", len(es))
		}
	}},
	{"TakeOverOwner", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		displaced, err := h.s.MapMailbox(h.ctx, newMailbox("m2", "alice"), true)
		h.must(err, "MapMailbox with takeOver")
		h.wantIDs("displaced", mailboxIDs(displaced), []string{"m1"})
		h.wantGone("m1")
		_, err = h.s.MailboxByAddress(h.ctx, "m1@example.com")
		h.wantErr(err, crmsync.ErrNotFound, "the displaced mailbox's address")
		h.mailbox("m2")
	}},
	{"TakeOverBoth", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		h.add(newMailbox("m2", "bob"))
		m3 := newMailbox("m3", "alice")
		m3.Address = "m2@example.com"
		displaced, err := h.s.MapMailbox(h.ctx, m3, true)
		h.must(err, "MapMailbox with takeOver")
		ids := mailboxIDs(displaced)
		sort.Strings(ids)
		h.wantIDs("displaced", ids, []string{"m1", "m2"})
		h.wantGone("m1")
		h.wantGone("m2")
		all, err := h.s.ListMailboxes(h.ctx, crmstore.MailboxQuery{})
		h.must(err, "ListMailboxes")
		h.wantIDs("mailboxes", mailboxIDs(all), []string{"m3"})
	}},
	{"TakeOverWithoutConflict", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		displaced, err := h.s.MapMailbox(h.ctx, newMailbox("m2", "bob"), true)
		h.must(err, "MapMailbox")
		if len(displaced) != 0 {
			h.t.Fatalf("displaced %v without a conflict", mailboxIDs(displaced))
		}
		displaced, err = h.s.MapMailbox(h.ctx, newMailbox("m2", "bob"), true)
		h.must(err, "MapMailbox again")
		if len(displaced) != 0 {
			h.t.Fatalf("remapping a mailbox displaced %v", mailboxIDs(displaced))
		}
		h.mailbox("m1")
	}},
}
