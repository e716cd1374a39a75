package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// An email is a row of emails and its attachments, rows of email_attachments in order.
// The unique indexes on (mailbox_id, provider_id) and (mailbox_id, message_id), where
// not empty, are what makes tracking idempotent: TrackIncoming inserts with ON CONFLICT
// DO NOTHING, and what was not inserted is a duplicate.

const emailCols = `id, mailbox_id, direction, status, message_id, in_reply_to, refs, thread_index, provider_id, folder,
	from_name, from_email, to_addrs, cc_addrs, bcc_addrs, reply_to, subject, text_body, html_body, size,
	sent_at, received_at, regarding_id, correlation, delivery_attempts, failure_reason, notes, attachments,
	created_at, modified_at, tracking_token, conversation_id, subject_hash, parties`

const emailNCols = 34

// emailSet assigns every column of emailCols but the ID.
var emailSet = func() string {
	cols := strings.Split(emailCols, ",")
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i]) + " = ?"
	}
	return strings.Join(cols[1:], ", ")
}()

const attachmentCols = "email_id, pos, name, content_type, content_id, size, content, skipped, skip_reason"

const attachmentNCols = 9

// emailArgs returns the values of emailCols for e.
func (s *Store) emailArgs(e *crmsync.Email) ([]any, error) {
	refs, err := jsonList(e.References)
	if err != nil {
		return nil, err
	}
	notes, err := jsonList(e.Notes)
	if err != nil {
		return nil, err
	}
	parties, err := partiesArg(e.Parties)
	if err != nil {
		return nil, err
	}
	addrs := make([]any, 4)
	for i, as := range [][]crmsync.Address{e.To, e.Cc, e.Bcc, e.ReplyTo} {
		if addrs[i], err = addressesArg(as); err != nil {
			return nil, err
		}
	}
	return []any{e.ID, e.MailboxID, int(e.Direction), int(e.Status), e.MessageID, e.InReplyTo, refs, e.ThreadIndex,
		e.ProviderID, e.Folder, e.From.Name, e.From.Email, addrs[0], addrs[1], addrs[2], addrs[3], e.Subject,
		e.TextBody, e.HTMLBody, e.Size, s.ts(e.SentAt), s.ts(e.ReceivedAt), e.RegardingID, int(e.Correlation),
		e.DeliveryAttempts, e.FailureReason, notes, len(e.Attachments), s.ts(e.CreatedAt), s.ts(e.ModifiedAt),
		e.TrackingToken, e.ConversationID, e.SubjectHash, parties}, nil
}

// scanEmail reads a row of emailCols; the attachments come later (loadAttachments).
func scanEmail(rows *sql.Rows) (*crmsync.Email, int, error) {
	var (
		e                                 crmsync.Email
		refs, to, cc, bcc, replyTo, notes []byte
		parties                           []byte
		sent, received, created, modified dbTime
		attachments                       int
	)
	if err := rows.Scan(&e.ID, &e.MailboxID, &e.Direction, &e.Status, &e.MessageID, &e.InReplyTo, &refs, &e.ThreadIndex,
		&e.ProviderID, &e.Folder, &e.From.Name, &e.From.Email, &to, &cc, &bcc, &replyTo, &e.Subject,
		&e.TextBody, &e.HTMLBody, &e.Size, &sent, &received, &e.RegardingID, &e.Correlation,
		&e.DeliveryAttempts, &e.FailureReason, &notes, &attachments, &created, &modified,
		&e.TrackingToken, &e.ConversationID, &e.SubjectHash, &parties); err != nil {
		return nil, 0, err
	}
	e.SentAt, e.ReceivedAt, e.CreatedAt, e.ModifiedAt = sent.time(), received.time(), created.time(), modified.time()
	var err error
	if e.References, err = unjsonList[string](refs); err != nil {
		return nil, 0, fmt.Errorf("email %s: references: %w", e.ID, err)
	}
	if e.Notes, err = unjsonList[string](notes); err != nil {
		return nil, 0, fmt.Errorf("email %s: notes: %w", e.ID, err)
	}
	if e.Parties, err = scanParties(parties); err != nil {
		return nil, 0, fmt.Errorf("email %s: parties: %w", e.ID, err)
	}
	for _, f := range []struct {
		dst *[]crmsync.Address
		src []byte
	}{{&e.To, to}, {&e.Cc, cc}, {&e.Bcc, bcc}, {&e.ReplyTo, replyTo}} {
		if *f.dst, err = scanAddresses(f.src); err != nil {
			return nil, 0, fmt.Errorf("email %s: addresses: %w", e.ID, err)
		}
	}
	return &e, attachments, nil
}

