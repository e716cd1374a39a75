package storetest

import (
	"errors"
	"sort"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// create stores an email with these fields and returns its ID.
func (h *harness) create(mailboxID string, dir crmsync.Direction, status crmsync.EmailStatus, created time.Time, messageID string) string {
	h.t.Helper()
	e := &crmsync.Email{
		MailboxID: mailboxID, Direction: dir, Status: status, MessageID: messageID,
		Subject: "email", To: []crmsync.Address{{Email: "customer@example.org"}},
		CreatedAt: created, ModifiedAt: created,
	}
	h.must(h.s.CreateEmail(h.ctx, e), "CreateEmail")
	if e.ID == "" {
		h.t.Fatalf("CreateEmail left the ID empty")
	}
	return e.ID
}

func (h *harness) pending(mailboxID string, created time.Time, messageID string) string {
	h.t.Helper()
	return h.create(mailboxID, crmsync.DirectionOutgoing, crmsync.EmailPendingSend, created, messageID)
}

func (h *harness) claimOutgoing(l crmstore.Lease, limit int) []crmstore.OutgoingEmail {
	h.t.Helper()
	out, err := h.s.ClaimOutgoing(h.ctx, l, limit, func(e *crmsync.Email) string { return "gen-" + e.ID + "@crm.example.com" })
	h.must(err, "ClaimOutgoing(%s)", l.MailboxID)
	return out
}

func outgoingIDs(out []crmstore.OutgoingEmail) []string {
	ids := make([]string, len(out))
	for i, o := range out {
		ids[i] = o.Email.ID
	}
	return ids
}

// wantEmail fails unless email id has this status and delivery attempts.
func (h *harness) wantEmail(id string, status crmsync.EmailStatus, attempts int) *crmsync.Email {
	h.t.Helper()
	e := h.email(id)
	if e.Status != status || e.DeliveryAttempts != attempts {
		h.t.Fatalf("email %s is %v with %d attempts, want %v with %d", id, e.Status, e.DeliveryAttempts, status, attempts)
	}
	return e
}

func (h *harness) finishSend(l crmstore.Lease, id string, r crmstore.SendResult) {
	h.t.Helper()
	h.must(h.s.FinishSend(h.ctx, l, id, r), "FinishSend(%s, %v)", id, r.Status)
}

var outgoingTests = []test{
	{"ClaimMovesPendingToSending", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Outgoing)
		h.add(newMailbox("m2", "bob"))
		newer := h.pending("m1", base.Add(time.Minute), "")
		older := h.pending("m1", base, "kept@crm.example.com")
		draft := h.create("m1", crmsync.DirectionOutgoing, crmsync.EmailDraft, base, "")
		sent := h.create("m1", crmsync.DirectionOutgoing, crmsync.EmailSent, base, "")
		otherMailbox := h.pending("m2", base, "")

		out := h.claimOutgoing(l, 10)
		h.wantIDs("claimed", outgoingIDs(out), []string{older, newer})
		for _, o := range out {
			if o.Unknown || o.Email.Status != crmsync.EmailSending || o.Email.DeliveryAttempts != 1 {
				h.t.Fatalf("claimed %s: Unknown %v, %v with %d attempts; want Sending with 1", o.Email.ID, o.Unknown, o.Email.Status, o.Email.DeliveryAttempts)
			}
		}
		if out[0].Email.MessageID != "kept@crm.example.com" {
			h.t.Fatalf("an existing Message-ID was replaced by %q", out[0].Email.MessageID)
		}
		if want := "gen-" + newer + "@crm.example.com"; out[1].Email.MessageID != want {
			h.t.Fatalf("new Message-ID = %q, want %q", out[1].Email.MessageID, want)
		}
		if e := h.wantEmail(newer, crmsync.EmailSending, 1); e.MessageID != out[1].Email.MessageID {
			h.t.Fatalf("the store kept Message-ID %q, the claim said %q", e.MessageID, out[1].Email.MessageID)
		}
		h.wantEmail(older, crmsync.EmailSending, 1)
		h.wantEmail(draft, crmsync.EmailDraft, 0)
		h.wantEmail(sent, crmsync.EmailSent, 0)
		h.wantEmail(otherMailbox, crmsync.EmailPendingSend, 0)
		byMID, err := h.s.EmailsByMessageID(h.ctx, []string{out[1].Email.MessageID})
		h.must(err, "EmailsByMessageID")
		h.wantIDs("emails with the new Message-ID", emailIDs(byMID), []string{newer})
	}},
	{"SendingComesBackUnknown", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Outgoing)
		first := h.pending("m1", base, "")
		h.claimOutgoing(l, 10)
		h.finish(l, base) // the engine "crashed": the email stays in Sending
		second := h.pending("m1", base.Add(time.Minute), "")
		l = h.claimOnly("m1", crmsync.Outgoing, "engine", base).Lease
		out := h.claimOutgoing(l, 10)
		h.wantIDs("claimed", outgoingIDs(out), []string{first, second})
		if !out[0].Unknown || out[0].Email.Status != crmsync.EmailSending || out[0].Email.DeliveryAttempts != 1 {
			h.t.Fatalf("email left in Sending came back as %+v, Unknown %v; want Unknown with 1 attempt", out[0].Email, out[0].Unknown)
		}
		if out[1].Unknown || out[1].Email.DeliveryAttempts != 1 {
			h.t.Fatalf("a new email came back Unknown %v with %d attempts", out[1].Unknown, out[1].Email.DeliveryAttempts)
		}
		h.wantEmail(first, crmsync.EmailSending, 1)
		if out[0].Email.MessageID == "" {
			h.t.Fatalf("the email in Sending lost its Message-ID")
		}
	}},
	{"ClaimLimit", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Outgoing)
		a := h.pending("m1", base, "")
		b := h.pending("m1", base.Add(time.Minute), "")
		c := h.pending("m1", base.Add(2*time.Minute), "")
		h.wantIDs("first 2", outgoingIDs(h.claimOutgoing(l, 2)), []string{a, b})
		h.wantEmail(c, crmsync.EmailPendingSend, 0)
		out := h.claimOutgoing(l, 3)
		h.wantIDs("all 3", outgoingIDs(out), []string{a, b, c})
		if !out[0].Unknown || !out[1].Unknown || out[2].Unknown {
			h.t.Fatalf("Unknown = %v %v %v, want true true false", out[0].Unknown, out[1].Unknown, out[2].Unknown)
		}
	}},
	{"FinishSend", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Outgoing)
		sent := h.pending("m1", base, "")
		failed := h.pending("m1", base.Add(time.Second), "")
		later := h.pending("m1", base.Add(2*time.Second), "")
		unknown := h.pending("m1", base.Add(3*time.Second), "")
		h.claimOutgoing(l, 10)

		h.finishSend(l, sent, crmstore.SendResult{Status: crmsync.EmailSent, SentAt: base.Add(time.Minute), At: base.Add(time.Minute)})
		if e := h.wantEmail(sent, crmsync.EmailSent, 1); !e.SentAt.Equal(base.Add(time.Minute)) {
			h.t.Fatalf("SentAt = %v", e.SentAt)
		}
		h.finishSend(l, failed, crmstore.SendResult{Status: crmsync.EmailFailed, Reason: "550 mailbox unavailable", At: base.Add(time.Minute)})
		if e := h.wantEmail(failed, crmsync.EmailFailed, 1); e.FailureReason != "550 mailbox unavailable" {
			h.t.Fatalf("FailureReason = %q", e.FailureReason)
		}
		h.finishSend(l, later, crmstore.SendResult{Status: crmsync.EmailPendingSend, Reason: "daily limit", At: base.Add(time.Minute)})
		h.wantEmail(later, crmsync.EmailPendingSend, 1)
		h.finishSend(l, unknown, crmstore.SendResult{Status: crmsync.EmailSending, Reason: "connection lost after DATA", Attempt: true, At: base.Add(time.Minute)})
		h.wantEmail(unknown, crmsync.EmailSending, 2)

		out := h.claimOutgoing(l, 10)
		h.wantIDs("claimed after FinishSend", outgoingIDs(out), []string{later, unknown})
		if out[0].Unknown || out[0].Email.DeliveryAttempts != 2 || !out[1].Unknown || out[1].Email.DeliveryAttempts != 2 {
			h.t.Fatalf("claimed after FinishSend: %v (Unknown %v, %d attempts), %v (Unknown %v, %d attempts)",
				out[0].Email.ID, out[0].Unknown, out[0].Email.DeliveryAttempts, out[1].Email.ID, out[1].Unknown, out[1].Email.DeliveryAttempts)
		}
		sentList, err := h.s.ListEmails(h.ctx, crmstore.EmailQuery{MailboxID: "m1", Status: crmsync.EmailSent})
		h.must(err, "ListEmails(sent)")
		h.wantIDs("sent emails", emailIDs(sentList), []string{sent})
	}},
	{"LostLeaseChangesNothing", func(h *harness) {
		l := h.leaseOn("m1", crmsync.Outgoing)
		id := h.pending("m1", base, "")
		h.finish(l, base.Add(time.Hour))
		_, err := h.s.ClaimOutgoing(h.ctx, l, 10, func(*crmsync.Email) string { return "x@y" })
		h.wantErr(err, crmstore.ErrLeaseLost, "ClaimOutgoing with a released lease")
		h.wantEmail(id, crmsync.EmailPendingSend, 0)
		err = h.s.FinishSend(h.ctx, l, id, crmstore.SendResult{Status: crmsync.EmailSent, SentAt: base, Attempt: true})
		h.wantErr(err, crmstore.ErrLeaseLost, "FinishSend with a released lease")
		h.wantEmail(id, crmsync.EmailPendingSend, 0)
	}},
}

