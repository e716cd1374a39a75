// Package memstore is the in-memory reference implementation of crmstore.Store: what the
// engine's tests, the examples and the quickstart run on, and the yardstick other stores
// are measured against with crmstore/storetest.
//
// Everything lives in one process behind one mutex, so a Store is as fast as a Store can
// be and keeps nothing across restarts. ClaimDue does not scan mailboxes: each workload
// keeps a min-heap of its claimable mailbox-workloads by next run and a second one of its
// leased ones by lease expiry, so a claim costs O(log n) whatever the number of
// mailboxes.
//
// The Store has no clock of its own for leases: due times and lease expiry are judged by
// the Now of each ClaimQuery. A lease whose expiry no claimer has seen yet still counts
// as held. Times the Store must make up (the CreatedAt of an email or the ModifiedAt of
// one it changes) come from the clock given by WithClock, time.Now by default.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// Store is an in-memory crmstore.Store. The zero value is not usable; call New.
type Store struct {
	mu  sync.Mutex
	now func() time.Time
	seq uint64 // the counter behind the IDs the store assigns
	tok int64  // the last fencing token handed out
	// callerIDs: a caller set an email or alert ID of the form the counter makes.
	callerIDs bool

	profiles map[string]*crmsync.ServerProfile

	mailboxes map[string]*mailboxRec
	byAddress map[string]*mailboxRec
	byOwner   map[crmsync.Owner]*mailboxRec
	byProfile map[string]map[string]*mailboxRec
	sorted    []*mailboxRec // every mailbox by ID; rebuilt when stale
	sortedOK  bool

	ready   [crmsync.NumWorkloads]readyHeap
	leases  [crmsync.NumWorkloads]leaseHeap
	scratch []*entry // reused by ClaimDue

	emails    map[string]*crmsync.Email
	byMessage map[string][]*crmsync.Email // emails of any mailbox by MessageID
	providerN map[pair]int                // (mailbox, ProviderID) → number of emails
	outbox    map[string][]*crmsync.Email // emails in Pending Send or Sending by mailbox
	items     map[itemSet]map[string]*crmsync.Item
	alerts    []*crmsync.Alert
	alertIDs  map[string]struct{}
}

// pair is a key made of a mailbox ID and another string.
type pair struct{ mailbox, s string }

// itemSet names the items of one kind of one mailbox.
type itemSet struct {
	mailbox string
	kind    crmsync.ItemKind
}

// Option configures a Store.
type Option func(*Store)

// WithClock makes the Store take the times it fills in (an email's CreatedAt and
// ModifiedAt when left zero) from now instead of time.Now, so that tests on a fake clock
// see fake times.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// New returns an empty Store. It starts nothing.
func New(opts ...Option) *Store {
	s := &Store{
		now:       time.Now,
		profiles:  make(map[string]*crmsync.ServerProfile),
		mailboxes: make(map[string]*mailboxRec),
		byAddress: make(map[string]*mailboxRec),
		byOwner:   make(map[crmsync.Owner]*mailboxRec),
		byProfile: make(map[string]map[string]*mailboxRec),
		emails:    make(map[string]*crmsync.Email),
		byMessage: make(map[string][]*crmsync.Email),
		providerN: make(map[pair]int),
		outbox:    make(map[string][]*crmsync.Email),
		items:     make(map[itemSet]map[string]*crmsync.Item),
		alertIDs:  make(map[string]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

var _ crmstore.Store = (*Store)(nil)

// newID returns a fresh ID with the given prefix, unused by any record of the kind that
// exists reports on. Only a caller's own ID can collide with the counter's, so exists is
// asked only once the store has accepted one that looks like the counter's.
func (s *Store) newID(prefix string, exists func(string) bool) string {
	for {
		s.seq++
		id := prefix + strconv.FormatUint(s.seq, 10)
		if !s.callerIDs || !exists(id) {
			return id
		}
	}
}

// noteCallerID records that a caller chose id, if it could be one the store assigns.
func (s *Store) noteCallerID(id string) {
	if len(id) < 2 {
		return
	}
	for _, c := range id[1:] {
		if c < '0' || c > '9' {
			return
		}
	}
	s.callerIDs = true
}

func notFound(what, id string) error {
	return fmt.Errorf("memstore: %s %q: %w", what, id, crmsync.ErrNotFound)
}

func badWorkload(w crmsync.Workload) error {
	return fmt.Errorf("memstore: %v is not a workload", w)
}

// PutProfile inserts or replaces the profile with p.ID.
func (s *Store) PutProfile(ctx context.Context, p *crmsync.ServerProfile) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p == nil || p.ID == "" {
		return errors.New("memstore: put profile: the profile has no ID")
	}
	c := cloneProfile(p)
	s.mu.Lock()
	s.profiles[p.ID] = c
	s.mu.Unlock()
	return nil
}

// Profile returns the profile with this id.
func (s *Store) Profile(ctx context.Context, id string) (*crmsync.ServerProfile, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.profiles[id]
	if p == nil {
		return nil, notFound("profile", id)
	}
	return cloneProfile(p), nil
}

// limited returns the first limit elements of xs, or all of them when limit is not
// positive.
func limited[T any](xs []T, limit int) []T {
	if limit > 0 && len(xs) > limit {
		return xs[:limit]
	}
	return xs
}

// byTimeThenID orders records by a time, then by ID.
func byTimeThenID(at1 time.Time, id1 string, at2 time.Time, id2 string) int {
	if c := at1.Compare(at2); c != 0 {
		return c
	}
	return cmp.Compare(id1, id2)
}

// sortEmails orders emails by CreatedAt, then ID.
func sortEmails(es []*crmsync.Email) {
	slices.SortFunc(es, func(a, b *crmsync.Email) int {
		return byTimeThenID(a.CreatedAt, a.ID, b.CreatedAt, b.ID)
	})
}
