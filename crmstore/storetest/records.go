package storetest

import (
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

func contact(providerID, changeKey string, emails ...string) crmsync.Item {
	return crmsync.Item{
		Kind: crmsync.KindContact, MailboxID: "m1", RecordID: "rec-" + providerID,
		ProviderID: providerID, ChangeKey: changeKey, ModifiedAt: base,
		Contact: &crmsync.Contact{FirstName: "F-" + providerID, LastName: "L", Emails: emails},
	}
}

func (h *harness) items(mailboxID string, kind crmsync.ItemKind) []crmsync.Item {
	h.t.Helper()
	its, err := h.s.Items(h.ctx, mailboxID, kind)
	h.must(err, "Items(%s, %v)", mailboxID, kind)
	return its
}

func itemKeys(its []crmsync.Item) []string {
	out := make([]string, len(its))
	for i, it := range its {
		out[i] = it.ProviderID + "@" + it.ChangeKey
	}
	return out
}

var itemTests = []test{
	{"CommitUpsertsAndDeletes", func(h *harness) {
		l := h.leaseOn("m1", crmsync.ACT)
		task := crmsync.Item{Kind: crmsync.KindTask, MailboxID: "m1", ProviderID: "t1", ChangeKey: "1",
			Task: &crmsync.Task{Subject: "Call back", Due: base.Add(time.Hour), Priority: 2}}
		appt := crmsync.Item{Kind: crmsync.KindAppointment, MailboxID: "m1", ProviderID: "a1", ChangeKey: "1",
			Appointment: &crmsync.Appointment{Subject: "Review", Start: base, End: base.Add(time.Hour),
				Attendees: []crmsync.Attendee{{Address: crmsync.Address{Email: "x@example.org"}, Required: true}}}}
		h.must(h.s.CommitItems(h.ctx, l, []crmsync.Item{contact("p2", "1", "b@x"), task, appt, contact("p1", "1", "a@x")}, []byte("act-1")),
			"CommitItems")
		contacts := h.items("m1", crmsync.KindContact)
		h.wantIDs("contacts", itemKeys(contacts), []string{"p1@1", "p2@1"})
		if c := contacts[0]; c.MailboxID != "m1" || c.Kind != crmsync.KindContact || c.RecordID != "rec-p1" ||
			c.Contact == nil || c.Contact.FirstName != "F-p1" || len(c.Contact.Emails) != 1 || c.Contact.Emails[0] != "a@x" {
			h.t.Fatalf("contact p1 = %+v", c)
		}
		tasks := h.items("m1", crmsync.KindTask)
		if len(tasks) != 1 || tasks[0].Task == nil || tasks[0].Task.Subject != "Call back" || !tasks[0].Task.Due.Equal(base.Add(time.Hour)) {
			h.t.Fatalf("tasks = %+v", tasks)
		}
		appts := h.items("m1", crmsync.KindAppointment)
		if len(appts) != 1 || appts[0].Appointment == nil || len(appts[0].Appointment.Attendees) != 1 {
			h.t.Fatalf("appointments = %+v", appts)
		}

		h.must(h.s.CommitItems(h.ctx, l, []crmsync.Item{
			contact("p1", "2", "a@x", "a2@x"),
			{Kind: crmsync.KindContact, MailboxID: "m1", ProviderID: "p2", Deleted: true},
			contact("p0", "1"),
		}, []byte("act-2")), "CommitItems(update, delete)")
		contacts = h.items("m1", crmsync.KindContact)
		h.wantIDs("contacts after update", itemKeys(contacts), []string{"p0@1", "p1@2"})
		if len(contacts[1].Contact.Emails) != 2 {
			h.t.Fatalf("updated contact = %+v", contacts[1].Contact)
		}
		h.wantIDs("tasks after contact changes", itemKeys(h.items("m1", crmsync.KindTask)), []string{"t1@1"})
		h.finish(l, base)
		h.wantCursor(h.claimOnly("m1", crmsync.ACT, "engine", base), "act-2")
	}},
	{"ItemsOfOtherMailboxesApart", func(h *harness) {
		l1 := h.leaseOn("m1", crmsync.ACT)
		l2 := h.leaseOn("m2", crmsync.ACT)
		h.must(h.s.CommitItems(h.ctx, l1, []crmsync.Item{contact("p1", "1")}, nil), "CommitItems(m1)")
		other := contact("p1", "9")
		other.MailboxID = "m2"
		h.must(h.s.CommitItems(h.ctx, l2, []crmsync.Item{other}, nil), "CommitItems(m2)")
		h.wantIDs("m1 contacts", itemKeys(h.items("m1", crmsync.KindContact)), []string{"p1@1"})
		h.wantIDs("m2 contacts", itemKeys(h.items("m2", crmsync.KindContact)), []string{"p1@9"})
		h.wantIDs("unknown mailbox", itemKeys(h.items("m3", crmsync.KindContact)), []string{})
	}},
	{"LostLeaseWritesNothing", func(h *harness) {
		l := h.leaseOn("m1", crmsync.ACT)
		h.must(h.s.CommitItems(h.ctx, l, []crmsync.Item{contact("p1", "1")}, []byte("act-1")), "CommitItems")
		h.finish(l, base)
		err := h.s.CommitItems(h.ctx, l, []crmsync.Item{contact("p1", "2"), contact("p2", "1")}, []byte("act-2"))
		h.wantErr(err, crmstore.ErrLeaseLost, "CommitItems with a released lease")
		h.wantIDs("contacts", itemKeys(h.items("m1", crmsync.KindContact)), []string{"p1@1"})
		h.wantCursor(h.claimOnly("m1", crmsync.ACT, "engine", base), "act-1")
	}},
	{"ReturnedItemsAreCopies", func(h *harness) {
		l := h.leaseOn("m1", crmsync.ACT)
		in := []crmsync.Item{contact("p1", "1", "a@x")}
		h.must(h.s.CommitItems(h.ctx, l, in, nil), "CommitItems")
		in[0].Contact.Emails[0] = "changed input"
		got := h.items("m1", crmsync.KindContact)
		got[0].Contact.Emails[0] = "changed output"
		got[0].Contact.FirstName = "changed"
		if again := h.items("m1", crmsync.KindContact); again[0].Contact.Emails[0] != "a@x" || again[0].Contact.FirstName != "F-p1" {
			h.t.Fatalf("the store shares items with its callers: %+v", again[0].Contact)
		}
	}},
}

var alertTests = []test{
	{"AddAndList", func(h *harness) {
		add := func(a *crmsync.Alert) string {
			h.t.Helper()
			h.must(h.s.AddAlert(h.ctx, a), "AddAlert")
			if a.ID == "" {
				h.t.Fatalf("AddAlert left the ID empty")
			}
			return a.ID
		}
		owner := crmsync.Owner{Kind: crmsync.OwnerUser, ID: "alice"}
		mb := add(&crmsync.Alert{Level: crmsync.AlertError, Scope: crmsync.ScopeMailbox, ProfileID: "p1", MailboxID: "m1",
			Workload: crmsync.Incoming, Kind: crmsync.KindAuth, Message: "m1: login refused", At: base.Add(2 * time.Minute),
			Recipients: []crmsync.Owner{owner}})
		prof := add(&crmsync.Alert{Level: crmsync.AlertError, Scope: crmsync.ScopeProfile, ProfileID: "p1", Message: "p1 failing", At: base})
		em := add(&crmsync.Alert{Level: crmsync.AlertWarning, Scope: crmsync.ScopeEmail, ProfileID: "p1", MailboxID: "m1", EmailID: "e1",
			Message: "attachment skipped", At: base.Add(time.Minute)})
		other := add(&crmsync.Alert{Level: crmsync.AlertInfo, Scope: crmsync.ScopeMailbox, ProfileID: "p2", MailboxID: "m2",
			Message: "m2 enabled", At: base.Add(time.Minute)})
		if len(map[string]bool{mb: true, prof: true, em: true, other: true}) != 4 {
			h.t.Fatalf("alert IDs are not unique: %s %s %s %s", mb, prof, em, other)
		}
		list := func(q crmstore.AlertQuery) []*crmsync.Alert {
			as, err := h.s.ListAlerts(h.ctx, q)
			h.must(err, "ListAlerts(%+v)", q)
			return as
		}
		ids := func(as []*crmsync.Alert) []string {
			out := make([]string, len(as))
			for i, a := range as {
				out[i] = a.ID
			}
			return out
		}
		all := list(crmstore.AlertQuery{})
		if len(all) != 4 || all[0].ID != prof || all[3].ID != mb {
			h.t.Fatalf("all alerts = %v, want %s first and %s last", ids(all), prof, mb)
		}
		// em and other share At: ordered by ID.
		if (em < other) != (all[1].ID == em) {
			h.t.Fatalf("alerts with the same time are not ordered by ID: %v", ids(all))
		}
		h.wantIDs("profile p1", ids(list(crmstore.AlertQuery{ProfileID: "p1"})), []string{prof, em, mb})
		h.wantIDs("mailbox m1", ids(list(crmstore.AlertQuery{MailboxID: "m1"})), []string{em, mb})
		h.wantIDs("mailbox scope of p1", ids(list(crmstore.AlertQuery{ProfileID: "p1", Scope: crmsync.ScopeMailbox})), []string{mb})
		h.wantIDs("since +2m", ids(list(crmstore.AlertQuery{Since: base.Add(2 * time.Minute)})), []string{mb})
		h.wantIDs("p1 limit 2", ids(list(crmstore.AlertQuery{ProfileID: "p1", Limit: 2})), []string{prof, em})

		got := list(crmstore.AlertQuery{MailboxID: "m1", Scope: crmsync.ScopeMailbox})[0]
		if got.Level != crmsync.AlertError || got.Workload != crmsync.Incoming || got.Kind != crmsync.KindAuth ||
			got.Message != "m1: login refused" || !got.At.Equal(base.Add(2*time.Minute)) ||
			len(got.Recipients) != 1 || got.Recipients[0] != owner {
			h.t.Fatalf("alert = %+v", got)
		}
		got.Recipients[0].ID = "changed"
		if again := list(crmstore.AlertQuery{MailboxID: "m1", Scope: crmsync.ScopeMailbox})[0]; again.Recipients[0] != owner {
			h.t.Fatalf("the store shares alerts with its callers")
		}
	}},
}

var healthTests = []test{
	{"CountsFailingMailboxes", func(h *harness) {
		failure := func(at time.Time) crmsync.WorkloadState {
			st := runnable()
			st.Status, st.StatusAt, st.LastError = crmsync.StatusFailure, at, "boom"
			return st
		}
		success := runnable()
		success.Status, success.StatusAt = crmsync.StatusSuccess, base.Add(30*time.Minute)
		since := base
		for _, tc := range []struct {
			id, profile string
			w           crmsync.Workload
			st          crmsync.WorkloadState
		}{
			{"recent", "p1", crmsync.Incoming, failure(base.Add(10 * time.Minute))},
			{"at-since", "p1", crmsync.Outgoing, failure(since)},
			{"old", "p1", crmsync.Incoming, failure(base.Add(-2 * time.Hour))},
			{"fine", "p1", crmsync.ACT, success},
			{"elsewhere", "p2", crmsync.Incoming, failure(base.Add(10 * time.Minute))},
		} {
			m := newMailbox(tc.id, "u-"+tc.id)
			m.ProfileID = tc.profile
			h.add(m)
			h.must(h.s.SetWorkload(h.ctx, tc.id, tc.w, tc.st, time.Time{}), "SetWorkload(%s)", tc.id)
		}
		// Two failing workloads count one mailbox.
		both := newMailbox("both", "u-both")
		h.add(both)
		h.must(h.s.SetWorkload(h.ctx, "both", crmsync.Incoming, failure(base.Add(20*time.Minute)), time.Time{}), "SetWorkload")
		h.must(h.s.SetWorkload(h.ctx, "both", crmsync.ACT, failure(base.Add(21*time.Minute)), time.Time{}), "SetWorkload")

		health := func(since time.Time) crmstore.ProfileHealth {
			ph, err := h.s.ProfileHealth(h.ctx, "p1", since)
			h.must(err, "ProfileHealth")
			return ph
		}
		if got := health(since); got != (crmstore.ProfileHealth{Mailboxes: 5, Failing: 3}) {
			h.t.Fatalf("ProfileHealth(p1, base) = %+v, want 5 mailboxes, 3 failing", got)
		}
		if got := health(base.Add(15 * time.Minute)); got != (crmstore.ProfileHealth{Mailboxes: 5, Failing: 1}) {
			h.t.Fatalf("ProfileHealth(p1, +15m) = %+v, want 5 mailboxes, 1 failing", got)
		}

		// A failure recorded by FinishCycle counts too.
		h.schedule("fine", crmsync.Incoming, base)
		l := h.claimOnly("fine", crmsync.Incoming, "engine", base)
		h.must(h.s.FinishCycle(h.ctx, l.Lease, crmstore.CycleResult{At: base.Add(40 * time.Minute), Status: crmsync.StatusFailure,
			Err: "timeout", ErrKind: crmsync.KindTransient, Failures: 1, Next: base.Add(45 * time.Minute)}), "FinishCycle")
		if got := health(base.Add(15 * time.Minute)); got.Failing != 2 {
			h.t.Fatalf("after a failed cycle: %+v, want 2 failing", got)
		}
		h.must(h.s.DeleteMailbox(h.ctx, "both"), "DeleteMailbox")
		if got := health(base.Add(15 * time.Minute)); got != (crmstore.ProfileHealth{Mailboxes: 4, Failing: 1}) {
			h.t.Fatalf("after deleting a failing mailbox: %+v, want 4 mailboxes, 1 failing", got)
		}
	}},
}
