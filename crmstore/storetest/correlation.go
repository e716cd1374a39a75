package storetest

import (
	"context"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// The correlation keys of emails (TrackingToken, ConversationID, SubjectHash), which
// every store keeps, and the lookups by them that a store may add: the optional
// interfaces filter.TokenIndex, ConversationIndex and SubjectIndex, declared again here
// so that the suite does not import filter. A store without a lookup skips its test.

type tokenIndex interface {
	EmailsByTrackingToken(ctx context.Context, tokens []string) (map[string][]*crmsync.Email, error)
}

type conversationIndex interface {
	EmailsByConversationID(ctx context.Context, ids []string) (map[string][]*crmsync.Email, error)
}

type subjectIndex interface {
	EmailsBySubjectHash(ctx context.Context, hashes []string, since time.Time) (map[string][]*crmsync.Email, error)
}

// keyLookup is one correlation key and the optional lookup by it.
type keyLookup struct {
	method string // the lookup, such as "EmailsByTrackingToken"
	iface  string // the filter interface it implements
	get    func(e *crmsync.Email) string
	set    func(e *crmsync.Email, key string)
	// bounded: the lookup takes a lower bound on CreatedAt (since, inclusive).
	bounded bool
	// find runs the lookup on s; ok is false when s does not have it.
	find func(ctx context.Context, s crmstore.Store, keys []string, since time.Time) (m map[string][]*crmsync.Email, ok bool, err error)
}

var keyLookups = []keyLookup{
	{
		method: "EmailsByTrackingToken", iface: "filter.TokenIndex",
		get: func(e *crmsync.Email) string { return e.TrackingToken },
		set: func(e *crmsync.Email, k string) { e.TrackingToken = k },
		find: func(ctx context.Context, s crmstore.Store, keys []string, _ time.Time) (map[string][]*crmsync.Email, bool, error) {
			x, ok := s.(tokenIndex)
			if !ok {
				return nil, false, nil
			}
			m, err := x.EmailsByTrackingToken(ctx, keys)
			return m, true, err
		},
	},
	{
		method: "EmailsByConversationID", iface: "filter.ConversationIndex",
		get: func(e *crmsync.Email) string { return e.ConversationID },
		set: func(e *crmsync.Email, k string) { e.ConversationID = k },
		find: func(ctx context.Context, s crmstore.Store, keys []string, _ time.Time) (map[string][]*crmsync.Email, bool, error) {
			x, ok := s.(conversationIndex)
			if !ok {
				return nil, false, nil
			}
			m, err := x.EmailsByConversationID(ctx, keys)
			return m, true, err
		},
	},
	{
		method: "EmailsBySubjectHash", iface: "filter.SubjectIndex", bounded: true,
		get: func(e *crmsync.Email) string { return e.SubjectHash },
		set: func(e *crmsync.Email, k string) { e.SubjectHash = k },
		find: func(ctx context.Context, s crmstore.Store, keys []string, since time.Time) (map[string][]*crmsync.Email, bool, error) {
			x, ok := s.(subjectIndex)
			if !ok {
				return nil, false, nil
			}
			m, err := x.EmailsBySubjectHash(ctx, keys, since)
			return m, true, err
		},
	},
}

// correlationTests are the round trip of the keys, which every store passes, and a test
// per lookup, skipped by a store without it.
var correlationTests = func() []test {
	tests := []test{{"RoundTrip", keysRoundTrip}}
	for _, l := range keyLookups {
		tests = append(tests, test{l.method, func(h *harness) { h.lookupTest(l) }})
	}
	return tests
}()

// correlationKeys are an email's three correlation keys.
type correlationKeys struct{ token, conversation, subject string }

func keysOf(e *crmsync.Email) correlationKeys {
	return correlationKeys{e.TrackingToken, e.ConversationID, e.SubjectHash}
}

func (k correlationKeys) set(e *crmsync.Email) {
	e.TrackingToken, e.ConversationID, e.SubjectHash = k.token, k.conversation, k.subject
}

// wantKeys fails unless email id, as Email and as ListEmails return it, has keys k.
func (h *harness) wantKeys(what, mailboxID, id string, k correlationKeys) {
	h.t.Helper()
	if got := keysOf(h.email(id)); got != k {
		h.t.Fatalf("%s: Email(%s) has keys %+v, want %+v", what, id, got, k)
	}
	for _, e := range h.emailsOf(mailboxID) {
		if e.ID == id {
			if got := keysOf(e); got != k {
				h.t.Fatalf("%s: ListEmails gives email %s keys %+v, want %+v", what, id, got, k)
			}
			return
		}
	}
	h.t.Fatalf("%s: ListEmails(%s) has no email %s", what, mailboxID, id)
}

func keysRoundTrip(h *harness) {
	created := correlationKeys{"CRM:0001234", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "h-quote"}
	e := &crmsync.Email{MailboxID: "m1", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft, Subject: "Quote [CRM:0001234]", CreatedAt: base}
	created.set(e)
	h.must(h.s.CreateEmail(h.ctx, e), "CreateEmail")
	h.wantKeys("CreateEmail", "m1", e.ID, created)
	plain := h.create("m1", crmsync.DirectionOutgoing, crmsync.EmailDraft, base, "")
	h.wantKeys("CreateEmail without keys", "m1", plain, correlationKeys{})

	l := h.leaseOn("m2", crmsync.Incoming)
	tracked := correlationKeys{"CRM:0001234", "", "h-re-quote"}
	in := incoming("INBOX/1", "reply@x", "RE: Quote [CRM:0001234]")
	tracked.set(in)
	r := h.track(l, "c1", in, incoming("INBOX/2", "other@x", "no keys"))
	h.wantKeys("TrackIncoming", "m2", r.IDs[0], tracked)
	h.wantKeys("TrackIncoming without keys", "m2", r.IDs[1], correlationKeys{})

	for _, step := range []struct {
		name string
		id   string
		to   correlationKeys
	}{
		{"set by UpdateEmail", plain, correlationKeys{"CRM:0009999", "a0a0a0a0-0000-0000-0000-000000000000", "h-new"}},
		{"changed by UpdateEmail", e.ID, correlationKeys{"CRM:0004321", created.conversation, "h-changed"}},
		{"cleared by UpdateEmail", r.IDs[0], correlationKeys{}},
	} {
		got, err := h.s.UpdateEmail(h.ctx, step.id, func(x *crmsync.Email) error {
			step.to.set(x)
			return nil
		})
		h.must(err, "UpdateEmail(%s)", step.id)
		if keysOf(got) != step.to {
			h.t.Fatalf("keys %s: UpdateEmail returned %+v, want %+v", step.name, keysOf(got), step.to)
		}
		h.wantKeys("keys "+step.name, got.MailboxID, step.id, step.to)
	}
}

// createKeyed creates an email of the mailbox whose key of l is key.
func (h *harness) createKeyed(l keyLookup, mailboxID, key string, created time.Time) string {
	h.t.Helper()
	e := &crmsync.Email{
		MailboxID: mailboxID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailSent,
		Subject: "keyed " + key, To: []crmsync.Address{{Email: "customer@example.org"}}, CreatedAt: created,
	}
	l.set(e, key)
	h.must(h.s.CreateEmail(h.ctx, e), "CreateEmail(%s %q)", l.method, key)
	return e.ID
}

// lookupTest checks lookup l: hits in any mailbox, ordered by CreatedAt then ID,
// whichever way the key was stored; misses; empty keys ignored; the since bound; copies.
func (h *harness) lookupTest(l keyLookup) {
	if _, ok, _ := l.find(h.ctx, h.s, nil, time.Time{}); !ok {
		h.t.Skipf("optional capability not implemented: the store has no %s (%s)", l.method, l.iface)
	}
	find := func(keys []string, since time.Time) map[string][]*crmsync.Email {
		h.t.Helper()
		m, _, err := l.find(h.ctx, h.s, keys, since)
		h.must(err, "%s(%q, %v)", l.method, keys, since)
		for k, es := range m {
			for _, e := range es {
				if e == nil || l.get(e) != k {
					h.t.Fatalf("%s(%q) lists under %q an email with key %q", l.method, keys, k, l.get(e))
				}
			}
		}
		return m
	}
	// wantFound fails unless m holds exactly the keys of want (each with its IDs in order).
	wantFound := func(what string, m map[string][]*crmsync.Email, want map[string][]string) {
		h.t.Helper()
		for k, es := range m {
			if len(es) > 0 && want[k] == nil {
				h.t.Fatalf("%s: %s found %v under key %q, want nothing", what, l.method, emailIDs(es), k)
			}
		}
		for k, ids := range want {
			h.wantIDs(fmt.Sprintf("%s: %s, key %q", what, l.method, k), emailIDs(m[k]), ids)
		}
	}

	const key, other = "key-1", "key-2"
	h.add(newMailbox("m2", "bob"))
	full := &crmsync.Email{
		MailboxID: "m1", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailSent, Subject: "Quote",
		To:          []crmsync.Address{{Name: "Ann", Email: "ann@example.org"}},
		References:  []string{"r1@x"},
		Attachments: []crmsync.Attachment{{Name: "q.pdf", ContentType: "application/pdf", Size: 3, Content: []byte("pdf")}},
		CreatedAt:   base,
	}
	l.set(full, key)
	h.must(h.s.CreateEmail(h.ctx, full), "CreateEmail")
	lease := h.leaseOn("m3", crmsync.Incoming)
	in := incoming("INBOX/1", "in@x", "RE: Quote")
	in.CreatedAt = base.Add(time.Minute)
	l.set(in, key)
	trackedID := h.track(lease, "c1", in).IDs[0]
	earlier := h.createKeyed(l, "m2", key, base.Add(-time.Minute))
	otherID := h.createKeyed(l, "m2", other, base)
	h.createKeyed(l, "m1", "", base) // no key: found by no lookup
	moved := h.createKeyed(l, "m1", "key-old", base.Add(2*time.Minute))
	dropped := h.createKeyed(l, "m2", key, base.Add(3*time.Minute))
	for id, to := range map[string]string{moved: key, dropped: ""} {
		_, err := h.s.UpdateEmail(h.ctx, id, func(e *crmsync.Email) error {
			l.set(e, to)
			return nil
		})
		h.must(err, "UpdateEmail(%s)", id)
	}

	all := []string{earlier, full.ID, trackedID, moved}
	wantFound("hits, misses and empty keys", find([]string{key, "", other, "missing", key}, time.Time{}),
		map[string][]string{key: all, other: {otherID}})
	wantFound("a changed key", find([]string{"key-old"}, time.Time{}), nil)
	wantFound("no keys", find(nil, time.Time{}), nil)
	wantFound("only an empty key", find([]string{""}, time.Time{}), nil)

	if l.bounded {
		// Inclusive at the bound, whatever the precision of the store's times.
		wantFound("since the first", find([]string{key}, base.Add(-time.Minute)), map[string][]string{key: all})
		wantFound("since base", find([]string{key, other}, base), map[string][]string{key: all[1:], other: {otherID}})
		wantFound("between two", find([]string{key}, base.Add(90*time.Second)), map[string][]string{key: {moved}})
		wantFound("since later", find([]string{key, other}, base.Add(time.Hour)), nil)
	}

	// The emails are complete, and copies.
	got := find([]string{key}, time.Time{})[key][1]
	if got.ID != full.ID || got.Subject != "Quote" || len(got.To) != 1 || got.To[0].Email != "ann@example.org" ||
		len(got.References) != 1 || len(got.Attachments) != 1 || string(got.Attachments[0].Content) != "pdf" ||
		!got.CreatedAt.Equal(base) {
		h.t.Fatalf("%s returned %+v, want the email created", l.method, got)
	}
	got.Subject = "changed"
	got.To[0].Email = "changed"
	got.Attachments[0].Content[0] = 'X'
	l.set(got, "changed")
	again := find([]string{key}, time.Time{})[key]
	h.wantIDs(l.method+" after changing a result", emailIDs(again), all)
	if e := again[1]; e.Subject != "Quote" || e.To[0].Email != "ann@example.org" || string(e.Attachments[0].Content) != "pdf" {
		h.t.Fatalf("%s shares emails with its callers: %+v", l.method, e)
	}
	if e := h.email(full.ID); e.Subject != "Quote" || l.get(e) != key {
		h.t.Fatalf("changing an email that %s returned changed the store: %+v", l.method, e)
	}
}
