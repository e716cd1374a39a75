// Command quickstart runs the crmsync Engine on embedded defaults, with no setup: an
// in-process IMAP and SMTP server (provider/mailtest) plays the company's mail server,
// and an SQLite file (crmstore/sqlstore) plays the CRM's database.
//
// It maps two users' mailboxes, passes Test & Enable, lets a customer's messages arrive,
// sends a CRM email from alice to bob, and prints what the engine tracked and sent and
// the mailboxes' states. It takes a few seconds:
//
//	go run ./examples/quickstart [-db FILE]
//
// The database file (by default crmsync-quickstart.db in the temporary directory) is
// kept: a second run resumes from it, and the same messages arriving again are refused
// as duplicates, so nothing is tracked or sent twice. The key that encrypts the stored
// passwords is kept beside it in FILE.key; a real host keeps its keys in its secret
// store.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

func main() {
	db := flag.String("db", filepath.Join(os.TempDir(), "crmsync-quickstart.db"), "the SQLite database `file`; kept between runs")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, *db); err != nil {
		log.Fatal(err)
	}
}

// demoKeys loads the demo's encryption key from path, making it on the first run.
func demoKeys(path string) (sqlstore.Keyring, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		err = os.WriteFile(path, key, 0o600)
	}
	if err != nil {
		return sqlstore.Keyring{}, err
	}
	if len(key) != 32 {
		return sqlstore.Keyring{}, fmt.Errorf("%s: a key is 32 bytes, not %d", path, len(key))
	}
	return sqlstore.Keyring{Current: "demo", Keys: map[sqlstore.KeyID][]byte{"demo": key}}, nil
}

// incomingCycles counts the incoming cycles finished per mailbox.
type incomingCycles struct {
	syncer.NoopObserver
	mu sync.Mutex
	n  map[string]int
}

func (o *incomingCycles) CycleFinished(c syncer.CycleInfo, out syncer.CycleOutcome) {
	if c.Workload != crmsync.Incoming || out.Err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[c.MailboxID]++
}

func (o *incomingCycles) count(mailboxID string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[mailboxID]
}

const password = "demo-password"

