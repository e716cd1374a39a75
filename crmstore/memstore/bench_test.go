package memstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
)

// BenchmarkCycle measures the store's share of an incoming cycle over 10,000 mailboxes:
// ClaimDue (64 at a time), TrackIncoming of one new email, FinishCycle. One op is one
// mailbox-cycle. The store is rebuilt (off the clock) every 200,000 cycles so the
// emails it keeps do not grow without bound.
func BenchmarkCycle(b *testing.B) {
	const (
		mailboxes = 10000
		rebuild   = 200_000
	)
	ctx := context.Background()
	var s *memstore.Store
	now := base
	fresh := func() {
		s = memstore.New()
		register(b, s, mailboxes)
		now = base.Add(time.Minute)
	}
	fresh()
	cursor := []byte("INBOX:1:4711")
	batch := make([]*crmsync.Email, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for done, since := 0, 0; done < b.N; {
		if since >= rebuild {
			b.StopTimer()
			fresh()
			since = 0
			b.StartTimer()
		}
		cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{
			Workload: crmsync.Incoming, Owner: "bench", Now: now, LeaseFor: time.Minute, Limit: min(64, b.N-done),
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(cs) == 0 {
			now = now.Add(5 * time.Minute)
			continue
		}
		for _, c := range cs {
			id := strconv.Itoa(done) + "@bench.example.com"
			batch[0] = &crmsync.Email{
				Direction: crmsync.DirectionIncoming, Status: crmsync.EmailReceived,
				ProviderID: id, MessageID: id, Subject: "hello",
				From: crmsync.Address{Email: "sender@example.org"}, ReceivedAt: now, CreatedAt: now, ModifiedAt: now,
			}
			r, err := s.TrackIncoming(ctx, c.Lease, batch, cursor)
			if err != nil || r.Tracked != 1 {
				b.Fatalf("TrackIncoming: %+v, %v", r, err)
			}
			err = s.FinishCycle(ctx, c.Lease, crmstore.CycleResult{
				At: now, Status: crmsync.StatusSuccess, Load: 1, Next: now.Add(5 * time.Minute),
			})
			if err != nil {
				b.Fatal(err)
			}
			done++
			since++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
}
