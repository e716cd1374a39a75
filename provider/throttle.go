package provider

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/schedule"
)

// Throttler is shared by every connection to one server profile. The engine acquires it
// before it dials and releases it after it closes, so the profile's connection cap is
// never exceeded, and tells it every error so it can slow everyone down when the server
// asks.
type Throttler interface {
	// Acquire waits for cost units of capacity (a connection costs 1), or until ctx is
	// done. The release function returns them; it is safe to call more than once.
	Acquire(ctx context.Context, cost int) (release func(), err error)
	// Observe learns from an operation's outcome: a throttled error (429, Retry-After,
	// "too many connections") pauses new acquisitions until its retry-after has passed.
	Observe(err error)
}

// ThrottlerMaker is an optional interface of a Dialer whose servers have limits of their
// own (Gmail's connections per account, say): the engine asks it for each profile's
// Throttler instead of using a Limiter with the profile's MaxConnections.
type ThrottlerMaker interface {
	NewThrottler(p *crmsync.ServerProfile, clock schedule.Clock) Throttler
}

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	// Capacity is the number of units that may be held at once, e.g. the profile's
	// connection cap. Required, at least 1.
	Capacity int
	// Clock reads time for pauses. Default schedule.Real.
	Clock schedule.Clock
	// DefaultPause is the pause after a throttled error that names no retry-after.
	// Default 30 seconds.
	DefaultPause time.Duration
}

// Limiter is the standard Throttler: a counting semaphore of Capacity units that pauses
// after a throttled error. Waiters are served in order of arrival.
type Limiter struct {
	cfg LimiterConfig

	mu      sync.Mutex
	used    int
	max     int // the most units ever held at once
	paused  time.Time
	waiters []*waiter
}

type waiter struct {
	cost  int
	ready chan struct{}
}

// NewLimiter returns a Limiter; it starts nothing.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	if cfg.Capacity < 1 {
		return nil, fmt.Errorf("provider: LimiterConfig.Capacity %d must be at least 1", cfg.Capacity)
	}
	if cfg.Clock == nil {
		cfg.Clock = schedule.Real{}
	}
	if cfg.DefaultPause == 0 {
		cfg.DefaultPause = 30 * time.Second
	}
	return &Limiter{cfg: cfg}, nil
}

// Acquire implements Throttler. A cost above Capacity is an error.
func (l *Limiter) Acquire(ctx context.Context, cost int) (func(), error) {
	if cost < 1 {
		cost = 1
	}
	if cost > l.cfg.Capacity {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "throttle", "cost %d exceeds limiter capacity %d", cost, l.cfg.Capacity)
	}
	if err := l.waitPause(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if len(l.waiters) == 0 && l.used+cost <= l.cfg.Capacity {
		l.take(cost)
		l.mu.Unlock()
		return l.releaser(cost), nil
	}
	w := &waiter{cost: cost, ready: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return l.releaser(cost), nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			l.used -= cost
			l.grant()
		default:
			for i, x := range l.waiters {
				if x == w {
					l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
					break
				}
			}
			l.grant()
		}
		return nil, ctx.Err()
	}
}

func (l *Limiter) take(cost int) {
	l.used += cost
	l.max = max(l.max, l.used)
}

func (l *Limiter) releaser(cost int) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.used -= cost
			l.grant()
			l.mu.Unlock()
		})
	}
}

// grant hands free units to waiters in order; l.mu is held.
func (l *Limiter) grant() {
	for len(l.waiters) > 0 && l.used+l.waiters[0].cost <= l.cfg.Capacity {
		w := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.take(w.cost)
		close(w.ready)
	}
}

func (l *Limiter) waitPause(ctx context.Context) error {
	for {
		l.mu.Lock()
		d := l.paused.Sub(l.cfg.Clock.Now())
		l.mu.Unlock()
		if d <= 0 {
			return ctx.Err()
		}
		if err := schedule.Sleep(ctx, l.cfg.Clock, d); err != nil {
			return err
		}
	}
}

// Observe implements Throttler.
func (l *Limiter) Observe(err error) {
	if crmsync.KindOf(err) != crmsync.KindThrottled {
		return
	}
	d := crmsync.RetryAfter(err)
	if d <= 0 {
		d = l.cfg.DefaultPause
	}
	until := l.cfg.Clock.Now().Add(d)
	l.mu.Lock()
	if until.After(l.paused) {
		l.paused = until
	}
	l.mu.Unlock()
}

// InUse returns the units held now.
func (l *Limiter) InUse() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used
}

// MaxInUse returns the most units ever held at once: a test's proof that the cap held.
func (l *Limiter) MaxInUse() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max
}

// PausedUntil returns the end of the current pause, or the zero time.
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.paused
}

var _ Throttler = (*Limiter)(nil)

// Capacity returns the number of units the limiter hands out at once.
func (l *Limiter) Capacity() int { return l.cfg.Capacity }
