package providertest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/schedule"
)

func TestConformance(t *testing.T) {
	providertest.RunConformance(t, &fakeHarness{
		Server: providertest.NewServer(providertest.ServerConfig{}),
		caps: providertest.Capabilities{
			Incoming: true, Outgoing: true, Folders: true, SendDelivers: true,
			ItemKinds: []crmsync.ItemKind{crmsync.KindAppointment, crmsync.KindContact, crmsync.KindTask},
		},
	})
}

// TestConformanceNoItemSync runs the suite against a server without ACT: the items
// subtests skip, and Test(ACT) must say not supported.
func TestConformanceNoItemSync(t *testing.T) {
	providertest.RunConformance(t, &fakeHarness{
		Server: providertest.NewServer(providertest.ServerConfig{NoItemSync: true}),
		caps:   providertest.Capabilities{Incoming: true, Outgoing: true, Folders: true},
	})
}

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// fixture is a server on a fake clock and a helper to dial its mailboxes.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	clock *schedule.Fake
	s     *providertest.Server
}

func newFixture(t *testing.T, cfg providertest.ServerConfig) *fixture {
	clock := schedule.NewFake(t0)
	cfg.Clock = clock
	return &fixture{t: t, ctx: t.Context(), clock: clock, s: providertest.NewServer(cfg)}
}

func target(addr, profileID string) provider.Target {
	return provider.Target{
		Profile: &crmsync.ServerProfile{ID: profileID, Kind: crmsync.ServerIMAP},
		Mailbox: &crmsync.Mailbox{ID: "mb-" + addr, Address: addr, ProfileID: profileID},
	}
}

func (f *fixture) dial(addr string) *providertest.Conn {
	f.t.Helper()
	p, err := f.s.Dial(f.ctx, target(addr, "p1"))
	if err != nil {
		f.t.Fatalf("Dial(%s): %v", addr, err)
	}
	f.t.Cleanup(func() { p.Close() })
	return p.(*providertest.Conn)
}

func (f *fixture) fetch(c *providertest.Conn, req provider.FetchRequest) *provider.Batch {
	f.t.Helper()
	b, err := c.FetchIncoming(f.ctx, req)
	if err != nil {
		f.t.Fatalf("FetchIncoming: %v", err)
	}
	return b
}

func msg(id string) *crmsync.Email {
	return &crmsync.Email{
		MessageID: id, Subject: "subject " + id, From: crmsync.Address{Email: "x@ext.test"},
		TextBody: "body " + id, HTMLBody: "<p>" + id + "</p>",
		Attachments: []crmsync.Attachment{{Name: "a.bin", Content: make([]byte, 2000)}},
	}
}

func ids(emails []*crmsync.Email) []string {
	var out []string
	for _, e := range emails {
		out = append(out, e.MessageID)
	}
	return out
}

