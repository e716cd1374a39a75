package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
)

// benchStore is a store a benchmark runs on.
type benchStore struct {
	name string
	s    *sqlstore.Store
}

// benchStores opens a store of each dialect for a benchmark (SQLite only under -short),
// PostgreSQL with the engines' clock: the benchmarks run on a fake one.
func benchStores(b *testing.B) []benchStore {
	sl, _ := openSQLite(b, sqlstore.Options{})
	out := []benchStore{{"SQLite", sl}}
	if !testing.Short() {
		pg, _ := openPostgres(b, sqlstore.Options{DatabaseClock: ptr(false), MaxConns: 16})
		out = append(out, benchStore{"Postgres", pg})
	}
	return out
}

// benchEmail is an incoming email of a common size: three recipients, two references,
// a 1 KiB text body and a 2 KiB HTML body, no attachment.
func benchEmail(n int, now time.Time) *crmsync.Email {
	id := fmt.Sprintf("%d.%d@bench.example.com", n, now.UnixNano())
	return &crmsync.Email{
		Direction: crmsync.DirectionIncoming, Status: crmsync.EmailReceived,
		ProviderID: fmt.Sprintf("INBOX:1:%d", n), MessageID: id, Folder: "INBOX",
		InReplyTo: "parent@crm.example.com", References: []string{"root@crm.example.com", "parent@crm.example.com"},
		Subject:  "RE: Quote for the new warehouse shelving (CRM:0001234)",
		From:     crmsync.Address{Name: "Customer", Email: "customer@example.org"},
		To:       []crmsync.Address{{Name: "Sales", Email: "sales@example.com"}, {Email: "alice@example.com"}},
		Cc:       []crmsync.Address{{Email: "bob@example.com"}},
		TextBody: benchText, HTMLBody: benchHTML, Size: 6 << 10,
		SentAt: now, ReceivedAt: now, CreatedAt: now, ModifiedAt: now,
	}
}

var (
	benchText = strings.Repeat("Thanks for the quote. ", 47)[:1024]
	benchHTML = strings.Repeat("<p>Thanks for the quote.</p>", 74)[:2048]
)

// BenchmarkTrackIncoming measures tracked emails committed per second: one op is one
// TrackIncoming of a batch of 50 new emails with its cursor, round-robin over 100
// leased mailboxes.
func BenchmarkTrackIncoming(b *testing.B) {
	const (
		mailboxes = 100
		batchSize = 50
	)
	ctx := context.Background()
	for _, st := range benchStores(b) {
		s := st.s
		leases := make([]crmstore.Lease, 0, mailboxes)
		if err := sqlstore.BulkMailboxes(ctx, s, mailboxes, crmsync.Incoming, func(int) time.Time { return base }); err != nil {
			b.Fatal(err)
		}
		cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "bench", Now: base, LeaseFor: 24 * time.Hour})
		if err != nil || len(cs) != mailboxes {
			b.Fatalf("ClaimDue: %d, %v", len(cs), err)
		}
		for _, c := range cs {
			leases = append(leases, c.Lease)
		}
		n := 0
		b.Run(st.name, func(b *testing.B) {
			batch := make([]*crmsync.Email, batchSize)
			for i := 0; b.Loop(); i++ {
				for j := range batch {
					batch[j] = benchEmail(n, base)
					n++
				}
				r, err := s.TrackIncoming(ctx, leases[i%mailboxes], batch, []byte(fmt.Sprintf("INBOX:1:%d", n)))
				if err != nil || r.Tracked != batchSize {
					b.Fatalf("TrackIncoming: %+v, %v", r, err)
				}
			}
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "emails/s")
		})
	}
}

// BenchmarkClaimDue measures due-mailbox claims per second among 100,000 mailboxes:
// ClaimDue of 64 at a time, then FinishCycle of each, which schedules it an hour later,
// on 8 workers at once as an engine's cycles end. When every mailbox has run, the
// (fake) clock moves an hour on. One op is one ClaimDue call and its 64 FinishCycles.
func BenchmarkClaimDue(b *testing.B) {
	const (
		mailboxes = 100_000
		batch     = 64
		workers   = 8
	)
	ctx := context.Background()
	for _, st := range benchStores(b) {
		s := st.s
		if err := sqlstore.BulkMailboxes(ctx, s, mailboxes, crmsync.Incoming, func(i int) time.Time {
			return base.Add(time.Duration(i) * time.Millisecond)
		}); err != nil {
			b.Fatal(err)
		}
		now := base.Add(time.Hour)
		b.Run(st.name, func(b *testing.B) {
			claims := 0
			for b.Loop() {
				cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "bench", Now: now, LeaseFor: time.Minute, Limit: batch})
				if err != nil {
					b.Fatal(err)
				}
				if len(cs) == 0 {
					now = now.Add(time.Hour)
					continue
				}
				if err := finishAll(ctx, s, cs, now, workers); err != nil {
					b.Fatal(err)
				}
				claims += len(cs)
			}
			b.ReportMetric(float64(claims)/b.Elapsed().Seconds(), "claims/s")
		})
	}
}

// finishAll ends the cycles of cs successfully, on workers goroutines.
func finishAll(ctx context.Context, s *sqlstore.Store, cs []*crmstore.Claim, now time.Time, workers int) error {
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(cs) && errs[w] == nil; i += workers {
				errs[w] = s.FinishCycle(ctx, cs[i].Lease, crmstore.CycleResult{At: now, Status: crmsync.StatusSuccess, Load: 1, Next: now.Add(time.Hour)})
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
