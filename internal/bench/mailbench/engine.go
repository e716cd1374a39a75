package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

// watchStore is the benchmark's Store: memstore, with a count of what TrackIncoming
// stored, the last cursor it saved, and a signal when the count reaches want.
type watchStore struct {
	crmstore.Store
	want    int64
	tracked atomic.Int64
	dups    atomic.Int64
	batches atomic.Int64
	done    chan struct{}
	once    sync.Once

	mu     sync.Mutex
	cursor []byte
}

func newWatchStore(want int) *watchStore {
	return &watchStore{Store: memstore.New(), want: int64(want), done: make(chan struct{})}
}

func (s *watchStore) TrackIncoming(ctx context.Context, l crmstore.Lease, emails []*crmsync.Email, cursor []byte) (crmstore.TrackResult, error) {
	r, err := s.Store.TrackIncoming(ctx, l, emails, cursor)
	if err != nil {
		return r, err
	}
	s.mu.Lock()
	s.cursor = append([]byte(nil), cursor...)
	s.mu.Unlock()
	s.batches.Add(1)
	s.dups.Add(int64(r.Duplicates))
	if s.tracked.Add(int64(r.Tracked)) >= s.want {
		s.once.Do(func() { close(s.done) })
	}
	return r, nil
}

func (s *watchStore) savedCursor() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor
}

// failures records the cycles that failed, so that a broken run says why.
type failures struct {
	syncer.NoopObserver
	mu   sync.Mutex
	errs []error
}

func (o *failures) CycleFinished(_ syncer.CycleInfo, out syncer.CycleOutcome) {
	if out.Err != nil {
		o.mu.Lock()
		o.errs = append(o.errs, out.Err)
		o.mu.Unlock()
	}
}

// engineRun is the outcome of one ingest through the Engine.
type engineRun struct {
	elapsed time.Duration
	store   *watchStore
}

// engineConfig is how the benchmark runs the Engine.
type engineConfig struct {
	BatchSize, CycleItems int
}

// ingest maps the mailbox on a fresh Engine over a fresh memstore, passes Test & Enable
// (not timed), then times from Start until the store holds want tracked emails.
func ingest(ctx context.Context, dialer provider.Dialer, prof *crmsync.ServerProfile, mb *crmsync.Mailbox,
	want int, ec engineConfig, cpuprofile string) (*engineRun, error) {
	store := newWatchStore(want)
	obs := &failures{}
	eng, err := syncer.New(syncer.Config{
		ID: "mailbench", Store: store, Dialer: provider.Mux{prof.Kind: dialer}, Observer: obs,
		BatchSize: ec.BatchSize, CycleItems: ec.CycleItems,
		// One cycle reads everything; retries (there should be none) come quickly.
		Policy: schedule.Policy{Incoming: time.Hour,
			Backoff: schedule.Backoff{Base: time.Second, Max: time.Second, Jitter: -1}},
		PollInterval:  100 * time.Millisecond,
		CycleTimeout:  30 * time.Minute,
		LeaseDuration: 10 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	if err := eng.PutProfile(ctx, prof); err != nil {
		return nil, err
	}
	if _, err := eng.MapMailbox(ctx, mb.Clone(), syncer.MapOptions{}); err != nil {
		return nil, err
	}
	rep, err := eng.TestAndEnable(ctx, mb.ID)
	if err != nil {
		return nil, err
	}
	if err := rep.Err(); err != nil {
		return nil, fmt.Errorf("test & enable: %w", err)
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	if err := eng.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = eng.StopAndCancel(sctx)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-store.done:
			return &engineRun{elapsed: time.Since(start), store: store}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			obs.mu.Lock()
			n := len(obs.errs)
			var last error
			if n > 0 {
				last = obs.errs[n-1]
			}
			obs.mu.Unlock()
			if n >= 3 {
				return nil, fmt.Errorf("%d cycles failed, the last with: %w", n, last)
			}
		}
	}
}
