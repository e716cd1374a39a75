// Package storetest is the conformance suite of crmstore.Store: a host proves its own
// Store keeps the contract the engine relies on with one call,
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) crmstore.Store { return newMyStore(t) })
//	}
//
// The suite checks the promises in crmstore's documentation that survive a crash or a
// race: idempotent tracking, the atomic commit of emails and cursor, exclusive leases with
// fencing tokens, the mapping rules, the outgoing states; and the plain record keeping
// around them. Optional capabilities (the correlation lookups of filter's TokenIndex,
// ConversationIndex and SubjectIndex) are tested when the store has them, and their
// tests skipped, saying so, when it has not. The suite imports only the standard
// library, crmsync and crmstore, so running it pulls nothing into a host's build.
//
// Time is not real in the suite: every call passes its Now (in January 2026) and nothing
// waits. A store that judges due times and lease expiry by its own clock (as a shared
// database may) must be set to honour ClaimQuery.Now to run it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// Run runs the conformance suite as subtests of t, each on a fresh store from newStore.
// newStore should register any cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) crmstore.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Profiles", profileTests},
		{"Mailboxes", mailboxTests},
		{"Mapping", mappingTests},
		{"Tracking", trackingTests},
		{"Schedule", scheduleTests},
		{"Outgoing", outgoingTests},
		{"Emails", emailTests},
		{"CorrelationKeys", correlationTests},
		{"Parties", partyTests},
		{"Items", itemTests},
		{"Alerts", alertTests},
		{"ProfileHealth", healthTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					s := newStore(t)
					if s == nil {
						t.Fatal("newStore returned nil")
					}
					h := &harness{t: t, ctx: context.Background(), s: s}
					// The suite's mailboxes are in p1 and p2, so a store that wants a
					// mailbox's profile to exist finds it.
					h.putProfile("p1")
					h.putProfile("p2")
					tc.fn(h)
				})
			}
		})
	}
}

// test is one conformance check, run on a fresh store.
type test struct {
	name string
	fn   func(h *harness)
}

// base is the suite's fixed "now". Times are whole seconds, so a store keeping
// microseconds (or seconds) returns them unchanged.
var base = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

// leaseFor is the lease the suite's claims ask for unless a test needs another.
const leaseFor = 10 * time.Minute

// harness is a store under test and the helpers the checks share.
type harness struct {
	t   *testing.T
	ctx context.Context
	s   crmstore.Store
}

func (h *harness) must(err error, format string, args ...any) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

// runnable is the state of a workload that passed Test & Enable.
func runnable() crmsync.WorkloadState {
	return crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestPassed, TestedAt: base}
}

// newMailbox returns a valid mailbox id of user owner, at id@example.com, in profile p1,
// with every workload runnable.
func newMailbox(id, owner string) *crmsync.Mailbox {
	return &crmsync.Mailbox{
		ID:        id,
		Address:   id + "@example.com",
		Owner:     crmsync.Owner{Kind: crmsync.OwnerUser, ID: owner},
		ProfileID: "p1",
		Approval:  crmsync.ApprovalApproved,
		Incoming:  runnable(),
		Outgoing:  runnable(),
		ACT:       runnable(),
	}
}

// putProfile stores a minimal valid profile.
func (h *harness) putProfile(id string) {
	h.t.Helper()
	h.must(h.s.PutProfile(h.ctx, &crmsync.ServerProfile{ID: id, Name: "profile " + id, Kind: crmsync.ServerIMAP}), "PutProfile(%s)", id)
}

// add maps m, which must not conflict.
func (h *harness) add(m *crmsync.Mailbox) {
	h.t.Helper()
	displaced, err := h.s.MapMailbox(h.ctx, m, false)
	h.must(err, "MapMailbox(%s)", m.ID)
	if len(displaced) != 0 {
		h.t.Fatalf("MapMailbox(%s) without conflict displaced %d mailboxes", m.ID, len(displaced))
	}
}

// schedule makes workload w of mailbox id runnable and due at next.
func (h *harness) schedule(id string, w crmsync.Workload, next time.Time) {
	h.t.Helper()
	h.must(h.s.SetWorkload(h.ctx, id, w, runnable(), next), "SetWorkload(%s, %v)", id, w)
}

// addDue maps a mailbox id (owned by user "u-"+id) with workload w due at next.
func (h *harness) addDue(id string, w crmsync.Workload, next time.Time) {
	h.t.Helper()
	h.add(newMailbox(id, "u-"+id))
	h.schedule(id, w, next)
}

