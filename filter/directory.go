package filter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// PartyKind is the kind of CRM record an email address belongs to. Kinds are ordered by
// resolution priority: when several records share an address, the lowest kind wins.
type PartyKind uint8

// Party kinds, in resolution priority order. Users and queues are internal (they own
// mailboxes); contacts, accounts and leads are the CRM's customers and prospects;
// PartyOther is any other email-enabled record (a custom table with an email column).
const (
	PartyUser PartyKind = iota + 1
	PartyQueue
	PartyContact
	PartyAccount
	PartyLead
	PartyOther
)

// String returns the kind's name, such as "contact".
func (k PartyKind) String() string {
	switch k {
	case PartyUser:
		return "user"
	case PartyQueue:
		return "queue"
	case PartyContact:
		return "contact"
	case PartyAccount:
		return "account"
	case PartyLead:
		return "lead"
	case PartyOther:
		return "other"
	}
	return fmt.Sprintf("party-kind(%d)", uint8(k))
}

// Internal reports whether k is a user or a queue.
func (k PartyKind) Internal() bool { return k == PartyUser || k == PartyQueue }

// Customer reports whether k is a lead, contact or account: the records the
// IncomingFromCRM option accepts mail from.
func (k PartyKind) Customer() bool { return k == PartyContact || k == PartyAccount || k == PartyLead }

// Party is a CRM record that has an email address.
type Party struct {
	Kind PartyKind
	ID   string
	// OwnerID is the user who owns the record; for a user, the user's own ID.
	OwnerID string
}

// Directory answers "who has this address" for the CRM: for each address asked (in the
// lower-cased form Normalize gives), the records that have it, any order. Addresses
// nobody has may be missing from the map. A host implements it over its CRM tables;
// MemDirectory is the in-memory reference.
type Directory interface {
	PartiesByAddress(ctx context.Context, addresses []string) (map[string][]Party, error)
}

// MemDirectory is an in-memory Directory. It is safe for concurrent use.
type MemDirectory struct {
	mu      sync.RWMutex
	parties map[string][]Party
}

// NewMemDirectory returns an empty directory.
func NewMemDirectory() *MemDirectory {
	return &MemDirectory{parties: make(map[string][]Party)}
}

// Add records that p has address (compared case-insensitively). Adding the same
// record twice for one address keeps one.
func (d *MemDirectory) Add(address string, p Party) {
	a := normAddr(address)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !slices.Contains(d.parties[a], p) {
		d.parties[a] = append(d.parties[a], p)
	}
}

// Remove forgets that p has address.
func (d *MemDirectory) Remove(address string, p Party) {
	a := normAddr(address)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.parties[a] = slices.DeleteFunc(d.parties[a], func(q Party) bool { return q == p })
	if len(d.parties[a]) == 0 {
		delete(d.parties, a)
	}
}

// PartiesByAddress implements Directory.
func (d *MemDirectory) PartiesByAddress(_ context.Context, addresses []string) (map[string][]Party, error) {
	out := make(map[string][]Party, len(addresses))
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, a := range addresses {
		if ps := d.parties[normAddr(a)]; len(ps) > 0 {
			out[a] = slices.Clone(ps)
		}
	}
	return out, nil
}

// Normalize returns an address in the form Directory and Mailboxes are asked with:
// trimmed and lower-cased.
func Normalize(address string) string { return normAddr(address) }

// validAddress is a cheap plausibility check of a bare address (the parser upstream
// did the real work): one '@' with something on both sides and no white space.
func validAddress(a string) bool {
	at := strings.IndexByte(a, '@')
	return at > 0 && at < len(a)-1 && strings.IndexByte(a[at+1:], '@') < 0 &&
		!strings.ContainsAny(a, " \t\r\n<>")
}
