package providertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// Harness connects RunConformance to a provider and a server it can talk to: a real
// server started by a script, an in-process one, or the fake of this package.
//
// Optional abilities are optional interfaces, found by type assertion: DatedDeliverer
// and BadCredentialer. Subtests that need one are skipped when the harness lacks it.
type Harness interface {
	// Dial opens a connection of the provider under test for a target that NewMailbox
	// returned. The suite closes every connection it opens.
	provider.Dialer
	// Capabilities says what the provider is documented to do. A subtest of a
	// capability the provider lacks is skipped, and the suite checks instead that Test
	// of the workload it would serve fails with crmsync.ErrNotSupported.
	Capabilities() Capabilities
	// NewMailbox returns the target (profile, mailbox and credentials) of a mailbox
	// that is empty: no messages in its inbox, Sent folder or tracked folders, and no
	// items. It is called once per subtest; the harness may create a mailbox, or empty
	// one it reuses, and may register clean-up with t.Cleanup. It reports a failure with
	// t.Fatal.
	NewMailbox(ctx context.Context, t *testing.T) provider.Target
	// Deliver puts a raw RFC 5322 message (CRLF line ends) into the inbox of the
	// target's mailbox, as the server's own delivery would. When it returns, the
	// message must be visible to FetchIncoming.
	Deliver(ctx context.Context, to provider.Target, raw []byte) error
}

// Capabilities are what a provider under test is documented to do.
type Capabilities struct {
	// Incoming: connections implement provider.IncomingMail.
	Incoming bool
	// Outgoing: connections implement provider.OutgoingMail.
	Outgoing bool
	// Folders: connections implement provider.FolderMover, and FetchIncoming reads the
	// folders of FetchRequest.Folders.
	Folders bool
	// ItemKinds are the item kinds connections sync through provider.ItemSync; empty
	// means the provider has no ItemSync (Test(ACT) must fail with ErrNotSupported).
	ItemKinds []crmsync.ItemKind
	// SendDelivers: a message sent to the mailbox's own address arrives in its inbox
	// (within DeliveryWait).
	SendDelivers bool
	// DeliveryWait bounds how long the suite waits for a sent message to show up in
	// Sent Items or in an inbox, for servers that file them asynchronously (Graph's
	// sendMail). Default 30 seconds.
	DeliveryWait time.Duration
}

// DatedDeliverer is an optional interface of a Harness that can deliver a message with
// a received time of its choosing (IMAP APPEND with an internal date, say). The suite
// uses it to check that FetchRequest.Since leaves out older messages.
type DatedDeliverer interface {
	DeliverAt(ctx context.Context, to provider.Target, raw []byte, received time.Time) error
}

// BadCredentialer is an optional interface of a Harness that can spoil a target's
// credentials (a wrong password, a revoked token). The suite checks that Dial or Test
// with them fails with a crmsync.KindAuth error.
type BadCredentialer interface {
	WithBadCredentials(t provider.Target) provider.Target
}

