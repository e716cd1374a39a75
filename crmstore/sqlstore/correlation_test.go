package sqlstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
	"github.com/crmsync/crmsync/filter"
)

// The Store has filter's optional lookups.
var (
	_ filter.TokenIndex        = (*sqlstore.Store)(nil)
	_ filter.ConversationIndex = (*sqlstore.Store)(nil)
	_ filter.SubjectIndex      = (*sqlstore.Store)(nil)
)

// v1EmailInsert stores an email as schema version 1 did, before the correlation keys.
const v1EmailInsert = `INSERT INTO emails (id, mailbox_id, direction, status, message_id, in_reply_to, refs, thread_index,
	provider_id, folder, from_name, from_email, to_addrs, cc_addrs, bcc_addrs, reply_to, subject, text_body, html_body, size,
	sent_at, received_at, regarding_id, correlation, delivery_attempts, failure_reason, notes, attachments, created_at, modified_at)
VALUES (?, 'm1', 1, 4, 'old@x', '', NULL, '', 'INBOX/1', 'INBOX', 'Ann', 'ann@example.org', ?, NULL, NULL, NULL,
	'RE: Quote [CRM:0001234]', 'text', '', 100, ?, ?, '', 0, 0, '', NULL, 1, ?, ?)`

// TestUpgradeToCorrelationKeys opens a database left by schema version 1 (before the
// correlation keys) with the code: migration 0002 adds the columns and their indexes,
// the emails already stored read with empty keys, and they get keys like any other.
func TestUpgradeToCorrelationKeys(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			old, where := d.open(t, sqlstore.AtSchemaVersion(sqlstore.Options{}, 1))
			if v, err := old.SchemaVersion(ctx); err != nil || v != 1 {
				t.Fatalf("SchemaVersion of the old database = %d, %v; want 1", v, err)
			}
			db := sqlstore.RawDB(old)
			if _, err := db.ExecContext(ctx, "SELECT tracking_token FROM emails"); err == nil {
				t.Fatal("a database at version 1 has the column tracking_token")
			}
			_, err := db.ExecContext(ctx, sqlstore.Rebind(old, v1EmailInsert), "old-1", `[{"email":"bob@example.com"}]`,
				sqlstore.TimeArg(old, base), sqlstore.TimeArg(old, base), sqlstore.TimeArg(old, base), sqlstore.TimeArg(old, base))
			must(t, err, "storing an email at version 1")
			_, err = db.ExecContext(ctx, sqlstore.Rebind(old, `INSERT INTO email_attachments
	(email_id, pos, name, content_type, content_id, size, content, skipped, skip_reason) VALUES ('old-1', 0, 'q.pdf', 'application/pdf', '', 3, ?, ?, '')`),
				[]byte("pdf"), false)
			must(t, err, "storing an attachment at version 1")
			must(t, old.Close(), "closing the old database")

			s, err := d.reopen(ctx, where, sqlstore.Options{DatabaseClock: ptr(false)})
			must(t, err, "opening the old database with the code")
			t.Cleanup(func() { s.Close() })
			if v, err := s.SchemaVersion(ctx); err != nil || v != sqlstore.KnownSchemaVersion() || v < 2 {
				t.Fatalf("SchemaVersion after the upgrade = %d, %v; want %d", v, err, sqlstore.KnownSchemaVersion())
			}
			var token, conversation, subject string
			must(t, sqlstore.RawDB(s).QueryRowContext(ctx, "SELECT tracking_token, conversation_id, subject_hash FROM emails").
				Scan(&token, &conversation, &subject), "reading the new columns")
			if token != "" || conversation != "" || subject != "" {
				t.Fatalf("an old email has keys %q, %q, %q in the database, want none", token, conversation, subject)
			}
			wantIndexes(t, s, "emails_tracking_token", "emails_conversation_id", "emails_subject_hash")

			e, err := s.Email(ctx, "old-1")
			must(t, err, "Email(old-1)")
			if e.TrackingToken != "" || e.ConversationID != "" || e.SubjectHash != "" || e.Subject != "RE: Quote [CRM:0001234]" ||
				len(e.To) != 1 || e.To[0].Email != "bob@example.com" || len(e.Attachments) != 1 || string(e.Attachments[0].Content) != "pdf" ||
				!e.CreatedAt.Equal(base) {
				t.Fatalf("the old email reads as %+v", e)
			}
			if m, err := s.EmailsByTrackingToken(ctx, []string{"", "CRM:0001234"}); err != nil || len(m) != 0 {
				t.Fatalf("EmailsByTrackingToken before the old email has a token = %v, %v", m, err)
			}
			_, err = s.UpdateEmail(ctx, "old-1", func(e *crmsync.Email) error {
				e.TrackingToken, e.ConversationID, e.SubjectHash = "CRM:0001234", "conv-1", "h-quote"
				return nil
			})
			must(t, err, "UpdateEmail(old-1)")
			byToken, err := s.EmailsByTrackingToken(ctx, []string{"CRM:0001234"})
			must(t, err, "EmailsByTrackingToken")
			byConversation, err := s.EmailsByConversationID(ctx, []string{"conv-1"})
			must(t, err, "EmailsByConversationID")
			bySubject, err := s.EmailsBySubjectHash(ctx, []string{"h-quote"}, base)
			must(t, err, "EmailsBySubjectHash")
			for what, es := range map[string][]*crmsync.Email{"token": byToken["CRM:0001234"], "conversation": byConversation["conv-1"], "subject": bySubject["h-quote"]} {
				if len(es) != 1 || es[0].ID != "old-1" || len(es[0].Attachments) != 1 {
					t.Fatalf("lookup by %s after the upgrade found %d emails, want old-1 with its attachment", what, len(es))
				}
			}
		})
	}
}

