package syncer_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/filter"
	"github.com/crmsync/crmsync/syncer"
)

// With the filter package as Screener and Linker, a replies-only mailbox tracks the reply
// to its CRM email, linked to the same regarding record, and leaves unrelated mail alone
// (its body is never fetched).
func TestRepliesOnlyWithFilter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		f, err := filter.NewScreener(filter.Config{Index: h.store})
		require.NoError(t, err)
		eng, err := syncer.New(syncer.Config{Store: h.store, Dialer: h.fake, Observer: h.obs, Screener: f, Linker: f})
		require.NoError(t, err)
		h.eng = eng
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Incoming, crmsync.Outgoing)
		require.Equal(t, crmsync.IncomingReplies, alice.IncomingOption, "the default option")

		out := &crmsync.Email{MailboxID: alice.ID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
			From: crmsync.Address{Email: alice.Address}, To: []crmsync.Address{{Email: "buyer@customer.test"}},
			Subject: "Your quote", RegardingID: "opportunity-42"}
		require.NoError(t, h.store.CreateEmail(h.ctx, out))
		sent, err := h.eng.SendEmail(h.ctx, out.ID, syncer.SendOptions{})
		require.NoError(t, err)
		h.enable("mb-alice")
		h.start()
		synctest.Wait()

		h.fake.Deliver(alice.Address,
			&crmsync.Email{MessageID: "reply-1@customer.test", InReplyTo: sent.MessageID, Subject: "Re: Your quote",
				From: crmsync.Address{Email: "buyer@customer.test"}, To: []crmsync.Address{{Email: alice.Address}}, TextBody: "yes"},
			&crmsync.Email{MessageID: "spam-1@elsewhere.test", Subject: "Cheap watches",
				From: crmsync.Address{Email: "spam@elsewhere.test"}, To: []crmsync.Address{{Email: alice.Address}}, TextBody: "buy"})
		h.sleep(5 * time.Minute)

		got := h.emails(alice.ID, crmsync.EmailReceived)
		require.Len(t, got, 1, "only the reply is tracked")
		assert.Equal(t, "reply-1@customer.test", got[0].MessageID)
		assert.Equal(t, "opportunity-42", got[0].RegardingID, "the reply is linked to the CRM email's regarding record")
		assert.Equal(t, crmsync.CorrelationInReplyTo, got[0].Correlation)
		require.NotEmpty(t, got[0].Parties, "the parties are kept, resolved or not")
		assert.Equal(t, crmsync.PartyFrom, got[0].Parties[0].Role)
		assert.Equal(t, "buyer@customer.test", got[0].Parties[0].Address.Email)
	})
}

// An outgoing CRM email is stamped with a tracking token; a reply that lost its
// threading headers is still correlated by the token in its subject.
func TestTrackingTokenCorrelation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		f, err := filter.NewScreener(filter.Config{Index: h.store})
		require.NoError(t, err)
		stamper := filter.NewStamper(f, func(context.Context, *crmsync.Email) (int64, error) { return 7, nil })
		eng, err := syncer.New(syncer.Config{Store: h.store, Dialer: h.fake, Observer: h.obs, Screener: f, Linker: f, Stamper: stamper})
		require.NoError(t, err)
		h.eng = eng
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Incoming, crmsync.Outgoing)
		out := &crmsync.Email{MailboxID: alice.ID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
			From: crmsync.Address{Email: alice.Address}, To: []crmsync.Address{{Email: "buyer@customer.test"}},
			Subject: "Renewal terms", RegardingID: "account-9"}
		require.NoError(t, h.store.CreateEmail(h.ctx, out))
		sent, err := h.eng.SendEmail(h.ctx, out.ID, syncer.SendOptions{})
		require.NoError(t, err)
		require.NotEmpty(t, sent.TrackingToken)
		assert.Equal(t, "Renewal terms "+sent.TrackingToken, sent.Subject)
		assert.Regexp(t, `^CRM:0007\d{3}$`, sent.TrackingToken, "prefix, then user number 007 and a 3-digit counter")
		h.enable("mb-alice")
		h.start()
		synctest.Wait()
		require.Len(t, h.fake.Submitted(), 1)
		assert.Equal(t, sent.Subject, h.fake.Submitted()[0].Subject, "the token goes out in the subject")

		// The customer's client dropped In-Reply-To and References.
		h.fake.Deliver(alice.Address, &crmsync.Email{MessageID: "reply-2@customer.test", Subject: "AW: " + sent.Subject,
			From: crmsync.Address{Email: "buyer@customer.test"}, To: []crmsync.Address{{Email: alice.Address}}, TextBody: "ok"})
		h.sleep(5 * time.Minute)
		got := h.emails(alice.ID, crmsync.EmailReceived)
		require.Len(t, got, 1)
		assert.Equal(t, crmsync.CorrelationTrackingToken, got[0].Correlation)
		assert.Equal(t, "account-9", got[0].RegardingID)
		assert.Equal(t, sent.TrackingToken, got[0].TrackingToken)
	})
}
