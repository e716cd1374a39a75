package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// Store is a crmstore.Store on SQLite or PostgreSQL. Open one with OpenSQLite or
// OpenPostgres; it is safe for concurrent use, and on PostgreSQL several Stores (in
// several processes) may share one database.
type Store struct {
	d    *dialect
	wdb  *sql.DB // transactions that write; on SQLite its only connection
	rdb  *sql.DB // reads; on PostgreSQL the same pool as wdb
	keys *keyring
	now  func() time.Time
	// dbClock: due times and lease expiry are judged by the database's clock, not by
	// ClaimQuery.Now.
	dbClock bool
	ids     idGen
	// schemaVersion is Options.schemaVersion.
	schemaVersion int

	// sql holds the hot statements in the dialect's form, made once.
	sql struct {
		saveCursor, insertEmail, finishCycle string
	}
	// prepared holds the hot statements prepared when the store opens, by their SQL,
	// where the dialect has prepareHot; read-only after OpenSQLite.
	prepared map[string]*sql.Stmt

	finish finishGroup // FinishCycle calls waiting to go to the database together

	rebound   sync.Map // SQL written with ? placeholders → the dialect's form
	values    sync.Map // valuesKey → multi-row INSERT in the dialect's form
	closeOnce sync.Once
	closeErr  error
}

var _ crmstore.Store = (*Store)(nil)

// Options configure a Store. The zero value is valid: no secrets can be stored, store
// times come from time.Now, and each dialect's defaults apply.
type Options struct {
	// Keys encrypt the secrets of credentials (passwords and refresh tokens) with
	// AES-256-GCM. Without keys, a profile or mailbox whose credentials hold a secret
	// is refused (secrets are never stored in clear), and opening a database that
	// holds secrets fails. See Keyring and Store.RotateKeys.
	Keys Keyring

	// DatabaseClock makes ClaimDue, NextDue and RenewLease judge due times and lease
	// expiry by the database's clock (PostgreSQL's now()) instead of ClaimQuery.Now,
	// so that engines whose clocks disagree still share leases safely: the database
	// is authoritative. Leases then carry database times, and RenewLease extends a
	// lease by the time between the store's clock (Now) and until. Nil means the
	// dialect's default: true on PostgreSQL. SQLite, one process's database, has no
	// clock of its own: it always uses ClaimQuery.Now, and true is refused.
	//
	// Set it to false on PostgreSQL to run engines on a fake clock (as
	// crmstore/storetest does).
	DatabaseClock *bool

	// Now is the clock of the times the store fills in itself (an email's CreatedAt and
	// ModifiedAt when left zero). Nil means time.Now.
	Now func() time.Time

	// MaxConns bounds the connections to the database: on PostgreSQL the pool (default
	// 10), on SQLite the readers (default 4; writes always go through one connection).
	MaxConns int

	// BusyTimeout is how long a SQLite connection waits for a lock held by another
	// process before it fails with "database is locked". Zero means 10 s. PostgreSQL
	// ignores it.
	BusyTimeout time.Duration

	// SQLiteSynchronous is SQLite's PRAGMA synchronous: "NORMAL" (the default; in WAL
	// mode a crash of the process loses nothing, a crash of the machine may lose the
	// last transactions but never corrupts) or "FULL" (every commit is on disk when it
	// returns). PostgreSQL ignores it.
	SQLiteSynchronous string

	// schemaVersion, when positive, stops the migrations at this version and leaves the
	// store good for nothing but a look at the database: for the tests of upgrades
	// (export_test.go), which need a database as older code left it.
	schemaVersion int
}

// dialect is what differs between SQLite and PostgreSQL. The core SQL is written once,
// with ? placeholders; what cannot be written once (the claim statement, how the next
// fencing tokens are drawn, the database clock) is a dialect field. Driver-specific
// error codes come in as functions, so that only the two constructors' files import a
// driver.
type dialect struct {
	name string
	// dollar: placeholders are $1, $2, … instead of ?.
	dollar bool
	// forUpdate locks the rows a SELECT reads until the transaction ends; empty where
	// writers are serialized anyway (SQLite).
	forUpdate string
	// tsParam is a placeholder whose type the database cannot infer, as a timestamp.
	tsParam string
	// maxParams is the most placeholders one statement may have.
	maxParams int
	// rowInserts: TrackIncoming inserts one row per statement, with a statement prepared
	// once (SQLite, in process: parsing a statement costs more than running it), not
	// many rows per statement (PostgreSQL: a round trip costs more than a row).
	rowInserts bool
	// prepareHot: the statements of the hot paths (hotStatements) are prepared once,
	// when the store opens. database/sql does not keep prepared statements, and
	// modernc.org/sqlite parses each statement it is given; pgx (PostgreSQL) keeps its
	// own cache of prepared statements on each connection.
	prepareHot bool
	// groupFinish: FinishCycle calls made at the same time go to the database in one
	// statement (finish.go): where each statement costs a round trip (PostgreSQL).
	groupFinish bool
	// migrations holds NNNN_name.sql files, applied in order.
	migrations fs.FS

	// timeArg converts a time to the argument of a timestamp column.
	timeArg func(time.Time) any
	// claim leases due mailbox-workloads, atomically; see claimArgs.
	claim func(ctx context.Context, s *Store, a claimArgs) ([]claimedRow, error)
	// hot are the dialect's own statements to prepare where it has prepareHot.
	hot []string
	// dbNow returns the database's clock, nil for a dialect without one.
	dbNow func(ctx context.Context, tx *sql.Tx) (time.Time, error)
	// lockMigrations serializes the migrations of several processes opening one
	// database at once; nil where the write transaction does already.
	lockMigrations func(ctx context.Context, tx *sql.Tx) error
	// isUnique reports a unique or primary key violation.
	isUnique func(error) bool
}

