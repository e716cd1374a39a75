package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// emailKeys are the fields of an email the indexes are built on.
type emailKeys struct {
	mailbox, messageID, providerID string
	outbound                       bool // in Pending Send or Sending: waiting in the outbox
}

func keysOf(e *crmsync.Email) emailKeys {
	return emailKeys{
		mailbox:    e.MailboxID,
		messageID:  e.MessageID,
		providerID: e.ProviderID,
		outbound:   e.Status == crmsync.EmailPendingSend || e.Status == crmsync.EmailSending,
	}
}

func remove(es []*crmsync.Email, e *crmsync.Email) []*crmsync.Email {
	for i, x := range es {
		if x == e {
			last := len(es) - 1
			es[i] = es[last]
			es[last] = nil
			return es[:last]
		}
	}
	return es
}

func dropFrom(m map[string][]*crmsync.Email, key string, e *crmsync.Email) {
	if es := remove(m[key], e); len(es) > 0 {
		m[key] = es
	} else {
		delete(m, key)
	}
}

func count(m map[pair]int, k pair, d int) {
	if n := m[k] + d; n > 0 {
		m[k] = n
	} else {
		delete(m, k)
	}
}

// reindex moves e in the indexes from the keys it had to the keys it has; added says e
// is new to the indexes, and had is then ignored.
func (s *Store) reindex(e *crmsync.Email, had emailKeys, added bool) {
	has := keysOf(e)
	if !added && has == had {
		return
	}
	moved := added || has.mailbox != had.mailbox
	if moved || has.providerID != had.providerID {
		if !added && had.providerID != "" {
			count(s.providerN, pair{had.mailbox, had.providerID}, -1)
		}
		if has.providerID != "" {
			count(s.providerN, pair{has.mailbox, has.providerID}, 1)
		}
	}
	if added || has.messageID != had.messageID {
		if !added && had.messageID != "" {
			dropFrom(s.byMessage, had.messageID, e)
		}
		if has.messageID != "" {
			s.byMessage[has.messageID] = append(s.byMessage[has.messageID], e)
		}
	}
	if moved || has.outbound != had.outbound {
		if !added && had.outbound {
			dropFrom(s.outbox, had.mailbox, e)
		}
		if has.outbound {
			s.outbox[has.mailbox] = append(s.outbox[has.mailbox], e)
		}
	}
}

func (s *Store) emailExists(id string) bool { _, ok := s.emails[id]; return ok }

// insertEmail stores e, which the store owns from now on.
func (s *Store) insertEmail(e *crmsync.Email) {
	s.emails[e.ID] = e
	s.reindex(e, emailKeys{}, true)
}

// CreateEmail stores a copy of e, assigning e.ID if it is empty and setting CreatedAt
// and ModifiedAt if zero (on e too, so the caller learns them).
func (s *Store) CreateEmail(ctx context.Context, e *crmsync.Email) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if e == nil {
		return errors.New("memstore: create email: nil email")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.ID == "" {
		e.ID = s.newID("e", s.emailExists)
	} else if s.emailExists(e.ID) {
		return fmt.Errorf("memstore: create email: email %q already exists", e.ID)
	} else {
		s.noteCallerID(e.ID)
	}
	now := s.now()
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	if e.ModifiedAt.IsZero() {
		e.ModifiedAt = now
	}
	s.insertEmail(e.Clone())
	return nil
}

// Email returns the email with this id.
func (s *Store) Email(ctx context.Context, id string) (*crmsync.Email, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.emails[id]
	if e == nil {
		return nil, notFound("email", id)
	}
	return e.Clone(), nil
}

