package sqlstore_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
)

// v2EmailInsert stores an email as schema version 2 did, before the parties.
const v2EmailInsert = `INSERT INTO emails (id, mailbox_id, direction, status, message_id, in_reply_to, refs, thread_index,
	provider_id, folder, from_name, from_email, to_addrs, cc_addrs, bcc_addrs, reply_to, subject, text_body, html_body, size,
	sent_at, received_at, regarding_id, correlation, delivery_attempts, failure_reason, notes, attachments, created_at, modified_at,
	tracking_token, conversation_id, subject_hash)
VALUES (?, 'm1', 1, 4, 'old@x', '', NULL, '', 'INBOX/1', 'INBOX', 'Carl', 'carl@customer.example', ?, NULL, NULL, NULL,
	'RE: Quote [CRM:0001234]', 'text', '', 100, ?, ?, 'opp-1', 3, 0, '', NULL, 1, ?, ?, 'CRM:0001234', '', 'h-quote')`

// TestUpgradeToParties opens a database left by schema version 2 (before the parties)
// with the code: migration 0003 adds the column, the emails already stored read with
// no parties and the rest as they were, and they get parties like any other.
func TestUpgradeToParties(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			old, where := d.open(t, sqlstore.AtSchemaVersion(sqlstore.Options{}, 2))
			if v, err := old.SchemaVersion(ctx); err != nil || v != 2 {
				t.Fatalf("SchemaVersion of the old database = %d, %v; want 2", v, err)
			}
			db := sqlstore.RawDB(old)
			if _, err := db.ExecContext(ctx, "SELECT parties FROM emails"); err == nil {
				t.Fatal("a database at version 2 has the column parties")
			}
			_, err := db.ExecContext(ctx, sqlstore.Rebind(old, v2EmailInsert), "old-1", `[{"email":"ann@crm.example"}]`,
				sqlstore.TimeArg(old, base), sqlstore.TimeArg(old, base), sqlstore.TimeArg(old, base), sqlstore.TimeArg(old, base))
			must(t, err, "storing an email at version 2")
			_, err = db.ExecContext(ctx, sqlstore.Rebind(old, `INSERT INTO email_attachments
	(email_id, pos, name, content_type, content_id, size, content, skipped, skip_reason) VALUES ('old-1', 0, 'q.pdf', 'application/pdf', '', 3, ?, ?, '')`),
				[]byte("pdf"), false)
			must(t, err, "storing an attachment at version 2")
			must(t, old.Close(), "closing the old database")

			s, err := d.reopen(ctx, where, sqlstore.Options{DatabaseClock: ptr(false)})
			must(t, err, "opening the old database with the code")
			t.Cleanup(func() { s.Close() })
			if v, err := s.SchemaVersion(ctx); err != nil || v != sqlstore.KnownSchemaVersion() || v < 3 {
				t.Fatalf("SchemaVersion after the upgrade = %d, %v; want %d", v, err, sqlstore.KnownSchemaVersion())
			}
			var stored []byte
			must(t, sqlstore.RawDB(s).QueryRowContext(ctx, "SELECT parties FROM emails").Scan(&stored), "reading the new column")
			if stored != nil {
				t.Fatalf("an old email has parties %s in the database, want NULL", stored)
			}

			e, err := s.Email(ctx, "old-1")
			must(t, err, "Email(old-1)")
			if e.Parties != nil || e.Subject != "RE: Quote [CRM:0001234]" || e.From.Email != "carl@customer.example" ||
				len(e.To) != 1 || e.To[0].Email != "ann@crm.example" || e.RegardingID != "opp-1" ||
				e.TrackingToken != "CRM:0001234" || e.SubjectHash != "h-quote" ||
				len(e.Attachments) != 1 || string(e.Attachments[0].Content) != "pdf" || !e.CreatedAt.Equal(base) {
				t.Fatalf("the old email reads as %+v", e)
			}

			parties := []crmsync.Party{
				{Role: crmsync.PartyFrom, Address: crmsync.Address{Name: "Carl", Email: "carl@customer.example"}, RecordKind: "contact", RecordID: "c-carl"},
				{Role: crmsync.PartyTo, Address: crmsync.Address{Email: "ann@crm.example"}, RecordKind: "user", RecordID: "u-ann"},
				{Role: crmsync.PartyCc, Address: crmsync.Address{Email: "nobody@x.example"}},
			}
			_, err = s.UpdateEmail(ctx, "old-1", func(e *crmsync.Email) error {
				e.Parties = parties
				return nil
			})
			must(t, err, "UpdateEmail(old-1)")
			e, err = s.Email(ctx, "old-1")
			must(t, err, "Email(old-1) after UpdateEmail")
			list, err := s.ListEmails(ctx, crmstore.EmailQuery{MailboxID: "m1"})
			must(t, err, "ListEmails")
			byToken, err := s.EmailsByTrackingToken(ctx, []string{"CRM:0001234"})
			must(t, err, "EmailsByTrackingToken")
			for what, es := range map[string][]*crmsync.Email{"Email": {e}, "ListEmails": list, "EmailsByTrackingToken": byToken["CRM:0001234"]} {
				if len(es) != 1 || es[0].ID != "old-1" || len(es[0].Attachments) != 1 {
					t.Fatalf("%s after the upgrade reads %d emails, want old-1 with its attachment", what, len(es))
				}
				if !reflect.DeepEqual(es[0].Parties, parties) {
					t.Fatalf("%s after the upgrade reads parties %+v, want %+v", what, es[0].Parties, parties)
				}
			}

			// The stored form is the schema's, not Go's: what a host's SQL reads.
			must(t, sqlstore.RawDB(s).QueryRowContext(ctx, "SELECT parties FROM emails").Scan(&stored), "reading the parties")
			var got []map[string]any
			must(t, json.Unmarshal(stored, &got), "decoding the stored parties")
			want := []map[string]any{
				{"role": 1.0, "name": "Carl", "email": "carl@customer.example", "kind": "contact", "id": "c-carl"},
				{"role": 2.0, "email": "ann@crm.example", "kind": "user", "id": "u-ann"},
				{"role": 3.0, "email": "nobody@x.example"},
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("the parties are stored as %s, want %v", stored, want)
			}
		})
	}
}
