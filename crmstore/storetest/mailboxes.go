package storetest

import (
	"errors"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

var profileTests = []test{
	{"PutAndGet", func(h *harness) {
		off := false
		p := &crmsync.ServerProfile{
			ID: "p1", Name: "Mail", Kind: crmsync.ServerIMAP, OwnerID: "admin",
			Incoming:       crmsync.Endpoint{Host: "imap.example.com", Port: 993},
			MaxConnections: 20, MinPollInterval: time.Minute, KeepSentCopy: &off,
			ProcessEmailFrom: base.Add(-24 * time.Hour),
		}
		h.must(h.s.PutProfile(h.ctx, p), "PutProfile")
		p.Name = "changed after put"
		off = true
		got, err := h.s.Profile(h.ctx, "p1")
		h.must(err, "Profile")
		if got.Name != "Mail" || got.Kind != crmsync.ServerIMAP || got.OwnerID != "admin" ||
			got.Incoming.Host != "imap.example.com" || got.Incoming.Port != 993 ||
			got.MaxConnections != 20 || got.MinPollInterval != time.Minute ||
			!got.ProcessEmailFrom.Equal(base.Add(-24*time.Hour)) {
			h.t.Fatalf("Profile = %+v, want the profile put", got)
		}
		if got.KeepSentCopy == nil || *got.KeepSentCopy {
			h.t.Fatalf("KeepSentCopy = %v, want a pointer to false", got.KeepSentCopy)
		}
		got.Name = "changed copy"
		*got.KeepSentCopy = true
		again, err := h.s.Profile(h.ctx, "p1")
		h.must(err, "Profile")
		if again.Name != "Mail" || again.KeepSentCopy == nil || *again.KeepSentCopy {
			h.t.Fatalf("changing a returned profile changed the store: %+v", again)
		}
	}},
	{"Replace", func(h *harness) {
		h.must(h.s.PutProfile(h.ctx, &crmsync.ServerProfile{ID: "p1", Name: "second", Kind: crmsync.ServerGmail}), "PutProfile")
		got, err := h.s.Profile(h.ctx, "p1")
		h.must(err, "Profile")
		if got.Name != "second" || got.Kind != crmsync.ServerGmail {
			h.t.Fatalf("Profile after replace = %+v", got)
		}
	}},
	{"NotFound", func(h *harness) {
		_, err := h.s.Profile(h.ctx, "nope")
		h.wantErr(err, crmsync.ErrNotFound, "Profile(nope)")
	}},
}

var mailboxTests = []test{
	{"MapAndGet", func(h *harness) {
		m := newMailbox("m1", "alice")
		m.Address = "Alice.Smith@Example.COM"
		m.TrackedFolders = []string{"INBOX/Clients"}
		m.IncomingOption = crmsync.IncomingAll
		m.ProcessEmailAfter = base
		h.add(m)
		got := h.mailbox("m1")
		if got.Address != "alice.smith@example.com" {
			h.t.Fatalf("Address = %q, want it stored lower-cased", got.Address)
		}
		if got.Owner != m.Owner || got.ProfileID != "p1" || got.Approval != crmsync.ApprovalApproved ||
			got.IncomingOption != crmsync.IncomingAll || !got.ProcessEmailAfter.Equal(base) ||
			len(got.TrackedFolders) != 1 || got.TrackedFolders[0] != "INBOX/Clients" ||
			!got.Incoming.Runnable() || !got.Outgoing.Runnable() || !got.ACT.Runnable() {
			h.t.Fatalf("Mailbox = %+v, want the mailbox mapped", got)
		}
	}},
	{"ByAddressIgnoresCase", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		for _, a := range []string{"m1@example.com", "M1@EXAMPLE.COM", "m1@Example.Com"} {
			got, err := h.s.MailboxByAddress(h.ctx, a)
			h.must(err, "MailboxByAddress(%s)", a)
			if got.ID != "m1" {
				h.t.Fatalf("MailboxByAddress(%s) = %s, want m1", a, got.ID)
			}
		}
		_, err := h.s.MailboxByAddress(h.ctx, "other@example.com")
		h.wantErr(err, crmsync.ErrNotFound, "MailboxByAddress(other)")
	}},
	{"NotFound", func(h *harness) {
		_, err := h.s.Mailbox(h.ctx, "nope")
		h.wantErr(err, crmsync.ErrNotFound, "Mailbox(nope)")
		_, err = h.s.UpdateMailbox(h.ctx, "nope", func(*crmsync.Mailbox) error { return nil })
		h.wantErr(err, crmsync.ErrNotFound, "UpdateMailbox(nope)")
		h.wantErr(h.s.DeleteMailbox(h.ctx, "nope"), crmsync.ErrNotFound, "DeleteMailbox(nope)")
		h.wantErr(h.s.SetWorkload(h.ctx, "nope", crmsync.Incoming, runnable(), base), crmsync.ErrNotFound, "SetWorkload(nope)")
	}},
	{"InvalidRefused", func(h *harness) {
		bad := map[string]func(*crmsync.Mailbox){
			"no ID":         func(m *crmsync.Mailbox) { m.ID = "" },
			"bad address":   func(m *crmsync.Mailbox) { m.Address = "not an address" },
			"no profile":    func(m *crmsync.Mailbox) { m.ProfileID = "" },
			"no owner":      func(m *crmsync.Mailbox) { m.Owner = crmsync.Owner{} },
			"no owner kind": func(m *crmsync.Mailbox) { m.Owner.Kind = 0 },
		}
		for name, spoil := range bad {
			m := newMailbox("m1", "alice")
			spoil(m)
			if _, err := h.s.MapMailbox(h.ctx, m, false); err == nil {
				h.t.Errorf("MapMailbox with %s succeeded", name)
			}
		}
		all, err := h.s.ListMailboxes(h.ctx, crmstore.MailboxQuery{})
		h.must(err, "ListMailboxes")
		if len(all) != 0 {
			h.t.Fatalf("invalid mailboxes were stored: %v", mailboxIDs(all))
		}
	}},
	{"Update", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		got, err := h.s.UpdateMailbox(h.ctx, "m1", func(m *crmsync.Mailbox) error {
			m.IncomingOption = crmsync.IncomingFromCRM
			m.TrackedFolders = []string{"INBOX/A", "INBOX/B"}
			m.ProcessEmailAfter = base.Add(time.Hour)
			m.ProfileID = "p2"
			return nil
		})
		h.must(err, "UpdateMailbox")
		for _, m := range []*crmsync.Mailbox{got, h.mailbox("m1")} {
			if m.IncomingOption != crmsync.IncomingFromCRM || len(m.TrackedFolders) != 2 ||
				!m.ProcessEmailAfter.Equal(base.Add(time.Hour)) || m.ProfileID != "p2" {
				h.t.Fatalf("after UpdateMailbox: %+v", m)
			}
		}
		byProfile, err := h.s.ListMailboxes(h.ctx, crmstore.MailboxQuery{ProfileID: "p2"})
		h.must(err, "ListMailboxes(p2)")
		h.wantIDs("mailboxes of p2 after moving m1", mailboxIDs(byProfile), []string{"m1"})
	}},
	{"UpdateErrorAborts", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		boom := errors.New("boom")
		_, err := h.s.UpdateMailbox(h.ctx, "m1", func(m *crmsync.Mailbox) error {
			m.IncomingOption = crmsync.IncomingNone
			return boom
		})
		h.wantErr(err, boom, "UpdateMailbox with a failing fn")
		if got := h.mailbox("m1"); got.IncomingOption != crmsync.IncomingReplies {
			h.t.Fatalf("a failed update was saved: IncomingOption = %v", got.IncomingOption)
		}
	}},
	{"UpdateRefusesMappingAndStates", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		changes := map[string]func(*crmsync.Mailbox){
			"ID":       func(m *crmsync.Mailbox) { m.ID = "m2" },
			"Address":  func(m *crmsync.Mailbox) { m.Address = "new@example.com" },
			"Owner":    func(m *crmsync.Mailbox) { m.Owner.ID = "bob" },
			"Incoming": func(m *crmsync.Mailbox) { m.Incoming.Test = crmsync.TestFailed },
			"Outgoing": func(m *crmsync.Mailbox) { m.Outgoing.Method = crmsync.DeliveryNone },
			"ACT":      func(m *crmsync.Mailbox) { m.ACT.Status = crmsync.StatusFailure },
		}
		for field, change := range changes {
			_, err := h.s.UpdateMailbox(h.ctx, "m1", func(m *crmsync.Mailbox) error {
				change(m)
				m.IncomingOption = crmsync.IncomingAll
				return nil
			})
			if err == nil {
				h.t.Errorf("UpdateMailbox changing %s succeeded", field)
			}
		}
		got := h.mailbox("m1")
		if got.Address != "m1@example.com" || got.Owner.ID != "alice" || got.IncomingOption != crmsync.IncomingReplies ||
			!got.Incoming.Runnable() || !got.Outgoing.Runnable() || got.ACT.Status != crmsync.StatusNotRun {
			h.t.Fatalf("a refused update was saved: %+v", got)
		}
		if _, err := h.s.Mailbox(h.ctx, "m2"); !errors.Is(err, crmsync.ErrNotFound) {
			h.t.Fatalf("a refused ID change created m2: %v", err)
		}
	}},
	{"CopiesDoNotAlias", func(h *harness) {
		m := newMailbox("m1", "alice")
		m.TrackedFolders = []string{"INBOX/A"}
		h.add(m)
		m.TrackedFolders[0] = "changed input"
		m.IncomingOption = crmsync.IncomingNone
		got := h.mailbox("m1")
		got.TrackedFolders[0] = "changed output"
		got.Incoming.Test = crmsync.TestFailed
		again := h.mailbox("m1")
		if again.TrackedFolders[0] != "INBOX/A" || again.IncomingOption != crmsync.IncomingReplies || !again.Incoming.Runnable() {
			h.t.Fatalf("the store shares memory with its callers: %+v", again)
		}
		upd, err := h.s.UpdateMailbox(h.ctx, "m1", func(m *crmsync.Mailbox) error { return nil })
		h.must(err, "UpdateMailbox")
		upd.TrackedFolders[0] = "changed update result"
		if again := h.mailbox("m1"); again.TrackedFolders[0] != "INBOX/A" {
			h.t.Fatalf("UpdateMailbox's result shares memory with the store: %v", again.TrackedFolders)
		}
	}},
	{"Delete", func(h *harness) {
		h.add(newMailbox("m1", "alice"))
		h.add(newMailbox("m2", "bob"))
		h.must(h.s.DeleteMailbox(h.ctx, "m1"), "DeleteMailbox")
		_, err := h.s.Mailbox(h.ctx, "m1")
		h.wantErr(err, crmsync.ErrNotFound, "Mailbox after delete")
		_, err = h.s.MailboxByAddress(h.ctx, "m1@example.com")
		h.wantErr(err, crmsync.ErrNotFound, "MailboxByAddress after delete")
		all, err := h.s.ListMailboxes(h.ctx, crmstore.MailboxQuery{})
		h.must(err, "ListMailboxes")
		h.wantIDs("mailboxes after delete", mailboxIDs(all), []string{"m2"})
		// The address and the owner are free again.
		other := newMailbox("m3", "carol")
		other.Address = "M1@example.com"
		h.add(other)
		h.add(newMailbox("m4", "alice"))
	}},
	{"ListPaging", func(h *harness) {
		for i, id := range []string{"m3", "m1", "m5", "m2", "m4"} {
			m := newMailbox(id, "user-"+id)
			m.ProfileID = fmt.Sprintf("p%d", i%2+1) // m3, m5, m4 in p1; m1, m2 in p2
			h.add(m)
		}
		list := func(q crmstore.MailboxQuery) []string {
			ms, err := h.s.ListMailboxes(h.ctx, q)
			h.must(err, "ListMailboxes(%+v)", q)
			return mailboxIDs(ms)
		}
		h.wantIDs("all", list(crmstore.MailboxQuery{}), []string{"m1", "m2", "m3", "m4", "m5"})
		h.wantIDs("limit 2", list(crmstore.MailboxQuery{Limit: 2}), []string{"m1", "m2"})
		h.wantIDs("after m2 limit 2", list(crmstore.MailboxQuery{AfterID: "m2", Limit: 2}), []string{"m3", "m4"})
		h.wantIDs("after m4", list(crmstore.MailboxQuery{AfterID: "m4"}), []string{"m5"})
		h.wantIDs("after m5", list(crmstore.MailboxQuery{AfterID: "m5"}), []string{})
		h.wantIDs("profile p1", list(crmstore.MailboxQuery{ProfileID: "p1"}), []string{"m3", "m4", "m5"})
		h.wantIDs("profile p2 after m1", list(crmstore.MailboxQuery{ProfileID: "p2", AfterID: "m1"}), []string{"m2"})
		h.wantIDs("profile p1 limit 1 after m3", list(crmstore.MailboxQuery{ProfileID: "p1", AfterID: "m3", Limit: 1}), []string{"m4"})
		var paged []string
		for after := ""; ; {
			page := list(crmstore.MailboxQuery{AfterID: after, Limit: 2})
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1]
		}
		h.wantIDs("paging by 2", paged, []string{"m1", "m2", "m3", "m4", "m5"})
	}},
}
