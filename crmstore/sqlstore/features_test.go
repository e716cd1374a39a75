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

// dialects opens a store of each dialect for a test; reopen opens the same database
// again (the first store stays open unless the test closes it).
type dialectCase struct {
	name   string
	open   func(t testing.TB, opts sqlstore.Options) (*sqlstore.Store, string)
	reopen func(ctx context.Context, where string, opts sqlstore.Options) (*sqlstore.Store, error)
}

var dialects = []dialectCase{
	{"SQLite", openSQLite, sqlstore.OpenSQLite},
	{"Postgres", func(t testing.TB, opts sqlstore.Options) (*sqlstore.Store, string) {
		if opts.DatabaseClock == nil {
			opts.DatabaseClock = ptr(false)
		}
		return openPostgres(t, opts)
	}, sqlstore.OpenPostgres},
}

var base = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func runnable() crmsync.WorkloadState {
	return crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync, Test: crmsync.TestPassed}
}

func newMailbox(id string) *crmsync.Mailbox {
	return &crmsync.Mailbox{
		ID: id, Address: id + "@example.com", ProfileID: "p1",
		Owner:    crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-" + id},
		Approval: crmsync.ApprovalApproved,
		Incoming: runnable(), Outgoing: runnable(), ACT: runnable(),
	}
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestMigrationsMatch checks that both dialects have the same migrations.
func TestMigrationsMatch(t *testing.T) {
	sl, err := sqlstore.MigrationNames("sqlite")
	must(t, err, "SQLite migrations")
	pg, err := sqlstore.MigrationNames("postgres")
	must(t, err, "PostgreSQL migrations")
	if strings.Join(sl, ",") != strings.Join(pg, ",") || len(sl) != sqlstore.KnownSchemaVersion() {
		t.Fatalf("migrations differ: SQLite %v, PostgreSQL %v", sl, pg)
	}
}

func TestSchemaTooNew(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, where := d.open(t, sqlstore.Options{})
			v, err := s.SchemaVersion(ctx)
			must(t, err, "SchemaVersion")
			if v != sqlstore.KnownSchemaVersion() || v < 1 {
				t.Fatalf("schema version %d, want %d", v, sqlstore.KnownSchemaVersion())
			}
			// Opening again applies nothing and works.
			again, err := d.reopen(ctx, where, sqlstore.Options{DatabaseClock: ptr(false)})
			must(t, err, "reopen")
			again.Close()

			q := "INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future', 'later')"
			if d.name == "Postgres" {
				q = strings.Replace(q, "?", "$1", 1)
			}
			_, err = sqlstore.RawDB(s).ExecContext(ctx, q, v+5)
			must(t, err, "recording a future version")
			s.Close()

			_, err = d.reopen(ctx, where, sqlstore.Options{DatabaseClock: ptr(false)})
			var tooNew *sqlstore.SchemaTooNewError
			if !errors.As(err, &tooNew) || tooNew.Have != v+5 || tooNew.Known != v {
				t.Fatalf("opening a newer schema: %v, want *SchemaTooNewError{Have: %d, Known: %d}", err, v+5, v)
			}
		})
	}
}

func TestSQLiteOptions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		path string
		opts sqlstore.Options
	}{
		"memory":          {":memory:", sqlstore.Options{}},
		"database clock":  {dir + "/a.db", sqlstore.Options{DatabaseClock: ptr(true)}},
		"synchronous":     {dir + "/b.db", sqlstore.Options{SQLiteSynchronous: "sometimes"}},
		"short key":       {dir + "/c.db", sqlstore.Options{Keys: sqlstore.Keyring{Current: "k", Keys: map[sqlstore.KeyID][]byte{"k": make([]byte, 16)}}}},
		"missing current": {dir + "/d.db", sqlstore.Options{Keys: sqlstore.Keyring{Current: "x", Keys: map[sqlstore.KeyID][]byte{"k": make([]byte, 32)}}}},
	} {
		if s, err := sqlstore.OpenSQLite(ctx, tc.path, tc.opts); err == nil {
			s.Close()
			t.Errorf("%s: OpenSQLite succeeded", name)
		}
	}
	s, err := sqlstore.OpenSQLite(ctx, dir+"/ok.db", sqlstore.Options{SQLiteSynchronous: "full", DatabaseClock: ptr(false)})
	must(t, err, "OpenSQLite with valid options")
	s.Close()
	must(t, s.Close(), "Close twice")
}