// RunConformance runs the provider conformance suite: every provider runs it against
// its server, with one call from its tests. Each subtest gets a fresh mailbox from the
// harness and runs with a time limit of two minutes.
func RunConformance(t *testing.T, h Harness) {
	s := &suite{h: h, caps: h.Capabilities(), run: fmt.Sprintf("%x", time.Now().UnixNano())}
	if s.caps.DeliveryWait <= 0 {
		s.caps.DeliveryWait = 30 * time.Second
	}
	tests := []struct {
		name string
		need func(Capabilities) bool
		fn   func(*testing.T, *env)
	}{
		{"Test", nil, s.testProbe},
		{"BadCredentials", nil, s.testBadCredentials},
		{"Incoming/Empty", incoming, s.testEmpty},
		{"Incoming/Parse", incoming, s.testParse},
		{"Incoming/Bodies", incoming, s.testBodies},
		{"Incoming/AttachmentLimit", incoming, s.testAttachmentLimit},
		{"Incoming/Cursor", incoming, s.testCursor},
		{"Incoming/MaxAndMore", incoming, s.testMaxAndMore},
		{"Incoming/Since", incoming, s.testSince},
		{"Incoming/SinceDated", incoming, s.testSinceDated},
		{"Incoming/Screen", incoming, s.testScreen},
		{"Incoming/ScreenError", incoming, s.testScreenError},
		{"Folders/Move", folders, s.testMove},
		{"Folders/MoveNotFound", folders, s.testMoveNotFound},
		{"Outgoing/SendFindSent", outgoing, s.testSendFindSent},
		{"Outgoing/FindSentUnknown", outgoing, s.testFindSentUnknown},
		{"Outgoing/SendDelivers", func(c Capabilities) bool { return c.Outgoing && c.SendDelivers }, s.testSendDelivers},
		{"Items", func(c Capabilities) bool { return len(c.ItemKinds) > 0 }, s.testItems},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.need != nil && !tc.need(s.caps) {
				t.Skip("the provider does not have this capability (Harness.Capabilities)")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			tc.fn(t, &env{ctx: ctx, target: h.NewMailbox(ctx, t)})
		})
	}
}

func incoming(c Capabilities) bool { return c.Incoming }
func folders(c Capabilities) bool  { return c.Incoming && c.Folders }
func outgoing(c Capabilities) bool { return c.Outgoing }

// suite is one run of RunConformance.
type suite struct {
	h    Harness
	caps Capabilities
	run  string       // makes Message-IDs unique across runs
	n    atomic.Int64 // makes Message-IDs unique within a run
}

// env is what one subtest works with.
type env struct {
	ctx    context.Context
	target provider.Target
}

func (e *env) address() string { return e.target.Mailbox.Address }

