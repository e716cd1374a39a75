package sqlstore_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
)

// A store on a SQLite file, with a key for the credentials' secrets: a mailbox is mapped
// with its password, scheduled, and claimed for its incoming cycle.
func ExampleOpenSQLite() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	key := make([]byte, 32) // in real life, from the host's secret store
	if _, err := rand.Read(key); err != nil {
		log.Fatal(err)
	}
	s, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "crmsync.db"), sqlstore.Options{
		Keys: sqlstore.Keyring{Current: "2026-01", Keys: map[sqlstore.KeyID][]byte{"2026-01": key}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ready := crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestPassed}
	if _, err := s.MapMailbox(ctx, &crmsync.Mailbox{
		ID: "mb-1", Address: "Alice@Example.com", ProfileID: "imap",
		Owner:       crmsync.Owner{Kind: crmsync.OwnerUser, ID: "alice"},
		Credentials: crmsync.Credentials{Username: "alice", Password: "s3cret"},
		Incoming:    ready,
	}, false); err != nil {
		log.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	if err := s.SetWorkload(ctx, "mb-1", crmsync.Incoming, ready, now); err != nil {
		log.Fatal(err)
	}
	claims, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "engine-1", Now: now, LeaseFor: time.Minute, Limit: 10})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range claims {
		fmt.Println(c.MailboxID, c.Mailbox.Address, c.Mailbox.Credentials.Password, c.Expires.Sub(now))
	}
	// Output: mb-1 alice@example.com s3cret 1m0s
}
