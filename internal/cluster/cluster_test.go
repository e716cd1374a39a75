// Package cluster tests several engine processes on one PostgreSQL database: they share
// the work through leases, a killed engine's mailboxes are taken over when its leases
// expire, no mailbox-workload ever runs on two engines at once, and every message is
// tracked exactly once.
//
// The test binary is its own engine process: run with CRMSYNC_CLUSTER_ENGINE set, its
// TestMain runs one engine until SIGTERM instead of the tests.
package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/syncer"
)

const (
	envEngine = "CRMSYNC_CLUSTER_ENGINE" // the engine's ID
	envDSN    = "CRMSYNC_CLUSTER_DSN"
	envLog    = "CRMSYNC_CLUSTER_LOG" // the cycle log file

	mailboxes   = 1000
	perMailbox  = 5 // messages waiting in every mailbox
	leaseFor    = 3 * time.Second
	providerLag = 20 * time.Millisecond
)

func TestMain(m *testing.M) {
	if id := os.Getenv(envEngine); id != "" {
		os.Exit(engineProcess(id, os.Getenv(envDSN), os.Getenv(envLog)))
	}
	testenv.RunMain(m)
}

// fakeServer is the same simulated mail server in every process: each mailbox holds the
// same perMailbox messages, delivered in the same order, so a cursor written by one
// engine means the same thing to the others.
func fakeServer() *providertest.Server {
	s := providertest.NewServer(providertest.ServerConfig{Latency: providerLag})
	for i := range mailboxes {
		addr := address(i)
		s.AddMailbox(addr)
		for k := range perMailbox {
			s.Deliver(addr, &crmsync.Email{
				MessageID: fmt.Sprintf("m%d-%d@cluster.test", i, k),
				From:      crmsync.Address{Email: "sender@cluster.test"},
				To:        []crmsync.Address{{Email: addr}},
				Subject:   fmt.Sprintf("message %d of mailbox %d", k, i),
			})
		}
	}
	return s
}

func address(i int) string { return "user" + strconv.Itoa(i) + "@cluster.test" }

// cycleLog appends "start|end engine mailbox workload unixnano" lines with one write
// syscall each, so a SIGKILL loses nothing that was logged.
type cycleLog struct {
	syncer.NoopObserver
	engine string
	mu     sync.Mutex
	f      *os.File
}

func (l *cycleLog) write(event string, c syncer.CycleInfo) {
	line := fmt.Sprintf("%s %s %s %s %d\n", event, l.engine, c.MailboxID, c.Workload, time.Now().UnixNano())
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.WriteString(line)
}

func (l *cycleLog) CycleStarted(c syncer.CycleInfo) { l.write("start", c) }
func (l *cycleLog) CycleFinished(c syncer.CycleInfo, _ syncer.CycleOutcome) {
	l.write("end", c)
}

