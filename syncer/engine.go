// Package syncer is the reference Engine of crmsync: it keeps the registry of mailboxes
// and their mapping rules, runs Test & Enable, and runs every enabled mailbox-workload on
// its own schedule, with separate queues and workers per workload, a cap on each server
// profile's connections, leases so that several engines share one Store safely, and the
// documented error handling: permanent errors disable a workload with an alert, transient
// ones are retried with backoff and then treated as permanent.
//
// Lifecycle: New validates and starts nothing; Start runs the engine; Stop finishes the
// cycles in flight (or abandons them cleanly when its context ends) and waits for every
// goroutine; StopAndCancel abandons them at once.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// ErrNotStarted is returned by operations that need a running engine.
var ErrNotStarted = errors.New("syncer: engine not started")

// ErrStopped is returned by Start on an engine that was already started or stopped.
var ErrStopped = errors.New("syncer: engine already started or stopped")

// Engine runs the synchronization. Create it with New; its methods are safe for
// concurrent use.
type Engine struct {
	cfg    Config
	store  crmstore.Store
	clock  schedule.Clock
	log    *slog.Logger
	obs    Observer
	policy schedule.Policy

	mu         sync.Mutex
	started    bool
	stopping   bool
	throttlers map[string]provider.Throttler
	running    map[runKey]*cycle
	profCheck  map[string]time.Time // profile → when this engine last checked its health

	wake       [crmsync.NumWorkloads + 1]chan struct{}
	claimCtx   context.Context // canceled to stop claiming
	stopClaim  context.CancelFunc
	workCtx    context.Context // canceled to abandon cycles
	cancelWork context.CancelFunc
	wg         sync.WaitGroup
	stopped    chan struct{}
}

type runKey struct {
	mailboxID string
	workload  crmsync.Workload
}

// cycle is a running mailbox-workload, known to the watchdog.
type cycle struct {
	start  time.Time
	cancel context.CancelCauseFunc
	lease  crmstore.Lease // renewed copy; guarded by Engine.mu
}

// New validates cfg and returns an Engine. It starts nothing.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:        cfg,
		store:      cfg.Store,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		obs:        cfg.Observer,
		policy:     cfg.Policy,
		throttlers: make(map[string]provider.Throttler),
		running:    make(map[runKey]*cycle),
		profCheck:  make(map[string]time.Time),
		stopped:    make(chan struct{}),
	}
	for w := range e.wake {
		e.wake[w] = make(chan struct{}, 1)
	}
	return e, nil
}

// ID returns the engine's lease-owner ID.
func (e *Engine) ID() string { return e.cfg.ID }

// Start starts the dispatchers, workers and the lease watchdog. ctx is used only while
// starting; stop the engine with Stop or StopAndCancel.
func (e *Engine) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.stopping {
		return ErrStopped
	}
	e.started = true
	base := context.WithoutCancel(ctx)
	e.claimCtx, e.stopClaim = context.WithCancel(base)
	e.workCtx, e.cancelWork = context.WithCancel(base)

	var workers sync.WaitGroup // dispatchers and workers; the watchdog outlives them
	for _, w := range crmsync.AllWorkloads() {
		n := e.cfg.Workers[w]
		if n == 0 {
			continue
		}
		jobs := make(chan *crmstore.Claim)
		idle := make(chan struct{}, n)
		for range n {
			idle <- struct{}{}
		}
		workers.Add(n + 1)
		go func() { defer workers.Done(); e.dispatch(w, jobs, idle) }()
		for range n {
			go func() { defer workers.Done(); e.work(jobs, idle) }()
		}
	}
	workersDone := make(chan struct{})
	e.wg.Add(2)
	go func() { defer e.wg.Done(); workers.Wait(); close(workersDone) }()
	go func() { defer e.wg.Done(); e.watchdog(workersDone) }()
	e.log.LogAttrs(ctx, slog.LevelInfo, "engine started", slog.String("engine", e.cfg.ID))
	return nil
}

// Stop stops claiming work, lets the cycles in flight finish, and returns when every
// goroutine has ended. When ctx ends first, the cycles still running are abandoned: they
// are canceled, their leases released so they run again soon, and Stop still waits for
// them to return. Stop is safe to call twice and before Start.
func (e *Engine) Stop(ctx context.Context) error {
	if !e.beginStop() {
		return e.waitStopped(ctx)
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.cancelWork()
		<-done
	}
	e.finishStop()
	return nil
}

// StopAndCancel abandons the cycles in flight at once and waits for every goroutine to
// end, or for ctx.
func (e *Engine) StopAndCancel(ctx context.Context) error {
	if !e.beginStop() {
		e.mu.Lock()
		if e.cancelWork != nil {
			e.cancelWork()
		}
		e.mu.Unlock()
		return e.waitStopped(ctx)
	}
	e.cancelWork()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		e.finishStop()
		return nil
	case <-ctx.Done():
		go func() { <-done; e.finishStop() }()
		return ctx.Err()
	}
}

// Stopped returns a channel closed when the engine has stopped.
func (e *Engine) Stopped() <-chan struct{} { return e.stopped }