// queryer is what both *sql.DB and *sql.Tx do.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// newStore checks the options that do not depend on the dialect and builds the Store.
func newStore(d *dialect, opts Options, dbClock bool) (*Store, error) {
	kr, err := opts.Keys.compile()
	if err != nil {
		return nil, err
	}
	s := &Store{d: d, keys: kr, now: opts.Now, dbClock: dbClock, schemaVersion: opts.schemaVersion}
	if s.now == nil {
		s.now = time.Now
	}
	s.sql.saveCursor = s.q(saveCursorSQL)
	s.sql.insertEmail = s.valuesSQL("INSERT INTO emails ("+emailCols+") VALUES ", emailNCols, 1, " ON CONFLICT DO NOTHING")
	// The next run's placeholder needs its type on PostgreSQL.
	s.sql.finishCycle = s.q(strings.Replace(finishCycleQuery, "THEN ? END", "THEN "+d.tsParam+" END", 1))
	return s, nil
}

// start applies the migrations and checks the keyring against the secrets stored.
func (s *Store) start(ctx context.Context) error {
	if err := s.migrate(ctx); err != nil {
		return err
	}
	if s.schemaVersion > 0 {
		return nil // an old schema, for a test: the code's statements do not fit it
	}
	if err := s.checkKeys(ctx); err != nil {
		return err
	}
	if s.d.prepareHot {
		// Prepared on the write pool, whose one connection is free now; a transaction
		// on it uses them through Tx.StmtContext.
		s.prepared = make(map[string]*sql.Stmt)
		for _, query := range s.hotStatements() {
			st, err := s.wdb.PrepareContext(ctx, query)
			if err != nil {
				return fmt.Errorf("sqlstore: preparing %q: %w", query, err)
			}
			s.prepared[query] = st
		}
	}
	return nil
}

// Close closes the database connections. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var err error
		for _, st := range s.prepared {
			err = errors.Join(err, st.Close())
		}
		err = errors.Join(err, s.wdb.Close())
		if s.rdb != s.wdb {
			err = errors.Join(err, s.rdb.Close())
		}
		s.closeErr = err
	})
	return s.closeErr
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name }

// q returns query in the dialect's placeholder form. Queries are written with ?
// placeholders and no ? anywhere else.
func (s *Store) q(query string) string {
	if !s.d.dollar {
		return query
	}
	if v, ok := s.rebound.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	r := b.String()
	s.rebound.Store(query, r)
	return r
}

// hotStatements are the statements prepared when the store opens, where the dialect
// has prepareHot: those of TrackIncoming, ClaimDue and FinishCycle.
func (s *Store) hotStatements() []string {
	return append([]string{s.sql.saveCursor, s.sql.insertEmail, s.sql.finishCycle}, s.d.hot...)
}

// exec runs a statement on q (the write pool or one of its transactions), through its
// prepared form when it is one of the hot statements.
func (s *Store) exec(ctx context.Context, q queryer, query string, args ...any) (sql.Result, error) {
	if st := s.prepared[query]; st != nil {
		switch q := q.(type) {
		case *sql.Tx:
			return q.StmtContext(ctx, st).ExecContext(ctx, args...)
		case *sql.DB:
			if q == s.wdb {
				return st.ExecContext(ctx, args...)
			}
		}
	}
	return q.ExecContext(ctx, query, args...)
}

// query is exec for a statement that returns rows.
func (s *Store) query(ctx context.Context, q queryer, query string, args ...any) (*sql.Rows, error) {
	if st := s.prepared[query]; st != nil {
		switch q := q.(type) {
		case *sql.Tx:
			return q.StmtContext(ctx, st).QueryContext(ctx, args...)
		case *sql.DB:
			if q == s.wdb {
				return st.QueryContext(ctx, args...)
			}
		}
	}
	return q.QueryContext(ctx, query, args...)
}

// inTx runs fn in a write transaction and commits it, or rolls it back when fn fails.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// placeholders returns "?, ?, …" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// stringArgs converts ss to query arguments.
func stringArgs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func notFound(what, id string) error {
	return fmt.Errorf("sqlstore: %s %q: %w", what, id, crmsync.ErrNotFound)
}

func badWorkload(w crmsync.Workload) error {
	return fmt.Errorf("sqlstore: %v is not a workload", w)
}

// maxLimit stands for "no limit" in a LIMIT clause.
const maxLimit = 1<<31 - 1

func limitOf(n int) int {
	if n <= 0 {
		return maxLimit
	}
	return n
}

// storeNow is the time of the store's own timestamps, at the microsecond the database
// keeps, so that the caller learns the time that is stored.
func (s *Store) storeNow() time.Time { return s.now().Truncate(time.Microsecond) }
