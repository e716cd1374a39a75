package memstore

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// entry is one mailbox-workload: its schedule, lease and sync state. An entry that is
// scheduled and runnable sits in one of its workload's two heaps: the ready heap (by due
// time) when no one holds it, the lease heap (by lease expiry) when someone does.
type entry struct {
	rec      *mailboxRec
	next     time.Time // the next run; zero when unscheduled
	expires  time.Time // lease expiry
	owner    string    // lease owner
	token    int64     // fencing token of the current or last lease
	cursor   []byte
	load     float64
	failures int
	idx      int32 // position in its heap, -1 when in none
	w        crmsync.Workload
	where    uint8 // inNone, inReady or inLeased
	leased   bool  // a lease is held: claimed and not yet finished or taken over
	// stale: the lease expired as a claimer saw it; the entry is claimable again, and
	// its holder keeps it until someone else claims it.
	stale bool
}

const (
	inNone uint8 = iota
	inReady
	inLeased
)

// due is when the entry may be claimed: its next run, or after an expired lease, the
// later of that and the expiry (so a claimer whose clock is behind the one that saw the
// expiry does not take a lease that is still live by its own clock).
func (e *entry) due() time.Time {
	if e.leased && e.expires.After(e.next) {
		return e.expires
	}
	return e.next
}

func (e *entry) runnable() bool { return e.rec.mb.State(e.w).Runnable() }

