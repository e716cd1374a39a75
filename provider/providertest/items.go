package providertest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// itemSet holds the items of one kind of a mailbox. log lists every change in order;
// an entry is current while its record's seq is still the entry's.
type itemSet struct {
	byID map[string]*itemRec
	log  []itemEntry
}

// itemRec is the latest version of one item; a deleted item stays as a tombstone so
// that Changes reports the deletion.
type itemRec struct {
	item crmsync.Item
	seq  uint64
}

type itemEntry struct {
	seq uint64
	rec *itemRec
}

func (s *Server) itemsSupported(op string) error {
	if s.noItems {
		return crmsync.Errorf(crmsync.KindPermanent, op, "this server has no appointments, contacts or tasks: %w", crmsync.ErrNotSupported)
	}
	return nil
}

func validKind(k crmsync.ItemKind) bool { return k >= crmsync.KindAppointment && k <= crmsync.KindTask }

// hasContent reports whether it carries the value of its kind.
func hasContent(k crmsync.ItemKind, it *crmsync.Item) bool {
	switch k {
	case crmsync.KindAppointment:
		return it.Appointment != nil
	case crmsync.KindContact:
		return it.Contact != nil
	case crmsync.KindTask:
		return it.Task != nil
	}
	return false
}

// putLocked stores a new version of it (a create when its ProviderID is empty or
// unknown) and returns the stored copy. The server keeps no CRM fields: MailboxID and
// RecordID are dropped. mb.mu is held.
func (mb *mailbox) putLocked(k crmsync.ItemKind, it crmsync.Item, now time.Time) crmsync.Item {
	mb.seq++
	it = cloneItem(it)
	it.Kind, it.MailboxID, it.RecordID, it.Deleted = k, "", "", false
	if it.ProviderID == "" {
		it.ProviderID = "i" + strconv.FormatUint(mb.seq, 10)
	}
	it.ChangeKey = "v" + strconv.FormatUint(mb.seq, 10)
	it.ModifiedAt = now
	mb.record(k, it)
	return it
}

// deleteLocked turns the live item id into a tombstone; it reports false when there is
// no such live item. mb.mu is held.
func (mb *mailbox) deleteLocked(k crmsync.ItemKind, id string, now time.Time) bool {
	set := &mb.items[k-1]
	if r := set.byID[id]; r == nil || r.item.Deleted {
		return false
	}
	mb.seq++
	mb.record(k, crmsync.Item{Kind: k, ProviderID: id, Deleted: true, ModifiedAt: now})
	return true
}

func (mb *mailbox) record(k crmsync.ItemKind, it crmsync.Item) {
	set := &mb.items[k-1]
	if set.byID == nil {
		set.byID = make(map[string]*itemRec)
	}
	r := set.byID[it.ProviderID]
	if r == nil {
		r = new(itemRec)
		set.byID[it.ProviderID] = r
	}
	r.item, r.seq = it, mb.seq
	set.log = append(set.log, itemEntry{seq: mb.seq, rec: r})
}

// PutItem creates or replaces an item in the mailbox at address, as a user editing it
// in their mail client would: an empty or unknown ProviderID creates it. It returns the
// stored item with its ProviderID, a new ChangeKey and ModifiedAt set; the server keeps
// neither MailboxID nor RecordID. It panics if the item's Kind is not an item kind.
func (s *Server) PutItem(address string, it crmsync.Item) crmsync.Item {
	if !validKind(it.Kind) {
		panic(fmt.Sprintf("providertest: PutItem of item kind %d", it.Kind))
	}
	mb := s.box(address)
	now := s.clock.Now()
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return cloneItem(mb.putLocked(it.Kind, it, now))
}

// DeleteItem deletes an item of the mailbox at address, as a user would; Changes
// reports it deleted. It reports false when there is no such item.
func (s *Server) DeleteItem(address string, kind crmsync.ItemKind, providerID string) bool {
	if !validKind(kind) {
		return false
	}
	mb := s.lookup(address)
	if mb == nil {
		return false
	}
	now := s.clock.Now()
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.deleteLocked(kind, providerID, now)
}

