package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// AddAlert stores a copy of a, assigning a.ID (on a too) if it is empty.
func (s *Store) AddAlert(ctx context.Context, a *crmsync.Alert) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a == nil {
		return errors.New("memstore: add alert: nil alert")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.ID == "" {
		a.ID = s.newID("a", func(id string) bool { _, ok := s.alertIDs[id]; return ok })
	} else if _, ok := s.alertIDs[a.ID]; ok {
		return fmt.Errorf("memstore: add alert: alert %q already exists", a.ID)
	} else {
		s.noteCallerID(a.ID)
	}
	s.alertIDs[a.ID] = struct{}{}
	s.alerts = append(s.alerts, cloneAlert(a))
	return nil
}

// ListAlerts returns alerts ordered by At, then ID.
func (s *Store) ListAlerts(ctx context.Context, q crmstore.AlertQuery) ([]*crmsync.Alert, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var sel []*crmsync.Alert
	for _, a := range s.alerts {
		if (q.ProfileID == "" || a.ProfileID == q.ProfileID) &&
			(q.MailboxID == "" || a.MailboxID == q.MailboxID) &&
			(q.Scope == 0 || a.Scope == q.Scope) &&
			(q.Since.IsZero() || !a.At.Before(q.Since)) {
			sel = append(sel, a)
		}
	}
	slices.SortFunc(sel, func(a, b *crmsync.Alert) int { return byTimeThenID(a.At, a.ID, b.At, b.ID) })
	sel = limited(sel, q.Limit)
	out := make([]*crmsync.Alert, len(sel))
	for i, a := range sel {
		out[i] = cloneAlert(a)
	}
	return out, nil
}