func wantIDs(t *testing.T, what string, emails []*crmsync.Email, want ...string) {
	t.Helper()
	if got := ids(emails); !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func TestFailNext(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	e1, e2 := provider.Transient("x", errors.New("one")), provider.Auth("x", errors.New("two"))
	f.s.FailNext("A@x.test", providertest.OpFetch, e1, 2)
	f.s.FailNext("a@x.test", providertest.OpFetch, e2, 1)
	a, b := f.dial("a@x.test"), f.dial("b@x.test")
	for i, want := range []error{e1, e1, e2, nil} {
		_, err := a.FetchIncoming(f.ctx, provider.FetchRequest{})
		if err != want {
			t.Errorf("fetch %d = %v, want %v", i, err, want)
		}
	}
	if _, err := b.FetchIncoming(f.ctx, provider.FetchRequest{}); err != nil {
		t.Errorf("another mailbox's fetch = %v", err)
	}

	all := provider.Throttled("x", time.Minute, nil)
	f.s.FailAll(providertest.OpFindSent, all, 1)
	if _, err := b.FindSent(f.ctx, "m"); err != all {
		t.Errorf("FindSent after FailAll = %v", err)
	}
	if _, err := a.FindSent(f.ctx, "m"); err != nil {
		t.Errorf("second FindSent after FailAll(1) = %v", err)
	}

	f.s.FailNext("a@x.test", providertest.OpTest, e1, -1)
	for range 3 {
		if err := a.Test(f.ctx, crmsync.Incoming); err != e1 {
			t.Errorf("Test with a failure until cleared = %v", err)
		}
	}
	f.s.ClearFailures()
	if err := a.Test(f.ctx, crmsync.Incoming); err != nil {
		t.Errorf("Test after ClearFailures = %v", err)
	}
	if got := f.s.Calls(providertest.OpFetch); got != 5 {
		t.Errorf("Calls(OpFetch) = %d, want 5", got)
	}
}

func TestFailTestPerWorkload(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	bad := provider.Permanent("x", errors.New("no act"))
	f.s.FailTest("a@x.test", crmsync.ACT, bad, 1)
	c := f.dial("a@x.test")
	if err := c.Test(f.ctx, crmsync.Incoming); err != nil {
		t.Errorf("Test(incoming) = %v", err)
	}
	if err := c.Test(f.ctx, crmsync.ACT); err != bad {
		t.Errorf("Test(act) = %v, want the injected error", err)
	}
	if err := c.Test(f.ctx, crmsync.ACT); err != nil {
		t.Errorf("second Test(act) = %v", err)
	}
}

func TestDialFailuresAndAuth(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	f.s.FailNext("a@x.test", providertest.OpDial, provider.Transient("dial", errors.New("refused")), 1)
	if _, err := f.s.Dial(f.ctx, target("a@x.test", "p1")); crmsync.KindOf(err) != crmsync.KindTransient {
		t.Errorf("Dial = %v, want the injected transient error", err)
	}
	if n := f.s.OpenConnsFor("p1"); n != 0 {
		t.Errorf("a failed Dial left %d connections open", n)
	}
	f.s.SetPassword("a@x.test", "pw")
	tg := target("a@x.test", "p1")
	if _, err := f.s.Dial(f.ctx, tg); crmsync.KindOf(err) != crmsync.KindAuth {
		t.Errorf("Dial without the password = %v, want an auth error", err)
	}
	tg.Profile.CredentialSource = crmsync.CredentialsFromProfile
	tg.Profile.Credentials.Password = "pw"
	p, err := f.s.Dial(f.ctx, tg)
	if err != nil {
		t.Fatalf("Dial with the profile's password = %v", err)
	}
	p.Close()
	if _, err := f.s.Dial(f.ctx, provider.Target{}); crmsync.KindOf(err) != crmsync.KindPermanent {
		t.Errorf("Dial without a mailbox = %v, want a permanent error", err)
	}
}

func TestConnCounting(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	var conns []provider.Provider
	for i, pid := range []string{"p1", "p1", "p1", "p2", "p2"} {
		p, err := f.s.Dial(f.ctx, target(fmt.Sprintf("u%d@x.test", i), pid))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, p)
	}
	if f.s.OpenConns() != 5 || f.s.OpenConnsFor("p1") != 3 || f.s.OpenConnsFor("p2") != 2 {
		t.Errorf("open = %d, p1 %d, p2 %d; want 5, 3, 2", f.s.OpenConns(), f.s.OpenConnsFor("p1"), f.s.OpenConnsFor("p2"))
	}
	for _, p := range conns {
		p.Close()
		p.Close()
	}
	if f.s.OpenConns() != 0 || f.s.MaxOpenConns() != 5 || f.s.MaxOpenConnsFor("p1") != 3 || f.s.MaxOpenConnsFor("p3") != 0 {
		t.Errorf("after Close: open %d, max %d, max p1 %d", f.s.OpenConns(), f.s.MaxOpenConns(), f.s.MaxOpenConnsFor("p1"))
	}
	if err := conns[0].Test(f.ctx, crmsync.Incoming); crmsync.KindOf(err) != crmsync.KindPermanent {
		t.Errorf("Test on a closed connection = %v, want a permanent error", err)
	}
}

