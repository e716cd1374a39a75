// Package sqlstore is crmstore.Store on SQL: SQLite for one process (the embedded
// default: a file, no server, no cgo) and PostgreSQL for several engines sharing one
// database. Both pass crmstore/storetest, the conformance suite.
//
//	s, err := sqlstore.OpenSQLite(ctx, "crmsync.db", sqlstore.Options{Keys: keys})
//	s, err := sqlstore.OpenPostgres(ctx, "postgres://crm@db/crm", sqlstore.Options{Keys: keys})
//
// # One core, two dialects
//
// The SQL is written once, with ? placeholders, and run through database/sql; a small
// dialect value holds what differs: placeholders ($1 on PostgreSQL), column types
// (timestamptz, bytea and jsonb there; integer microseconds, BLOB and JSON text on
// SQLite), the claim statement, the fencing-token counter and the database clock.
// Only the two constructors' files, sqlite.go (modernc.org/sqlite) and postgres.go
// (github.com/jackc/pgx/v5 through its database/sql adapter), import a driver.
//
// The schema is versioned: migrations/sqlite and migrations/postgres hold the same
// numbered migrations, embedded in the binary and applied in one transaction when a
// Store opens the database (on PostgreSQL under an advisory lock, so several engines
// may start at once). The schema_version table records them, and a database migrated
// by newer code is refused with a *SchemaTooNewError.
//
// # Tables and hot paths
//
// mailboxes holds one row per mailbox, and mailbox_workloads one row per mailbox and
// workload: its state, next run, lease (owner, fencing token, expiry) and sync state
// (cursor, failures, load). A partial index on (workload, next_run) holds the runnable,
// scheduled rows, so ClaimDue reads one range of it whatever the number of mailboxes;
// whether a row is held is checked on the row, so that a claim, which changes only the
// lease columns, updates the row in place and touches no index (the price: a claim
// passes over the rows held at the time). emails has partial unique indexes on
// (mailbox_id, provider_id) and (message_id, mailbox_id) where not empty (the second
// also finds a Message-ID in any mailbox): TrackIncoming checks the lease, inserts the
// batch with ON CONFLICT DO NOTHING (what was not inserted is a duplicate) and saves the
// cursor, in one transaction. The correlation keys of emails (tracking token,
// conversation ID, subject hash; migration 0002) have partial indexes where not empty,
// the subject hash's on (subject_hash, created_at), so that EmailsByTrackingToken,
// EmailsByConversationID and EmailsBySubjectHash (filter's optional lookups) each read
// one index. Lists are JSON columns, the parties an email was resolved to (migration
// 0003) among them; attachments are rows of email_attachments with their content as a
// blob.
//
// # Leases
//
// A claim sets the row's lease owner, expiry and a new fencing token drawn from one
// counter for the whole database (a sequence on PostgreSQL), so tokens grow per
// mailbox-workload and are never reused, not even by a mailbox mapped again after it
// was deleted. Every write of a cycle checks owner and token in its own transaction
// and fails with crmstore.ErrLeaseLost, writing nothing, when they no longer match.
//
// SQLite serializes writers (one write connection, BEGIN IMMEDIATE), so a claim is one
// UPDATE … FROM over the due rows. On PostgreSQL a claim is one
// UPDATE … FROM (SELECT … ORDER BY next_run LIMIT n FOR UPDATE SKIP LOCKED):
// concurrent claimers skip each other's rows instead of waiting, and never take one
// twice. By default PostgreSQL's clock, not the engines', decides when runs are due and
// leases expire (Options.DatabaseClock). The FinishCycle calls of an engine's workers
// that arrive together share one statement there (a group commit).
//
// # Speed
//
// On SQLite, the statements of the hot paths are prepared once, and TrackIncoming
// inserts row by row with its prepared statement: in process, parsing costs more than
// running. On PostgreSQL, where a round trip costs more than a row, TrackIncoming
// inserts the batch with one statement, and pgx keeps every statement prepared.
//
// # Secrets
//
// The passwords and refresh tokens of profiles and mailboxes are stored encrypted with
// AES-256-GCM under keys the host supplies (Options.Keys, a Keyring), never in clear;
// RotateKeys re-encrypts them under a new key.
//
// # Writing your own store
//
// A host that keeps its CRM in its own database can take this package as the pattern:
// copy the schema into its migrations, keep the two invariants that make the promises
// of crmstore hold (a unique index per mailbox on provider ID and on Message-ID, and a
// lease check in the same transaction as every cycle write), map its own tables in
// the read and write functions, and run crmstore/storetest against it:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) crmstore.Store { return openMyStore(t) })
//	}
package sqlstore
