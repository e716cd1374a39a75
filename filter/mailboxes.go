package filter

import (
	"context"
	"errors"
	"sync"

	"github.com/crmsync/crmsync"
)

// Mailboxes finds the mailboxes of CRM users and queues by address: for each address
// asked (lower-cased), its mailbox; addresses without one are missing from the map.
// The screener uses it to apply each recipient's incoming option, and Resolve to find
// the sender's mailbox. MemMailboxes is the in-memory reference; StoreMailboxes adapts
// a crmstore.Store.
type Mailboxes interface {
	MailboxesByAddress(ctx context.Context, addresses []string) (map[string]*crmsync.Mailbox, error)
}

// MemMailboxes is an in-memory Mailboxes. It is safe for concurrent use.
type MemMailboxes struct {
	mu sync.RWMutex
	m  map[string]*crmsync.Mailbox
}

// NewMemMailboxes returns a lookup holding the given mailboxes.
func NewMemMailboxes(mbs ...*crmsync.Mailbox) *MemMailboxes {
	m := &MemMailboxes{m: make(map[string]*crmsync.Mailbox)}
	for _, mb := range mbs {
		m.Put(mb)
	}
	return m
}

// Put adds or replaces the mailbox with mb's address (a copy is kept).
func (m *MemMailboxes) Put(mb *crmsync.Mailbox) {
	c := mb.Clone()
	m.mu.Lock()
	m.m[normAddr(mb.Address)] = c
	m.mu.Unlock()
}

// Delete removes the mailbox with this address.
func (m *MemMailboxes) Delete(address string) {
	m.mu.Lock()
	delete(m.m, normAddr(address))
	m.mu.Unlock()
}

// MailboxesByAddress implements Mailboxes. The mailboxes returned are shared: callers
// must not modify them.
func (m *MemMailboxes) MailboxesByAddress(_ context.Context, addresses []string) (map[string]*crmsync.Mailbox, error) {
	out := make(map[string]*crmsync.Mailbox)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, a := range addresses {
		if mb, ok := m.m[normAddr(a)]; ok {
			out[a] = mb
		}
	}
	return out, nil
}

// MailboxByAddresser is the one method of crmstore.MailboxStore that StoreMailboxes
// needs.
type MailboxByAddresser interface {
	MailboxByAddress(ctx context.Context, address string) (*crmsync.Mailbox, error)
}

// StoreMailboxes adapts a store's MailboxByAddress (a crmstore.Store has it) to
// Mailboxes, one call per address; crmsync.ErrNotFound means no mailbox. A host with a
// batch query should implement Mailboxes directly.
type StoreMailboxes struct {
	Store MailboxByAddresser
}

// MailboxesByAddress implements Mailboxes.
func (s StoreMailboxes) MailboxesByAddress(ctx context.Context, addresses []string) (map[string]*crmsync.Mailbox, error) {
	out := make(map[string]*crmsync.Mailbox)
	for _, a := range addresses {
		if _, done := out[a]; done {
			continue
		}
		mb, err := s.Store.MailboxByAddress(ctx, a)
		if errors.Is(err, crmsync.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[a] = mb
	}
	return out, nil
}