// claim claims up to limit due mailbox-workloads of w for owner at now.
func (h *harness) claim(w crmsync.Workload, owner string, now time.Time, limit int) []*crmstore.Claim {
	h.t.Helper()
	cs, err := h.s.ClaimDue(h.ctx, crmstore.ClaimQuery{Workload: w, Owner: owner, Now: now, LeaseFor: leaseFor, Limit: limit})
	h.must(err, "ClaimDue(%v, %s, %v)", w, owner, now)
	for _, c := range cs {
		if c == nil {
			h.t.Fatalf("ClaimDue returned a nil claim")
		}
	}
	return cs
}

// claimOnly claims at now and expects exactly mailbox id's workload w.
func (h *harness) claimOnly(id string, w crmsync.Workload, owner string, now time.Time) *crmstore.Claim {
	h.t.Helper()
	cs := h.claim(w, owner, now, 100)
	if len(cs) != 1 || cs[0].MailboxID != id {
		h.t.Fatalf("ClaimDue(%v) at %v claimed %v, want only %s", w, now.Sub(base), claimIDs(cs), id)
	}
	c := cs[0]
	if c.Workload != w || c.Owner != owner {
		h.t.Fatalf("claim of %s is for workload %v owner %q, want %v %q", id, c.Workload, c.Owner, w, owner)
	}
	return c
}

// leaseOn maps mailbox id with workload w due at base and claims it at base for owner
// "engine".
func (h *harness) leaseOn(id string, w crmsync.Workload) crmstore.Lease {
	h.t.Helper()
	h.addDue(id, w, base)
	return h.claimOnly(id, w, "engine", base).Lease
}

// finish ends a successful cycle with the next run at next.
func (h *harness) finish(l crmstore.Lease, next time.Time) {
	h.t.Helper()
	h.must(h.s.FinishCycle(h.ctx, l, crmstore.CycleResult{At: l.Expires.Add(-leaseFor), Status: crmsync.StatusSuccess, Next: next}),
		"FinishCycle(%s, %v)", l.MailboxID, l.Workload)
}

func (h *harness) track(l crmstore.Lease, cursor string, emails ...*crmsync.Email) crmstore.TrackResult {
	h.t.Helper()
	r, err := h.s.TrackIncoming(h.ctx, l, emails, []byte(cursor))
	h.must(err, "TrackIncoming(%s)", l.MailboxID)
	if len(r.IDs) != len(emails) {
		h.t.Fatalf("TrackIncoming of %d emails returned %d IDs", len(emails), len(r.IDs))
	}
	return r
}

func (h *harness) emailsOf(mailboxID string) []*crmsync.Email {
	h.t.Helper()
	es, err := h.s.ListEmails(h.ctx, crmstore.EmailQuery{MailboxID: mailboxID})
	h.must(err, "ListEmails(%s)", mailboxID)
	return es
}

func (h *harness) email(id string) *crmsync.Email {
	h.t.Helper()
	e, err := h.s.Email(h.ctx, id)
	h.must(err, "Email(%s)", id)
	return e
}

func (h *harness) mailbox(id string) *crmsync.Mailbox {
	h.t.Helper()
	m, err := h.s.Mailbox(h.ctx, id)
	h.must(err, "Mailbox(%s)", id)
	return m
}

// wantErr fails unless err matches target.
func (h *harness) wantErr(err, target error, format string, args ...any) {
	h.t.Helper()
	if !errors.Is(err, target) {
		h.t.Fatalf("%s: got error %v, want %v", fmt.Sprintf(format, args...), err, target)
	}
}

// wantCursor fails unless the claim carries cursor (empty: none).
func (h *harness) wantCursor(c *crmstore.Claim, cursor string) {
	h.t.Helper()
	if !bytes.Equal(c.State.Cursor, []byte(cursor)) {
		h.t.Fatalf("claim of %s %v has cursor %q, want %q", c.MailboxID, c.Workload, c.State.Cursor, cursor)
	}
}

// incoming returns an incoming email with these identities.
func incoming(providerID, messageID, subject string) *crmsync.Email {
	return &crmsync.Email{
		Direction:  crmsync.DirectionIncoming,
		Status:     crmsync.EmailReceived,
		ProviderID: providerID,
		MessageID:  messageID,
		Subject:    subject,
		From:       crmsync.Address{Name: "Sender", Email: "sender@example.org"},
		To:         []crmsync.Address{{Email: "someone@example.com"}},
		ReceivedAt: base,
		CreatedAt:  base,
	}
}

func claimIDs(cs []*crmstore.Claim) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.MailboxID
	}
	return out
}

func emailIDs(es []*crmsync.Email) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func mailboxIDs(ms []*crmsync.Mailbox) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// wantIDs fails unless got lists the IDs in want, in order.
func (h *harness) wantIDs(what string, got, want []string) {
	h.t.Helper()
	if !equalStrings(got, want) {
		h.t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
