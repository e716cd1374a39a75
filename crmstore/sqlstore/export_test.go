package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
)

// RawDB gives the tests the store's write connection pool, to look under the hood.
func RawDB(s *Store) *sql.DB { return s.wdb }

// BulkMailboxes maps n mailboxes, mb0000000…, in profile p1, with every workload
// runnable and workload w due at due(i), much faster than n MapMailbox calls: for
// benchmarks that need many mailboxes.
func BulkMailboxes(ctx context.Context, s *Store, n int, w crmsync.Workload, due func(i int) time.Time) error {
	const chunk = 500
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < n; start += chunk {
			rows := min(chunk, n-start)
			var mbs, wls []any
			for i := start; i < start+rows; i++ {
				id := fmt.Sprintf("mb%07d", i)
				mbs = append(mbs, id, id+"@example.com", int(crmsync.OwnerUser), "u-"+id, "p1", int(crmsync.ApprovalApproved),
					s.ts(time.Time{}), "", nil, nil, nil, 0, nil)
				for _, x := range crmsync.AllWorkloads() {
					var next any
					if x == w {
						next = s.ts(due(i))
					}
					wls = append(wls, id, int(x), int(crmsync.DeliveryServerSideSync), int(crmsync.TestPassed), s.ts(time.Time{}), "",
						0, s.ts(time.Time{}), "", 0, next)
				}
			}
			if _, err := tx.ExecContext(ctx, s.valuesSQL(`INSERT INTO mailboxes (id, address, owner_kind, owner_id, profile_id,
	approval, process_email_after, username, password, refresh_token, secret_key, incoming_option, tracked_folders) VALUES `, 13, rows, ""), mbs...); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.valuesSQL(`INSERT INTO mailbox_workloads (mailbox_id, workload, method, test, tested_at,
	test_error, status, status_at, last_error, last_error_kind, next_run) VALUES `, 11, rows*crmsync.NumWorkloads, ""), wls...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A bulk load leaves the planner without statistics until autovacuum comes by (a
	// minute later, by default); a host loading mailboxes in bulk should do the same.
	if s.d.name == "postgres" {
		_, err = s.wdb.ExecContext(ctx, "ANALYZE mailboxes, mailbox_workloads")
	}
	return err
}

// MigrationNames lists the names of a dialect's migrations in order.
func MigrationNames(dialect string) ([]string, error) {
	ms, err := loadMigrations(migrationsOf(dialect))
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	return names, err
}

// AtSchemaVersion returns opts that make OpenSQLite and OpenPostgres apply only the
// first v migrations, leaving the database as the code of that version did. The store
// opened is good for RawDB, SchemaVersion and Close only.
func AtSchemaVersion(opts Options, v int) Options {
	opts.schemaVersion = v
	return opts
}

// Rebind returns query, written with ? placeholders, in the store's dialect.
func Rebind(s *Store, query string) string { return s.q(query) }

// TimeArg returns t as the argument of a time column of the store's dialect.
func TimeArg(s *Store, t time.Time) any { return s.ts(t) }

// CorrelationSQL returns the statement of a correlation lookup by column col
// (tracking_token, conversation_id or subject_hash) of n keys, in the store's dialect:
// its arguments are the keys, then, for subject_hash, the lower bound of created_at.
func CorrelationSQL(s *Store, col string, n int) string {
	return s.q(correlationSQL(col, n, col == "subject_hash"))
}