func engineProcess(id, dsn, logPath string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	store, err := sqlstore.OpenPostgres(ctx, dsn, sqlstore.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer store.Close()
	eng, err := syncer.New(syncer.Config{
		ID: id, Store: store, Dialer: fakeServer(), Observer: &cycleLog{engine: id, f: f},
		LeaseDuration: leaseFor, PollInterval: 200 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := eng.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.Stop(sctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// setup maps the mailboxes and passes Test & Enable, so every incoming workload is due.
func setup(t *testing.T, ctx context.Context, store crmstore.Store) {
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: providertest.NewServer(providertest.ServerConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.PutProfile(ctx, &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerIMAP, MaxConnections: 300}); err != nil {
		t.Fatal(err)
	}
	for i := range mailboxes {
		m := &crmsync.Mailbox{
			ID: "mb" + strconv.Itoa(i), Address: address(i), ProfileID: "p",
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u" + strconv.Itoa(i)}, Approval: crmsync.ApprovalApproved,
			Incoming: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
			Outgoing: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
		}
		if _, err := eng.MapMailbox(ctx, m, syncer.MapOptions{}); err != nil {
			t.Fatal(err)
		}
		if r, err := eng.TestAndEnable(ctx, m.ID); err != nil || r.Err() != nil {
			t.Fatal(err, r.Err())
		}
	}
	// Messages were "received" before Test & Enable set process-email-after; let them
	// count, as a profile's earlier start date would.
	for i := range mailboxes {
		if _, err := store.UpdateMailbox(ctx, "mb"+strconv.Itoa(i), func(m *crmsync.Mailbox) error {
			m.ProcessEmailAfter = time.Time{}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

type interval struct {
	engine     string
	start, end int64 // unix nanos; end 0 while open
}

// readLogs returns the cycle intervals per mailbox-workload, in start order.
func readLogs(t *testing.T, paths []string) map[string][]interval {
	out := map[string][]interval{}
	open := map[string]*interval{} // engine+key → open interval
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) != 5 {
				continue // a line cut by the kill
			}
			ev, engine, key := fields[0], fields[1], fields[2]+"/"+fields[3]
			ts, _ := strconv.ParseInt(fields[4], 10, 64)
			switch ev {
			case "start":
				out[key] = append(out[key], interval{engine: engine, start: ts})
				open[engine+" "+key] = &out[key][len(out[key])-1]
			case "end":
				if iv := open[engine+" "+key]; iv != nil {
					iv.end = ts
					delete(open, engine+" "+key)
				}
			}
		}
		f.Close()
	}
	for k := range out {
		sort.Slice(out[k], func(i, j int) bool { return out[k][i].start < out[k][j].start })
	}
	return out
}

func TestThreeEnginesOneDatabaseSurviveAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL; run without -short")
	}
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	store, err := sqlstore.OpenPostgres(ctx, dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	setup(t, ctx, store)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names := []string{"engine-a", "engine-b", "engine-c"}
	var logs []string
	procs := make([]*exec.Cmd, len(names))
	for i, name := range names {
		logs = append(logs, filepath.Join(dir, name+".log"))
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envEngine+"="+name, envDSN+"="+dsn, envLog+"="+logs[i])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
	}
	defer func() {
		for _, p := range procs {
			if p.ProcessState == nil {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
		}
	}()

	// Kill engine-a mid-cycle, once it has a few cycles behind it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("engine-a never started cycles")
		}
		data, _ := os.ReadFile(logs[0])
		if strings.Count(string(data), "end ") >= 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := procs[0].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs[0].Wait()
	killedAt := time.Now().UnixNano()

	// Wait until every message is tracked.
	want := mailboxes * perMailbox
	var got int
	for deadline = time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if got = countTracked(t, ctx, store); got >= want {
			break
		}
	}
	// Then let the survivors run a little longer, and stop them gracefully.
	time.Sleep(leaseFor)
	for _, p := range procs[1:] {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs[1:] {
		if err := p.Wait(); err != nil {
			t.Errorf("engine stopped badly: %v", err)
		}
	}

	got = countTracked(t, ctx, store)
	if got != want {
		t.Fatalf("tracked %d messages, want exactly %d", got, want)
	}
	for i := range mailboxes {
		es, err := store.ListEmails(ctx, crmstore.EmailQuery{MailboxID: "mb" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range es {
			if seen[e.MessageID] {
				t.Fatalf("mailbox %d tracked %s twice", i, e.MessageID)
			}
			seen[e.MessageID] = true
		}
		if len(es) != perMailbox {
			t.Fatalf("mailbox %d holds %d emails, want %d", i, len(es), perMailbox)
		}
	}

	// No mailbox-workload ran on two engines at once; the killed engine's unfinished
	// cycles were taken over only after it died.
	ivs := readLogs(t, logs)
	openAtKill, takenOver, total := 0, 0, 0
	perEngine := map[string]int{}
	for key, list := range ivs {
		for i, iv := range list {
			total++
			perEngine[iv.engine]++
			end := iv.end
			if end == 0 {
				if iv.engine != "engine-a" {
					t.Errorf("%s: a cycle of %s never ended", key, iv.engine)
					continue
				}
				openAtKill++
				end = killedAt
				if i+1 < len(list) {
					takenOver++
				}
			}
			if i+1 < len(list) && list[i+1].start < end {
				t.Errorf("%s ran on %s and %s at once", key, iv.engine, list[i+1].engine)
			}
		}
	}
	t.Logf("%d cycles: %v; engine-a was killed with %d cycles in flight, %d of them taken over", total, perEngine, openAtKill, takenOver)
	if openAtKill == 0 {
		t.Error("engine-a was not killed mid-cycle; the test proved nothing about take-over")
	}
	if takenOver == 0 {
		t.Error("no cycle of the killed engine was taken over")
	}
	for _, name := range names {
		if perEngine[name] == 0 {
			t.Errorf("%s ran no cycle: the work was not shared", name)
		}
	}
}

func countTracked(t *testing.T, ctx context.Context, store crmstore.Store) int {
	es, err := store.ListEmails(ctx, crmstore.EmailQuery{Direction: crmsync.DirectionIncoming})
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