func run(ctx context.Context, out io.Writer, dbPath string) error {
	// The demo mail server.
	srv, err := mailtest.NewServer(mailtest.Config{Domain: "mail.example.test"})
	if err != nil {
		return err
	}
	for _, u := range []string{"alice", "bob"} {
		if err := srv.AddUser(u+"@example.test", password); err != nil {
			return err
		}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()

	// The CRM's database: an SQLite file that outlives the run.
	keys, err := demoKeys(dbPath + ".key")
	if err != nil {
		return err
	}
	store, err := sqlstore.OpenSQLite(ctx, dbPath, sqlstore.Options{Keys: keys})
	if err != nil {
		return err
	}
	defer store.Close()
	before, err := store.ListEmails(ctx, crmstore.EmailQuery{})
	if err != nil {
		return err
	}
	if len(before) > 0 {
		fmt.Fprintf(out, "Resuming from %s, which holds %d email(s) from earlier runs.\n", dbPath, len(before))
	} else {
		fmt.Fprintf(out, "Starting a new database in %s.\n", dbPath)
	}

	// The engine, with a brisk cadence so the demo takes seconds, not minutes.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cycles := &incomingCycles{n: map[string]int{}}
	eng, err := syncer.New(syncer.Config{
		Store:    store,
		Dialer:   provider.Mux{crmsync.ServerIMAP: imap.NewDialer(imap.Config{Logger: logger})},
		Logger:   logger,
		Observer: cycles,
		Policy:   schedule.Policy{Incoming: time.Second, Outgoing: time.Second},
	})
	if err != nil {
		return err
	}
	profile := srv.Profile("demo")
	profile.Name = "Demo mail server"
	if err := eng.PutProfile(ctx, profile); err != nil {
		return err
	}
	for _, u := range []string{"alice", "bob"} {
		_, err := eng.MapMailbox(ctx, &crmsync.Mailbox{
			ID: "mb-" + u, Address: u + "@example.test", ProfileID: profile.ID,
			Owner:       crmsync.Owner{Kind: crmsync.OwnerUser, ID: u},
			Approval:    crmsync.ApprovalApproved,
			Credentials: crmsync.Credentials{Username: u + "@example.test", Password: password},
			Incoming:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
			Outgoing:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
		}, syncer.MapOptions{})
		if err != nil {
			return err
		}
		report, err := eng.TestAndEnable(ctx, "mb-"+u)
		if err != nil {
			return err
		}
		if err := report.Err(); err != nil {
			return fmt.Errorf("test & enable %s: %w", u, err)
		}
	}
	fmt.Fprintln(out, "Test & Enable passed for alice and bob (incoming and outgoing email).")

	// A customer writes to alice; the CRM sends an email from alice to bob.
	for i, subject := range []string{"Order #1001", "Question about invoice 77", "Meeting next week?"} {
		raw := fmt.Sprintf("From: Carol Customer <carol@customer.test>\r\nTo: alice@example.test\r\n"+
			"Subject: %s\r\nMessage-ID: <demo-%d@customer.test>\r\nDate: %s\r\n\r\nHello Alice,\r\n",
			subject, i, time.Now().Format(time.RFC1123Z))
		if err := srv.Deliver("alice@example.test", []byte(raw)); err != nil {
			return err
		}
	}
	draft := &crmsync.Email{
		ID:        "quickstart-quote",
		MailboxID: "mb-alice", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
		From: crmsync.Address{Name: "Alice", Email: "alice@example.test"}, To: []crmsync.Address{{Name: "Bob", Email: "bob@example.test"}},
		Subject: "Renewal quote for ACME", TextBody: "Hi Bob, the quote is ready.",
	}
	if prev, err := store.Email(ctx, draft.ID); err == nil {
		fmt.Fprintf(out, "The CRM email %q was already %s in an earlier run: it is not sent again.\n", prev.Subject, prev.Status)
	} else {
		if err := store.CreateEmail(ctx, draft); err != nil {
			return err
		}
		if _, err := eng.SendEmail(ctx, draft.ID, syncer.SendOptions{}); err != nil {
			return err
		}
	}

	if err := eng.Start(ctx); err != nil {
		return err
	}
	start := time.Now()
	done := func() bool {
		a, _ := store.ListEmails(ctx, crmstore.EmailQuery{MailboxID: "mb-alice", Direction: crmsync.DirectionIncoming})
		b, _ := store.ListEmails(ctx, crmstore.EmailQuery{MailboxID: "mb-bob", Direction: crmsync.DirectionIncoming})
		d, _ := store.Email(ctx, draft.ID)
		// Every mailbox has also looked at its inbox at least twice in this run, so
		// a resumed run shows that the messages seen again were not tracked again.
		return len(a) == 3 && len(b) == 1 && d != nil && d.Status == crmsync.EmailSent &&
			cycles.count("mb-alice") >= 2 && cycles.count("mb-bob") >= 2
	}
	for !done() {
		if ctx.Err() != nil {
			a, _ := store.ListEmails(context.Background(), crmstore.EmailQuery{})
			var states []string
			for _, e := range a {
				states = append(states, fmt.Sprintf("%s/%s/%s", e.MailboxID, e.Status, e.Subject))
			}
			mbs, _ := store.ListMailboxes(context.Background(), crmstore.MailboxQuery{})
			for _, m := range mbs {
				states = append(states, fmt.Sprintf("%s in:%s/%s out:%s/%s", m.ID, m.Incoming.Status, m.Incoming.LastError, m.Outgoing.Status, m.Outgoing.LastError))
			}
			return fmt.Errorf("the demo did not finish in time: %s", strings.Join(states, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := eng.Stop(stopCtx); err != nil {
		return err
	}

	emails, err := store.ListEmails(ctx, crmstore.EmailQuery{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nEmails in the CRM after %v (%d new in this run):\n", elapsed.Round(100*time.Millisecond), len(emails)-len(before))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  MAILBOX\tDIRECTION\tSTATUS\tFROM\tSUBJECT")
	for _, e := range emails {
		dir := "incoming"
		if e.Direction == crmsync.DirectionOutgoing {
			dir = "outgoing"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.MailboxID, dir, e.Status, e.From.Email, e.Subject)
	}
	tw.Flush()

	fmt.Fprintln(out, "\nMailbox states:")
	mbs, err := store.ListMailboxes(ctx, crmstore.MailboxQuery{})
	if err != nil {
		return err
	}
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  MAILBOX\tWORKLOAD\tTEST & ENABLE\tLAST CYCLE")
	for _, m := range mbs {
		for _, w := range crmsync.AllWorkloads() {
			st := m.State(w)
			if st.Method == crmsync.DeliveryNone {
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.Address, w, st.Test, st.Status)
		}
	}
	tw.Flush()
	sent, err := srv.Messages("alice@example.test", "Sent")
	if err == nil {
		fmt.Fprintf(out, "\nalice's Sent folder holds %d message(s); the SMTP server accepted %d.\n", len(sent), srv.SMTPAccepted())
	}
	alerts, err := store.ListAlerts(ctx, crmstore.AlertQuery{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Alerts: %d%s\n", len(alerts), alertList(alerts))
	return nil
}

func alertList(as []*crmsync.Alert) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "\n  [%s] %s", a.Level, a.Message)
	}
	return b.String()
}
