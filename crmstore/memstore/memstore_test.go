package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/crmstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) crmstore.Store { return memstore.New() })
}

var base = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func runnable() crmsync.WorkloadState {
	return crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestPassed}
}

// register maps n mailboxes with every workload scheduled at base.
func register(tb testing.TB, s *memstore.Store, n int) {
	tb.Helper()
	ctx := context.Background()
	if err := s.PutProfile(ctx, &crmsync.ServerProfile{ID: "p1", Kind: crmsync.ServerIMAP}); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("mb%05d", i)
		m := &crmsync.Mailbox{
			ID: id, Address: id + "@example.com", ProfileID: "p1",
			Owner:    crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u" + id},
			Approval: crmsync.ApprovalApproved,
			Incoming: runnable(), Outgoing: runnable(), ACT: runnable(),
		}
		if _, err := s.MapMailbox(ctx, m, false); err != nil {
			tb.Fatal(err)
		}
		for _, w := range crmsync.AllWorkloads() {
			if err := s.SetWorkload(ctx, id, w, runnable(), base.Add(time.Duration(i)*time.Millisecond)); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// TestMemoryPerMailbox checks that an idle registered mailbox costs little: 10,000 of
// them, every workload scheduled, under 4 KiB each.
func TestMemoryPerMailbox(t *testing.T) {
	const n = 10000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := memstore.New()
	register(t, s, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("heap per registered mailbox (3 scheduled workloads): %.0f bytes", per)
	if per > 4096 {
		t.Errorf("a registered mailbox costs %.0f bytes, want at most 4096", per)
	}
	runtime.KeepAlive(s)
}

// TestClaimLimitZeroClaimsAll pins the store's reading of a ClaimQuery without a Limit.
func TestClaimLimitZeroClaimsAll(t *testing.T) {
	s := memstore.New()
	register(t, s, 5)
	cs, err := s.ClaimDue(context.Background(), crmstore.ClaimQuery{Workload: crmsync.ACT, Owner: "e", Now: base.Add(time.Hour), LeaseFor: time.Minute})
	if err != nil || len(cs) != 5 {
		t.Fatalf("ClaimDue without a limit = %d claims, %v; want 5", len(cs), err)
	}
}

// TestLeaseOfAnotherWorkload checks that a write of one workload refuses the lease of
// another, which would otherwise bypass the fencing of the right one.
func TestLeaseOfAnotherWorkload(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	register(t, s, 1)
	cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Outgoing, Owner: "e", Now: base, LeaseFor: time.Minute, Limit: 1})
	if err != nil || len(cs) != 1 {
		t.Fatalf("ClaimDue = %d, %v", len(cs), err)
	}
	l := cs[0].Lease
	if _, err := s.TrackIncoming(ctx, l, nil, []byte("c")); err == nil {
		t.Error("TrackIncoming accepted an outgoing lease")
	}
	if err := s.CommitItems(ctx, l, nil, []byte("c")); err == nil {
		t.Error("CommitItems accepted an outgoing lease")
	}
	l.Workload = crmsync.Incoming
	if _, err := s.ClaimOutgoing(ctx, l, 1, nil); err == nil {
		t.Error("ClaimOutgoing accepted an incoming lease")
	}
}

// TestExpiredLeaseAndSlowClock checks that an expiry seen by one claimer does not let a
// claimer whose clock is behind take a lease still live by its own clock, and that
// the holder keeps writing until someone else claims.
func TestExpiredLeaseAndSlowClock(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	register(t, s, 2) // mb00000 due at base, mb00001 a millisecond later
	claim := func(owner string, now time.Time) []string {
		t.Helper()
		cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: owner, Now: now, LeaseFor: time.Minute, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.MailboxID)
		}
		return ids
	}
	cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "A", Now: base, LeaseFor: time.Minute, Limit: 1})
	if err != nil || len(cs) != 1 || cs[0].MailboxID != "mb00000" {
		t.Fatalf("A's claim: %v", err)
	}
	a := cs[0].Lease
	// B sees A's lease expired, but claims the earlier due mb00001 first.
	if got := claim("B", base.Add(2*time.Minute)); len(got) != 1 || got[0] != "mb00001" {
		t.Fatalf("B claimed %v, want mb00001", got)
	}
	if _, err := s.TrackIncoming(ctx, a, nil, []byte("c")); err != nil {
		t.Fatalf("an expired lease no one claimed refused a write: %v", err)
	}
	if got := claim("C", base.Add(30*time.Second)); len(got) != 0 {
		t.Fatalf("a claimer with a slow clock took a live lease: %v", got)
	}
	if next, ok, _ := s.NextDue(ctx, crmsync.Incoming); !ok || !next.Equal(base.Add(time.Minute)) {
		t.Fatalf("NextDue = %v, %v; want the lease expiry", next, ok)
	}
	if got := claim("D", base.Add(time.Minute)); len(got) != 1 || got[0] != "mb00000" {
		t.Fatalf("D claimed %v, want mb00000", got)
	}
	if _, err := s.TrackIncoming(ctx, a, nil, []byte("c")); !errors.Is(err, crmstore.ErrLeaseLost) {
		t.Fatalf("old holder after the reclaim: %v", err)
	}
}