// selectEmails reads the emails a query over emailCols returns, with their
// attachments, in the query's order.
func (s *Store) selectEmails(ctx context.Context, q queryer, query string, args ...any) ([]*crmsync.Email, error) {
	rows, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out, withAttachments []*crmsync.Email
	for rows.Next() {
		e, n, err := scanEmail(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if n > 0 {
			withAttachments = append(withAttachments, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if err := s.loadAttachments(ctx, q, withAttachments); err != nil {
		return nil, err
	}
	return out, nil
}

// loadAttachments reads the attachments of es.
func (s *Store) loadAttachments(ctx context.Context, q queryer, es []*crmsync.Email) error {
	for len(es) > 0 {
		chunk := es[:min(len(es), 500)]
		es = es[len(chunk):]
		byID := make(map[string]*crmsync.Email, len(chunk))
		ids := make([]any, len(chunk))
		for i, e := range chunk {
			byID[e.ID] = e
			ids[i] = e.ID
		}
		rows, err := q.QueryContext(ctx, s.q("SELECT "+attachmentCols+" FROM email_attachments WHERE email_id IN ("+
			placeholders(len(ids))+") ORDER BY email_id, pos"), ids...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				id  string
				pos int
				a   crmsync.Attachment
			)
			if err := rows.Scan(&id, &pos, &a.Name, &a.ContentType, &a.ContentID, &a.Size, &a.Content, &a.Skipped, &a.SkipReason); err != nil {
				rows.Close()
				return err
			}
			if len(a.Content) == 0 {
				a.Content = nil
			}
			if e := byID[id]; e != nil {
				e.Attachments = append(e.Attachments, a)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	return nil
}

// insertAttachments stores the attachments of es.
func (s *Store) insertAttachments(ctx context.Context, tx *sql.Tx, es []*crmsync.Email) error {
	var args []any
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, s.valuesSQL("INSERT INTO email_attachments ("+attachmentCols+") VALUES ", attachmentNCols, n, ""), args...)
		args, n = args[:0], 0
		return err
	}
	per := s.d.maxParams / attachmentNCols
	for _, e := range es {
		for i, a := range e.Attachments {
			args = append(args, e.ID, i, a.Name, a.ContentType, a.ContentID, a.Size, blob(a.Content), a.Skipped, a.SkipReason)
			if n++; n == per {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// valuesSQL returns prefix, rows groups of cols placeholders, and suffix, in the
// dialect's placeholder form; statements are cached by shape.
func (s *Store) valuesSQL(prefix string, cols, rows int, suffix string) string {
	key := valuesKey{prefix, suffix, rows}
	if v, ok := s.values.Load(key); ok {
		return v.(string)
	}
	group := "(" + placeholders(cols) + ")"
	var b strings.Builder
	b.WriteString(prefix)
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(group)
	}
	b.WriteString(suffix)
	q := s.q(b.String())
	s.rebound.Delete(b.String()) // kept here instead, under a cheaper key
	s.values.Store(key, q)
	return q
}

type valuesKey struct {
	prefix, suffix string
	rows           int
}

// CreateEmail stores a new email, assigning e.ID if it is empty and setting CreatedAt
// and ModifiedAt if zero (on e too). An email with the ID of another, or with the
// ProviderID or MessageID of another email of its mailbox, is refused.
func (s *Store) CreateEmail(ctx context.Context, e *crmsync.Email) error {
	if e == nil {
		return errors.New("sqlstore: create email: nil email")
	}
	c := e.Clone()
	if c.ID == "" {
		c.ID = s.ids.next("e", time.Now())
	}
	now := s.storeNow()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.ModifiedAt.IsZero() {
		c.ModifiedAt = now
	}
	args, err := s.emailArgs(c)
	if err != nil {
		return err
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.valuesSQL("INSERT INTO emails ("+emailCols+") VALUES ", emailNCols, 1, ""), args...); err != nil {
			return err
		}
		return s.insertAttachments(ctx, tx, []*crmsync.Email{c})
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("sqlstore: create email: email %q exists, or mailbox %q has an email with its Message-ID %q or provider ID %q",
			c.ID, c.MailboxID, c.MessageID, c.ProviderID)
	}
	if err != nil {
		return fmt.Errorf("sqlstore: create email: %w", err)
	}
	e.ID, e.CreatedAt, e.ModifiedAt = c.ID, c.CreatedAt, c.ModifiedAt
	return nil
}

// Email returns the email with this id.
func (s *Store) Email(ctx context.Context, id string) (*crmsync.Email, error) {
	es, err := s.selectEmails(ctx, s.rdb, "SELECT "+emailCols+" FROM emails WHERE id = ?", id)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: email %s: %w", id, err)
	}
	if len(es) == 0 {
		return nil, notFound("email", id)
	}
	return es[0], nil
}

// UpdateEmail applies fn to the email and saves the result, in one transaction that
// holds the email's row. fn must not call the store, nor change the ID.
func (s *Store) UpdateEmail(ctx context.Context, id string, fn func(*crmsync.Email) error) (*crmsync.Email, error) {
	var out *crmsync.Email
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		es, err := s.selectEmails(ctx, tx, "SELECT "+emailCols+" FROM emails WHERE id = ?"+s.d.forUpdate, id)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return notFound("email", id)
		}
		old := es[0]
		c := old.Clone()
		if err := fn(c); err != nil {
			return err
		}
		if c.ID != id {
			return fmt.Errorf("sqlstore: update email %s: the ID may not change", id)
		}
		args, err := s.emailArgs(c)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q("UPDATE emails SET "+emailSet+" WHERE id = ?"), append(args[1:], id)...); err != nil {
			if s.d.isUnique(err) {
				return fmt.Errorf("sqlstore: update email %s: mailbox %q has another email with Message-ID %q or provider ID %q",
					id, c.MailboxID, c.MessageID, c.ProviderID)
			}
			return err
		}
		if !sameAttachments(old.Attachments, c.Attachments) {
			if _, err := tx.ExecContext(ctx, s.q("DELETE FROM email_attachments WHERE email_id = ?"), id); err != nil {
				return err
			}
			if err := s.insertAttachments(ctx, tx, []*crmsync.Email{c}); err != nil {
				return err
			}
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func sameAttachments(a, b []crmsync.Attachment) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.ContentType != y.ContentType || x.ContentID != y.ContentID || x.Size != y.Size ||
			x.Skipped != y.Skipped || x.SkipReason != y.SkipReason || !bytes.Equal(x.Content, y.Content) {
			return false
		}
	}
	return true
}

// ListEmails returns emails ordered by CreatedAt, then ID.
func (s *Store) ListEmails(ctx context.Context, q crmstore.EmailQuery) ([]*crmsync.Email, error) {
	var where []string
	var args []any
	if q.MailboxID != "" {
		where, args = append(where, "mailbox_id = ?"), append(args, q.MailboxID)
	}
	if q.Status != 0 {
		where, args = append(where, "status = ?"), append(args, int(q.Status))
	}
	if q.Direction != 0 {
		where, args = append(where, "direction = ?"), append(args, int(q.Direction))
	}
	query := "SELECT " + emailCols + " FROM emails"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at, id LIMIT ?"
	es, err := s.selectEmails(ctx, s.rdb, query, append(args, limitOf(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list emails: %w", err)
	}
	if es == nil {
		es = []*crmsync.Email{}
	}
	return es, nil
}

// EmailsByMessageID returns the emails of any mailbox whose MessageID is one of ids,
// ordered by CreatedAt, then ID.
func (s *Store) EmailsByMessageID(ctx context.Context, ids []string) ([]*crmsync.Email, error) {
	seen := make(map[string]bool, len(ids))
	var args []any
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			args = append(args, id)
		}
	}
	out := []*crmsync.Email{}
	for len(args) > 0 {
		chunk := args[:min(len(args), 1000)]
		args = args[len(chunk):]
		es, err := s.selectEmails(ctx, s.rdb, "SELECT "+emailCols+" FROM emails WHERE message_id IN ("+
			placeholders(len(chunk))+") ORDER BY created_at, id", chunk...)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: emails by Message-ID: %w", err)
		}
		out = append(out, es...)
	}
	if len(ids) > 1000 {
		sortEmails(out)
	}
	return out, nil
}

// sortEmails orders emails by CreatedAt, then ID.
func sortEmails(es []*crmsync.Email) {
	slices.SortFunc(es, func(a, b *crmsync.Email) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// saveCursorSQL saves the cursor of a held lease.
const saveCursorSQL = "UPDATE mailbox_workloads SET cursor = ? WHERE " + heldWhere

// TrackIncoming stores the new emails of an incoming batch and the incoming cursor in
// one transaction; see crmstore.EmailStore. The store assigns the IDs (any ID the
// caller set is replaced) and sets them on the caller's emails too; a zero CreatedAt or
// ModifiedAt is set to the store's time. l must be a lease of the incoming workload.
func (s *Store) TrackIncoming(ctx context.Context, l crmstore.Lease, emails []*crmsync.Email, cursor []byte) (crmstore.TrackResult, error) {
	if l.Workload != crmsync.Incoming {
		return crmstore.TrackResult{}, fmt.Errorf("sqlstore: track incoming needs a lease of the incoming workload, not %v", l.Workload)
	}
	now := s.storeNow()
	idNow := time.Now()
	batch := make([]*crmsync.Email, len(emails))
	for i, in := range emails {
		if in == nil {
			return crmstore.TrackResult{}, errors.New("sqlstore: track incoming: nil email")
		}
		e := *in // the slices are only read, to make the arguments
		e.ID = s.ids.next("e", idNow)
		e.MailboxID = l.MailboxID
		if e.CreatedAt.IsZero() {
			e.CreatedAt = now
		}
		if e.ModifiedAt.IsZero() {
			e.ModifiedAt = now
		}
		batch[i] = &e
	}
	args := make([][]any, len(batch))
	for i, e := range batch {
		var err error
		if args[i], err = s.emailArgs(e); err != nil {
			return crmstore.TrackResult{}, fmt.Errorf("sqlstore: track incoming of mailbox %s: %w", l.MailboxID, err)
		}
	}
	var inserted map[string]bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, s.sql.saveCursor, append([]any{blob(cursor)}, heldArgs(l)...)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return leaseLost(l)
		}
		if s.d.rowInserts {
			inserted, err = s.insertEach(ctx, tx, batch, args)
		} else {
			inserted, err = s.insertBatch(ctx, tx, args)
		}
		if err != nil {
			return err
		}
		var withAttachments []*crmsync.Email
		for _, e := range batch {
			if inserted[e.ID] && len(e.Attachments) > 0 {
				withAttachments = append(withAttachments, e)
			}
		}
		return s.insertAttachments(ctx, tx, withAttachments)
	})
	if err != nil {
		if errors.Is(err, crmstore.ErrLeaseLost) {
			return crmstore.TrackResult{}, err
		}
		return crmstore.TrackResult{}, fmt.Errorf("sqlstore: track incoming of mailbox %s: %w", l.MailboxID, err)
	}
	r := crmstore.TrackResult{IDs: make([]string, len(batch))}
	for i, e := range batch {
		if inserted[e.ID] {
			r.IDs[i] = e.ID
			emails[i].ID = e.ID
			r.Tracked++
		} else {
			r.Duplicates++
		}
	}
	return r, nil
}

// insertEach inserts new emails (args are their emailArgs) one statement each, and
// returns the IDs of those that were not duplicates.
func (s *Store) insertEach(ctx context.Context, tx *sql.Tx, batch []*crmsync.Email, args [][]any) (map[string]bool, error) {
	inserted := make(map[string]bool, len(batch))
	for i, e := range batch {
		res, err := s.exec(ctx, tx, s.sql.insertEmail, args[i]...)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			inserted[e.ID] = true
		}
	}
	return inserted, nil
}

