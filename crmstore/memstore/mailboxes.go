package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// mailboxRec is a mailbox and the schedule, lease and sync state of each of its
// workloads. It is all an idle mailbox costs, besides its entries in the indexes.
type mailboxRec struct {
	mb crmsync.Mailbox
	wl [crmsync.NumWorkloads]entry
}

func newMailboxRec(m crmsync.Mailbox) *mailboxRec {
	r := &mailboxRec{mb: m}
	for i := range r.wl {
		r.wl[i] = entry{rec: r, w: crmsync.Workload(i + 1), idx: -1}
	}
	return r
}

// MapMailbox inserts mailbox m, or replaces the one with m.ID keeping its schedule,
// leases and cursors, under the mapping rules of crmstore.MailboxStore. When both the
// address and the owner are held elsewhere, the conflict reported is the address's.
func (s *Store) MapMailbox(ctx context.Context, m *crmsync.Mailbox, takeOver bool) ([]*crmsync.Mailbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("memstore: map mailbox: nil mailbox")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	addr, err := crmsync.NormalizeAddress(m.Address)
	if err != nil {
		return nil, err
	}
	c := *m
	c.Address = addr
	c.TrackedFolders = slices.Clone(m.TrackedFolders)

	s.mu.Lock()
	defer s.mu.Unlock()
	byAddr, byOwner := s.byAddress[addr], s.byOwner[m.Owner]
	if byAddr != nil && byAddr.mb.ID == m.ID {
		byAddr = nil
	}
	if byOwner != nil && byOwner.mb.ID == m.ID {
		byOwner = nil
	}
	if !takeOver {
		switch {
		case byAddr != nil:
			return nil, &crmsync.MappingConflictError{
				Address: addr, Owner: m.Owner,
				HeldBy: byAddr.mb.ID, HeldByOwner: byAddr.mb.Owner,
				SameOwner: byAddr.mb.Owner == m.Owner,
			}
		case byOwner != nil:
			return nil, &crmsync.MappingConflictError{
				Address: addr, Owner: m.Owner,
				HeldBy: byOwner.mb.ID, HeldByOwner: byOwner.mb.Owner,
				SameOwner: true,
			}
		}
	}
	var displaced []*crmsync.Mailbox
	for _, h := range [...]*mailboxRec{byAddr, byOwner} {
		if h != nil && s.mailboxes[h.mb.ID] == h {
			displaced = append(displaced, h.mb.Clone())
			s.deleteMailbox(h)
		}
	}

	rec := s.mailboxes[m.ID]
	if rec == nil {
		rec = newMailboxRec(c)
		s.mailboxes[c.ID] = rec
		s.sortedOK = false
	} else {
		s.unindexMailbox(rec)
		rec.mb = c
	}
	s.indexMailbox(rec)
	for i := range rec.wl {
		s.place(&rec.wl[i]) // the workload states may have changed
	}
	return displaced, nil
}

func (s *Store) indexMailbox(r *mailboxRec) {
	s.byAddress[r.mb.Address] = r
	s.byOwner[r.mb.Owner] = r
	set := s.byProfile[r.mb.ProfileID]
	if set == nil {
		set = make(map[string]*mailboxRec)
		s.byProfile[r.mb.ProfileID] = set
	}
	set[r.mb.ID] = r
}

func (s *Store) unindexMailbox(r *mailboxRec) {
	if s.byAddress[r.mb.Address] == r {
		delete(s.byAddress, r.mb.Address)
	}
	if s.byOwner[r.mb.Owner] == r {
		delete(s.byOwner, r.mb.Owner)
	}
	if set := s.byProfile[r.mb.ProfileID]; set != nil {
		delete(set, r.mb.ID)
		if len(set) == 0 {
			delete(s.byProfile, r.mb.ProfileID)
		}
	}
}

// deleteMailbox removes r with its schedule, leases and cursors.
func (s *Store) deleteMailbox(r *mailboxRec) {
	s.unindexMailbox(r)
	delete(s.mailboxes, r.mb.ID)
	s.sortedOK = false
	for i := range r.wl {
		e := &r.wl[i]
		s.unplace(e)
		e.leased = false
		e.cursor = nil
	}
}

