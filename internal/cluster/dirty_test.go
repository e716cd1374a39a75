package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/syncer"
)

// PostgreSQL refuses NUL bytes and invalid UTF-8 in text; mail in the wild has both. The
// engine sanitizes what it tracks, so one dirty message neither fails its batch nor is
// lost.
func TestDirtyMessageIsTrackedOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL; run without -short")
	}
	ctx := context.Background()
	store, err := sqlstore.OpenPostgres(ctx, testenv.Postgres(t), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	fake := providertest.NewServer(providertest.ServerConfig{})
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: fake, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.PutProfile(ctx, &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerIMAP}); err != nil {
		t.Fatal(err)
	}
	m := &crmsync.Mailbox{ID: "mb", Address: "dirty@cluster.test", ProfileID: "p", Approval: crmsync.ApprovalApproved,
		Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u"}, Incoming: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync}}
	fake.AddMailbox(m.Address)
	if _, err := eng.MapMailbox(ctx, m, syncer.MapOptions{}); err != nil {
		t.Fatal(err)
	}
	if r, err := eng.TestAndEnable(ctx, m.ID); err != nil || r.Err() != nil {
		t.Fatal(err, r.Err())
	}
	fake.Deliver(m.Address,
		&crmsync.Email{MessageID: "dirty@x", Subject: "caf\xe9\x00 menu", TextBody: "a\x00b", From: crmsync.Address{Name: "\xff", Email: "s@x.test"}},
		&crmsync.Email{MessageID: "clean@x", Subject: "clean", From: crmsync.Address{Email: "s@x.test"}})
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop(ctx)
	var got []*crmsync.Email
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(got) < 2; time.Sleep(50 * time.Millisecond) {
		got, err = store.ListEmails(ctx, crmstore.EmailQuery{MailboxID: m.ID})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 {
		mb, _ := store.Mailbox(ctx, m.ID)
		t.Fatalf("tracked %d of 2 messages; last error: %s", len(got), mb.Incoming.LastError)
	}
	for _, e := range got {
		if e.MessageID == "dirty@x" && (e.Subject != "caf\uFFFD menu" || e.TextBody != "ab") {
			t.Errorf("dirty message stored as %q / %q", e.Subject, e.TextBody)
		}
	}
}