// Items returns copies of the live items of kind in the mailbox at address, in order of
// their last change.
func (s *Server) Items(address string, kind crmsync.ItemKind) []crmsync.Item {
	if !validKind(kind) {
		return nil
	}
	mb := s.lookup(address)
	if mb == nil {
		return nil
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var out []crmsync.Item
	for _, e := range mb.items[kind-1].log {
		if e.rec.seq == e.seq && !e.rec.item.Deleted {
			out = append(out, cloneItem(e.rec.item))
		}
	}
	return out
}

// Changes implements provider.ItemSync. From a nil cursor it lists the live items;
// from a cursor, every item changed after it in order of change, deleted ones with
// Deleted set and only their identity. Pages hold at most ServerConfig.PageSize items.
// A cursor that ExpireCursors made old fails with a crmsync.KindCursorExpired error.
func (c *Conn) Changes(ctx context.Context, kind crmsync.ItemKind, cursor []byte) (*provider.ItemChanges, error) {
	const op = "fake changes"
	if err := c.enter(ctx, OpChanges, ""); err != nil {
		return nil, err
	}
	if err := c.s.itemsSupported(op); err != nil {
		return nil, err
	}
	if !validKind(kind) {
		return nil, crmsync.Errorf(crmsync.KindPermanent, op, "item kind %d: %w", kind, crmsync.ErrNotSupported)
	}
	mb := c.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	after, err := mb.position(op, cursor, tagItems(kind))
	if err != nil {
		return nil, err
	}
	log := mb.items[kind-1].log
	out := new(provider.ItemChanges)
	last := after
	for i := sort.Search(len(log), func(i int) bool { return log[i].seq > after }); i < len(log); i++ {
		e := log[i]
		if e.rec.seq != e.seq || cursor == nil && e.rec.item.Deleted {
			last = e.seq
			continue
		}
		if len(out.Items) == c.s.pageSize {
			out.More = true
			break
		}
		out.Items = append(out.Items, cloneItem(e.rec.item))
		last = e.seq
	}
	out.Cursor = appendCursor(tagItems(kind), mb.epoch, last)
	return out, nil
}

// Apply implements provider.ItemSync. A create gets a new ProviderID (whatever the op
// carries); an update or delete of an item that is not there has a crmsync.KindNotFound
// result. Updates do not check ChangeKey: the last writer wins. An item without the
// value of its kind (Appointment, Contact or Task) has a permanent result error.
func (c *Conn) Apply(ctx context.Context, kind crmsync.ItemKind, ops []provider.ItemOp) ([]provider.ItemResult, error) {
	const op = "fake apply"
	if err := c.enter(ctx, OpApply, ""); err != nil {
		return nil, err
	}
	if err := c.s.itemsSupported(op); err != nil {
		return nil, err
	}
	if !validKind(kind) {
		return nil, crmsync.Errorf(crmsync.KindPermanent, op, "item kind %d: %w", kind, crmsync.ErrNotSupported)
	}
	now := c.s.clock.Now()
	mb := c.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	set := &mb.items[kind-1]
	res := make([]provider.ItemResult, len(ops))
	for i, o := range ops {
		id := o.Item.ProviderID
		live := false
		if r := set.byID[id]; r != nil && !r.item.Deleted {
			live = true
		}
		switch {
		case o.Op == provider.OpDelete && !live, o.Op == provider.OpUpdate && !live:
			res[i].Err = provider.NotFound(op, fmt.Errorf("mailbox %s: no %s %q: %w", mb.addr, kind, id, crmsync.ErrNotFound))
		case o.Op == provider.OpDelete:
			mb.deleteLocked(kind, id, now)
			res[i].ProviderID = id
		case o.Op != provider.OpCreate && o.Op != provider.OpUpdate:
			res[i].Err = crmsync.Errorf(crmsync.KindPermanent, op, "mailbox %s: unknown operation %s", mb.addr, o.Op)
		case !hasContent(kind, &o.Item):
			res[i].Err = crmsync.Errorf(crmsync.KindPermanent, op, "mailbox %s: %s %s has no %s value", mb.addr, o.Op, kind, kind)
		default:
			it := o.Item
			if o.Op == provider.OpCreate {
				it.ProviderID = ""
			}
			stored := mb.putLocked(kind, it, now)
			res[i].ProviderID, res[i].ChangeKey = stored.ProviderID, stored.ChangeKey
		}
	}
	return res, nil
}

// cloneItem returns a deep copy of it.
func cloneItem(it crmsync.Item) crmsync.Item {
	if a := it.Appointment; a != nil {
		c := *a
		c.Attendees = slices.Clone(a.Attendees)
		if a.Recurrence != nil {
			r := *a.Recurrence
			r.ExceptionDates = slices.Clone(a.Recurrence.ExceptionDates)
			c.Recurrence = &r
		}
		it.Appointment = &c
	}
	if ct := it.Contact; ct != nil {
		c := *ct
		c.Emails = slices.Clone(ct.Emails)
		c.Phones = slices.Clone(ct.Phones)
		it.Contact = &c
	}
	if t := it.Task; t != nil {
		c := *t
		it.Task = &c
	}
	return it
}