// TestDatabaseClock checks that on PostgreSQL, by default, due times and lease expiry
// are judged by the database's clock, not by the claimer's Now.
func TestDatabaseClock(t *testing.T) {
	ctx := context.Background()
	s, _ := openPostgres(t, sqlstore.Options{}) // DatabaseClock defaults to true
	now := time.Now()
	for i, next := range []time.Time{now.Add(-time.Minute), now.Add(time.Hour)} {
		id := fmt.Sprintf("m%d", i)
		_, err := s.MapMailbox(ctx, newMailbox(id), false)
		must(t, err, "MapMailbox")
		must(t, s.SetWorkload(ctx, id, crmsync.Incoming, runnable(), next), "SetWorkload")
	}
	claim := func(owner string, clientNow time.Time) []*crmstore.Claim {
		t.Helper()
		cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: owner, Now: clientNow, LeaseFor: time.Minute, Limit: 10})
		must(t, err, "ClaimDue")
		return cs
	}

	// A claimer whose clock is a year behind still gets the run that is due by the
	// database's clock, with a lease by the database's clock, and not the one due in an hour.
	cs := claim("slow", now.AddDate(-1, 0, 0))
	if len(cs) != 1 || cs[0].MailboxID != "m0" {
		t.Fatalf("claim with a slow clock = %d claims, want m0 only", len(cs))
	}
	l := cs[0].Lease
	if d := l.Expires.Sub(now.Add(time.Minute)); d < -5*time.Second || d > 5*time.Second {
		t.Fatalf("lease expires %v, want about a minute from now (%v)", l.Expires, now.Add(time.Minute))
	}
	// A claimer whose clock is a day ahead sees neither the live lease as expired nor
	// the run in an hour as due.
	if cs := claim("fast", now.AddDate(0, 0, 1)); len(cs) != 0 {
		t.Fatalf("a claimer with a fast clock took %d mailbox-workloads", len(cs))
	}
	// NextDue reports the unheld run.
	if next, ok, err := s.NextDue(ctx, crmsync.Incoming); err != nil || !ok || next.Sub(now.Add(time.Hour)).Abs() > time.Millisecond {
		t.Fatalf("NextDue = %v, %v, %v; want %v", next, ok, err, now.Add(time.Hour))
	}
	// RenewLease extends by until minus the store's clock, from the database's now.
	must(t, s.RenewLease(ctx, l, time.Now().Add(30*time.Minute)), "RenewLease")
	if cs := claim("fast", now.AddDate(0, 0, 1)); len(cs) != 0 {
		t.Fatalf("a renewed lease was claimed")
	}
	_, err := s.TrackIncoming(ctx, l, nil, []byte("c1"))
	must(t, err, "TrackIncoming with the renewed lease")

	// An expired lease is claimable by the database's clock: a lease of one
	// millisecond, and the next claim, whatever its Now, takes it over.
	must(t, s.FinishCycle(ctx, l, crmstore.CycleResult{At: now, Status: crmsync.StatusSuccess, Next: now.Add(-time.Second)}), "FinishCycle")
	cs, err = s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "a", Now: now.AddDate(-1, 0, 0), LeaseFor: time.Millisecond, Limit: 1})
	if err != nil || len(cs) != 1 {
		t.Fatalf("ClaimDue with a short lease: %d claims, %v", len(cs), err)
	}
	time.Sleep(20 * time.Millisecond)
	if next, ok, err := s.NextDue(ctx, crmsync.Incoming); err != nil || !ok || next.After(time.Now()) {
		t.Fatalf("NextDue with an expired lease = %v, %v, %v; want its expiry", next, ok, err)
	}
	cs2 := claim("b", now.AddDate(-1, 0, 0))
	if len(cs2) != 1 || cs2[0].MailboxID != "m0" || cs2[0].Token <= cs[0].Token {
		t.Fatalf("reclaim of an expired lease = %d claims", len(cs2))
	}
	if err := s.RenewLease(ctx, cs[0].Lease, time.Now().Add(time.Hour)); !errors.Is(err, crmstore.ErrLeaseLost) {
		t.Fatalf("the old holder's RenewLease: %v, want ErrLeaseLost", err)
	}
}