// wantIndexes fails unless the emails table has these indexes.
func wantIndexes(t *testing.T, s *sqlstore.Store, names ...string) {
	t.Helper()
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'emails' AND name IN ('" + strings.Join(names, "', '") + "')"
	if s.Dialect() == "postgres" {
		q = "SELECT count(*) FROM pg_indexes WHERE tablename = 'emails' AND indexname IN ('" + strings.Join(names, "', '") + "')"
	}
	var n int
	must(t, sqlstore.RawDB(s).QueryRowContext(context.Background(), q).Scan(&n), "counting indexes")
	if n != len(names) {
		t.Fatalf("emails has %d of the indexes %v", n, names)
	}
}

// TestCorrelationLookupsUseIndexes checks that each lookup is a read of its own index,
// not a scan of emails nor a range of another index, on a table where most emails have
// no keys, as in production.
func TestCorrelationLookupsUseIndexes(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, _ := d.open(t, sqlstore.Options{})
			_, err := s.MapMailbox(ctx, newMailbox("m1"), false)
			must(t, err, "MapMailbox")
			must(t, s.SetWorkload(ctx, "m1", crmsync.Incoming, runnable(), base), "SetWorkload")
			cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.Incoming, Owner: "e", Now: base, LeaseFor: time.Hour, Limit: 1})
			if err != nil || len(cs) != 1 {
				t.Fatalf("ClaimDue = %d, %v", len(cs), err)
			}
			var batch []*crmsync.Email
			for i := range 2000 {
				e := &crmsync.Email{ProviderID: fmt.Sprintf("INBOX/%d", i), Subject: "s", CreatedAt: base.Add(time.Duration(i) * time.Second)}
				if i%100 == 0 {
					e.TrackingToken, e.ConversationID, e.SubjectHash = fmt.Sprint("t", i), fmt.Sprint("c", i), fmt.Sprint("h", i%300)
				}
				batch = append(batch, e)
			}
			_, err = s.TrackIncoming(ctx, cs[0].Lease, batch, []byte("c"))
			must(t, err, "TrackIncoming")
			db := sqlstore.RawDB(s)
			if s.Dialect() == "postgres" {
				_, err := db.ExecContext(ctx, "ANALYZE emails")
				must(t, err, "ANALYZE")
			}
			for _, tc := range []struct {
				col, index string
				args       []any
			}{
				{"tracking_token", "emails_tracking_token", []any{"t100", "t200"}},
				{"conversation_id", "emails_conversation_id", []any{"c100", "c200"}},
				// Since a year ago: every email, so that no other index narrows it.
				{"subject_hash", "emails_subject_hash", []any{"h100", "h200", sqlstore.TimeArg(s, base.AddDate(-1, 0, 0))}},
			} {
				plan := explain(t, s, sqlstore.CorrelationSQL(s, tc.col, 2), tc.args)
				t.Logf("the lookup by %s:\n%s", tc.col, plan)
				if !strings.Contains(plan, tc.index) || strings.Contains(plan, "SCAN emails") || strings.Contains(plan, "Seq Scan") {
					t.Errorf("the lookup by %s does not read %s:\n%s", tc.col, tc.index, plan)
				}
			}
		})
	}
}

// explain returns the plan of query: on PostgreSQL with sequential scans off, so that
// only an index nothing else can replace passes on a small table.
func explain(t *testing.T, s *sqlstore.Store, query string, args []any) string {
	t.Helper()
	ctx := context.Background()
	tx, err := sqlstore.RawDB(s).BeginTx(ctx, nil)
	must(t, err, "BEGIN")
	defer tx.Rollback()
	prefix := "EXPLAIN QUERY PLAN "
	if s.Dialect() == "postgres" {
		prefix = "EXPLAIN "
		_, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off")
		must(t, err, "SET enable_seqscan")
	}
	rows, err := tx.QueryContext(ctx, prefix+query, args...)
	must(t, err, "EXPLAIN")
	defer rows.Close()
	cols, err := rows.Columns()
	must(t, err, "plan columns")
	var lines []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		must(t, rows.Scan(ptrs...), "reading the plan")
		lines = append(lines, fmt.Sprint(vals[len(vals)-1])) // the detail (SQLite) or the line (PostgreSQL)
	}
	must(t, rows.Err(), "reading the plan")
	return strings.Join(lines, "\n")
}

// TestSubjectHashSinceFinerThanStored checks the since bound against times the
// database keeps to the microsecond: an email created at t is found since t, and not
// since t plus a nanosecond, as in memstore.
func TestSubjectHashSinceFinerThanStored(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, _ := d.open(t, sqlstore.Options{})
			at := base.Add(time.Microsecond)
			must(t, s.CreateEmail(ctx, &crmsync.Email{ID: "e1", MailboxID: "m1", SubjectHash: "h", CreatedAt: at}), "CreateEmail")
			for since, want := range map[time.Time]int{at.Add(-time.Nanosecond): 1, at: 1, at.Add(time.Nanosecond): 0} {
				m, err := s.EmailsBySubjectHash(ctx, []string{"h"}, since)
				must(t, err, "EmailsBySubjectHash")
				if len(m["h"]) != want {
					t.Errorf("since %v: %d emails of one created at %v, want %d", since.Format(time.RFC3339Nano), len(m["h"]), at.Format(time.RFC3339Nano), want)
				}
			}
		})
	}
}
