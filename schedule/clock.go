// Package schedule decides when things happen: the Clock every package reads time
// through (real, or fake for tests), the cadence policy that computes a mailbox-workload's
// next run at the end of each cycle, and the backoff that spaces retries.
package schedule

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Clock tells the time and makes timers. The engine and providers read time only
// through a Clock, so tests drive every cadence and backoff rule with a Fake.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer whose channel receives the time when it fires.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped it.
	Stop() bool
	// Reset makes the timer fire after d, as time.Timer.Reset does.
	Reset(d time.Duration)
}

// Real is the Clock of the time package.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time   { return r.t.C }
func (r realTimer) Stop() bool            { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) { r.t.Reset(d) }

// Sleep waits for d on clock c, or until ctx is done, whichever comes first.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// Fake is a Clock whose time moves only when a test calls Advance or Set. Timers fire,
// in deadline order, when the time reaches their deadline. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  fakeHeap
	changed chan struct{} // closed and replaced whenever the set of timers changes
}

// NewFake returns a Fake clock set to start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches Now()+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), index: -1}
	t.Reset(d)
	return t
}

// Advance moves the time forward by d, firing every timer whose deadline is reached.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	f.Set(target)
}

// Set moves the time to t (never backwards), firing every timer whose deadline is
// reached, in deadline order.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.timers) > 0 && !f.timers[0].when.After(t) {
		ft := heap.Pop(&f.timers).(*fakeTimer)
		if ft.when.After(f.now) {
			f.now = ft.when
		}
		select {
		case ft.c <- f.now:
		default:
		}
	}
	if t.After(f.now) {
		f.now = t
	}
	f.notify()
}

// Pending returns the number of timers waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NextDeadline returns the earliest pending timer's deadline.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.timers) == 0 {
		return time.Time{}, false
	}
	return f.timers[0].when, true
}

// BlockUntil waits until at least n timers are pending, or ctx is done. Tests call it
// to know that the code under test is waiting before they Advance the time.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		if len(f.timers) >= n {
			f.mu.Unlock()
			return nil
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// AdvanceToNext moves the time to the earliest pending timer's deadline and fires it
// (and any other timer due then); it reports whether there was one.
func (f *Fake) AdvanceToNext() bool {
	when, ok := f.NextDeadline()
	if ok {
		f.Set(when)
	}
	return ok
}

func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

type fakeTimer struct {
	f     *Fake
	c     chan time.Time
	when  time.Time
	index int // in f.timers, -1 when not pending
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.f.timers, t.index)
	t.f.notify()
	return true
}

func (t *fakeTimer) Reset(d time.Duration) {
	f := t.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.index >= 0 {
		heap.Remove(&f.timers, t.index)
	}
	// Drain a fired value that was never read, like time.Timer since Go 1.23.
	select {
	case <-t.c:
	default:
	}
	t.when = f.now.Add(d)
	if d <= 0 {
		t.c <- f.now
		f.notify()
		return
	}
	heap.Push(&f.timers, t)
	f.notify()
}

type fakeHeap []*fakeTimer

func (h fakeHeap) Len() int           { return len(h) }
func (h fakeHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h fakeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *fakeHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *fakeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}