// TestDuplicateEmailRefused pins what CreateEmail does with an email whose identity
// another email of its mailbox has: the unique indexes refuse it.
func TestDuplicateEmailRefused(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, _ := d.open(t, sqlstore.Options{})
			must(t, s.CreateEmail(ctx, &crmsync.Email{ID: "x1", MailboxID: "m1", MessageID: "a@x"}), "CreateEmail")
			if err := s.CreateEmail(ctx, &crmsync.Email{MailboxID: "m1", MessageID: "a@x"}); err == nil {
				t.Error("a second email with the same Message-ID in one mailbox was created")
			}
			if err := s.CreateEmail(ctx, &crmsync.Email{ID: "x1", MailboxID: "m2"}); err == nil {
				t.Error("a second email with the same ID was created")
			}
			must(t, s.CreateEmail(ctx, &crmsync.Email{MailboxID: "m2", MessageID: "a@x"}), "the same Message-ID in another mailbox")
		})
	}
}

// TestUnscheduledWhileHeld checks that a workload unscheduled while its cycle runs is
// scheduled again by the FinishCycle of that cycle, as the next run it gives.
func TestUnscheduledWhileHeld(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, _ := d.open(t, sqlstore.Options{})
			_, err := s.MapMailbox(ctx, newMailbox("m1"), false)
			must(t, err, "MapMailbox")
			must(t, s.SetWorkload(ctx, "m1", crmsync.Incoming, runnable(), base), "SetWorkload")
			cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "e", Now: base, LeaseFor: time.Minute, Limit: 1})
			if err != nil || len(cs) != 1 {
				t.Fatalf("ClaimDue = %d, %v", len(cs), err)
			}
			must(t, s.SetWorkload(ctx, "m1", crmsync.Incoming, runnable(), time.Time{}), "SetWorkload(unschedule) while held")
			must(t, s.FinishCycle(ctx, cs[0].Lease, crmstore.CycleResult{At: base, Status: crmsync.StatusSuccess, Next: base.Add(time.Minute)}), "FinishCycle")
			if next, ok, err := s.NextDue(ctx, crmsync.Incoming); err != nil || !ok || !next.Equal(base.Add(time.Minute)) {
				t.Fatalf("NextDue after FinishCycle = %v, %v, %v; want %v", next, ok, err, base.Add(time.Minute))
			}
		})
	}
}

// TestLeaseOfAnotherWorkload checks that a write of one workload refuses the lease of
// another, which would otherwise bypass the fencing of the right one.
func TestLeaseOfAnotherWorkload(t *testing.T) {
	ctx := context.Background()
	s, _ := openSQLite(t, sqlstore.Options{})
	_, err := s.MapMailbox(ctx, newMailbox("m1"), false)
	must(t, err, "MapMailbox")
	must(t, s.SetWorkload(ctx, "m1", crmsync.Outgoing, runnable(), base), "SetWorkload")
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

// TestSeveralEnginesOnePostgres opens several stores at once on one new PostgreSQL
// database, as engines starting together do (the migrations run once), and has them
// claim concurrently with the database's clock: every due mailbox-workload is claimed
// exactly once per round, by one engine, with a token above its previous one.
func TestSeveralEnginesOnePostgres(t *testing.T) {
	const (
		engines   = 4
		claimers  = 3 // goroutines per engine
		mailboxes = 300
	)
	ctx := context.Background()
	first, dsn := openPostgres(t, sqlstore.Options{})
	// openPostgres migrated the database; drop the schema to have the engines race to
	// migrate a fresh one.
	_, err := sqlstore.RawDB(first).ExecContext(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
	must(t, err, "emptying the database")

	stores := make([]*sqlstore.Store, engines)
	errs := make(chan error, engines)
	for i := range stores {
		go func() {
			s, err := sqlstore.OpenPostgres(ctx, dsn, sqlstore.Options{})
			stores[i] = s
			errs <- err
		}()
	}
	for range engines {
		must(t, <-errs, "OpenPostgres of one of several engines")
	}
	for _, s := range stores {
		t.Cleanup(func() { s.Close() })
	}
	v, err := stores[0].SchemaVersion(ctx)
	if err != nil || v != sqlstore.KnownSchemaVersion() {
		t.Fatalf("schema version after concurrent opens: %d, %v", v, err)
	}

	past := time.Now().Add(-time.Minute)
	must(t, sqlstore.BulkMailboxes(ctx, stores[0], mailboxes, crmsync.Incoming, func(int) time.Time { return past }), "BulkMailboxes")
	tokens := map[string]int64{}
	for round := range 2 {
		var (
			mu    sync.Mutex
			count = map[string]int{}
			wg    sync.WaitGroup
		)
		for e, s := range stores {
			for g := range claimers {
				owner := fmt.Sprintf("engine-%d/%d", e, g)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: owner, Now: time.Now(), LeaseFor: time.Minute, Limit: 7})
						if err != nil {
							t.Errorf("ClaimDue: %v", err)
							return
						}
						if len(cs) == 0 {
							return
						}
						for _, c := range cs {
							mu.Lock()
							count[c.MailboxID]++
							if c.Token <= tokens[c.MailboxID] {
								t.Errorf("%s claimed with token %d, not above %d", c.MailboxID, c.Token, tokens[c.MailboxID])
							}
							tokens[c.MailboxID] = c.Token
							mu.Unlock()
							// Not due again in this round, which ends when no engine finds
							// anything due; the next round schedules every mailbox again.
							err := s.FinishCycle(ctx, c.Lease, crmstore.CycleResult{At: time.Now(), Status: crmsync.StatusSuccess, Next: time.Now().Add(time.Hour)})
							if err != nil {
								t.Errorf("FinishCycle(%s): %v", c.MailboxID, err)
							}
						}
					}
				}()
			}
		}
		wg.Wait()
		if len(count) != mailboxes {
			t.Fatalf("round %d: %d of %d mailbox-workloads were claimed", round, len(count), mailboxes)
		}
		for id, n := range count {
			if n != 1 {
				t.Fatalf("round %d: %s was claimed %d times", round, id, n)
			}
		}
		_, err := sqlstore.RawDB(stores[0]).ExecContext(ctx, "UPDATE mailbox_workloads SET next_run = $1 WHERE workload = 1", past)
		must(t, err, "scheduling every mailbox again")
	}
}

