package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// AddAlert stores a, assigning a.ID (on a too) if it is empty.
func (s *Store) AddAlert(ctx context.Context, a *crmsync.Alert) error {
	if a == nil {
		return errors.New("sqlstore: add alert: nil alert")
	}
	id := a.ID
	if id == "" {
		id = s.ids.next("a", time.Now())
	}
	recipients := make([]owner, len(a.Recipients))
	for i, r := range a.Recipients {
		recipients[i] = owner(r)
	}
	rs, err := jsonList(recipients)
	if err != nil {
		return err
	}
	_, err = s.wdb.ExecContext(ctx, s.q(`INSERT INTO alerts (id, level, scope, profile_id, mailbox_id, email_id, workload, kind, message, at, recipients)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		id, int(a.Level), int(a.Scope), a.ProfileID, a.MailboxID, a.EmailID, int(a.Workload), int(a.Kind), a.Message, s.ts(a.At), rs)
	if s.d.isUnique(err) {
		return fmt.Errorf("sqlstore: add alert: alert %q already exists", id)
	}
	if err != nil {
		return fmt.Errorf("sqlstore: add alert: %w", err)
	}
	a.ID = id
	return nil
}

// ListAlerts returns alerts ordered by At, then ID.
func (s *Store) ListAlerts(ctx context.Context, q crmstore.AlertQuery) ([]*crmsync.Alert, error) {
	var where []string
	var args []any
	if q.ProfileID != "" {
		where, args = append(where, "profile_id = ?"), append(args, q.ProfileID)
	}
	if q.MailboxID != "" {
		where, args = append(where, "mailbox_id = ?"), append(args, q.MailboxID)
	}
	if q.Scope != 0 {
		where, args = append(where, "scope = ?"), append(args, int(q.Scope))
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, s.ts(q.Since))
	}
	query := "SELECT id, level, scope, profile_id, mailbox_id, email_id, workload, kind, message, at, recipients FROM alerts"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY at, id LIMIT ?"
	rows, err := s.rdb.QueryContext(ctx, s.q(query), append(args, limitOf(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list alerts: %w", err)
	}
	defer rows.Close()
	out := []*crmsync.Alert{}
	for rows.Next() {
		var (
			a  crmsync.Alert
			at dbTime
			rs []byte
		)
		if err := rows.Scan(&a.ID, &a.Level, &a.Scope, &a.ProfileID, &a.MailboxID, &a.EmailID, &a.Workload, &a.Kind,
			&a.Message, &at, &rs); err != nil {
			return nil, fmt.Errorf("sqlstore: list alerts: %w", err)
		}
		a.At = at.time()
		owners, err := unjsonList[owner](rs)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: alert %s: recipients: %w", a.ID, err)
		}
		for _, o := range owners {
			a.Recipients = append(a.Recipients, crmsync.Owner(o))
		}
		out = append(out, &a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list alerts: %w", err)
	}
	return out, nil
}
