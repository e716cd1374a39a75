package memstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
)

// One incoming cycle as the engine runs it: claim the due mailbox, commit what it
// fetched with the provider's new cursor, finish, and find the cursor on the next claim.
// Tracking the same message again, moved to another folder, is refused as a duplicate.
func Example() {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	s := memstore.New(memstore.WithClock(func() time.Time { return now }))

	_ = s.PutProfile(ctx, &crmsync.ServerProfile{ID: "p1", Name: "Mail", Kind: crmsync.ServerIMAP})
	enabled := crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestPassed}
	_, err := s.MapMailbox(ctx, &crmsync.Mailbox{
		ID: "m1", Address: "Alice@Example.com", ProfileID: "p1",
		Owner:    crmsync.Owner{Kind: crmsync.OwnerUser, ID: "alice"},
		Incoming: enabled,
	}, false)
	if err != nil {
		panic(err)
	}
	_ = s.SetWorkload(ctx, "m1", crmsync.Incoming, enabled, now)

	claims, _ := s.ClaimDue(ctx, crmstore.ClaimQuery{
		Workload: crmsync.Incoming, Owner: "engine-1", Now: now, LeaseFor: time.Minute, Limit: 10,
	})
	c := claims[0]
	fmt.Println("claimed", c.Mailbox.Address, "cursor", c.State.Cursor)

	batch := []*crmsync.Email{
		{ProviderID: "INBOX/1", MessageID: "a@example.org", Subject: "Quote"},
		{ProviderID: "Archive/9", MessageID: "a@example.org", Subject: "Quote (moved)"},
	}
	r, _ := s.TrackIncoming(ctx, c.Lease, batch, []byte("uid:1"))
	fmt.Println("tracked", r.Tracked, "duplicates", r.Duplicates)
	_ = s.FinishCycle(ctx, c.Lease, crmstore.CycleResult{
		At: now, Status: crmsync.StatusSuccess, Next: now.Add(5 * time.Minute),
	})

	// The lease is released: a late write with it is refused.
	_, err = s.TrackIncoming(ctx, c.Lease, nil, []byte("uid:2"))
	fmt.Println("late write:", err != nil)

	next, _, _ := s.NextDue(ctx, crmsync.Incoming)
	claims, _ = s.ClaimDue(ctx, crmstore.ClaimQuery{
		Workload: crmsync.Incoming, Owner: "engine-1", Now: next, LeaseFor: time.Minute, Limit: 10,
	})
	fmt.Println("next run in", next.Sub(now), "cursor", string(claims[0].State.Cursor))
	// Output:
	// claimed alice@example.com cursor []
	// tracked 1 duplicates 1
	// late write: true
	// next run in 5m0s cursor uid:1
}

// Mapping an address another user holds is refused, unless the caller takes it over.
func ExampleStore_MapMailbox() {
	ctx := context.Background()
	s := memstore.New()
	mailbox := func(id, owner string) *crmsync.Mailbox {
		return &crmsync.Mailbox{
			ID: id, Address: "sales@example.com", ProfileID: "p1",
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: owner},
		}
	}
	_, _ = s.MapMailbox(ctx, mailbox("m1", "alice"), false)

	_, err := s.MapMailbox(ctx, mailbox("m2", "bob"), false)
	fmt.Println(err)

	displaced, _ := s.MapMailbox(ctx, mailbox("m2", "bob"), true)
	fmt.Println("displaced", displaced[0].ID, "of", displaced[0].Owner)
	// Output:
	// crmsync: address sales@example.com is held by mailbox m1 of user:alice
	// displaced m1 of user:alice
}
