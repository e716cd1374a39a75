package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// A mailbox is a row of mailboxes and one row of mailbox_workloads per workload, made
// together by MapMailbox and deleted together (ON DELETE CASCADE).

const mailboxCols = `m.id, m.address, m.owner_kind, m.owner_id, m.profile_id, m.approval, m.process_email_after,
	m.username, m.password, m.refresh_token, m.incoming_option, m.tracked_folders`

const stateCols = `w.workload, w.method, w.test, w.tested_at, w.test_error, w.status, w.status_at, w.last_error, w.last_error_kind`

// selectMailboxes reads the mailboxes matching filter (SQL over the mailboxes table,
// with args), ordered by ID, at most limit of them.
func (s *Store) selectMailboxes(ctx context.Context, q queryer, filter string, args []any, limit int) ([]*crmsync.Mailbox, error) {
	rows, err := q.QueryContext(ctx, s.q("SELECT id FROM mailboxes WHERE "+filter+" ORDER BY id LIMIT ?"), append(args, limitOf(limit))...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading mailboxes: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlstore: reading mailboxes: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("sqlstore: reading mailboxes: %w", err)
	}
	return s.mailboxesByID(ctx, q, ids)
}

// mailboxesByID reads the mailboxes with these ids, ordered by ID; missing ones are
// left out. Both tables are filtered by the ids, so that the plan is two index lookups
// whatever the planner knows of the tables' sizes.
func (s *Store) mailboxesByID(ctx context.Context, q queryer, ids []string) ([]*crmsync.Mailbox, error) {
	var out []*crmsync.Mailbox
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		in := placeholders(len(chunk))
		args := append(stringArgs(chunk), stringArgs(chunk)...)
		rows, err := q.QueryContext(ctx, s.q(`SELECT `+mailboxCols+`, `+stateCols+`
FROM mailboxes AS m JOIN mailbox_workloads AS w ON w.mailbox_id = m.id
WHERE m.id IN (`+in+`) AND w.mailbox_id IN (`+in+`)
ORDER BY m.id, w.workload`), args...)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: reading mailboxes: %w", err)
		}
		ms, err := s.scanMailboxes(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

// scanMailboxes reads rows of mailboxCols and stateCols, one per workload, ordered by
// mailbox.
func (s *Store) scanMailboxes(rows *sql.Rows) ([]*crmsync.Mailbox, error) {
	defer rows.Close()
	var out []*crmsync.Mailbox
	var cur *crmsync.Mailbox
	for rows.Next() {
		var (
			m                 crmsync.Mailbox
			after             dbTime
			username          string
			password, refresh []byte
			folders           []byte
			w                 crmsync.Workload
			st                crmsync.WorkloadState
			testedAt, stAt    dbTime
		)
		if err := rows.Scan(&m.ID, &m.Address, &m.Owner.Kind, &m.Owner.ID, &m.ProfileID, &m.Approval, &after,
			&username, &password, &refresh, &m.IncomingOption, &folders,
			&w, &st.Method, &st.Test, &testedAt, &st.TestError, &st.Status, &stAt, &st.LastError, &st.LastErrorKind); err != nil {
			return nil, fmt.Errorf("sqlstore: reading mailboxes: %w", err)
		}
		if cur == nil || cur.ID != m.ID {
			var err error
			m.ProcessEmailAfter = after.time()
			if m.TrackedFolders, err = unjsonList[string](folders); err != nil {
				return nil, fmt.Errorf("sqlstore: mailbox %s: tracked folders: %w", m.ID, err)
			}
			if m.Credentials, err = s.openCredentials(username, password, refresh, "mailboxes", m.ID); err != nil {
				return nil, err
			}
			cur = &m
			out = append(out, cur)
		}
		st.TestedAt, st.StatusAt = testedAt.time(), stAt.time()
		if p := cur.State(w); p != nil {
			*p = st
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: reading mailboxes: %w", err)
	}
	return out, nil
}

// mailboxByID reads one mailbox; nil if there is none.
func (s *Store) mailboxByID(ctx context.Context, q queryer, id string) (*crmsync.Mailbox, error) {
	ms, err := s.mailboxesByID(ctx, q, []string{id})
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	return ms[0], nil
}

// MapMailbox inserts mailbox m, or replaces the one with m.ID keeping its schedule,
// leases and cursors, under the mapping rules of crmstore.MailboxStore, in one
// transaction. When both the address and the owner are held elsewhere, the conflict
// reported is the address's.
func (s *Store) MapMailbox(ctx context.Context, m *crmsync.Mailbox, takeOver bool) ([]*crmsync.Mailbox, error) {
	if m == nil {
		return nil, errors.New("sqlstore: map mailbox: nil mailbox")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	addr, err := crmsync.NormalizeAddress(m.Address)
	if err != nil {
		return nil, err
	}
	c := m.Clone()
	c.Address = addr
	sc, err := s.sealCredentials(c.Credentials, "mailboxes", c.ID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: map mailbox %s: %w", c.ID, err)
	}
	folders, err := jsonList(c.TrackedFolders)
	if err != nil {
		return nil, err
	}
	// Two processes mapping the same address or owner at once: the second one's insert
	// breaks a unique index; run it again, and it sees the first one's mailbox.
	for attempt := 0; ; attempt++ {
		var displaced []*crmsync.Mailbox
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			displaced, err = s.mapMailbox(ctx, tx, c, sc, folders, takeOver)
			return err
		})
		if err != nil && attempt < 3 && s.d.isUnique(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return displaced, nil
	}
}

func (s *Store) mapMailbox(ctx context.Context, tx *sql.Tx, c *crmsync.Mailbox, sc sealedCredentials, folders any, takeOver bool) ([]*crmsync.Mailbox, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id, address, owner_kind, owner_id FROM mailboxes
WHERE (address = ? OR (owner_kind = ? AND owner_id = ?)) AND id <> ? ORDER BY id`+s.d.forUpdate),
		c.Address, int(c.Owner.Kind), c.Owner.ID, c.ID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: map mailbox %s: %w", c.ID, err)
	}
	type holder struct {
		id, address string
		owner       crmsync.Owner
	}
	var byAddr, byOwner *holder
	for rows.Next() {
		var h holder
		if err := rows.Scan(&h.id, &h.address, &h.owner.Kind, &h.owner.ID); err != nil {
			rows.Close()
			return nil, err
		}
		if h.address == c.Address {
			byAddr = &h
		}
		if h.owner == c.Owner {
			byOwner = &h
		}
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if !takeOver {
		switch {
		case byAddr != nil:
			return nil, &crmsync.MappingConflictError{
				Address: c.Address, Owner: c.Owner,
				HeldBy: byAddr.id, HeldByOwner: byAddr.owner, SameOwner: byAddr.owner == c.Owner,
			}
		case byOwner != nil:
			return nil, &crmsync.MappingConflictError{
				Address: c.Address, Owner: c.Owner,
				HeldBy: byOwner.id, HeldByOwner: byOwner.owner, SameOwner: true,
			}
		}
	}
	var displaced []*crmsync.Mailbox
	for _, h := range []*holder{byAddr, byOwner} {
		if h == nil || (len(displaced) > 0 && displaced[0].ID == h.id) {
			continue
		}
		old, err := s.mailboxByID(ctx, tx, h.id)
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, s.q("DELETE FROM mailboxes WHERE id = ?"), h.id); err != nil {
			return nil, fmt.Errorf("sqlstore: map mailbox %s: taking over from %s: %w", c.ID, h.id, err)
		}
		if old != nil {
			displaced = append(displaced, old)
		}
	}

	res, err := tx.ExecContext(ctx, s.q(`UPDATE mailboxes SET address = ?, owner_kind = ?, owner_id = ?, profile_id = ?,
	approval = ?, process_email_after = ?, username = ?, password = ?, refresh_token = ?, secret_key = ?,
	incoming_option = ?, tracked_folders = ?
WHERE id = ?`),
		c.Address, int(c.Owner.Kind), c.Owner.ID, c.ProfileID, int(c.Approval), s.ts(c.ProcessEmailAfter),
		sc.username, sc.password, sc.refresh, sc.key, int(c.IncomingOption), folders, c.ID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: map mailbox %s: %w", c.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		for _, w := range crmsync.AllWorkloads() {
			st := c.State(w)
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE mailbox_workloads SET method = ?, test = ?, tested_at = ?, test_error = ?,
	status = ?, status_at = ?, last_error = ?, last_error_kind = ?
WHERE mailbox_id = ? AND workload = ?`),
				int(st.Method), int(st.Test), s.ts(st.TestedAt), st.TestError,
				int(st.Status), s.ts(st.StatusAt), st.LastError, int(st.LastErrorKind),
				c.ID, int(w)); err != nil {
				return nil, fmt.Errorf("sqlstore: map mailbox %s: %w", c.ID, err)
			}
		}
		return displaced, nil
	}

	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO mailboxes (id, address, owner_kind, owner_id, profile_id,
	approval, process_email_after, username, password, refresh_token, secret_key, incoming_option, tracked_folders)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		c.ID, c.Address, int(c.Owner.Kind), c.Owner.ID, c.ProfileID, int(c.Approval), s.ts(c.ProcessEmailAfter),
		sc.username, sc.password, sc.refresh, sc.key, int(c.IncomingOption), folders); err != nil {
		return nil, fmt.Errorf("sqlstore: map mailbox %s: %w", c.ID, err)
	}
	args := make([]any, 0, 3*10)
	for _, w := range crmsync.AllWorkloads() {
		st := c.State(w)
		args = append(args, c.ID, int(w), int(st.Method), int(st.Test), s.ts(st.TestedAt), st.TestError,
			int(st.Status), s.ts(st.StatusAt), st.LastError, int(st.LastErrorKind))
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO mailbox_workloads (mailbox_id, workload, method, test, tested_at,
	test_error, status, status_at, last_error, last_error_kind)
VALUES `+strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ", crmsync.NumWorkloads-1)+"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), args...); err != nil {
		return nil, fmt.Errorf("sqlstore: map mailbox %s: %w", c.ID, err)
	}
	return displaced, nil
}

// Mailbox returns the mailbox with this id.
func (s *Store) Mailbox(ctx context.Context, id string) (*crmsync.Mailbox, error) {
	m, err := s.mailboxByID(ctx, s.rdb, id)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, notFound("mailbox", id)
	}
	return m, nil
}

// MailboxByAddress returns the mailbox holding address, compared case-insensitively.
func (s *Store) MailboxByAddress(ctx context.Context, address string) (*crmsync.Mailbox, error) {
	ms, err := s.selectMailboxes(ctx, s.rdb, "address = ?", []any{strings.ToLower(strings.TrimSpace(address))}, 1)
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, notFound("mailbox with address", address)
	}
	return ms[0], nil
}

// UpdateMailbox applies fn to the mailbox and saves the result, in one transaction that
// holds the mailbox's row. fn must not call the store.
func (s *Store) UpdateMailbox(ctx context.Context, id string, fn func(*crmsync.Mailbox) error) (*crmsync.Mailbox, error) {
	var out *crmsync.Mailbox
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.forUpdate != "" {
			var locked string
			err := tx.QueryRowContext(ctx, s.q("SELECT id FROM mailboxes WHERE id = ?"+s.d.forUpdate), id).Scan(&locked)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("mailbox", id)
			} else if err != nil {
				return err
			}
		}
		old, err := s.mailboxByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if old == nil {
			return notFound("mailbox", id)
		}
		c := old.Clone()
		if err := fn(c); err != nil {
			return err
		}
		switch {
		case c.ID != old.ID:
			return fmt.Errorf("sqlstore: update mailbox %s: the ID may not change", id)
		case c.Address != old.Address, c.Owner != old.Owner:
			return fmt.Errorf("sqlstore: update mailbox %s: the address and owner change only through MapMailbox", id)
		case c.Incoming != old.Incoming, c.Outgoing != old.Outgoing, c.ACT != old.ACT:
			return fmt.Errorf("sqlstore: update mailbox %s: workload states change only through SetWorkload", id)
		}
		if err := c.Validate(); err != nil {
			return err
		}
		sc, err := s.sealCredentials(c.Credentials, "mailboxes", id)
		if err != nil {
			return fmt.Errorf("sqlstore: update mailbox %s: %w", id, err)
		}
		folders, err := jsonList(c.TrackedFolders)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE mailboxes SET profile_id = ?, approval = ?, process_email_after = ?,
	username = ?, password = ?, refresh_token = ?, secret_key = ?, incoming_option = ?, tracked_folders = ?
WHERE id = ?`),
			c.ProfileID, int(c.Approval), s.ts(c.ProcessEmailAfter), sc.username, sc.password, sc.refresh, sc.key,
			int(c.IncomingOption), folders, id); err != nil {
			return fmt.Errorf("sqlstore: update mailbox %s: %w", id, err)
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteMailbox removes the mailbox with its schedule, leases and cursors. Its emails,
// items and alerts stay.
func (s *Store) DeleteMailbox(ctx context.Context, id string) error {
	res, err := s.wdb.ExecContext(ctx, s.q("DELETE FROM mailboxes WHERE id = ?"), id)
	if err != nil {
		return fmt.Errorf("sqlstore: delete mailbox %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("mailbox", id)
	}
	return nil
}

// ListMailboxes returns mailboxes ordered by ID.
func (s *Store) ListMailboxes(ctx context.Context, q crmstore.MailboxQuery) ([]*crmsync.Mailbox, error) {
	filter := "id > ?"
	args := []any{q.AfterID}
	if q.ProfileID != "" {
		filter += " AND profile_id = ?"
		args = append(args, q.ProfileID)
	}
	ms, err := s.selectMailboxes(ctx, s.rdb, filter, args, q.Limit)
	if ms == nil && err == nil {
		ms = []*crmsync.Mailbox{}
	}
	return ms, err
}

// ProfileHealth counts the profile's mailboxes and those with a workload whose last
// status is Failure set at or after since.
func (s *Store) ProfileHealth(ctx context.Context, profileID string, since time.Time) (crmstore.ProfileHealth, error) {
	var all, failing int64
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT count(*), coalesce(sum(CASE WHEN EXISTS (
	SELECT 1 FROM mailbox_workloads AS w WHERE w.mailbox_id = m.id AND w.status = ? AND w.status_at >= ?
) THEN 1 ELSE 0 END), 0)
FROM mailboxes AS m WHERE m.profile_id = ?`), int(crmsync.StatusFailure), s.ts(since), profileID).Scan(&all, &failing)
	if err != nil {
		return crmstore.ProfileHealth{}, fmt.Errorf("sqlstore: profile health of %s: %w", profileID, err)
	}
	return crmstore.ProfileHealth{Mailboxes: int(all), Failing: int(failing)}, nil
}
