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
	due := "NULL"
	var dueArgs []any
	if st.Runnable() && !next.IsZero() {
		due = "CASE WHEN lease_owner IS NOT NULL THEN " + s.d.greatest + "(?, lease_expires) ELSE ? END"
		dueArgs = []any{s.ts(next), s.ts(next)}
	}
	args := []any{int(st.Method), int(st.Test), s.ts(st.TestedAt), st.TestError,
		int(st.Status), s.ts(st.StatusAt), st.LastError, int(st.LastErrorKind), s.nullTime(next)}
	args = append(append(args, dueArgs...), mailboxID, int(w))
	res, err := s.wdb.ExecContext(ctx, s.q(`UPDATE mailbox_workloads SET method = ?, test = ?, tested_at = ?, test_error = ?,
	status = ?, status_at = ?, last_error = ?, last_error_kind = ?, next_run = `+s.d.tsParam+`, due = `+due+`
WHERE mailbox_id = ? AND workload = ?`), args...)
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
	workload     crmsync.Workload
	now, expires time.Time
	limit        int
	owner        string
}

// claimedRow is one mailbox-workload a claim statement leased.
type claimedRow struct {
	mailboxID string
	token     int64
	next      dbTime
	cursor    []byte
	failures  int
	load      float64
	due       dbTime // the due time it was claimed at, where the dialect returns it
}

// scanClaimed reads the rows of a claim statement: mailbox_id, lease_token, next_run,
// cursor, failures, load, and with due, the due time it was claimed at.
func scanClaimed(rows *sql.Rows, withDue bool) ([]claimedRow, error) {
	defer rows.Close()
	var out []claimedRow
	for rows.Next() {
		var c claimedRow
		dest := []any{&c.mailboxID, &c.token, &c.next, &c.cursor, &c.failures, &c.load}
		if withDue {
			dest = append(dest, &c.due)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ClaimDue leases up to q.Limit due, runnable mailbox-workloads of q.Workload that no
// one holds or whose lease expired, earliest due first, and reads what their cycles
// need, in one transaction. A Limit of zero or less claims every due one. With the
// database clock (see Options.DatabaseClock) the database's now replaces q.Now.
func (s *Store) ClaimDue(ctx context.Context, q crmstore.ClaimQuery) ([]*crmstore.Claim, error) {
	if !q.Workload.Valid() {
		return nil, badWorkload(q.Workload)
	}
	var out []*crmstore.Claim
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := q.Now
		if s.dbClock {
			var err error
			if now, err = s.d.dbNow(ctx, tx); err != nil {
				return err
			}
		}
		rows, err := s.d.claim(ctx, tx, claimArgs{
			workload: q.Workload, now: now, expires: now.Add(q.LeaseFor), limit: limitOf(q.Limit), owner: q.Owner,
		})
		if err != nil || len(rows) == 0 {
			return err
		}
		out, err = s.claims(ctx, tx, q, rows, now.Add(q.LeaseFor))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim due %v: %w", q.Workload, err)
	}
	return out, nil
}

// claims reads the mailboxes and profiles of claimed rows and makes the Claims.
func (s *Store) claims(ctx context.Context, tx *sql.Tx, q crmstore.ClaimQuery, rows []claimedRow, expires time.Time) ([]*crmstore.Claim, error) {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.mailboxID
	}
	ms, err := s.mailboxesByID(ctx, tx, ids)
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
	profiles, err := s.profiles(ctx, tx, profileIDs)
	if err != nil {
		return nil, err
	}
	out := make([]*crmstore.Claim, 0, len(rows))
	for _, r := range rows {
		m := byID[r.mailboxID]
		if m == nil {
			return nil, fmt.Errorf("mailbox %s of a claimed workload is missing", r.mailboxID)
		}
		c := &crmstore.Claim{
			Lease:   crmstore.Lease{MailboxID: r.mailboxID, Workload: q.Workload, Owner: q.Owner, Token: r.token, Expires: expires},
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

// NextDue returns the earliest next run of a scheduled, runnable mailbox-workload of w
// that no one holds. With the database clock, a held one whose lease has expired by the
// database's now counts too, from when it became claimable.
func (s *Store) NextDue(ctx context.Context, w crmsync.Workload) (time.Time, bool, error) {
	if !w.Valid() {
		return time.Time{}, false, badWorkload(w)
	}
	expired := "lease_owner IS NULL"
	if s.dbClock {
		expired = "(lease_owner IS NULL OR lease_expires <= now())"
	}
	var due dbTime
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT due FROM mailbox_workloads
WHERE workload = ? AND due IS NOT NULL AND `+expired+` ORDER BY due LIMIT 1`), int(w)).Scan(&due)
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
		res, err := tx.ExecContext(ctx, s.q(`UPDATE mailbox_workloads SET lease_expires = ?,
	due = CASE WHEN due IS NULL THEN NULL ELSE `+s.d.greatest+`(next_run, ?) END
WHERE `+heldWhere), append([]any{s.ts(until), s.ts(until)}, heldArgs(l)...)...)
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

// FinishCycle records a cycle's outcome and releases the lease, in one statement.
func (s *Store) FinishCycle(ctx context.Context, l crmstore.Lease, r crmstore.CycleResult) error {
	set := "status = ?, status_at = ?, failures = ?, load = ?, lease_owner = NULL, lease_expires = NULL"
	args := []any{int(r.Status), s.ts(r.At), r.Failures, r.Load}
	if r.Status == crmsync.StatusFailure || r.Err != "" {
		set += ", last_error = ?, last_error_kind = ?"
		args = append(args, r.Err, int(r.ErrKind))
	}
	if r.ResetCursor {
		set += ", cursor = NULL"
	}
	switch {
	case r.Disable:
		set += ", test = ?, tested_at = ?, test_error = ?, next_run = NULL, due = NULL"
		args = append(args, int(crmsync.TestFailed), s.ts(r.At), r.Err)
	case r.Next.IsZero():
		set += ", next_run = NULL, due = NULL"
	default:
		// A workload disabled while the cycle ran stays unscheduled.
		runnable := fmt.Sprintf("method = %d AND test = %d", crmsync.DeliveryServerSideSync, crmsync.TestPassed)
		set += ", next_run = CASE WHEN " + runnable + " THEN " + s.d.tsParam + " END, due = CASE WHEN " + runnable + " THEN " + s.d.tsParam + " END"
		args = append(args, s.ts(r.Next), s.ts(r.Next))
	}
	res, err := s.wdb.ExecContext(ctx, s.q("UPDATE mailbox_workloads SET "+set+" WHERE "+heldWhere), append(args, heldArgs(l)...)...)
	if err != nil {
		return fmt.Errorf("sqlstore: finish %v cycle of mailbox %s: %w", l.Workload, l.MailboxID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return leaseLost(l)
	}
	return nil
}
