package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// Leases. A mailbox-workload row is held while lease_owner is set; its lease_token is
// the fencing token of the current (or last) lease, drawn from one counter for the
// whole database (a PostgreSQL sequence, a counters row on SQLite), so tokens only grow,
// per row and across rows. Every write of a cycle checks owner and token in the same
// transaction as the write (and on PostgreSQL locks the row while it writes), so a
// holder whose lease was taken over is refused with ErrLeaseLost and writes nothing.
// An expired lease that no one has claimed yet is still held, as in memstore.

// SetWorkload sets the state of workload w of the mailbox and schedules its next run at
// next (zero unschedules it). It does not touch a held lease or the cursor.
func (s *Store) SetWorkload(ctx context.Context, mailboxID string, w crmsync.Workload, st crmsync.WorkloadState, next time.Time) error {
	if !w.Valid() {
		return badWorkload(w)
	}
	res, err := s.wdb.ExecContext(ctx, s.q(`UPDATE mailbox_workloads SET method = ?, test = ?, tested_at = ?, test_error = ?,
	status = ?, status_at = ?, last_error = ?, last_error_kind = ?, next_run = `+s.d.tsParam+`
WHERE mailbox_id = ? AND workload = ?`),
		int(st.Method), int(st.Test), s.ts(st.TestedAt), st.TestError,
		int(st.Status), s.ts(st.StatusAt), st.LastError, int(st.LastErrorKind), s.nullTime(next), mailboxID, int(w))
	if err != nil {
		return fmt.Errorf("sqlstore: set %v workload of mailbox %s: %w", w, mailboxID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("mailbox", mailboxID)
	}
	return nil
}

// claimArgs are the parameters of a dialect's claim statement.
type claimArgs struct {
	workload crmsync.Workload
	// now is the claimer's time; with dbClock the statement uses the database's
	// instead, and ignores now.
	now      time.Time
	dbClock  bool
	leaseFor time.Duration
	limit    int
	owner    string
}

// claimedRow is one mailbox-workload a claim statement leased.
type claimedRow struct {
	mailboxID string
	token     int64
	expires   dbTime
	next      dbTime
	cursor    []byte
	failures  int
	load      float64
}

// scanClaimed reads the rows of a claim statement: mailbox_id, lease_token,
// lease_expires, next_run, cursor, failures, load.
func scanClaimed(rows *sql.Rows) ([]claimedRow, error) {
	defer rows.Close()
	var out []claimedRow
	for rows.Next() {
		var c claimedRow
		if err := rows.Scan(&c.mailboxID, &c.token, &c.expires, &c.next, &c.cursor, &c.failures, &c.load); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ClaimDue leases up to q.Limit due, runnable mailbox-workloads of q.Workload that no
// one holds or whose lease expired, earliest next run first (a reclaimed one by its
// next run too), in one statement, then reads what their cycles need. A Limit of zero
// or less claims every due one. With the database clock (see Options.DatabaseClock)
// the database's now replaces q.Now. A mailbox deleted between the claim and the read
// is left out: its lease went with it.
func (s *Store) ClaimDue(ctx context.Context, q crmstore.ClaimQuery) ([]*crmstore.Claim, error) {
	if !q.Workload.Valid() {
		return nil, badWorkload(q.Workload)
	}
	rows, err := s.d.claim(ctx, s, claimArgs{
		workload: q.Workload, now: q.Now, dbClock: s.dbClock, leaseFor: q.LeaseFor, limit: limitOf(q.Limit), owner: q.Owner,
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim due %v: %w", q.Workload, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	out, err := s.claims(ctx, s.rdb, q, rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim due %v: reading the claimed mailboxes: %w", q.Workload, err)
	}
	return out, nil
}

// claims reads the mailboxes and profiles of claimed rows and makes the Claims.
func (s *Store) claims(ctx context.Context, db queryer, q crmstore.ClaimQuery, rows []claimedRow) ([]*crmstore.Claim, error) {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.mailboxID
	}
	ms, err := s.mailboxesByID(ctx, db, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*crmsync.Mailbox, len(ms))
	var profileIDs []string
	seen := map[string]bool{}
	for _, m := range ms {
		byID[m.ID] = m
		if !seen[m.ProfileID] {
			seen[m.ProfileID] = true
			profileIDs = append(profileIDs, m.ProfileID)
		}
	}
	profiles, err := s.profiles(ctx, db, profileIDs)
	if err != nil {
		return nil, err
	}
	out := make([]*crmstore.Claim, 0, len(rows))
	for _, r := range rows {
		m := byID[r.mailboxID]
		if m == nil {
			continue // deleted since the claim
		}
		c := &crmstore.Claim{
			Lease:   crmstore.Lease{MailboxID: r.mailboxID, Workload: q.Workload, Owner: q.Owner, Token: r.token, Expires: r.expires.time()},
			Due:     r.next.time(),
			State:   crmstore.SyncState{Cursor: r.cursor, Failures: r.failures, Load: r.load},
			Mailbox: m, // one claim per mailbox: a claim holds one workload
		}
		if p := profiles[m.ProfileID]; p != nil {
			pc := *p
			if p.KeepSentCopy != nil {
				b := *p.KeepSentCopy
				pc.KeepSentCopy = &b
			}
			c.Profile = &pc
		}
		out = append(out, c)
	}
	return out, nil
}

// runnableState is the condition that a mailbox-workload row's state is runnable
// (crmsync.WorkloadState.Runnable).
var runnableState = fmt.Sprintf("method = %d AND test = %d", crmsync.DeliveryServerSideSync, crmsync.TestPassed)

// runnableRow is the condition that a mailbox-workload row is runnable and scheduled:
// the predicate of the index mailbox_workloads_runnable.
var runnableRow = "next_run IS NOT NULL AND " + runnableState

// NextDue returns the earliest next run of a scheduled, runnable mailbox-workload of w
// that no one holds. With the database clock, a held one whose lease has expired by the
// database's now counts too.
func (s *Store) NextDue(ctx context.Context, w crmsync.Workload) (time.Time, bool, error) {
	if !w.Valid() {
		return time.Time{}, false, badWorkload(w)
	}
	free := "lease_owner IS NULL"
	if s.dbClock {
		// An expired lease whose run is past is claimable now: the engine that asks
		// claims it at once, as it should.
		free = "(lease_owner IS NULL OR lease_expires <= now())"
	}
	var due dbTime
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT next_run FROM mailbox_workloads
WHERE workload = ? AND `+runnableRow+` AND `+free+` ORDER BY next_run LIMIT 1`), int(w)).Scan(&due)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlstore: next due %v: %w", w, err)
	}
	return due.time(), due.Valid, nil
}

// heldWhere is the condition on mailbox_workloads that a lease is held; its arguments
// come from heldArgs.
const heldWhere = "mailbox_id = ? AND workload = ? AND lease_owner = ? AND lease_token = ?"

func heldArgs(l crmstore.Lease) []any {
	return []any{l.MailboxID, int(l.Workload), l.Owner, l.Token}
}

func leaseLost(l crmstore.Lease) error {
	return fmt.Errorf("sqlstore: %v lease %d of mailbox %s held by %q: %w",
		l.Workload, l.Token, l.MailboxID, l.Owner, crmstore.ErrLeaseLost)
}

// lockLease checks in tx that l is held and, on PostgreSQL, locks its row until tx
// ends, so no claim can take it over while tx writes.
func (s *Store) lockLease(ctx context.Context, tx *sql.Tx, l crmstore.Lease, w crmsync.Workload, op string) error {
	if l.Workload != w {
		return fmt.Errorf("sqlstore: %s needs a lease of the %v workload, not %v", op, w, l.Workload)
	}
	var one int
	err := tx.QueryRowContext(ctx, s.q("SELECT 1 FROM mailbox_workloads WHERE "+heldWhere+s.d.forUpdate), heldArgs(l)...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return leaseLost(l)
	}
	return err
}

// RenewLease extends a held lease to until. With the database clock, the lease is
// extended by until minus the store's now, from the database's now.
func (s *Store) RenewLease(ctx context.Context, l crmstore.Lease, until time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.dbClock {
			now, err := s.d.dbNow(ctx, tx)
			if err != nil {
				return err
			}
			until = now.Add(until.Sub(s.now()))
		}
		res, err := tx.ExecContext(ctx, s.q("UPDATE mailbox_workloads SET lease_expires = ? WHERE "+heldWhere),
			append([]any{s.ts(until)}, heldArgs(l)...)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return leaseLost(l)
		}
		return nil
	})
	if err != nil && !errors.Is(err, crmstore.ErrLeaseLost) {
		return fmt.Errorf("sqlstore: renew lease of mailbox %s: %w", l.MailboxID, err)
	}
	return err
}

// finishCycleQuery records a cycle's outcome and releases the lease. One statement for
// every outcome, so that it is prepared once: its flags choose what changes.
var finishCycleQuery = `UPDATE mailbox_workloads SET status = ?, status_at = ?, failures = ?, load = ?,
	lease_owner = NULL, lease_expires = NULL,
	last_error = CASE WHEN ? THEN ? ELSE last_error END,
	last_error_kind = CASE WHEN ? THEN ? ELSE last_error_kind END,
	cursor = CASE WHEN ? THEN NULL ELSE cursor END,
	test = CASE WHEN ? THEN ? ELSE test END,
	tested_at = CASE WHEN ? THEN ? ELSE tested_at END,
	test_error = CASE WHEN ? THEN ? ELSE test_error END,
	next_run = CASE WHEN ? AND ` + runnableState + ` THEN ? END
WHERE ` + heldWhere

// FinishCycle records a cycle's outcome and releases the lease, in one statement. A
// workload disabled while the cycle ran stays unscheduled. On PostgreSQL, calls made
// at the same time share one statement (see finish.go); once a call has started to
// wait for its turn, it runs to its end even if ctx is canceled.
func (s *Store) FinishCycle(ctx context.Context, l crmstore.Lease, r crmstore.CycleResult) error {
	if s.d.groupFinish {
		return s.finishGrouped(ctx, l, r)
	}
	setErr := r.Status == crmsync.StatusFailure || r.Err != ""
	at := s.ts(r.At)
	res, err := s.exec(ctx, s.wdb, s.sql.finishCycle, append([]any{
		int(r.Status), at, r.Failures, r.Load,
		setErr, r.Err,
		setErr, int(r.ErrKind),
		r.ResetCursor,
		r.Disable, int(crmsync.TestFailed),
		r.Disable, at,
		r.Disable, r.Err,
		!r.Disable, s.nullTime(r.Next),
	}, heldArgs(l)...)...)
	if err != nil {
		return fmt.Errorf("sqlstore: finish %v cycle of mailbox %s: %w", l.Workload, l.MailboxID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return leaseLost(l)
	}
	return nil
}