// TestConnCountingConcurrent dials under a cap of 3 from many goroutines; the fake's
// count must agree.
func TestConnCountingConcurrent(t *testing.T) {
	s := providertest.NewServer(providertest.ServerConfig{})
	sem := make(chan struct{}, 3)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p, err := s.Dial(t.Context(), target(fmt.Sprintf("u%d@x.test", i%7), "p1"))
			if err != nil {
				t.Error(err)
				return
			}
			p.(provider.IncomingMail).FetchIncoming(t.Context(), provider.FetchRequest{})
			p.Close()
		})
	}
	wg.Wait()
	if m := s.MaxOpenConnsFor("p1"); m < 1 || m > 3 {
		t.Errorf("MaxOpenConnsFor = %d, want 1–3", m)
	}
	if s.OpenConns() != 0 || s.Calls(providertest.OpDial) != 40 {
		t.Errorf("open %d, dials %d", s.OpenConns(), s.Calls(providertest.OpDial))
	}
}

func TestSend(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	f.s.AddMailbox("b@x.test")
	a := f.dial("a@x.test")
	m := &crmsync.Email{
		ID: "crm-1", MessageID: "<s1@x>", Subject: "hi", Status: crmsync.EmailSending,
		To: []crmsync.Address{{Email: "B@x.test"}, {Email: "nobody@else.test"}}, Bcc: []crmsync.Address{{Email: "b@x.test"}},
	}
	r, err := a.Send(f.ctx, m)
	if err != nil || r.MessageID != "s1@x" || !r.Copied || !r.SentAt.Equal(t0) {
		t.Fatalf("Send = %+v, %v", r, err)
	}
	inbox := f.s.Messages("b@x.test", providertest.Inbox)
	if len(inbox) != 1 || inbox[0].Bcc != nil || inbox[0].ID != "" || inbox[0].Status != 0 || inbox[0].From.Email != "a@x.test" {
		t.Errorf("recipient inbox = %+v; want one copy without Bcc and CRM fields, From the sender", inbox)
	}
	if got := f.s.Messages("nobody@else.test", providertest.Inbox); len(got) != 0 {
		t.Errorf("a recipient outside the server got %d messages", len(got))
	}
	if found, err := a.FindSent(f.ctx, "s1@x"); !found || err != nil {
		t.Errorf("FindSent = %v, %v", found, err)
	}
	if _, err := a.Send(f.ctx, &crmsync.Email{Subject: "no id"}); crmsync.KindOf(err) != crmsync.KindPermanent {
		t.Errorf("Send without a Message-ID = %v, want a permanent error", err)
	}

	// No Sent copy when the profile turns it off.
	off := false
	tg := target("c@x.test", "p1")
	tg.Profile.KeepSentCopy = &off
	p, _ := f.s.Dial(f.ctx, tg)
	defer p.Close()
	r, err = p.(provider.OutgoingMail).Send(f.ctx, &crmsync.Email{MessageID: "s2@x"})
	if err != nil || r.Copied || len(f.s.SentItems("c@x.test")) != 0 {
		t.Errorf("Send without a Sent copy = %+v, %v, %d sent items", r, err, len(f.s.SentItems("c@x.test")))
	}
	if n := len(f.s.Submitted()); n != 2 {
		t.Errorf("Submitted has %d messages, want 2", n)
	}
}

func TestSendOutcomeUnknown(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	a := f.dial("a@x.test")
	f.s.FailNext("a@x.test", providertest.OpSend, provider.Transient("send", errors.New("refused")), 1)
	f.s.SendOutcomeUnknown("a@x.test", 1)
	m := &crmsync.Email{MessageID: "u1@x", Subject: "maybe"}
	if _, err := a.Send(f.ctx, m); err == nil || errors.Is(err, providertest.ErrOutcomeUnknown) {
		t.Fatalf("first Send = %v, want the injected failure", err)
	}
	if len(f.s.Submitted()) != 0 {
		t.Fatal("a failed Send was submitted")
	}
	_, err := a.Send(f.ctx, m)
	if !errors.Is(err, providertest.ErrOutcomeUnknown) || crmsync.KindOf(err) != crmsync.KindTransient {
		t.Fatalf("second Send = %v, want a transient ErrOutcomeUnknown", err)
	}
	if len(f.s.Submitted()) != 1 || len(f.s.SentItems("a@x.test")) != 1 {
		t.Errorf("an outcome-unknown Send must be submitted and in Sent")
	}
	if found, _ := a.FindSent(f.ctx, "u1@x"); !found {
		t.Error("FindSent after an outcome-unknown Send = false")
	}
	if _, err := a.Send(f.ctx, &crmsync.Email{MessageID: "u2@x"}); err != nil {
		t.Errorf("third Send = %v", err)
	}
}