// Mailbox returns the mailbox with this id.
func (s *Store) Mailbox(ctx context.Context, id string) (*crmsync.Mailbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.mailboxes[id]
	if r == nil {
		return nil, notFound("mailbox", id)
	}
	return r.mb.Clone(), nil
}

// MailboxByAddress returns the mailbox holding address, compared case-insensitively.
func (s *Store) MailboxByAddress(ctx context.Context, address string) (*crmsync.Mailbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.byAddress[strings.ToLower(strings.TrimSpace(address))]
	if r == nil {
		return nil, notFound("mailbox with address", address)
	}
	return r.mb.Clone(), nil
}

// UpdateMailbox applies fn to a copy of the mailbox and saves the result. fn runs with
// the store locked: it must not call the store.
func (s *Store) UpdateMailbox(ctx context.Context, id string, fn func(*crmsync.Mailbox) error) (*crmsync.Mailbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.mailboxes[id]
	if r == nil {
		return nil, notFound("mailbox", id)
	}
	c := r.mb.Clone()
	if err := fn(c); err != nil {
		return nil, err
	}
	switch {
	case c.ID != r.mb.ID:
		return nil, fmt.Errorf("memstore: update mailbox %s: the ID may not change", id)
	case c.Address != r.mb.Address, c.Owner != r.mb.Owner:
		return nil, fmt.Errorf("memstore: update mailbox %s: the address and owner change only through MapMailbox", id)
	case c.Incoming != r.mb.Incoming, c.Outgoing != r.mb.Outgoing, c.ACT != r.mb.ACT:
		return nil, fmt.Errorf("memstore: update mailbox %s: workload states change only through SetWorkload", id)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s.unindexMailbox(r)
	r.mb = *c.Clone() // fn may have kept c
	s.indexMailbox(r)
	return c, nil
}

// DeleteMailbox removes the mailbox, its schedule, leases and cursors. Its emails, items
// and alerts stay.
func (s *Store) DeleteMailbox(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.mailboxes[id]
	if r == nil {
		return notFound("mailbox", id)
	}
	s.deleteMailbox(r)
	return nil
}

// ListMailboxes returns mailboxes ordered by ID.
func (s *Store) ListMailboxes(ctx context.Context, q crmstore.MailboxQuery) ([]*crmsync.Mailbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var src []*mailboxRec
	if q.ProfileID != "" {
		set := s.byProfile[q.ProfileID]
		src = make([]*mailboxRec, 0, len(set))
		for _, r := range set {
			src = append(src, r)
		}
		sortRecs(src)
	} else {
		if !s.sortedOK {
			s.sorted = s.sorted[:0]
			for _, r := range s.mailboxes {
				s.sorted = append(s.sorted, r)
			}
			sortRecs(s.sorted)
			s.sortedOK = true
		}
		src = s.sorted
	}
	if q.AfterID != "" {
		src = src[sort.Search(len(src), func(i int) bool { return src[i].mb.ID > q.AfterID }):]
	}
	src = limited(src, q.Limit)
	out := make([]*crmsync.Mailbox, len(src))
	for i, r := range src {
		out[i] = r.mb.Clone()
	}
	return out, nil
}

func sortRecs(rs []*mailboxRec) {
	slices.SortFunc(rs, func(a, b *mailboxRec) int { return strings.Compare(a.mb.ID, b.mb.ID) })
}

// ProfileHealth counts the profile's mailboxes and those with a workload whose last
// status is Failure set at or after since. A profile without mailboxes, or unknown,
// counts zero.
func (s *Store) ProfileHealth(ctx context.Context, profileID string, since time.Time) (crmstore.ProfileHealth, error) {
	if err := ctx.Err(); err != nil {
		return crmstore.ProfileHealth{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var h crmstore.ProfileHealth
	for _, r := range s.byProfile[profileID] {
		h.Mailboxes++
		for _, w := range crmsync.AllWorkloads() {
			st := r.mb.State(w)
			if st.Status == crmsync.StatusFailure && !st.StatusAt.Before(since) {
				h.Failing++
				break
			}
		}
	}
	return h, nil
}