// TestFinishCycleTogether ends many cycles at once, as an engine's workers do: on
// PostgreSQL they share statements. Every call gets its own outcome: a stale lease is
// refused, of two calls with one lease exactly one succeeds, and each success records
// its own result.
func TestFinishCycleTogether(t *testing.T) {
	const mailboxes = 200
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, _ := d.open(t, sqlstore.Options{})
			must(t, sqlstore.BulkMailboxes(ctx, s, mailboxes, crmsync.ACT, func(int) time.Time { return base }), "BulkMailboxes")
			cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.ACT, Owner: "e", Now: base, LeaseFor: time.Hour})
			if err != nil || len(cs) != mailboxes {
				t.Fatalf("ClaimDue = %d, %v", len(cs), err)
			}
			type call struct {
				l     crmstore.Lease
				i     int
				stale bool
			}
			var calls []call
			for i, c := range cs {
				calls = append(calls, call{l: c.Lease, i: i})
				if i%7 == 0 {
					calls = append(calls, call{l: c.Lease, i: i}) // the same lease twice
				}
				if i%10 == 0 {
					stale := c.Lease
					stale.Token -= 1000
					calls = append(calls, call{l: stale, i: i, stale: true})
				}
			}
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				wins = map[string]int{}
			)
			for _, c := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := s.FinishCycle(ctx, c.l, crmstore.CycleResult{At: base, Status: crmsync.StatusSuccess, Failures: c.i, Next: base.Add(time.Minute)})
					switch {
					case c.stale && !errors.Is(err, crmstore.ErrLeaseLost):
						t.Errorf("FinishCycle with a stale lease of %s: %v, want ErrLeaseLost", c.l.MailboxID, err)
					case !c.stale && err != nil && !errors.Is(err, crmstore.ErrLeaseLost):
						t.Errorf("FinishCycle of %s: %v", c.l.MailboxID, err)
					case !c.stale && err == nil:
						mu.Lock()
						wins[c.l.MailboxID]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			for _, c := range cs {
				if wins[c.MailboxID] != 1 {
					t.Fatalf("%s: %d FinishCycle calls succeeded, want 1", c.MailboxID, wins[c.MailboxID])
				}
			}
			again, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.ACT, Owner: "e", Now: base.Add(time.Minute), LeaseFor: time.Hour})
			if err != nil || len(again) != mailboxes {
				t.Fatalf("ClaimDue after the cycles = %d, %v; want every mailbox due again", len(again), err)
			}
			want := map[string]int{}
			for i, c := range cs {
				want[c.MailboxID] = i
			}
			for _, c := range again {
				if c.State.Failures != want[c.MailboxID] || !c.Due.Equal(base.Add(time.Minute)) {
					t.Fatalf("%s: state %+v due %v; want its own result", c.MailboxID, c.State, c.Due)
				}
			}
		})
	}
}