// beginStop reports whether this call must perform the stop.
func (e *Engine) beginStop() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return false
	}
	e.stopping = true
	if !e.started {
		close(e.stopped)
		return false
	}
	e.stopClaim()
	return true
}

func (e *Engine) finishStop() {
	e.cancelWork()
	e.log.Info("engine stopped", slog.String("engine", e.cfg.ID))
	close(e.stopped)
}

func (e *Engine) waitStopped(ctx context.Context) error {
	select {
	case <-e.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wake asks the dispatcher of workload w to look for due work now, instead of at its
// next planned look. It never blocks.
func (e *Engine) Wake(w crmsync.Workload) {
	if !w.Valid() {
		return
	}
	select {
	case e.wake[w] <- struct{}{}:
	default:
	}
}

// dispatch claims due mailbox-workloads of w while workers are idle and hands them out.
func (e *Engine) dispatch(w crmsync.Workload, jobs chan<- *crmstore.Claim, idle chan struct{}) {
	defer close(jobs)
	ctx := e.claimCtx
	timer := e.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		// Wait for one idle worker, then take every other idle one without waiting.
		select {
		case <-ctx.Done():
			return
		case <-idle:
		}
		free := 1
	more:
		for free < cap(idle) {
			select {
			case <-idle:
				free++
			default:
				break more
			}
		}
		now := e.clock.Now()
		claims, err := e.store.ClaimDue(ctx, crmstore.ClaimQuery{
			Workload: w, Owner: e.cfg.ID, Now: now, LeaseFor: e.cfg.LeaseDuration, Limit: free,
		})
		if err != nil && ctx.Err() == nil {
			e.log.LogAttrs(ctx, slog.LevelWarn, "claim failed", slog.String("workload", w.String()), slog.Any("error", err))
		}
		for _, c := range claims {
			jobs <- c // an idle worker is waiting for each claim
			free--
		}
		for range free {
			idle <- struct{}{}
		}
		if len(claims) > 0 {
			continue
		}
		// Nothing due: sleep until the next due run, a wake-up, or the poll interval.
		wait := e.cfg.PollInterval
		if next, ok, err := e.store.NextDue(ctx, w); err == nil && ok {
			wait = min(wait, next.Sub(now))
		}
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-e.wake[w]:
			timer.Stop()
		case <-timer.C():
		}
	}
}

// work runs the cycles the dispatcher hands out, and reports itself idle after each.
func (e *Engine) work(jobs <-chan *crmstore.Claim, idle chan<- struct{}) {
	for c := range jobs {
		e.runCycle(c)
		idle <- struct{}{}
	}
}

// watchdog renews the leases of long cycles and cancels cycles past CycleTimeout. It runs
// until every worker has returned, so cycles that finish during a stop keep their leases.
func (e *Engine) watchdog(workersDone <-chan struct{}) {
	tick := min(e.cfg.LeaseDuration/4, e.cfg.CycleTimeout/4, 15*time.Second)
	timer := e.clock.NewTimer(tick)
	defer timer.Stop()
	type renewal struct {
		key   runKey
		lease crmstore.Lease
	}
	var renew []renewal
	for {
		select {
		case <-workersDone:
			return
		case <-timer.C():
		}
		now := e.clock.Now()
		renew = renew[:0]
		e.mu.Lock()
		for k, c := range e.running {
			if now.Sub(c.start) >= e.cfg.CycleTimeout {
				c.cancel(errCycleTimeout)
				continue
			}
			if c.lease.Expires.Sub(now) <= e.cfg.LeaseDuration/2 {
				renew = append(renew, renewal{k, c.lease})
			}
		}
		e.mu.Unlock()
		for _, r := range renew {
			until := now.Add(e.cfg.LeaseDuration)
			err := e.store.RenewLease(e.workCtx, r.lease, until)
			e.mu.Lock()
			if c, ok := e.running[r.key]; ok && c.lease.Token == r.lease.Token {
				if err == nil {
					c.lease.Expires = until
				} else if errors.Is(err, crmstore.ErrLeaseLost) {
					c.cancel(crmstore.ErrLeaseLost)
				}
			}
			e.mu.Unlock()
		}
		timer.Reset(tick)
	}
}

var errCycleTimeout = crmsync.Errorf(crmsync.KindTransient, "cycle", "cycle timed out")

// cancelMailbox cancels every running cycle of the mailbox; used when it is unmapped.
func (e *Engine) cancelMailbox(mailboxID string, cause error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range crmsync.AllWorkloads() {
		if c, ok := e.running[runKey{mailboxID, w}]; ok {
			c.cancel(cause)
		}
	}
}

// throttler returns the profile's shared Throttler, creating it on first use.
func (e *Engine) throttler(p *crmsync.ServerProfile) (provider.Throttler, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t, ok := e.throttlers[p.ID]; ok {
		return t, nil
	}
	var t provider.Throttler
	if m, ok := e.cfg.Dialer.(provider.ThrottlerMaker); ok {
		t = m.NewThrottler(p, e.clock)
	} else {
		l, err := provider.NewLimiter(provider.LimiterConfig{Capacity: p.Connections(), Clock: e.clock})
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", p.ID, err)
		}
		t = l
	}
	e.throttlers[p.ID] = t
	return t, nil
}