func TestFetchScreenAndPaging(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	for i := range 5 {
		f.s.Deliver("a@x.test", msg(fmt.Sprint(i)))
	}
	c := f.dial("a@x.test")
	var screened []string
	screen := func(_ context.Context, hs []*crmsync.Email) ([]bool, error) {
		v := make([]bool, len(hs))
		for i, h := range hs {
			if h.TextBody != "" || h.HTMLBody != "" || h.Attachments != nil || h.Size == 0 {
				t.Errorf("header copy %+v has a body or no size", h)
			}
			screened = append(screened, h.MessageID)
			v[i] = h.MessageID != "1"
		}
		return v, nil
	}
	b := f.fetch(c, provider.FetchRequest{Max: 2, Screen: screen})
	wantIDs(t, "first batch", b.Emails, "0")
	if !b.More || !slices.Equal(screened, []string{"0", "1"}) {
		t.Errorf("More %v, screened %v", b.More, screened)
	}
	b = f.fetch(c, provider.FetchRequest{Cursor: b.Cursor, Max: 2, Screen: screen})
	wantIDs(t, "second batch", b.Emails, "2", "3")
	b = f.fetch(c, provider.FetchRequest{Cursor: b.Cursor, Max: 2, Screen: screen})
	wantIDs(t, "third batch", b.Emails, "4")
	if b.More {
		t.Error("More after the last message")
	}
	last := b.Cursor
	b = f.fetch(c, provider.FetchRequest{Cursor: last})
	if len(b.Emails) != 0 || string(b.Cursor) != string(last) {
		t.Errorf("fetch at the end: %v, cursor changed %v", ids(b.Emails), string(b.Cursor) != string(last))
	}
	if _, err := c.FetchIncoming(f.ctx, provider.FetchRequest{Screen: func(context.Context, []*crmsync.Email) ([]bool, error) {
		return []bool{true}, nil
	}}); crmsync.KindOf(err) != crmsync.KindPermanent {
		t.Errorf("a Screen with too few verdicts = %v, want a permanent error", err)
	}

	// Returned copies are the caller's.
	b = f.fetch(c, provider.FetchRequest{})
	b.Emails[0].Subject, b.Emails[0].Attachments[0].Content[0] = "changed", 1
	if got := f.s.Messages("a@x.test", providertest.Inbox)[0]; got.Subject != "subject 0" || got.Attachments[0].Content[0] != 0 {
		t.Error("changing a fetched email changed the server's copy")
	}
}