// UpdateEmail applies fn to a copy of the email and saves the result. fn runs with the
// store locked: it must not call the store. It may not change the ID.
func (s *Store) UpdateEmail(ctx context.Context, id string, fn func(*crmsync.Email) error) (*crmsync.Email, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.emails[id]
	if e == nil {
		return nil, notFound("email", id)
	}
	c := e.Clone()
	if err := fn(c); err != nil {
		return nil, err
	}
	if c.ID != id {
		return nil, fmt.Errorf("memstore: update email %s: the ID may not change", id)
	}
	had := keysOf(e)
	*e = *c.Clone() // fn may have kept c
	s.reindex(e, had, false)
	return c, nil
}

// ListEmails returns emails ordered by CreatedAt, then ID.
func (s *Store) ListEmails(ctx context.Context, q crmstore.EmailQuery) ([]*crmsync.Email, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	match := func(e *crmsync.Email) bool {
		return (q.Status == 0 || e.Status == q.Status) && (q.Direction == 0 || e.Direction == q.Direction)
	}
	// A scan: listing is for hosts and tests, not the engine's cycles, and an index by
	// mailbox would cost every tracked email.
	var sel []*crmsync.Email
	for _, e := range s.emails {
		if (q.MailboxID == "" || e.MailboxID == q.MailboxID) && match(e) {
			sel = append(sel, e)
		}
	}
	sortEmails(sel)
	return cloneEmails(limited(sel, q.Limit)), nil
}

func cloneEmails(es []*crmsync.Email) []*crmsync.Email {
	out := make([]*crmsync.Email, len(es))
	for i, e := range es {
		out[i] = e.Clone()
	}
	return out
}

