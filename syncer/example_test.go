package syncer_test

import (
	"context"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/syncer"
)

// An engine on the in-memory store and the fake provider: map a mailbox, pass Test &
// Enable, and the next incoming cycle tracks what arrived.
func ExampleEngine() {
	ctx := context.Background()
	store := memstore.New()
	server := providertest.NewServer(providertest.ServerConfig{})
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: server})
	if err != nil {
		panic(err)
	}
	if err := eng.PutProfile(ctx, &crmsync.ServerProfile{ID: "corp", Kind: crmsync.ServerIMAP}); err != nil {
		panic(err)
	}
	_, err = eng.MapMailbox(ctx, &crmsync.Mailbox{
		ID: "mb-alice", Address: "alice@example.test", ProfileID: "corp",
		Owner:    crmsync.Owner{Kind: crmsync.OwnerUser, ID: "alice"},
		Approval: crmsync.ApprovalApproved,
		Incoming: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
	}, syncer.MapOptions{})
	if err != nil {
		panic(err)
	}
	report, err := eng.TestAndEnable(ctx, "mb-alice")
	if err != nil {
		panic(err)
	}
	fmt.Println("incoming passed:", report.Passed(crmsync.Incoming))

	server.Deliver("alice@example.test", &crmsync.Email{
		MessageID: "order-1@customer.test", Subject: "Order #1",
		From: crmsync.Address{Email: "buyer@customer.test"}, To: []crmsync.Address{{Email: "alice@example.test"}},
	})
	if err := eng.Start(ctx); err != nil {
		panic(err)
	}
	defer eng.Stop(ctx)

	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tracked, _ := store.ListEmails(ctx, crmstore.EmailQuery{MailboxID: "mb-alice"})
		if len(tracked) > 0 {
			fmt.Println("tracked:", tracked[0].Subject, "-", tracked[0].Status)
			break
		}
	}
	// Output:
	// incoming passed: true
	// tracked: Order #1 - received
}