var emailTests = []test{
	{"CreateAndGet", func(h *harness) {
		e := &crmsync.Email{
			MailboxID: "m1", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
			Subject: "Quote", To: []crmsync.Address{{Name: "Ann", Email: "ann@example.org"}},
			References:  []string{"r1@x"},
			Attachments: []crmsync.Attachment{{Name: "q.pdf", ContentType: "application/pdf", Size: 3, Content: []byte("pdf")}},
		}
		h.must(h.s.CreateEmail(h.ctx, e), "CreateEmail")
		if e.ID == "" || e.CreatedAt.IsZero() || e.ModifiedAt.IsZero() {
			h.t.Fatalf("CreateEmail left ID %q, CreatedAt %v, ModifiedAt %v", e.ID, e.CreatedAt, e.ModifiedAt)
		}
		got := h.email(e.ID)
		if got.Subject != "Quote" || got.MailboxID != "m1" || got.Status != crmsync.EmailDraft || len(got.To) != 1 ||
			got.To[0].Email != "ann@example.org" || len(got.References) != 1 || len(got.Attachments) != 1 ||
			string(got.Attachments[0].Content) != "pdf" || !got.CreatedAt.Equal(e.CreatedAt) {
			h.t.Fatalf("Email = %+v, want the email created", got)
		}
		got.Attachments[0].Content[0] = 'X'
		got.To[0].Email = "changed"
		e.Subject = "changed input"
		if again := h.email(e.ID); string(again.Attachments[0].Content) != "pdf" || again.To[0].Email != "ann@example.org" || again.Subject != "Quote" {
			h.t.Fatalf("the store shares emails with its callers: %+v", again)
		}

		other := &crmsync.Email{MailboxID: "m1", Status: crmsync.EmailDraft, CreatedAt: base, ModifiedAt: base.Add(time.Minute)}
		h.must(h.s.CreateEmail(h.ctx, other), "CreateEmail")
		if other.ID == e.ID {
			h.t.Fatalf("two emails got ID %s", e.ID)
		}
		if got := h.email(other.ID); !got.CreatedAt.Equal(base) || !got.ModifiedAt.Equal(base.Add(time.Minute)) {
			h.t.Fatalf("times set by the caller were changed: %v, %v", got.CreatedAt, got.ModifiedAt)
		}
		named := &crmsync.Email{ID: "host-1", MailboxID: "m1", Status: crmsync.EmailDraft, CreatedAt: base}
		h.must(h.s.CreateEmail(h.ctx, named), "CreateEmail(host-1)")
		if h.email("host-1").MailboxID != "m1" {
			h.t.Fatalf("email host-1 not stored under its ID")
		}
	}},
	{"NotFound", func(h *harness) {
		_, err := h.s.Email(h.ctx, "nope")
		h.wantErr(err, crmsync.ErrNotFound, "Email(nope)")
		_, err = h.s.UpdateEmail(h.ctx, "nope", func(*crmsync.Email) error { return nil })
		h.wantErr(err, crmsync.ErrNotFound, "UpdateEmail(nope)")
	}},
	{"Update", func(h *harness) {
		id := h.create("m1", crmsync.DirectionOutgoing, crmsync.EmailDraft, base, "")
		got, err := h.s.UpdateEmail(h.ctx, id, func(e *crmsync.Email) error {
			e.RegardingID = "case-7"
			e.Status = crmsync.EmailPendingSend
			return nil
		})
		h.must(err, "UpdateEmail")
		if got.RegardingID != "case-7" || h.email(id).RegardingID != "case-7" {
			h.t.Fatalf("UpdateEmail did not save")
		}
		boom := errors.New("boom")
		_, err = h.s.UpdateEmail(h.ctx, id, func(e *crmsync.Email) error {
			e.RegardingID = "lost"
			return boom
		})
		h.wantErr(err, boom, "UpdateEmail with a failing fn")
		if h.email(id).RegardingID != "case-7" {
			h.t.Fatalf("a failed update was saved")
		}
		// An email the host puts in Pending Send is claimed for sending.
		l := h.leaseOn("m1", crmsync.Outgoing)
		h.wantIDs("claimed after UpdateEmail", outgoingIDs(h.claimOutgoing(l, 10)), []string{id})
	}},
	{"ListFiltersAndOrder", func(h *harness) {
		in1 := h.create("m1", crmsync.DirectionIncoming, crmsync.EmailReceived, base.Add(2*time.Minute), "")
		out1 := h.create("m1", crmsync.DirectionOutgoing, crmsync.EmailPendingSend, base, "")
		in2 := h.create("m2", crmsync.DirectionIncoming, crmsync.EmailReceived, base.Add(time.Minute), "")
		out2 := h.create("m1", crmsync.DirectionOutgoing, crmsync.EmailSent, base.Add(3*time.Minute), "")
		list := func(q crmstore.EmailQuery) []string {
			es, err := h.s.ListEmails(h.ctx, q)
			h.must(err, "ListEmails(%+v)", q)
			return emailIDs(es)
		}
		h.wantIDs("all", list(crmstore.EmailQuery{}), []string{out1, in2, in1, out2})
		h.wantIDs("m1", list(crmstore.EmailQuery{MailboxID: "m1"}), []string{out1, in1, out2})
		h.wantIDs("incoming", list(crmstore.EmailQuery{Direction: crmsync.DirectionIncoming}), []string{in2, in1})
		h.wantIDs("m1 pending", list(crmstore.EmailQuery{MailboxID: "m1", Status: crmsync.EmailPendingSend}), []string{out1})
		h.wantIDs("m1 outgoing sent", list(crmstore.EmailQuery{MailboxID: "m1", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailSent}), []string{out2})
		h.wantIDs("limit 2", list(crmstore.EmailQuery{Limit: 2}), []string{out1, in2})
		h.wantIDs("none", list(crmstore.EmailQuery{MailboxID: "m3"}), []string{})

		// Same CreatedAt: ordered by ID.
		for _, id := range []string{"tie-b", "tie-a"} {
			h.must(h.s.CreateEmail(h.ctx, &crmsync.Email{ID: id, MailboxID: "m9", CreatedAt: base}), "CreateEmail(%s)", id)
		}
		h.wantIDs("ties", list(crmstore.EmailQuery{MailboxID: "m9"}), []string{"tie-a", "tie-b"})
	}},
	{"ByMessageID", func(h *harness) {
		a1 := h.create("m1", crmsync.DirectionIncoming, crmsync.EmailReceived, base, "a@x")
		a2 := h.create("m2", crmsync.DirectionOutgoing, crmsync.EmailSent, base, "a@x")
		c := h.create("m1", crmsync.DirectionIncoming, crmsync.EmailReceived, base, "c@x")
		h.create("m1", crmsync.DirectionIncoming, crmsync.EmailReceived, base, "b@x")
		h.create("m1", crmsync.DirectionIncoming, crmsync.EmailReceived, base, "")
		es, err := h.s.EmailsByMessageID(h.ctx, []string{"a@x", "c@x", "unknown@x"})
		h.must(err, "EmailsByMessageID")
		ids := emailIDs(es)
		sort.Strings(ids)
		want := []string{a1, a2, c}
		sort.Strings(want)
		h.wantIDs("emails by Message-ID", ids, want)
		none, err := h.s.EmailsByMessageID(h.ctx, nil)
		h.must(err, "EmailsByMessageID(nil)")
		if len(none) != 0 {
			h.t.Fatalf("EmailsByMessageID(nil) = %v", emailIDs(none))
		}
	}},
}