// readyHeap orders unheld entries by due time.
type readyHeap []*entry

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return h[i].due().Before(h[j].due()) }
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = int32(i), int32(j)
}
func (h *readyHeap) Push(x any) {
	e := x.(*entry)
	e.idx = int32(len(*h))
	*h = append(*h, e)
}
func (h *readyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// leaseHeap orders held entries by lease expiry.
type leaseHeap []*entry

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = int32(i), int32(j)
}
func (h *leaseHeap) Push(x any) {
	e := x.(*entry)
	e.idx = int32(len(*h))
	*h = append(*h, e)
}
func (h *leaseHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

func (s *Store) heapOf(e *entry, where uint8) heap.Interface {
	if where == inReady {
		return &s.ready[e.w-1]
	}
	return &s.leases[e.w-1]
}

// place puts e in the heap its state calls for, or in none, after any change to its
// schedule, lease or workload state.
func (s *Store) place(e *entry) {
	want := inNone
	if !e.next.IsZero() && e.runnable() {
		want = inReady
		if e.leased && !e.stale {
			want = inLeased
		}
	}
	if e.where == want {
		if want != inNone {
			heap.Fix(s.heapOf(e, want), int(e.idx))
		}
		return
	}
	s.unplace(e)
	if want != inNone {
		e.where = want
		heap.Push(s.heapOf(e, want), e)
	}
}

// unplace takes e out of its heap.
func (s *Store) unplace(e *entry) {
	if e.where != inNone {
		heap.Remove(s.heapOf(e, e.where), int(e.idx))
		e.where = inNone
	}
}

// held returns the entry of l if l is its current lease.
func (s *Store) held(l crmstore.Lease) (*entry, error) {
	if r := s.mailboxes[l.MailboxID]; r != nil && l.Workload.Valid() {
		e := &r.wl[l.Workload-1]
		if e.leased && e.token == l.Token && e.owner == l.Owner {
			return e, nil
		}
	}
	return nil, fmt.Errorf("memstore: %v lease %d of mailbox %s held by %q: %w",
		l.Workload, l.Token, l.MailboxID, l.Owner, crmstore.ErrLeaseLost)
}

// heldAs is held for a write that belongs to workload w.
func (s *Store) heldAs(l crmstore.Lease, w crmsync.Workload, op string) (*entry, error) {
	if l.Workload != w {
		return nil, fmt.Errorf("memstore: %s needs a lease of the %v workload, not %v", op, w, l.Workload)
	}
	return s.held(l)
}

// SetWorkload sets the state of workload w of the mailbox and schedules its next run at
// next (zero unschedules it). It does not touch a held lease or the cursor.
func (s *Store) SetWorkload(ctx context.Context, mailboxID string, w crmsync.Workload, st crmsync.WorkloadState, next time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !w.Valid() {
		return badWorkload(w)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.mailboxes[mailboxID]
	if r == nil {
		return notFound("mailbox", mailboxID)
	}
	*r.mb.State(w) = st
	e := &r.wl[w-1]
	e.next = next
	s.place(e)
	return nil
}

// ClaimDue leases up to q.Limit due, runnable mailbox-workloads of q.Workload that no one
// holds or whose lease expired by q.Now, earliest due first. A Limit of zero or less
// claims every due one.
func (s *Store) ClaimDue(ctx context.Context, q crmstore.ClaimQuery) ([]*crmstore.Claim, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !q.Workload.Valid() {
		return nil, badWorkload(q.Workload)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rh, lh := &s.ready[q.Workload-1], &s.leases[q.Workload-1]
	for len(*lh) > 0 && !(*lh)[0].expires.After(q.Now) {
		e := heap.Pop(lh).(*entry)
		e.stale = true
		e.where = inReady
		heap.Push(rh, e)
	}
	picked := s.scratch[:0]
	for len(*rh) > 0 && (q.Limit <= 0 || len(picked) < q.Limit) && !(*rh)[0].due().After(q.Now) {
		e := heap.Pop(rh).(*entry)
		e.where = inNone
		picked = append(picked, e)
	}
	defer func() {
		clear(picked)
		s.scratch = picked[:0]
	}()
	if len(picked) == 0 {
		return nil, nil
	}

	// One allocation per kind of thing handed out, not one per claim.
	n := len(picked)
	out := make([]*crmstore.Claim, n)
	claims := make([]crmstore.Claim, n)
	mbs := make([]crmsync.Mailbox, n)
	var profs []crmsync.ServerProfile
	var cursors []byte
	size := 0
	for _, e := range picked {
		size += len(e.cursor)
	}
	if size > 0 {
		cursors = make([]byte, 0, size)
	}
	expires := q.Now.Add(q.LeaseFor)
	for i, e := range picked {
		s.tok++
		e.leased, e.stale = true, false
		e.owner, e.token, e.expires = q.Owner, s.tok, expires
		e.where = inLeased
		heap.Push(lh, e)

		c := &claims[i]
		c.Lease = crmstore.Lease{MailboxID: e.rec.mb.ID, Workload: e.w, Owner: q.Owner, Token: e.token, Expires: expires}
		c.Due = e.next
		c.State = crmstore.SyncState{Failures: e.failures, Load: e.load}
		switch {
		case len(e.cursor) > 0:
			start := len(cursors)
			cursors = append(cursors, e.cursor...)
			c.State.Cursor = cursors[start:len(cursors):len(cursors)]
		case e.cursor != nil:
			c.State.Cursor = []byte{}
		}
		mbs[i] = e.rec.mb
		if len(e.rec.mb.TrackedFolders) > 0 {
			mbs[i].TrackedFolders = append([]string(nil), e.rec.mb.TrackedFolders...)
		}
		c.Mailbox = &mbs[i]
		if p := s.profiles[e.rec.mb.ProfileID]; p != nil {
			if profs == nil {
				profs = make([]crmsync.ServerProfile, n)
			}
			profs[i] = *p
			if p.KeepSentCopy != nil {
				b := *p.KeepSentCopy
				profs[i].KeepSentCopy = &b
			}
			c.Profile = &profs[i]
		}
		out[i] = c
	}
	return out, nil
}

// NextDue returns the earliest time at which a scheduled, runnable mailbox-workload of w
// that no one holds becomes claimable. A held lease whose expiry no claimer has seen
// yet counts as held.
func (s *Store) NextDue(ctx context.Context, w crmsync.Workload) (time.Time, bool, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, false, err
	}
	if !w.Valid() {
		return time.Time{}, false, badWorkload(w)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.ready[w-1]
	if len(h) == 0 {
		return time.Time{}, false, nil
	}
	return h[0].due(), true, nil
}

// RenewLease extends a held lease to until.
func (s *Store) RenewLease(ctx context.Context, l crmstore.Lease, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.held(l)
	if err != nil {
		return err
	}
	e.expires = until
	e.stale = false
	s.place(e)
	return nil
}

// FinishCycle records a cycle's outcome and releases the lease.
func (s *Store) FinishCycle(ctx context.Context, l crmstore.Lease, r crmstore.CycleResult) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.held(l)
	if err != nil {
		return err
	}
	st := e.rec.mb.State(e.w)
	st.Status, st.StatusAt = r.Status, r.At
	if r.Status == crmsync.StatusFailure || r.Err != "" {
		st.LastError, st.LastErrorKind = r.Err, r.ErrKind
	}
	if r.Disable {
		st.Test, st.TestedAt, st.TestError = crmsync.TestFailed, r.At, r.Err
	}
	e.failures, e.load = r.Failures, r.Load
	if r.ResetCursor {
		e.cursor = nil
	}
	e.leased, e.stale = false, false
	e.next = r.Next
	if !st.Runnable() {
		e.next = time.Time{}
	}
	s.place(e)
	return nil
}
