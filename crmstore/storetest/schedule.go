package storetest

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// wantNextDue fails unless NextDue(w) is want (zero: none).
func (h *harness) wantNextDue(w crmsync.Workload, want time.Time) {
	h.t.Helper()
	got, ok, err := h.s.NextDue(h.ctx, w)
	h.must(err, "NextDue(%v)", w)
	switch {
	case want.IsZero() && ok:
		h.t.Fatalf("NextDue(%v) = %v, want none", w, got)
	case !want.IsZero() && (!ok || !got.Equal(want)):
		h.t.Fatalf("NextDue(%v) = %v, %v; want %v", w, got, ok, want)
	}
}

var scheduleTests = []test{
	{"ClaimsOnlyDueRunnableUnheld", func(h *harness) {
		notRunnable := func(id string, st crmsync.WorkloadState) {
			h.add(newMailbox(id, "u-"+id))
			h.must(h.s.SetWorkload(h.ctx, id, crmsync.Incoming, st, base.Add(-time.Minute)), "SetWorkload(%s)", id)
		}
		h.addDue("due-early", crmsync.Incoming, base.Add(-time.Minute))
		h.addDue("due-now", crmsync.Incoming, base)
		h.addDue("later", crmsync.Incoming, base.Add(time.Second))
		h.addDue("unscheduled", crmsync.Incoming, time.Time{})
		h.addDue("other-workload", crmsync.Outgoing, base.Add(-time.Minute))
		notRunnable("no-delivery", crmsync.WorkloadState{Method: crmsync.DeliveryNone, Test: crmsync.TestPassed})
		notRunnable("not-tested", crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestNotRun})
		notRunnable("test-failed", crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestFailed})

		cs := h.claim(crmsync.Incoming, "engine", base, 100)
		h.wantIDs("claimed", claimIDs(cs), []string{"due-early", "due-now"})
		for _, c := range cs {
			if c.Workload != crmsync.Incoming || c.Owner != "engine" || !c.Expires.Equal(base.Add(leaseFor)) {
				h.t.Fatalf("lease = %+v, want incoming for engine until %v", c.Lease, base.Add(leaseFor))
			}
			if c.Mailbox == nil || c.Mailbox.ID != c.MailboxID || c.Mailbox.Address != c.MailboxID+"@example.com" {
				h.t.Fatalf("claim of %s carries mailbox %+v", c.MailboxID, c.Mailbox)
			}
			if c.Profile == nil || c.Profile.ID != "p1" {
				h.t.Fatalf("claim of %s carries profile %+v, want p1", c.MailboxID, c.Profile)
			}
		}
		if !cs[0].Due.Equal(base.Add(-time.Minute)) || !cs[1].Due.Equal(base) {
			h.t.Fatalf("Due = %v, %v; want the scheduled runs", cs[0].Due, cs[1].Due)
		}
		if cs[0].Token == cs[1].Token {
			h.t.Fatalf("two claims share token %d", cs[0].Token)
		}
		if again := h.claim(crmsync.Incoming, "other", base, 100); len(again) != 0 {
			h.t.Fatalf("held mailbox-workloads were claimed again: %v", claimIDs(again))
		}
		h.wantIDs("outgoing claimed", claimIDs(h.claim(crmsync.Outgoing, "engine", base, 100)), []string{"other-workload"})
	}},
	{"EarliestFirstWithLimit", func(h *harness) {
		for _, i := range []int{3, 1, 5, 2, 4} {
			h.addDue(fmt.Sprintf("m%d", i), crmsync.Incoming, base.Add(time.Duration(i-6)*time.Minute))
		}
		h.wantIDs("first 2", claimIDs(h.claim(crmsync.Incoming, "engine", base, 2)), []string{"m1", "m2"})
		h.wantIDs("next 1", claimIDs(h.claim(crmsync.Incoming, "engine", base, 1)), []string{"m3"})
		h.wantIDs("rest", claimIDs(h.claim(crmsync.Incoming, "engine", base, 10)), []string{"m4", "m5"})
	}},
	{"WorkloadsAreLeasedApart", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		for _, w := range crmsync.AllWorkloads() {
			h.schedule("m1", w, base)
		}
		in := h.claimOnly("m1", crmsync.Incoming, "engine", base)
		out := h.claimOnly("m1", crmsync.Outgoing, "engine", base)
		act := h.claimOnly("m1", crmsync.ACT, "engine", base)
		h.finish(out.Lease, base.Add(time.Hour))
		h.must(h.s.RenewLease(h.ctx, in.Lease, base.Add(time.Hour)), "RenewLease(incoming) after outgoing finished")
		h.finish(act.Lease, base.Add(time.Hour))
		h.finish(in.Lease, base.Add(time.Hour))
	}},
	{"ClaimCarriesCopies", func(h *harness) {
		m := newMailbox("m1", "alice")
		m.TrackedFolders = []string{"INBOX/A"}
		h.add(m)
		h.schedule("m1", crmsync.Incoming, base)
		l := h.claimOnly("m1", crmsync.Incoming, "engine", base)
		h.track(l.Lease, "c1")
		h.finish(l.Lease, base)
		c := h.claimOnly("m1", crmsync.Incoming, "engine", base)
		c.Mailbox.TrackedFolders[0] = "changed"
		c.Mailbox.Incoming.Test = crmsync.TestFailed
		c.Profile.Name = "changed"
		c.State.Cursor[0] = 'X'
		if got := h.mailbox("m1"); got.TrackedFolders[0] != "INBOX/A" || !got.Incoming.Runnable() {
			h.t.Fatalf("changing a claim's mailbox changed the store: %+v", got)
		}
		if p, err := h.s.Profile(h.ctx, "p1"); err != nil || p.Name != "profile p1" {
			h.t.Fatalf("changing a claim's profile changed the store: %+v, %v", p, err)
		}
		h.finish(c.Lease, base)
		h.wantCursor(h.claimOnly("m1", crmsync.Incoming, "engine", base), "c1")
	}},
	{"TokensIncrease", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		last := l.Token
		for i := 1; i <= 3; i++ {
			h.finish(l, base)
			l = h.claimOnly("m1", crmsync.Incoming, "engine", base).Lease
			if l.Token <= last {
				h.t.Fatalf("claim %d has token %d, not above %d", i, l.Token, last)
			}
			last = l.Token
		}
	}},
	{"ExpiredLeaseIsReclaimed", func(h *harness) {
		h.addDue("m1", crmsync.Incoming, base)
		a := h.claimShort("m1", "A", base, time.Minute)
		if cs := h.claim(crmsync.Incoming, "B", base.Add(30*time.Second), 10); len(cs) != 0 {
			h.t.Fatalf("a live lease was claimed: %v", claimIDs(cs))
		}
		b := h.claimShort("m1", "B", base.Add(2*time.Minute), time.Minute)
		if b.Token <= a.Token {
			h.t.Fatalf("reclaim token %d is not above %d", b.Token, a.Token)
		}
		if !b.Due.Equal(base) {
			h.t.Fatalf("reclaimed Due = %v, want the original run %v", b.Due, base)
		}
		h.wantErr(h.s.RenewLease(h.ctx, a.Lease, base.Add(time.Hour)), crmstore.ErrLeaseLost, "old holder's RenewLease")
		_, err := h.s.TrackIncoming(h.ctx, a.Lease, nil, []byte("stale"))
		h.wantErr(err, crmstore.ErrLeaseLost, "old holder's TrackIncoming")
		h.wantErr(h.s.FinishCycle(h.ctx, a.Lease, crmstore.CycleResult{At: base, Status: crmsync.StatusSuccess, Next: base}),
			crmstore.ErrLeaseLost, "old holder's FinishCycle")
		h.must(h.s.RenewLease(h.ctx, b.Lease, base.Add(time.Hour)), "new holder's RenewLease")
		if cs := h.claim(crmsync.Incoming, "A", base.Add(30*time.Minute), 10); len(cs) != 0 {
			h.t.Fatalf("a renewed lease was claimed: %v", claimIDs(cs))
		}
		h.finish(b.Lease, base.Add(time.Hour))
		h.wantErr(h.s.FinishCycle(h.ctx, b.Lease, crmstore.CycleResult{At: base, Status: crmsync.StatusSuccess, Next: base}),
			crmstore.ErrLeaseLost, "FinishCycle twice")
	}},
	{"RenewKeepsTheLease", func(h *harness) {
		h.addDue("m1", crmsync.Incoming, base)
		a := h.claimShort("m1", "A", base, time.Minute)
		h.must(h.s.RenewLease(h.ctx, a.Lease, base.Add(10*time.Minute)), "RenewLease")
		if cs := h.claim(crmsync.Incoming, "B", base.Add(5*time.Minute), 10); len(cs) != 0 {
			h.t.Fatalf("a renewed lease was claimed at +5m: %v", claimIDs(cs))
		}
		h.track(a.Lease, "c1") // the renewed lease still writes
		b := h.claimShort("m1", "B", base.Add(11*time.Minute), time.Minute)
		h.wantCursor(b, "c1")
	}},
	{"ReleasedLeaseIsLost", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.finish(l, base.Add(time.Hour))
		h.wantErr(h.s.RenewLease(h.ctx, l, base.Add(time.Hour)), crmstore.ErrLeaseLost, "RenewLease after FinishCycle")
		_, err := h.s.TrackIncoming(h.ctx, l, []*crmsync.Email{incoming("INBOX/1", "a@x", "A")}, []byte("c1"))
		h.wantErr(err, crmstore.ErrLeaseLost, "TrackIncoming after FinishCycle")
		if es := h.emailsOf("m1"); len(es) != 0 {
			h.t.Fatalf("a released lease wrote %d emails", len(es))
		}
		h.addDue("m2", crmsync.Incoming, base)
		l2 := h.claimOnly("m2", crmsync.Incoming, "engine", base).Lease
		wrongToken, wrongOwner := l2, l2
		wrongToken.Token += 1000
		wrongOwner.Owner = "someone else"
		h.wantErr(h.s.RenewLease(h.ctx, wrongToken, base.Add(time.Hour)), crmstore.ErrLeaseLost, "RenewLease with a wrong token")
		h.wantErr(h.s.RenewLease(h.ctx, wrongOwner, base.Add(time.Hour)), crmstore.ErrLeaseLost, "RenewLease with a wrong owner")
		h.must(h.s.RenewLease(h.ctx, l2, base.Add(time.Hour)), "RenewLease with the right lease")
	}},
	{"NextDue", func(h *harness) {
		h.wantNextDue(crmsync.Incoming, time.Time{})
		h.addDue("m1", crmsync.Incoming, base.Add(10*time.Minute))
		h.addDue("m2", crmsync.Incoming, base.Add(5*time.Minute))
		h.addDue("m3", crmsync.Incoming, time.Time{})
		h.add(newMailbox("m4", "u-m4"))
		// m4 has a next run but is not runnable: it can never be claimed, so counting it
		// would have an engine wake for nothing, again and again.
		h.must(h.s.SetWorkload(h.ctx, "m4", crmsync.Incoming, crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync}, base), "SetWorkload(m4)")
		h.wantNextDue(crmsync.Incoming, base.Add(5*time.Minute))
		h.wantNextDue(crmsync.Outgoing, time.Time{})

		c2 := h.claimOnly("m2", crmsync.Incoming, "engine", base.Add(6*time.Minute))
		h.wantNextDue(crmsync.Incoming, base.Add(10*time.Minute))
		c1 := h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(11*time.Minute))
		// Everything is held. A store may report when the first lease expires, but
		// nothing sooner.
		if got, ok, err := h.s.NextDue(h.ctx, crmsync.Incoming); err != nil || ok && got.Before(c2.Expires) {
			h.t.Fatalf("NextDue with every workload held = %v, %v, %v", got, ok, err)
		}
		h.finish(c1.Lease, base.Add(20*time.Minute))
		h.wantNextDue(crmsync.Incoming, base.Add(20*time.Minute))
		h.finish(c2.Lease, base.Add(15*time.Minute))
		h.wantNextDue(crmsync.Incoming, base.Add(15*time.Minute))
		h.schedule("m2", crmsync.Incoming, time.Time{})
		h.wantNextDue(crmsync.Incoming, base.Add(20*time.Minute))
	}},
	{"FinishCycleRecordsOutcome", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.must(h.s.FinishCycle(h.ctx, l, crmstore.CycleResult{
			At: base.Add(time.Minute), Status: crmsync.StatusFailure, Err: "connection reset", ErrKind: crmsync.KindTransient,
			Failures: 2, Load: 7.5, Next: base.Add(6 * time.Minute),
		}), "FinishCycle(failure)")
		st := h.mailbox("m1").Incoming
		if st.Status != crmsync.StatusFailure || !st.StatusAt.Equal(base.Add(time.Minute)) ||
			st.LastError != "connection reset" || st.LastErrorKind != crmsync.KindTransient || !st.Runnable() {
			h.t.Fatalf("state after a failed cycle = %+v", st)
		}
		h.wantNextDue(crmsync.Incoming, base.Add(6*time.Minute))
		if cs := h.claim(crmsync.Incoming, "engine", base.Add(5*time.Minute), 10); len(cs) != 0 {
			h.t.Fatalf("claimed before the next run: %v", claimIDs(cs))
		}
		c := h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(6*time.Minute))
		if !c.Due.Equal(base.Add(6*time.Minute)) || c.State.Failures != 2 || c.State.Load != 7.5 {
			h.t.Fatalf("claim after a failed cycle: Due %v, state %+v", c.Due, c.State)
		}
		if c.Mailbox.Incoming.Status != crmsync.StatusFailure {
			h.t.Fatalf("claim carries status %v", c.Mailbox.Incoming.Status)
		}
		h.must(h.s.FinishCycle(h.ctx, c.Lease, crmstore.CycleResult{
			At: base.Add(7 * time.Minute), Status: crmsync.StatusSuccess, Load: 3, Next: base.Add(12 * time.Minute),
		}), "FinishCycle(success)")
		st = h.mailbox("m1").Incoming
		if st.Status != crmsync.StatusSuccess || !st.StatusAt.Equal(base.Add(7*time.Minute)) || st.LastError != "connection reset" {
			h.t.Fatalf("state after a success = %+v, want success with the last error kept", st)
		}
		c = h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(12*time.Minute))
		if c.State.Failures != 0 || c.State.Load != 3 {
			h.t.Fatalf("state after a success = %+v", c.State)
		}
	}},
	{"FinishCycleUnschedules", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.finish(l, time.Time{})
		h.wantNextDue(crmsync.Incoming, time.Time{})
		if cs := h.claim(crmsync.Incoming, "engine", base.Add(24*time.Hour), 10); len(cs) != 0 {
			h.t.Fatalf("an unscheduled workload was claimed: %v", claimIDs(cs))
		}
	}},
	{"FinishCycleDisables", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.must(h.s.FinishCycle(h.ctx, l, crmstore.CycleResult{
			At: base.Add(time.Minute), Status: crmsync.StatusFailure, Err: "invalid credentials", ErrKind: crmsync.KindAuth,
			Disable: true, Next: base.Add(5 * time.Minute),
		}), "FinishCycle(disable)")
		st := h.mailbox("m1").Incoming
		if st.Test != crmsync.TestFailed || st.TestError != "invalid credentials" || st.Runnable() ||
			st.Status != crmsync.StatusFailure || st.LastErrorKind != crmsync.KindAuth {
			h.t.Fatalf("state after a disabling failure = %+v", st)
		}
		h.wantNextDue(crmsync.Incoming, time.Time{})
		if cs := h.claim(crmsync.Incoming, "engine", base.Add(time.Hour), 10); len(cs) != 0 {
			h.t.Fatalf("a disabled workload was claimed: %v", claimIDs(cs))
		}
		// Test & Enable passes again.
		h.schedule("m1", crmsync.Incoming, base.Add(time.Hour))
		h.claimOnly("m1", crmsync.Incoming, "engine", base.Add(time.Hour))
	}},
	{"FinishCycleResetsCursor", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Incoming)
		h.track(l, "c1")
		h.finish(l, base)
		c := h.claimOnly("m1", crmsync.Incoming, "engine", base)
		h.wantCursor(c, "c1") // kept by a plain FinishCycle
		h.must(h.s.FinishCycle(h.ctx, c.Lease, crmstore.CycleResult{
			At: base, Status: crmsync.StatusFailure, Err: "uidvalidity changed", ErrKind: crmsync.KindCursorExpired,
			ResetCursor: true, Next: base,
		}), "FinishCycle(reset cursor)")
		h.wantCursor(h.claimOnly("m1", crmsync.Incoming, "engine", base), "")
	}},
	{"DisabledDuringCycleStaysUnscheduled", func(h *harness) {
		for _, tc := range []struct {
			id string
			st crmsync.WorkloadState
		}{
			{"test-failed", crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestFailed, TestError: "revoked"}},
			{"no-delivery", crmsync.WorkloadState{Method: crmsync.DeliveryNone, Test: crmsync.TestPassed}},
		} {
			l := h.leaseOn(tc.id, crmsync.Incoming)
			// Disabled while the cycle runs, even with a next run given: the lease
			// and the cursor are untouched.
			h.must(h.s.SetWorkload(h.ctx, tc.id, crmsync.Incoming, tc.st, base.Add(time.Minute)), "SetWorkload(%s)", tc.id)
			h.track(l, "c1")
			h.must(h.s.RenewLease(h.ctx, l, base.Add(leaseFor)), "RenewLease after SetWorkload")
			h.must(h.s.FinishCycle(h.ctx, l, crmstore.CycleResult{At: base, Status: crmsync.StatusSuccess, Next: base.Add(5 * time.Minute)}),
				"FinishCycle of %s", tc.id)
			st := h.mailbox(tc.id).Incoming
			if st.Runnable() || st.Method != tc.st.Method || st.Test != tc.st.Test {
				h.t.Fatalf("%s: FinishCycle re-enabled the workload: %+v", tc.id, st)
			}
		}
		h.wantNextDue(crmsync.Incoming, time.Time{})
		if cs := h.claim(crmsync.Incoming, "engine", base.Add(time.Hour), 10); len(cs) != 0 {
			h.t.Fatalf("workloads disabled during a cycle were rescheduled: %v", claimIDs(cs))
		}
		// Mapped again as runnable, the mailbox keeps its schedule: none.
		h.add(newMailbox("no-delivery", "u-no-delivery"))
		if cs := h.claim(crmsync.Incoming, "engine", base.Add(time.Hour), 10); len(cs) != 0 {
			h.t.Fatalf("FinishCycle kept a next run for a disabled workload: %v", claimIDs(cs))
		}
		// Enabled again, the cursor committed before is there.
		h.schedule("test-failed", crmsync.Incoming, base.Add(time.Hour))
		h.wantCursor(h.claimOnly("test-failed", crmsync.Incoming, "engine", base.Add(time.Hour)), "c1")
	}},
	{"SetWorkload", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		st := crmsync.WorkloadState{
			Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestPassed, TestedAt: base,
			Status: crmsync.StatusFailure, StatusAt: base, LastError: "x", LastErrorKind: crmsync.KindThrottled,
		}
		h.must(h.s.SetWorkload(h.ctx, "m1", crmsync.ACT, st, base), "SetWorkload")
		got := h.mailbox("m1")
		if got.ACT.Test != crmsync.TestPassed || !got.ACT.TestedAt.Equal(base) || got.ACT.Status != crmsync.StatusFailure ||
			got.ACT.LastError != "x" || got.ACT.LastErrorKind != crmsync.KindThrottled || !got.Incoming.Runnable() {
			h.t.Fatalf("after SetWorkload: %+v", got)
		}
		h.wantNextDue(crmsync.ACT, base)
		h.must(h.s.SetWorkload(h.ctx, "m1", crmsync.ACT, st, time.Time{}), "SetWorkload(unschedule)")
		h.wantNextDue(crmsync.ACT, time.Time{})
		if cs := h.claim(crmsync.ACT, "engine", base.Add(time.Hour), 10); len(cs) != 0 {
			h.t.Fatalf("an unscheduled workload was claimed")
		}
		h.must(h.s.SetWorkload(h.ctx, "m1", crmsync.ACT, st, base.Add(2*time.Minute)), "SetWorkload(reschedule)")
		c := h.claimOnly("m1", crmsync.ACT, "engine", base.Add(time.Hour))
		if !c.Due.Equal(base.Add(2 * time.Minute)) {
			h.t.Fatalf("Due = %v", c.Due)
		}
		// Rescheduled while held: still held.
		h.must(h.s.SetWorkload(h.ctx, "m1", crmsync.ACT, st, base), "SetWorkload while held")
		if cs := h.claim(crmsync.ACT, "other", base.Add(time.Hour), 10); len(cs) != 0 {
			h.t.Fatalf("SetWorkload released a held lease")
		}
		h.must(h.s.CommitItems(h.ctx, c.Lease, nil, []byte("act-1")), "CommitItems with the lease kept by SetWorkload")
	}},
	{"ConcurrentClaimsAreExclusive", func(h *harness) {
		const mailboxes, claimers = 40, 8
		for i := range mailboxes {
			h.addDue(fmt.Sprintf("m%02d", i), crmsync.Incoming, base.Add(-time.Duration(i)*time.Second))
		}
		tokens := map[string]int64{}
		for round, now := range []time.Time{base, base.Add(time.Hour)} {
			var (
				mu     sync.Mutex
				holder = map[string]string{}
				count  = map[string]int{}
				wg     sync.WaitGroup
			)
			for g := range claimers {
				owner := fmt.Sprintf("engine-%d", g)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 10 * mailboxes { // a store that never runs dry must not hang the suite
						cs, err := h.s.ClaimDue(h.ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: owner, Now: now, LeaseFor: leaseFor, Limit: 3})
						if err != nil {
							h.t.Errorf("ClaimDue: %v", err)
							return
						}
						if len(cs) == 0 {
							return
						}
						for _, c := range cs {
							mu.Lock()
							if other, ok := holder[c.MailboxID]; ok {
								h.t.Errorf("%s is held by %s and %s at once", c.MailboxID, other, owner)
							}
							holder[c.MailboxID] = owner
							count[c.MailboxID]++
							if c.Token <= tokens[c.MailboxID] {
								h.t.Errorf("%s claimed with token %d, not above %d", c.MailboxID, c.Token, tokens[c.MailboxID])
							}
							tokens[c.MailboxID] = c.Token
							mu.Unlock()
							runtime.Gosched()
							mu.Lock()
							delete(holder, c.MailboxID)
							mu.Unlock()
							err := h.s.FinishCycle(h.ctx, c.Lease, crmstore.CycleResult{At: now, Status: crmsync.StatusSuccess, Next: now.Add(time.Hour)})
							if err != nil {
								h.t.Errorf("FinishCycle(%s): %v", c.MailboxID, err)
							}
						}
					}
				}()
			}
			wg.Wait()
			for i := range mailboxes {
				id := fmt.Sprintf("m%02d", i)
				if count[id] != 1 {
					h.t.Errorf("round %d: %s was claimed %d times, want once", round, id, count[id])
				}
			}
		}
	}},
	{"ConcurrentClaimsWithoutRelease", func(h *harness) {
		const mailboxes, claimers = 30, 6
		for i := range mailboxes {
			h.addDue(fmt.Sprintf("m%02d", i), crmsync.Outgoing, base)
		}
		var (
			mu  sync.Mutex
			got = map[string]string{}
			wg  sync.WaitGroup
		)
		for g := range claimers {
			owner := fmt.Sprintf("engine-%d", g)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 * mailboxes {
					cs, err := h.s.ClaimDue(h.ctx, crmstore.ClaimQuery{Workload: crmsync.Outgoing, Owner: owner, Now: base, LeaseFor: time.Hour, Limit: 1})
					if err != nil {
						h.t.Errorf("ClaimDue: %v", err)
						return
					}
					if len(cs) == 0 {
						return
					}
					mu.Lock()
					for _, c := range cs {
						if other, ok := got[c.MailboxID]; ok {
							h.t.Errorf("%s claimed by %s and %s", c.MailboxID, other, owner)
						}
						got[c.MailboxID] = owner
					}
					mu.Unlock()
					runtime.Gosched()
				}
			}()
		}
		wg.Wait()
		if len(got) != mailboxes {
			h.t.Fatalf("%d of %d due mailbox-workloads were claimed", len(got), mailboxes)
		}
	}},
}