func TestFetchSinceFoldersAndBodies(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	old := msg("old")
	f.s.Deliver("a@x.test", old)
	if old.ProviderID == "" || old.Folder != providertest.Inbox || !old.ReceivedAt.Equal(t0) {
		t.Errorf("Deliver filled in ProviderID %q, Folder %q, ReceivedAt %v", old.ProviderID, old.Folder, old.ReceivedAt)
	}
	f.clock.Advance(time.Hour)
	f.s.Deliver("a@x.test", msg("new"))
	f.s.DeliverTo("a@x.test", "Clients", msg("tracked"))
	bad := msg("bad")
	f.s.Deliver("a@x.test", bad)
	unreadable := provider.Permanent("x", errors.New("mangled MIME"))
	f.s.FailBody("a@x.test", bad.ProviderID, unreadable)
	c := f.dial("a@x.test")

	b := f.fetch(c, provider.FetchRequest{Since: t0.Add(time.Minute), AttachmentLimit: 1000})
	wantIDs(t, "since, inbox only", b.Emails, "new")
	if len(b.Failed) != 1 || b.Failed[0].Err != unreadable || b.Failed[0].MessageID != "bad" || b.Failed[0].Ref.ID != bad.ProviderID {
		t.Errorf("Failed = %+v", b.Failed)
	}
	if a := b.Emails[0].Attachments[0]; !a.Skipped || a.Content != nil || a.Size != 2000 {
		t.Errorf("attachment over the limit = %+v", a)
	}
	b = f.fetch(c, provider.FetchRequest{Folders: []string{"Clients"}})
	wantIDs(t, "with the tracked folder", b.Emails, "old", "new", "tracked")

	// A message moved into a tracked folder arrives again, with a new identity.
	cursor := b.Cursor
	newID, ok := f.s.Move("a@x.test", old.ProviderID, "Clients")
	if !ok || newID == old.ProviderID {
		t.Fatalf("Move = %q, %v", newID, ok)
	}
	b = f.fetch(c, provider.FetchRequest{Cursor: cursor, Folders: []string{"Clients"}})
	wantIDs(t, "after the move", b.Emails, "old")
	if b.Emails[0].ProviderID != newID || b.Emails[0].Folder != "Clients" {
		t.Errorf("moved message: %q in %q", b.Emails[0].ProviderID, b.Emails[0].Folder)
	}
	err := c.MoveToFolder(f.ctx, provider.ItemRef{ID: old.ProviderID}, "Undeliverable")
	if crmsync.KindOf(err) != crmsync.KindNotFound {
		t.Errorf("MoveToFolder by the old identity = %v, want not found", err)
	}
	if err := c.MoveToFolder(f.ctx, provider.ItemRef{Folder: "Clients", ID: newID}, "Undeliverable"); err != nil {
		t.Errorf("MoveToFolder = %v", err)
	}
	if got := f.s.Messages("a@x.test", "Undeliverable"); len(got) != 1 || got[0].MessageID != "old" {
		t.Errorf("Undeliverable holds %v", ids(got))
	}
}

