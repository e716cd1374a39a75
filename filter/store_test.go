package filter_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/filter"
)

// The method set the engine calls (syncer.Screener), restated so that filter does not
// import syncer.
type screener interface {
	Screen(ctx context.Context, mb *crmsync.Mailbox, headers []*crmsync.Email) ([]bool, error)
}

var (
	_ screener            = (*filter.Screener)(nil)
	_ filter.EmailIndex   = crmstore.Store(nil)
	_ filter.Mailboxes    = filter.StoreMailboxes{Store: crmstore.Store(nil)}
	_ filter.TokenIndex   = (*filter.MemIndex)(nil)
	_ filter.Directory    = (*filter.MemDirectory)(nil)
	_ filter.Mailboxes    = (*filter.MemMailboxes)(nil)
	_ filter.SubjectIndex = (*filter.MemIndex)(nil)
)

// A crmstore.Store is enough for duplicates, In-Reply-To correlation and recipients'
// mailboxes.
func TestScreenerOnAStore(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	s := memstore.New(memstore.WithClock(func() time.Time { return now }))
	require.NoError(t, s.PutProfile(ctx, &crmsync.ServerProfile{ID: "p1", Name: "Mail", Kind: crmsync.ServerIMAP}))
	for _, mb := range []*crmsync.Mailbox{
		{ID: "mb-ann", Address: "ann@crm.example", ProfileID: "p1", Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-ann"},
			IncomingOption: crmsync.IncomingNone},
		{ID: "mb-bob", Address: "bob@crm.example", ProfileID: "p1", Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-bob"},
			IncomingOption: crmsync.IncomingReplies},
	} {
		_, err := s.MapMailbox(ctx, mb, false)
		require.NoError(t, err)
	}
	require.NoError(t, s.CreateEmail(ctx, &crmsync.Email{MailboxID: "mb-bob", Direction: crmsync.DirectionOutgoing,
		Status: crmsync.EmailSent, MessageID: "offer@crm.example", Subject: "Offer", RegardingID: "opp-1"}))

	sc, err := filter.NewScreener(filter.Config{Index: s, Mailboxes: filter.StoreMailboxes{Store: s}})
	require.NoError(t, err)
	ann, err := s.Mailbox(ctx, "mb-ann")
	require.NoError(t, err)
	ds, err := sc.Decide(ctx, ann, []*crmsync.Email{
		{MessageID: "r1", InReplyTo: "offer@crm.example", To: []crmsync.Address{{Email: "ann@crm.example"}, {Email: "Bob@crm.example"}}},
		{MessageID: "r2", InReplyTo: "offer@crm.example", To: []crmsync.Address{{Email: "ann@crm.example"}}},
	})
	require.NoError(t, err)
	assert.Equal(t, "track (correlation match)", ds[0].String(), "Bob's mailbox accepts it")
	assert.Equal(t, "mb-bob", ds[0].Mailbox)
	assert.Equal(t, "opp-1", ds[0].Match.RegardingID())
	assert.Equal(t, "skip (no recipient match)", ds[1].String(), "Ann tracks nothing")
}
