package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// OpenSQLite opens (creating it if needed) the SQLite database at path through
// modernc.org/sqlite (pure Go, no cgo), applies the migrations, and checks the keyring.
//
// The database runs in WAL mode with foreign keys on and a busy timeout. Writes go
// through a pool of one connection, so write transactions are serialized in the
// process (and BEGIN IMMEDIATE keeps other processes out while one runs); reads go
// through a pool of their own and see the last committed state without waiting for a
// writer. path must name a file: ":memory:" would give each connection a database of
// its own.
func OpenSQLite(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlstore: OpenSQLite: path %q must name a file, without ? or #", path)
	}
	if opts.DatabaseClock != nil && *opts.DatabaseClock {
		return nil, errors.New("sqlstore: OpenSQLite: Options.DatabaseClock: SQLite has no clock shared between processes; leave it nil or false")
	}
	syncMode := strings.ToUpper(opts.SQLiteSynchronous)
	switch syncMode {
	case "":
		syncMode = "NORMAL"
	case "NORMAL", "FULL", "EXTRA":
	default:
		return nil, fmt.Errorf("sqlstore: OpenSQLite: Options.SQLiteSynchronous %q is not NORMAL, FULL or EXTRA", opts.SQLiteSynchronous)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 10 * time.Second
	}
	readers := opts.MaxConns
	if readers <= 0 {
		readers = 4
	}

	d := &dialect{
		name:       "sqlite",
		tsParam:    "?",
		maxParams:  32766,
		rowInserts: true,
		prepareHot: true,
		hot:        []string{sqliteClaimSQL, sqliteBumpTokensSQL},
		migrations: migrationsOf("sqlite"),
		timeArg:    sqliteTime,
		claim:      sqliteClaim,
		isUnique:   sqliteIsUnique,
	}
	s, err := newStore(d, opts, false)
	if err != nil {
		return nil, err
	}

	common := url.Values{}
	common.Set("_busy_timeout", fmt.Sprint(busy.Milliseconds()))
	common.Set("_foreign_keys", "1")
	common.Set("_synchronous", syncMode)
	w := url.Values{}
	for k, v := range common {
		w[k] = v
	}
	w.Set("_journal_mode", "WAL")
	w.Set("_txlock", "immediate")
	s.wdb, err = sql.Open("sqlite", path+"?"+w.Encode())
	if err != nil {
		return nil, err
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxIdleTime(0)
	s.wdb.SetConnMaxLifetime(0)
	// The writer makes the file and turns WAL on before any reader opens it.
	if err := s.wdb.PingContext(ctx); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlstore: opening %s: %w", path, err)
	}

	r := url.Values{}
	for k, v := range common {
		r[k] = v
	}
	r.Set("_query_only", "1")
	s.rdb, err = sql.Open("sqlite", path+"?"+r.Encode())
	if err != nil {
		s.wdb.Close()
		return nil, err
	}
	s.rdb.SetMaxOpenConns(readers)
	s.rdb.SetMaxIdleConns(readers)
	s.rdb.SetConnMaxIdleTime(0)
	s.rdb.SetConnMaxLifetime(0)

	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// sqliteClaimSQL leases due mailbox-workloads in one statement. Writers are serialized,
// so no row can be taken twice; the tokens are the counter's next values, handed out in
// due order.
var sqliteClaimSQL = `UPDATE mailbox_workloads
SET lease_owner = ?4, lease_expires = ?5,
	lease_token = (SELECT value FROM counters WHERE name = 'lease_token') + p.rn
FROM (
	SELECT mailbox_id AS id, row_number() OVER (ORDER BY next_run, mailbox_id) AS rn
	FROM mailbox_workloads
	WHERE workload = ?1 AND ` + runnableRow + ` AND next_run <= ?2 AND (lease_owner IS NULL OR lease_expires <= ?2)
	ORDER BY next_run, mailbox_id
	LIMIT ?3
) AS p
WHERE mailbox_workloads.workload = ?1 AND mailbox_workloads.mailbox_id = p.id
RETURNING mailbox_id, lease_token, lease_expires, next_run, cursor, failures, load`

// sqliteBumpTokensSQL moves the token counter past the tokens a claim handed out.
const sqliteBumpTokensSQL = "UPDATE counters SET value = value + ? WHERE name = 'lease_token'"

// sqliteClaim runs the claim statement and moves the token counter on, in one
// transaction.
func sqliteClaim(ctx context.Context, s *Store, a claimArgs) ([]claimedRow, error) {
	var out []claimedRow
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := s.query(ctx, tx, sqliteClaimSQL, int(a.workload), sqliteTime(a.now), a.limit, a.owner, sqliteTime(a.now.Add(a.leaseFor)))
		if err != nil {
			return err
		}
		if out, err = scanClaimed(rows); err != nil || len(out) == 0 {
			return err
		}
		_, err = s.exec(ctx, tx, sqliteBumpTokensSQL, len(out))
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].token < out[j].token })
	return out, nil
}

func sqliteIsUnique(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}
