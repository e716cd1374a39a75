package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// OpenPostgres connects to the PostgreSQL database of dsn (a URL or a key=value
// string, as libpq and pgx read them) through pgx/v5, applies the migrations (once,
// whatever the number of processes opening the database at the same time), and checks
// the keyring.
//
// Several Stores, in several processes, may share one database: ClaimDue hands each
// due mailbox-workload to one of them (SELECT … FOR UPDATE SKIP LOCKED, so claimers
// never wait for each other), and by default the database's clock decides when runs
// are due and leases expire (see Options.DatabaseClock).
//
// The driver is pgx's database/sql adapter (pgx/v5/stdlib) rather than pgxpool: the
// SQL the two dialects share then runs through one code path, database/sql, and pgx
// still prepares and caches every statement on each connection.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: OpenPostgres: %w", err)
	}
	dbClock := opts.DatabaseClock == nil || *opts.DatabaseClock
	d := &dialect{
		name:        "postgres",
		dollar:      true,
		groupFinish: true,
		forUpdate:   " FOR UPDATE",
		tsParam:     "CAST(? AS TIMESTAMPTZ)",
		maxParams:   65535,
		migrations:  migrationsOf("postgres"),
		timeArg:     postgresTime,
		claim:       postgresClaim,
		dbNow:       postgresNow,
		isUnique:    postgresIsUnique,
		lockMigrations: func(ctx context.Context, tx *sql.Tx) error {
			// Any constant will do, as long as every crmsync process uses the same.
			_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7243052911)")
			return err
		},
	}
	s, err := newStore(d, opts, dbClock)
	if err != nil {
		return nil, err
	}
	conns := opts.MaxConns
	if conns <= 0 {
		conns = 10
	}
	s.wdb = stdlib.OpenDB(*cfg)
	s.wdb.SetMaxOpenConns(conns)
	s.wdb.SetMaxIdleConns(conns)
	s.wdb.SetConnMaxIdleTime(5 * time.Minute)
	s.rdb = s.wdb
	if err := s.wdb.PingContext(ctx); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlstore: connecting to PostgreSQL: %w", err)
	}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// postgresClaimSQL leases due mailbox-workloads in one statement. FOR UPDATE SKIP
// LOCKED makes concurrent claimers pass over each other's rows instead of waiting for
// them or taking them twice; each leased row draws its fencing token from the
// lease_tokens sequence. Only lease columns change: the update is HOT, no index is
// touched. NOW and EXPIRES stand for the claim's time and the lease's expiry.
const postgresClaimSQL = `WITH picked AS (
	SELECT mailbox_id FROM mailbox_workloads
	WHERE workload = $1 AND RUNNABLE AND next_run <= NOW AND (lease_owner IS NULL OR lease_expires <= NOW)
	ORDER BY next_run, mailbox_id
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE mailbox_workloads AS w
SET lease_owner = $3, lease_expires = EXPIRES, lease_token = nextval('lease_tokens')
FROM picked
WHERE w.workload = $1 AND w.mailbox_id = picked.mailbox_id
RETURNING w.mailbox_id, w.lease_token, w.lease_expires, w.next_run, w.cursor, w.failures, w.load`

var (
	// postgresClaimAt claims at the claimer's time ($4) for a lease until $5.
	postgresClaimAt = strings.NewReplacer("RUNNABLE", runnableRow, "NOW", "$4", "EXPIRES", "$5").Replace(postgresClaimSQL)
	// postgresClaimNow claims at the database's time for a lease of $4 microseconds.
	postgresClaimNow = strings.NewReplacer("RUNNABLE", runnableRow, "NOW", "now()",
		"EXPIRES", "now() + $4 * interval '1 microsecond'").Replace(postgresClaimSQL)
)

// postgresClaim runs the claim statement, atomic on its own.
func postgresClaim(ctx context.Context, s *Store, a claimArgs) ([]claimedRow, error) {
	var rows *sql.Rows
	var err error
	if a.dbClock {
		rows, err = s.wdb.QueryContext(ctx, postgresClaimNow, int(a.workload), a.limit, a.owner, a.leaseFor.Microseconds())
	} else {
		rows, err = s.wdb.QueryContext(ctx, postgresClaimAt, int(a.workload), a.limit, a.owner,
			postgresTime(a.now), postgresTime(a.now.Add(a.leaseFor)))
	}
	if err != nil {
		return nil, err
	}
	out, err := scanClaimed(rows)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].next.T.Compare(out[j].next.T); c != 0 {
			return c < 0
		}
		return out[i].mailboxID < out[j].mailboxID
	})
	return out, nil
}

func postgresNow(ctx context.Context, tx *sql.Tx) (time.Time, error) {
	var now dbTime
	if err := tx.QueryRowContext(ctx, "SELECT now()").Scan(&now); err != nil {
		return time.Time{}, err
	}
	return now.T, nil
}

func postgresIsUnique(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505" // unique_violation
}
