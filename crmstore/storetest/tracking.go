package storetest

import (
	"fmt"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// wantTracked fails unless r says which emails were new: new[i] for emails[i].
func (h *harness) wantTracked(r crmstore.TrackResult, emails []*crmsync.Email, new ...bool) {
	h.t.Helper()
	tracked := 0
	seen := map[string]bool{}
	for i, isNew := range new {
		id := r.IDs[i]
		if !isNew {
			if id != "" {
				h.t.Fatalf("email %d (%q) was tracked as %s, want a duplicate", i, emails[i].Subject, id)
			}
			continue
		}
		tracked++
		if id == "" || seen[id] {
			h.t.Fatalf("email %d (%q) got ID %q, want a new unique ID (IDs %q)", i, emails[i].Subject, id, r.IDs)
		}
		seen[id] = true
		if got := h.email(id); got.Subject != emails[i].Subject || got.ProviderID != emails[i].ProviderID {
			h.t.Fatalf("IDs[%d] = %s holds %q, want %q", i, id, got.Subject, emails[i].Subject)
		}
	}
	if r.Tracked != tracked || r.Duplicates != len(new)-tracked {
		h.t.Fatalf("Tracked %d, Duplicates %d; want %d and %d", r.Tracked, r.Duplicates, tracked, len(new)-tracked)
	}
}

var trackingTests = []test{
	{"SameProviderIDTwice", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		first := []*crmsync.Email{incoming("INBOX/1", "a@x", "first")}
		h.wantTracked(h.track(l, "c1", first...), first, true)
		again := []*crmsync.Email{incoming("INBOX/1", "", "again")}
		h.wantTracked(h.track(l, "c2", again...), again, false)
		if es := h.emailsOf("m1"); len(es) != 1 || es[0].Subject != "first" {
			h.t.Fatalf("mailbox holds %v, want only the first email", emailIDs(es))
		}
	}},
	{"SameMessageIDInAnotherFolder", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		first := []*crmsync.Email{incoming("INBOX/1", "a@x", "in inbox")}
		h.wantTracked(h.track(l, "c1", first...), first, true)
		moved := []*crmsync.Email{incoming("Archive/7", "a@x", "moved")}
		h.wantTracked(h.track(l, "c2", moved...), moved, false)
		if es := h.emailsOf("m1"); len(es) != 1 || es[0].ProviderID != "INBOX/1" {
			h.t.Fatalf("mailbox holds %v, want one email", emailIDs(es))
		}
	}},
	{"SameMessageIDInTwoMailboxes", func(h *harness) {
		l1 := h.leaseOn("m1", crmsync.Incoming)
		l2 := h.leaseOn("m2", crmsync.Incoming)
		e1 := []*crmsync.Email{incoming("INBOX/1", "shared@x", "to m1")}
		e2 := []*crmsync.Email{incoming("INBOX/1", "shared@x", "to m2")}
		h.wantTracked(h.track(l1, "c1", e1...), e1, true)
		h.wantTracked(h.track(l2, "c1", e2...), e2, true)
		es, err := h.s.EmailsByMessageID(h.ctx, []string{"shared@x"})
		h.must(err, "EmailsByMessageID")
		mailboxes := map[string]bool{}
		for _, e := range es {
			mailboxes[e.MailboxID] = true
		}
		if len(es) != 2 || !mailboxes["m1"] || !mailboxes["m2"] {
			h.t.Fatalf("EmailsByMessageID = %d emails in %v, want one in m1 and one in m2", len(es), mailboxes)
		}
	}},
	{"DuplicatesInOneBatch", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		batch := []*crmsync.Email{
			incoming("INBOX/1", "a@x", "A"),
			incoming("INBOX/1", "b@x", "same provider ID as A"),
			incoming("Sent/3", "a@x", "same Message-ID as A"),
			incoming("INBOX/2", "c@x", "D"),
			incoming("INBOX/4", "", "no Message-ID"),
			incoming("", "", "no identity"),
			incoming("", "", "no identity either"),
		}
		h.wantTracked(h.track(l, "c1", batch...), batch, true, false, false, true, true, true, true)
		if es := h.emailsOf("m1"); len(es) != 5 {
			h.t.Fatalf("mailbox holds %d emails, want 5", len(es))
		}
	}},
	{"EmailsBelongToTheLeasedMailbox", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		batch := []*crmsync.Email{incoming("INBOX/1", "a@x", "A")}
		batch[0].MailboxID = "m1"
		r := h.track(l, "c1", batch...)
		if got := h.email(r.IDs[0]); got.MailboxID != "m1" || got.MessageID != "a@x" || got.From.Email != "sender@example.org" {
			h.t.Fatalf("tracked email = %+v", got)
		}
	}},
	{"CursorCommittedWithEmails", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		c, err := h.s.ClaimDue(h.ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "other", Now: base, LeaseFor: leaseFor, Limit: 10})
		h.must(err, "ClaimDue")
		if len(c) != 0 {
			h.t.Fatalf("a held mailbox-workload was claimed again")
		}
		h.track(l, "cursor-1", incoming("INBOX/1", "a@x", "A"))
		h.finish(l, base.Add(5*time.Minute))
		next := h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(5*time.Minute))
		h.wantCursor(next, "cursor-1")
		h.track(next.Lease, "cursor-2", incoming("INBOX/2", "b@x", "B"))
		h.track(next.Lease, "cursor-3") // an empty batch still moves the cursor
		h.finish(next.Lease, base.Add(10*time.Minute))
		h.wantCursor(h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(10*time.Minute)), "cursor-3")
	}},
	{"FirstClaimHasNoCursor", func(h *harness) {
		h.addDue("m1", crmsync.Incoming, base)
		c := h.claimOnly("m1", crmsync.Incoming, "engine", base)
		h.wantCursor(c, "")
		if c.State.Failures != 0 || c.State.Load != 0 {
			h.t.Fatalf("first claim's state = %+v, want zero", c.State)
		}
	}},
	{"LostLeaseWritesNothing", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.track(l, "c1", incoming("INBOX/1", "a@x", "A"))
		h.finish(l, base.Add(5*time.Minute))

		// A claims with a one-minute lease, which expires; B claims after it.
		a := h.claimShort("m1", "A", base.Add(5*time.Minute), time.Minute)
		b := h.claimShort("m1", "B", base.Add(7*time.Minute), time.Minute)
		if b.Token <= a.Token {
			h.t.Fatalf("B's token %d is not above A's %d", b.Token, a.Token)
		}
		h.wantCursor(b, "c1")
		r, err := h.s.TrackIncoming(h.ctx, a.Lease, []*crmsync.Email{incoming("INBOX/2", "late@x", "late")}, []byte("c2"))
		h.wantErr(err, crmstore.ErrLeaseLost, "TrackIncoming with an expired and reclaimed lease")
		if r.Tracked != 0 {
			h.t.Fatalf("a refused TrackIncoming reports %d tracked", r.Tracked)
		}
		if es := h.emailsOf("m1"); len(es) != 1 {
			h.t.Fatalf("a lost lease wrote emails: mailbox holds %d", len(es))
		}
		if es, err := h.s.EmailsByMessageID(h.ctx, []string{"late@x"}); err != nil || len(es) != 0 {
			h.t.Fatalf("EmailsByMessageID(late@x) = %d emails, %v; want none", len(es), err)
		}
		h.finish(b.Lease, base.Add(8*time.Minute))
		c := h.claimOnly("m1", crmsync.Incoming, "C", base.Add(8*time.Minute))
		h.wantCursor(c, "c1")
		// The email A could not write is still new for the next holder.
		again := []*crmsync.Email{incoming("INBOX/2", "late@x", "late")}
		h.wantTracked(h.track(c.Lease, "c2", again...), again, true)
	}},
	{"ConcurrentCycles", func(h *harness) {
		const mailboxes, workers, rounds = 8, 4, 3
		for i := range mailboxes {
			h.addDue(fmt.Sprintf("m%d", i), crmsync.Incoming, base)
		}
		for round := range rounds {
			now := base.Add(time.Duration(round) * time.Minute)
			var wg sync.WaitGroup
			for w := range workers {
				owner := fmt.Sprintf("engine-%d", w)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 10 * mailboxes {
						cs, err := h.s.ClaimDue(h.ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: owner, Now: now, LeaseFor: leaseFor, Limit: 2})
						if err != nil || len(cs) == 0 {
							if err != nil {
								h.t.Errorf("ClaimDue: %v", err)
							}
							return
						}
						for _, c := range cs {
							own := fmt.Sprintf("%s-%d", c.MailboxID, round)
							batch := []*crmsync.Email{
								incoming("INBOX/"+own, own+"@x", own),
								incoming(fmt.Sprintf("INBOX/b%d", round), fmt.Sprintf("broadcast-%d@x", round), "broadcast"),
							}
							r, err := h.s.TrackIncoming(h.ctx, c.Lease, batch, []byte(fmt.Sprintf("r%d", round)))
							if err != nil || r.Tracked != 2 {
								h.t.Errorf("TrackIncoming(%s): %+v, %v", c.MailboxID, r, err)
							}
							err = h.s.FinishCycle(h.ctx, c.Lease, crmstore.CycleResult{At: now, Status: crmsync.StatusSuccess, Next: now.Add(time.Minute)})
							if err != nil {
								h.t.Errorf("FinishCycle(%s): %v", c.MailboxID, err)
							}
						}
					}
				}()
			}
			wg.Wait()
			es, err := h.s.EmailsByMessageID(h.ctx, []string{fmt.Sprintf("broadcast-%d@x", round)})
			h.must(err, "EmailsByMessageID")
			if len(es) != mailboxes {
				h.t.Fatalf("round %d: the broadcast is tracked %d times, want once in each of %d mailboxes", round, len(es), mailboxes)
			}
		}
		for i := range mailboxes {
			id := fmt.Sprintf("m%d", i)
			if es := h.emailsOf(id); len(es) != 2*rounds {
				h.t.Errorf("%s holds %d emails, want %d", id, len(es), 2*rounds)
			}
		}
		cs := h.claim(crmsync.Incoming, "engine", base.Add(time.Hour), 100)
		if len(cs) != mailboxes {
			h.t.Fatalf("%d mailboxes due after the rounds, want %d", len(cs), mailboxes)
		}
		for _, c := range cs {
			h.wantCursor(c, fmt.Sprintf("r%d", rounds-1))
		}
	}},
	{"DeletedMailboxLeaseLost", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.must(h.s.DeleteMailbox(h.ctx, "m1"), "DeleteMailbox")
		_, err := h.s.TrackIncoming(h.ctx, l, []*crmsync.Email{incoming("INBOX/1", "a@x", "A")}, []byte("c1"))
		h.wantErr(err, crmstore.ErrLeaseLost, "TrackIncoming after DeleteMailbox")
		if es := h.emailsOf("m1"); len(es) != 0 {
			h.t.Fatalf("a lost lease wrote %d emails", len(es))
		}
	}},
	{"ReturnedEmailsAreCopies", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		in := incoming("INBOX/1", "a@x", "A")
		r := h.track(l, "c1", in)
		in.Subject = "changed input"
		in.To[0].Email = "changed@input"
		got := h.email(r.IDs[0])
		got.Subject = "changed output"
		got.To[0].Email = "changed@output"
		again := h.email(r.IDs[0])
		if again.Subject != "A" || again.To[0].Email != "someone@example.com" {
			h.t.Fatalf("the store shares emails with its callers: %+v", again)
		}
	}},
}

// claimShort claims mailbox id's incoming workload at now for owner with lease d.
func (h *harness) claimShort(id, owner string, now time.Time, d time.Duration) *crmstore.Claim {
	h.t.Helper()
	cs, err := h.s.ClaimDue(h.ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: owner, Now: now, LeaseFor: d, Limit: 10})
	h.must(err, "ClaimDue")
	if len(cs) != 1 || cs[0].MailboxID != id || cs[0].Owner != owner {
		h.t.Fatalf("ClaimDue at %v for %s = %v, want %s", now.Sub(base), owner, claimIDs(cs), id)
	}
	if !cs[0].Expires.Equal(now.Add(d)) {
		h.t.Fatalf("lease expires %v, want %v", cs[0].Expires, now.Add(d))
	}
	return cs[0]
}