// dial opens a connection that the subtest closes at its end.
func (s *suite) dial(t *testing.T, e *env) provider.Provider {
	t.Helper()
	p, err := s.h.Dial(e.ctx, e.target)
	if err != nil {
		t.Fatalf("Dial(%s): %v", e.address(), err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func (s *suite) incomingConn(t *testing.T, e *env) provider.IncomingMail {
	t.Helper()
	im, ok := s.dial(t, e).(provider.IncomingMail)
	if !ok {
		t.Fatal("Capabilities.Incoming is set but the connection is not a provider.IncomingMail")
	}
	return im
}

// messageID returns a Message-ID no other test message has.
func (s *suite) messageID() string {
	return fmt.Sprintf("%s.%d@conformance.crmsync.test", s.run, s.n.Add(1))
}

// testProbe checks Test for every workload: it passes for the capabilities the harness
// claims and fails with ErrNotSupported for the others; and the connection implements
// the capability interfaces it claims.
func (s *suite) testProbe(t *testing.T, e *env) {
	p := s.dial(t, e)
	has := map[crmsync.Workload]bool{
		crmsync.Incoming: s.caps.Incoming,
		crmsync.Outgoing: s.caps.Outgoing,
		crmsync.ACT:      len(s.caps.ItemKinds) > 0,
	}
	for _, w := range crmsync.AllWorkloads() {
		err := p.Test(e.ctx, w)
		switch {
		case has[w] && err != nil:
			t.Errorf("Test(%s) = %v, want nil", w, err)
		case !has[w] && !errors.Is(err, crmsync.ErrNotSupported):
			t.Errorf("Test(%s) of a capability the provider lacks = %v, want an error wrapping crmsync.ErrNotSupported", w, err)
		}
	}
	checks := []struct {
		claim bool
		ok    bool
		name  string
	}{
		{s.caps.Incoming, isA[provider.IncomingMail](p), "provider.IncomingMail"},
		{s.caps.Outgoing, isA[provider.OutgoingMail](p), "provider.OutgoingMail"},
		{s.caps.Folders, isA[provider.FolderMover](p), "provider.FolderMover"},
		{len(s.caps.ItemKinds) > 0, isA[provider.ItemSync](p), "provider.ItemSync"},
	}
	for _, c := range checks {
		if c.claim && !c.ok {
			t.Errorf("the capabilities claim %s but the connection does not implement it", c.name)
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	p.Close() // safe to call more than once
}

func isA[T any](p provider.Provider) bool {
	_, ok := p.(T)
	return ok
}

// testBadCredentials checks that spoiled credentials give an auth error.
func (s *suite) testBadCredentials(t *testing.T, e *env) {
	bc, ok := s.h.(BadCredentialer)
	if !ok {
		t.Skip("the harness is not a BadCredentialer")
	}
	bad := bc.WithBadCredentials(e.target)
	p, err := s.h.Dial(e.ctx, bad)
	if err == nil {
		w := crmsync.Incoming
		if !s.caps.Incoming {
			w = crmsync.Outgoing
		}
		err = p.Test(e.ctx, w)
		p.Close()
	}
	if k := crmsync.KindOf(err); k != crmsync.KindAuth {
		t.Errorf("Dial and Test with bad credentials: error %v of kind %s, want kind auth", err, k)
	}
}

// fetchAll fetches from cursor until More is false and returns the emails and the last
// cursor. It fails the test if a batch breaks Max or the paging does not end.
func fetchAll(t *testing.T, ctx context.Context, im provider.IncomingMail, req provider.FetchRequest) ([]*crmsync.Email, []byte) {
	t.Helper()
	var all []*crmsync.Email
	for range 1000 {
		b, err := im.FetchIncoming(ctx, req)
		if err != nil {
			t.Fatalf("FetchIncoming: %v", err)
		}
		if req.Max > 0 && len(b.Emails)+len(b.Failed) > req.Max {
			t.Fatalf("FetchIncoming with Max %d returned %d messages", req.Max, len(b.Emails)+len(b.Failed))
		}
		for _, f := range b.Failed {
			t.Errorf("FetchIncoming could not read %s: %v", f.Ref, f.Err)
		}
		all = append(all, b.Emails...)
		req.Cursor = b.Cursor
		if !b.More {
			return all, b.Cursor
		}
	}
	t.Fatal("FetchIncoming kept saying More after 1000 batches")
	return nil, nil
}

// byMessageID indexes emails by Message-ID and fails the test on a duplicate, or on an
// email without ProviderID or Folder.
func byMessageID(t *testing.T, emails []*crmsync.Email) map[string]*crmsync.Email {
	t.Helper()
	out := make(map[string]*crmsync.Email, len(emails))
	ids := make(map[string]bool, len(emails))
	for _, m := range emails {
		if m.ProviderID == "" || m.Folder == "" {
			t.Errorf("message %q has ProviderID %q and Folder %q; both must be set", m.MessageID, m.ProviderID, m.Folder)
		}
		if out[m.MessageID] != nil || ids[m.ProviderID] {
			t.Errorf("message %q (ProviderID %q) returned twice", m.MessageID, m.ProviderID)
		}
		out[m.MessageID] = m
		ids[m.ProviderID] = true
	}
	return out
}

// wantIDs fails the test unless emails are exactly the messages with the ids.
func wantIDs(t *testing.T, what string, emails []*crmsync.Email, ids ...string) {
	t.Helper()
	got := byMessageID(t, emails)
	for _, id := range ids {
		if got[id] == nil {
			t.Errorf("%s: message %s missing", what, id)
		}
	}
	if len(got) != len(ids) {
		var names []string
		for id := range got {
			names = append(names, id)
		}
		t.Errorf("%s: got messages %s, want %s", what, strings.Join(names, " "), strings.Join(ids, " "))
	}
}

// eventually calls cond until it reports true, fails, or wait passes.
func eventually(ctx context.Context, wait time.Duration, cond func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		ok, err := cond()
		if ok || err != nil || time.Now().After(deadline) {
			return ok, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
