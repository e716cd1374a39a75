package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// CommitItems upserts items by (mailbox, kind, ProviderID), removes those with Deleted
// set, and saves cursor as the ACT cursor, all in one step. Every item needs a valid
// Kind and a ProviderID, or nothing is written; MailboxID is set to the lease's. l must
// be a lease of the ACT workload.
func (s *Store) CommitItems(ctx context.Context, l crmstore.Lease, items []crmsync.Item, cursor []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range items {
		it := &items[i]
		if it.Kind < crmsync.KindAppointment || it.Kind > crmsync.KindTask {
			return fmt.Errorf("memstore: commit items of mailbox %s: item %d has kind %v", l.MailboxID, i, it.Kind)
		}
		if it.ProviderID == "" {
			return fmt.Errorf("memstore: commit items of mailbox %s: item %d has no ProviderID", l.MailboxID, i)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, err := s.heldAs(l, crmsync.ACT, "commit items")
	if err != nil {
		return err
	}
	for i := range items {
		it := &items[i]
		key := itemSet{l.MailboxID, it.Kind}
		set := s.items[key]
		if it.Deleted {
			delete(set, it.ProviderID)
			if len(set) == 0 {
				delete(s.items, key)
			}
			continue
		}
		if set == nil {
			set = make(map[string]*crmsync.Item)
			s.items[key] = set
		}
		c := cloneItem(it)
		c.MailboxID = l.MailboxID
		set[it.ProviderID] = c
	}
	ent.cursor = cloneCursor(cursor)
	return nil
}

// Items returns the mailbox's items of kind, ordered by ProviderID; none is not an
// error.
func (s *Store) Items(ctx context.Context, mailboxID string, kind crmsync.ItemKind) ([]crmsync.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.items[itemSet{mailboxID, kind}]
	out := make([]crmsync.Item, 0, len(set))
	for _, it := range set {
		out = append(out, *cloneItem(it))
	}
	slices.SortFunc(out, func(a, b crmsync.Item) int { return strings.Compare(a.ProviderID, b.ProviderID) })
	return out, nil
}
