package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// itemData is the JSON of an item's content: the encoding/json form of the one of
// Appointment, Contact and Task that its kind sets.
type itemData struct {
	Appointment *crmsync.Appointment `json:"appointment,omitempty"`
	Contact     *crmsync.Contact     `json:"contact,omitempty"`
	Task        *crmsync.Task        `json:"task,omitempty"`
}

// CommitItems upserts items by (mailbox, kind, ProviderID), removes those with Deleted
// set, and saves cursor as the ACT cursor, in one transaction. Every item needs a valid
// Kind and a ProviderID, or nothing is written; MailboxID is set to the lease's. l must
// be a lease of the ACT workload.
func (s *Store) CommitItems(ctx context.Context, l crmstore.Lease, items []crmsync.Item, cursor []byte) error {
	if l.Workload != crmsync.ACT {
		return fmt.Errorf("sqlstore: commit items needs a lease of the %v workload, not %v", crmsync.ACT, l.Workload)
	}
	data := make([]string, len(items))
	for i := range items {
		it := &items[i]
		if it.Kind < crmsync.KindAppointment || it.Kind > crmsync.KindTask {
			return fmt.Errorf("sqlstore: commit items of mailbox %s: item %d has kind %v", l.MailboxID, i, it.Kind)
		}
		if it.ProviderID == "" {
			return fmt.Errorf("sqlstore: commit items of mailbox %s: item %d has no ProviderID", l.MailboxID, i)
		}
		if it.Deleted {
			continue
		}
		b, err := json.Marshal(itemData{Appointment: it.Appointment, Contact: it.Contact, Task: it.Task})
		if err != nil {
			return fmt.Errorf("sqlstore: commit items of mailbox %s: item %s: %w", l.MailboxID, it.ProviderID, err)
		}
		data[i] = string(b)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, s.sql.saveCursor, append([]any{blob(cursor)}, heldArgs(l)...)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return leaseLost(l)
		}
		for i := range items {
			it := &items[i]
			if it.Deleted {
				if _, err := tx.ExecContext(ctx, s.q("DELETE FROM items WHERE mailbox_id = ? AND kind = ? AND provider_id = ?"),
					l.MailboxID, int(it.Kind), it.ProviderID); err != nil {
					return err
				}
				continue
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO items (mailbox_id, kind, provider_id, record_id, change_key, modified_at, data)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (mailbox_id, kind, provider_id) DO UPDATE SET record_id = excluded.record_id,
	change_key = excluded.change_key, modified_at = excluded.modified_at, data = excluded.data`),
				l.MailboxID, int(it.Kind), it.ProviderID, it.RecordID, it.ChangeKey, s.ts(it.ModifiedAt), data[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, crmstore.ErrLeaseLost) {
		return fmt.Errorf("sqlstore: commit items of mailbox %s: %w", l.MailboxID, err)
	}
	return err
}

// Items returns the mailbox's items of kind, ordered by ProviderID; none is not an
// error.
func (s *Store) Items(ctx context.Context, mailboxID string, kind crmsync.ItemKind) ([]crmsync.Item, error) {
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT provider_id, record_id, change_key, modified_at, data FROM items
WHERE mailbox_id = ? AND kind = ? ORDER BY provider_id`), mailboxID, int(kind))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: items of mailbox %s: %w", mailboxID, err)
	}
	defer rows.Close()
	out := []crmsync.Item{}
	for rows.Next() {
		it := crmsync.Item{Kind: kind, MailboxID: mailboxID}
		var (
			modified dbTime
			data     []byte
			d        itemData
		)
		if err := rows.Scan(&it.ProviderID, &it.RecordID, &it.ChangeKey, &modified, &data); err != nil {
			return nil, fmt.Errorf("sqlstore: items of mailbox %s: %w", mailboxID, err)
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("sqlstore: item %s of mailbox %s: %w", it.ProviderID, mailboxID, err)
		}
		it.ModifiedAt = modified.time()
		it.Appointment, it.Contact, it.Task = d.Appointment, d.Contact, d.Task
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: items of mailbox %s: %w", mailboxID, err)
	}
	return out, nil
}