// insertBatch inserts new emails (args are their emailArgs) with as few statements as
// the dialect's limit on placeholders allows, and returns the IDs of those that were
// not duplicates. Rows are inserted in order, so a duplicate inside the batch is found
// as well as one already stored.
func (s *Store) insertBatch(ctx context.Context, tx *sql.Tx, args [][]any) (map[string]bool, error) {
	inserted := make(map[string]bool, len(args))
	per := s.d.maxParams / emailNCols
	for start := 0; start < len(args); start += per {
		chunk := args[start:min(len(args), start+per)]
		flat := make([]any, 0, len(chunk)*emailNCols)
		for _, a := range chunk {
			flat = append(flat, a...)
		}
		rows, err := tx.QueryContext(ctx, s.valuesSQL("INSERT INTO emails ("+emailCols+") VALUES ", emailNCols, len(chunk),
			" ON CONFLICT DO NOTHING RETURNING id"), flat...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			inserted[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return inserted, nil
}

// ClaimOutgoing returns up to limit (all when limit is not positive) emails of the
// lease's mailbox in Pending Send or Sending, oldest first, moving the Pending Send
// ones to Sending, in one transaction; see crmstore.EmailStore. newMessageID runs in the
// transaction: it must not call the store. l must be a lease of the outgoing workload.
func (s *Store) ClaimOutgoing(ctx context.Context, l crmstore.Lease, limit int, newMessageID func(*crmsync.Email) string) ([]crmstore.OutgoingEmail, error) {
	var out []crmstore.OutgoingEmail
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		out = nil
		if err := s.lockLease(ctx, tx, l, crmsync.Outgoing, "claim outgoing"); err != nil {
			return err
		}
		es, err := s.selectEmails(ctx, tx, "SELECT "+emailCols+" FROM emails WHERE mailbox_id = ? AND status IN (?, ?) ORDER BY created_at, id LIMIT ?"+s.d.forUpdate,
			l.MailboxID, int(crmsync.EmailPendingSend), int(crmsync.EmailSending), limitOf(limit))
		if err != nil {
			return err
		}
		now := s.storeNow()
		for _, e := range es {
			if e.Status == crmsync.EmailSending {
				out = append(out, crmstore.OutgoingEmail{Email: e, Unknown: true})
				continue
			}
			e.Status = crmsync.EmailSending
			e.DeliveryAttempts++
			e.ModifiedAt = now
			if e.MessageID == "" && newMessageID != nil {
				e.MessageID = newMessageID(e.Clone())
			}
			if _, err := tx.ExecContext(ctx, s.q("UPDATE emails SET status = ?, delivery_attempts = ?, modified_at = ?, message_id = ? WHERE id = ?"),
				int(e.Status), e.DeliveryAttempts, s.ts(e.ModifiedAt), e.MessageID, e.ID); err != nil {
				return err
			}
			out = append(out, crmstore.OutgoingEmail{Email: e})
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, crmstore.ErrLeaseLost) {
			return nil, err
		}
		return nil, fmt.Errorf("sqlstore: claim outgoing of mailbox %s: %w", l.MailboxID, err)
	}
	return out, nil
}

// FinishSend records the outcome of one send of an email of the lease's mailbox. The
// Reason of a Failed, Pending Send or Sending result is kept as the FailureReason; a
// Sent result clears it. A zero r.At leaves ModifiedAt as it was.
func (s *Store) FinishSend(ctx context.Context, l crmstore.Lease, id string, r crmstore.SendResult) error {
	switch r.Status {
	case crmsync.EmailSent, crmsync.EmailFailed, crmsync.EmailPendingSend, crmsync.EmailSending:
	default:
		return fmt.Errorf("sqlstore: finish send of email %s: status %v is not an outcome of a send", id, r.Status)
	}
	set := "status = ?"
	args := []any{int(r.Status)}
	switch {
	case r.Status == crmsync.EmailSent:
		set += ", failure_reason = ''"
		if !r.SentAt.IsZero() {
			set, args = set+", sent_at = ?", append(args, s.ts(r.SentAt))
		}
	case r.Reason != "" || r.Status == crmsync.EmailFailed:
		set, args = set+", failure_reason = ?", append(args, r.Reason)
	}
	if r.Attempt {
		set += ", delivery_attempts = delivery_attempts + 1"
	}
	if !r.At.IsZero() {
		set, args = set+", modified_at = ?", append(args, s.ts(r.At))
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockLease(ctx, tx, l, crmsync.Outgoing, "finish send"); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q("UPDATE emails SET "+set+" WHERE id = ? AND mailbox_id = ?"), append(args, id, l.MailboxID)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("email of mailbox "+l.MailboxID, id)
		}
		return nil
	})
	if err != nil && !errors.Is(err, crmstore.ErrLeaseLost) && !errors.Is(err, crmsync.ErrNotFound) {
		return fmt.Errorf("sqlstore: finish send of email %s: %w", id, err)
	}
	return err
}