// EmailsByMessageID returns the emails of any mailbox whose MessageID is one of ids,
// ordered by CreatedAt, then ID.
func (s *Store) EmailsByMessageID(ctx context.Context, ids []string) ([]*crmsync.Email, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var sel []*crmsync.Email
	for i, id := range ids {
		if id == "" || indexOf(ids[:i], id) >= 0 {
			continue
		}
		sel = append(sel, s.byMessage[id]...)
	}
	sortEmails(sel)
	return cloneEmails(sel), nil
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

// TrackIncoming stores the new emails of an incoming batch and the incoming cursor in
// one step; see crmstore.EmailStore. The store assigns the IDs (any ID the caller set is
// replaced) and sets them on the caller's emails too; a zero CreatedAt or ModifiedAt is
// set to the store's time. l must be a lease of the incoming workload.
func (s *Store) TrackIncoming(ctx context.Context, l crmstore.Lease, emails []*crmsync.Email, cursor []byte) (crmstore.TrackResult, error) {
	if err := ctx.Err(); err != nil {
		return crmstore.TrackResult{}, err
	}
	for _, e := range emails {
		if e == nil {
			return crmstore.TrackResult{}, errors.New("memstore: track incoming: nil email")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, err := s.heldAs(l, crmsync.Incoming, "track incoming")
	if err != nil {
		return crmstore.TrackResult{}, err
	}
	// Nothing below can fail: the batch is written whole. Each email tracked is in the
	// indexes before the next is checked, which catches duplicates inside the batch.
	res := crmstore.TrackResult{IDs: make([]string, len(emails))}
	var now time.Time
	for i, in := range emails {
		if s.duplicate(l.MailboxID, in) {
			res.Duplicates++
			continue
		}
		e := keepIncoming(in)
		e.ID = s.newID("e", s.emailExists)
		e.MailboxID = l.MailboxID
		if e.CreatedAt.IsZero() || e.ModifiedAt.IsZero() {
			if now.IsZero() {
				now = s.now()
			}
			if e.CreatedAt.IsZero() {
				e.CreatedAt = now
			}
			if e.ModifiedAt.IsZero() {
				e.ModifiedAt = now
			}
		}
		s.insertEmail(e)
		in.ID = e.ID
		res.IDs[i] = e.ID
		res.Tracked++
	}
	ent.cursor = cloneCursor(cursor)
	return res, nil
}

// keepIncoming copies an email TrackIncoming stores, but for its attachments' contents,
// which the caller hands over (see crmstore.EmailStore.TrackIncoming): an ingest does
// not copy every attachment once more.
func keepIncoming(in *crmsync.Email) *crmsync.Email {
	shallow := *in
	shallow.Attachments = nil
	e := shallow.Clone()
	e.Attachments = slices.Clone(in.Attachments)
	return e
}

// duplicate reports whether an email of the mailbox has e's ProviderID or MessageID.
func (s *Store) duplicate(mailboxID string, e *crmsync.Email) bool {
	if e.ProviderID != "" && s.providerN[pair{mailboxID, e.ProviderID}] > 0 {
		return true
	}
	if e.MessageID != "" {
		// The emails sharing a Message-ID are few: one per mailbox it reached.
		for _, x := range s.byMessage[e.MessageID] {
			if x.MailboxID == mailboxID {
				return true
			}
		}
	}
	return false
}

// ClaimOutgoing returns up to limit (all when limit is not positive) emails of the
// lease's mailbox in Pending Send or Sending, oldest first, moving the Pending Send ones
// to Sending; see crmstore.EmailStore. newMessageID runs with the store locked: it must
// not call the store. l must be a lease of the outgoing workload.
func (s *Store) ClaimOutgoing(ctx context.Context, l crmstore.Lease, limit int, newMessageID func(*crmsync.Email) string) ([]crmstore.OutgoingEmail, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.heldAs(l, crmsync.Outgoing, "claim outgoing"); err != nil {
		return nil, err
	}
	box := s.outbox[l.MailboxID]
	if len(box) == 0 {
		return nil, nil
	}
	sortEmails(box) // the outbox has no order of its own, so sorting it in place is free
	box = limited(box, limit)
	// Changes below may reorder the outbox; work on a copy of the selection.
	sel := append([]*crmsync.Email(nil), box...)
	out := make([]crmstore.OutgoingEmail, len(sel))
	now := s.now()
	for i, e := range sel {
		if e.Status == crmsync.EmailSending {
			out[i] = crmstore.OutgoingEmail{Email: e.Clone(), Unknown: true}
			continue
		}
		had := keysOf(e)
		e.Status = crmsync.EmailSending
		e.DeliveryAttempts++
		e.ModifiedAt = now
		if e.MessageID == "" && newMessageID != nil {
			e.MessageID = newMessageID(e.Clone())
		}
		s.reindex(e, had, false)
		out[i] = crmstore.OutgoingEmail{Email: e.Clone()}
	}
	return out, nil
}

// FinishSend records the outcome of one send of an email of the lease's mailbox. The
// Reason of a Failed, Pending Send or Sending result is kept as the FailureReason; a Sent
// result clears it. A zero r.At leaves ModifiedAt as it was.
func (s *Store) FinishSend(ctx context.Context, l crmstore.Lease, id string, r crmstore.SendResult) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch r.Status {
	case crmsync.EmailSent, crmsync.EmailFailed, crmsync.EmailPendingSend, crmsync.EmailSending:
	default:
		return fmt.Errorf("memstore: finish send of email %s: status %v is not an outcome of a send", id, r.Status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.heldAs(l, crmsync.Outgoing, "finish send"); err != nil {
		return err
	}
	e := s.emails[id]
	if e == nil || e.MailboxID != l.MailboxID {
		return notFound("email of mailbox "+l.MailboxID, id)
	}
	had := keysOf(e)
	e.Status = r.Status
	switch r.Status {
	case crmsync.EmailSent:
		if !r.SentAt.IsZero() {
			e.SentAt = r.SentAt
		}
		e.FailureReason = ""
	default:
		if r.Reason != "" || r.Status == crmsync.EmailFailed {
			e.FailureReason = r.Reason
		}
	}
	if r.Attempt {
		e.DeliveryAttempts++
	}
	if !r.At.IsZero() {
		e.ModifiedAt = r.At
	}
	s.reindex(e, had, false)
	return nil
}
