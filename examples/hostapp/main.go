// Command hostapp shows a CRM backend plugging its own persistence into crmsync.
//
// A host implements crmstore.Store over its database. Here the host keeps everything in
// crmstore/memstore (standing in for the host's tables) and adds its own behaviour at the
// two points a CRM cares about most: every incoming email the engine tracks becomes an
// entry on the CRM's activity timeline, and every status change of an outgoing email is
// recorded in the CRM's audit log. store_test.go proves the Store with the conformance
// suite, crmstore/storetest, in one call: that is all a host has to do to know its
// Store keeps the engine's promises.
//
// Run it with: go run ./examples/hostapp
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/syncer"
)

// Timeline is the host CRM's own activity feed.
type Timeline struct {
	mu      sync.Mutex
	entries []string
}

func (t *Timeline) add(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, fmt.Sprintf(format, args...))
}

// Entries returns the timeline so far.
func (t *Timeline) Entries() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.entries...)
}

// HostStore is the host's crmstore.Store: its tables (here a memstore) plus hooks into the
// rest of the CRM. Embedding gives every method; the host overrides the ones it extends
// and keeps their contract, which the conformance suite checks.
type HostStore struct {
	*memstore.Store
	Timeline *Timeline
}

// NewHostStore returns a HostStore with an empty timeline.
func NewHostStore() *HostStore {
	return &HostStore{Store: memstore.New(), Timeline: &Timeline{}}
}

// TrackIncoming commits the batch (atomically, with its cursor) and then puts the newly
// tracked emails on the timeline. Duplicates the Store refused are not announced twice.
func (s *HostStore) TrackIncoming(ctx context.Context, l crmstore.Lease, emails []*crmsync.Email, cursor []byte) (crmstore.TrackResult, error) {
	res, err := s.Store.TrackIncoming(ctx, l, emails, cursor)
	if err != nil {
		return res, err
	}
	for i, id := range res.IDs {
		if id != "" {
			s.Timeline.add("email received by %s from %s: %q", l.MailboxID, emails[i].From.Email, emails[i].Subject)
		}
	}
	return res, nil
}

// FinishSend records the outcome and logs it on the timeline.
func (s *HostStore) FinishSend(ctx context.Context, l crmstore.Lease, id string, r crmstore.SendResult) error {
	if err := s.Store.FinishSend(ctx, l, id, r); err != nil {
		return err
	}
	s.Timeline.add("email %s is now %s", id, r.Status)
	return nil
}

var _ crmstore.Store = (*HostStore)(nil)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	store := NewHostStore()
	// The fake provider stands in for a mail server, so this runs anywhere.
	server := providertest.NewServer(providertest.ServerConfig{})
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: server})
	if err != nil {
		return err
	}
	if err := eng.PutProfile(ctx, &crmsync.ServerProfile{ID: "corp", Name: "Corporate IMAP", Kind: crmsync.ServerIMAP}); err != nil {
		return err
	}
	for _, user := range []string{"alice", "bob"} {
		server.AddMailbox(user + "@example.test")
		_, err := eng.MapMailbox(ctx, &crmsync.Mailbox{
			ID: "mb-" + user, Address: user + "@example.test", ProfileID: "corp",
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: user}, Approval: crmsync.ApprovalApproved,
			Incoming: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
			Outgoing: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
		}, syncer.MapOptions{})
		if err != nil {
			return err
		}
		if _, err := eng.TestAndEnable(ctx, "mb-"+user); err != nil {
			return err
		}
	}
	// The CRM writes a draft and asks to send it.
	draft := &crmsync.Email{MailboxID: "mb-alice", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
		From: crmsync.Address{Email: "alice@example.test"}, To: []crmsync.Address{{Email: "bob@example.test"}},
		Subject: "Renewal quote", TextBody: "Please find the quote attached."}
	if err := store.CreateEmail(ctx, draft); err != nil {
		return err
	}
	if _, err := eng.SendEmail(ctx, draft.ID, syncer.SendOptions{}); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(ctx)

	// Alice's first outgoing cycle runs at once and sends the draft to bob; wait for
	// the engine to report it through the host's store.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(store.Timeline.Entries()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	for _, e := range store.Timeline.Entries() {
		fmt.Fprintln(os.Stdout, "timeline:", e)
	}
	sent, err := store.Email(ctx, draft.ID)
	if err != nil {
		return err
	}
	fmt.Printf("the draft is %s after %d delivery attempt(s); bob's mailbox holds %d message(s)\n",
		sent.Status, sent.DeliveryAttempts, len(server.Messages("bob@example.test", providertest.Inbox)))
	return nil
}