// TestFetchWhileDelivering fetches while another goroutine delivers: every message
// arrives exactly once.
func TestFetchWhileDelivering(t *testing.T) {
	s := providertest.NewServer(providertest.ServerConfig{})
	const n = 500
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			s.Deliver("a@x.test", &crmsync.Email{MessageID: fmt.Sprint(i)})
		}
	}()
	p, err := s.Dial(t.Context(), target("a@x.test", "p1"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	im := p.(provider.IncomingMail)
	seen := make(map[string]bool)
	var cursor []byte
	for len(seen) < n {
		b, err := im.FetchIncoming(t.Context(), provider.FetchRequest{Cursor: cursor, Max: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Emails {
			if seen[m.MessageID] {
				t.Fatalf("message %s fetched twice", m.MessageID)
			}
			seen[m.MessageID] = true
		}
		cursor = b.Cursor
		if len(b.Emails) == 0 {
			select {
			case <-done:
				if b2, _ := im.FetchIncoming(t.Context(), provider.FetchRequest{Cursor: cursor}); len(b2.Emails) == 0 && len(seen) < n {
					t.Fatalf("%d of %d messages fetched", len(seen), n)
				}
			default:
			}
		}
	}
}

func TestExpireCursors(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{})
	m := msg("1")
	f.s.Deliver("a@x.test", m)
	it := f.s.PutItem("a@x.test", crmsync.Item{Kind: crmsync.KindTask, Task: &crmsync.Task{Subject: "t"}})
	c := f.dial("a@x.test")
	b := f.fetch(c, provider.FetchRequest{})
	ch, err := c.Changes(f.ctx, crmsync.KindTask, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.s.ExpireCursors("a@x.test")
	if _, err := c.FetchIncoming(f.ctx, provider.FetchRequest{Cursor: b.Cursor}); crmsync.KindOf(err) != crmsync.KindCursorExpired {
		t.Errorf("fetch with an old cursor = %v, want cursor expired", err)
	}
	if _, err := c.Changes(f.ctx, crmsync.KindTask, ch.Cursor); crmsync.KindOf(err) != crmsync.KindCursorExpired {
		t.Errorf("Changes with an old cursor = %v, want cursor expired", err)
	}
	for _, bad := range [][]byte{{}, []byte("garbage"), ch.Cursor} {
		if _, err := c.FetchIncoming(f.ctx, provider.FetchRequest{Cursor: bad}); crmsync.KindOf(err) != crmsync.KindCursorExpired {
			t.Errorf("fetch with cursor %q = %v, want cursor expired", bad, err)
		}
	}
	b = f.fetch(c, provider.FetchRequest{})
	if len(b.Emails) != 1 || b.Emails[0].ProviderID != m.ProviderID {
		t.Errorf("fetch from nil after expiry = %+v, want the message again with its identity", b.Emails)
	}
	if b = f.fetch(c, provider.FetchRequest{Cursor: b.Cursor}); len(b.Emails) != 0 {
		t.Errorf("the new cursor returned %d messages", len(b.Emails))
	}
	ch, err = c.Changes(f.ctx, crmsync.KindTask, nil)
	if err != nil || len(ch.Items) != 1 || ch.Items[0].ProviderID != it.ProviderID {
		t.Errorf("Changes from nil after expiry = %+v, %v", ch, err)
	}
}

func TestItems(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{PageSize: 2})
	for i := range 3 {
		f.s.PutItem("a@x.test", crmsync.Item{Kind: crmsync.KindContact, RecordID: "crm", Contact: &crmsync.Contact{LastName: fmt.Sprint(i)}})
	}
	c := f.dial("a@x.test")
	p1, err := c.Changes(f.ctx, crmsync.KindContact, nil)
	if err != nil || len(p1.Items) != 2 || !p1.More || p1.Items[0].RecordID != "" {
		t.Fatalf("first page = %+v, %v", p1, err)
	}
	p2, err := c.Changes(f.ctx, crmsync.KindContact, p1.Cursor)
	if err != nil || len(p2.Items) != 1 || p2.More {
		t.Fatalf("second page = %+v, %v", p2, err)
	}
	res, err := c.Apply(f.ctx, crmsync.KindContact, []provider.ItemOp{
		{Op: provider.OpCreate, Item: crmsync.Item{ProviderID: "ignored", Contact: &crmsync.Contact{LastName: "new"}}},
		{Op: provider.OpUpdate, Item: crmsync.Item{ProviderID: p1.Items[0].ProviderID, Contact: &crmsync.Contact{LastName: "0b"}}},
		{Op: provider.OpDelete, Item: crmsync.Item{ProviderID: p1.Items[1].ProviderID}},
		{Op: provider.OpUpdate, Item: crmsync.Item{ProviderID: "nope", Contact: &crmsync.Contact{}}},
		{Op: provider.OpCreate, Item: crmsync.Item{}},
	})
	if err != nil || len(res) != 5 {
		t.Fatalf("Apply = %v, %v", res, err)
	}
	if res[0].Err != nil || res[0].ProviderID == "ignored" || res[0].ChangeKey == "" || res[1].Err != nil || res[2].Err != nil {
		t.Errorf("Apply results = %+v", res)
	}
	if crmsync.KindOf(res[3].Err) != crmsync.KindNotFound || crmsync.KindOf(res[4].Err) != crmsync.KindPermanent {
		t.Errorf("Apply of a missing item and of an empty one = %v, %v", res[3].Err, res[4].Err)
	}
	ch, err := c.Changes(f.ctx, crmsync.KindContact, p2.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range ch.Items {
		if it.Deleted {
			got = append(got, "deleted")
		} else {
			got = append(got, it.Contact.LastName)
		}
	}
	if !slices.Equal(got, []string{"new", "0b"}) || !ch.More {
		t.Errorf("changes = %v (More %v), want [new 0b] and More", got, ch.More)
	}
	ch, _ = c.Changes(f.ctx, crmsync.KindContact, ch.Cursor)
	if len(ch.Items) != 1 || !ch.Items[0].Deleted || ch.Items[0].ProviderID != p1.Items[1].ProviderID {
		t.Errorf("last page = %+v, want the deletion", ch.Items)
	}
	if !f.s.DeleteItem("a@x.test", crmsync.KindContact, res[0].ProviderID) || f.s.DeleteItem("a@x.test", crmsync.KindContact, res[0].ProviderID) {
		t.Error("DeleteItem should succeed once")
	}
	if n := len(f.s.Items("a@x.test", crmsync.KindContact)); n != 2 {
		t.Errorf("Items = %d, want 2", n)
	}
}

func TestNoItemSync(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{NoItemSync: true})
	c := f.dial("a@x.test")
	if err := c.Test(f.ctx, crmsync.ACT); !errors.Is(err, crmsync.ErrNotSupported) {
		t.Errorf("Test(act) = %v", err)
	}
	if _, err := c.Changes(f.ctx, crmsync.KindTask, nil); !errors.Is(err, crmsync.ErrNotSupported) {
		t.Errorf("Changes = %v", err)
	}
	if _, err := c.Apply(f.ctx, crmsync.KindTask, nil); !errors.Is(err, crmsync.ErrNotSupported) {
		t.Errorf("Apply = %v", err)
	}
	if err := c.Test(f.ctx, crmsync.Incoming); err != nil {
		t.Errorf("Test(incoming) = %v", err)
	}
}

func TestLatency(t *testing.T) {
	f := newFixture(t, providertest.ServerConfig{Latency: 2 * time.Second})
	type result struct {
		c   provider.Provider
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := f.s.Dial(f.ctx, target("a@x.test", "p1"))
		done <- result{p, err}
	}()
	if err := f.clock.BlockUntil(f.ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := f.s.OpenConns(); n != 1 {
		t.Errorf("a Dial in progress counts as open: got %d", n)
	}
	f.clock.Advance(time.Second)
	select {
	case <-done:
		t.Fatal("Dial returned before its latency passed")
	default:
	}
	f.clock.Advance(time.Second)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()

	// Cancellation during the latency.
	ctx, cancel := context.WithCancel(f.ctx)
	errc := make(chan error, 1)
	go func() { errc <- r.c.Test(ctx, crmsync.Incoming) }()
	f.clock.BlockUntil(f.ctx, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Test canceled during latency = %v", err)
	}

	// Zero latency: no timer, no allocation.
	f.s.SetLatency(0)
	allocs := testing.AllocsPerRun(100, func() {
		if err := r.c.Test(f.ctx, crmsync.Incoming); err != nil {
			t.Fatal(err)
		}
		if _, err := r.c.(provider.OutgoingMail).FindSent(f.ctx, "x"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || f.clock.Pending() != 0 {
		t.Errorf("zero latency: %v allocations, %d timers", allocs, f.clock.Pending())
	}
}

func TestOnCall(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	f := newFixture(t, providertest.ServerConfig{OnCall: func(addr string, op providertest.Op) {
		mu.Lock()
		calls = append(calls, addr+" "+string(op))
		mu.Unlock()
	}})
	c := f.dial("A@x.test")
	c.FetchIncoming(f.ctx, provider.FetchRequest{})
	c.Send(f.ctx, &crmsync.Email{MessageID: "1"})
	mu.Lock()
	want := []string{"a@x.test dial", "a@x.test fetch", "a@x.test send"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls = %v, want %v", calls, want)
	}
	mu.Unlock()

	// A hook that cancels the caller: the call fails and does nothing.
	ctx, cancel := context.WithCancel(f.ctx)
	f.s.SetOnCall(func(string, providertest.Op) { cancel() })
	if _, err := c.Send(ctx, &crmsync.Email{MessageID: "2"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Send canceled in the hook = %v", err)
	}
	f.s.SetOnCall(nil)
	if n := len(f.s.Submitted()); n != 1 {
		t.Errorf("Submitted = %d, want 1", n)
	}
}

// BenchmarkIncomingCycle is the fake's share of an engine cycle on an empty inbox.
func BenchmarkIncomingCycle(b *testing.B) {
	s := providertest.NewServer(providertest.ServerConfig{})
	tg := target("a@x.test", "p1")
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := s.Dial(ctx, tg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := p.(provider.IncomingMail).FetchIncoming(ctx, provider.FetchRequest{}); err != nil {
				b.Fatal(err)
			}
			p.Close()
		}
	})
}
