package sqlstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
)

func newKey(t testing.TB) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// The secrets the tests store, made to be found in a file if they were stored in clear.
var (
	profileCreds = crmsync.Credentials{Username: "svc-username-in-clear", Password: "PROFILE-PASSWORD-4f1d9c", RefreshToken: "PROFILE-REFRESH-TOKEN-8e2a7b"}
	mailboxCreds = crmsync.Credentials{Username: "alice-username-in-clear", Password: "MAILBOX-PASSWORD-3b6e0f", RefreshToken: "MAILBOX-REFRESH-TOKEN-c59d12"}
	secrets      = []string{profileCreds.Password, profileCreds.RefreshToken, mailboxCreds.Password, mailboxCreds.RefreshToken}
)

// putSecrets stores a profile and a mailbox with credentials.
func putSecrets(t *testing.T, s *sqlstore.Store) {
	t.Helper()
	ctx := context.Background()
	must(t, s.PutProfile(ctx, &crmsync.ServerProfile{ID: "p1", Name: "Mail", Kind: crmsync.ServerIMAP,
		CredentialSource: crmsync.CredentialsFromProfile, Credentials: profileCreds}), "PutProfile")
	m := newMailbox("m1")
	m.Credentials = mailboxCreds
	_, err := s.MapMailbox(ctx, m, false)
	must(t, err, "MapMailbox")
}

// wantSecrets fails unless the store reads the credentials back, from every path.
func wantSecrets(t *testing.T, s *sqlstore.Store) {
	t.Helper()
	ctx := context.Background()
	p, err := s.Profile(ctx, "p1")
	must(t, err, "Profile")
	if p.Credentials != profileCreds {
		t.Fatalf("profile credentials read back wrong (user %q)", p.Credentials.Username)
	}
	m, err := s.Mailbox(ctx, "m1")
	must(t, err, "Mailbox")
	if m.Credentials != mailboxCreds {
		t.Fatalf("mailbox credentials read back wrong (user %q)", m.Credentials.Username)
	}
	must(t, s.SetWorkload(ctx, "m1", crmsync.ACT, runnable(), base), "SetWorkload")
	cs, err := s.ClaimDue(ctx, crmstore.ClaimQuery{Workload: crmsync.ACT, Owner: "e", Now: base.Add(time.Hour), LeaseFor: time.Minute, Limit: 1})
	if err != nil || len(cs) != 1 {
		t.Fatalf("ClaimDue = %d, %v", len(cs), err)
	}
	if cs[0].Mailbox.Credentials != mailboxCreds || cs[0].Profile == nil || cs[0].Profile.Credentials != profileCreds {
		t.Fatalf("the claim carries the wrong credentials")
	}
	must(t, s.FinishCycle(ctx, cs[0].Lease, crmstore.CycleResult{At: base, Status: crmsync.StatusSuccess}), "FinishCycle")
}

// TestSecretsNotInClear writes secrets on SQLite, closes, and looks for them in the
// bytes of the database file and its WAL.
func TestSecretsNotInClear(t *testing.T) {
	ctx := context.Background()
	keys := sqlstore.Keyring{Current: "k1", Keys: map[sqlstore.KeyID][]byte{"k1": newKey(t)}}
	s, path := openSQLite(t, sqlstore.Options{Keys: keys})
	putSecrets(t, s)
	// Rewrite them once, through UpdateMailbox, so that older page versions exist too.
	_, err := s.UpdateMailbox(ctx, "m1", func(m *crmsync.Mailbox) error {
		m.IncomingOption = crmsync.IncomingAll
		return nil
	})
	must(t, err, "UpdateMailbox")
	wantSecrets(t, s)

	// Look while the store is open (the WAL holds the recent writes), then after Close.
	look := func(when string) {
		t.Helper()
		found := 0
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			b, err := os.ReadFile(path + suffix)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			must(t, err, "reading the database files")
			found += len(b)
			for _, secret := range secrets {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s: %s%s holds a secret in clear", when, path, suffix)
				}
			}
			if bytes.Contains(b, []byte(mailboxCreds.Username)) {
				found = -1 << 30 // the username is stored in clear: proof these are the right files
			}
		}
		if found >= 0 {
			t.Fatalf("%s: the username is in none of the database files: not the right files?", when)
		}
	}
	look("open")
	must(t, s.Close(), "Close")
	look("closed")

	// The secrets read back after a reopen.
	again, err := sqlstore.OpenSQLite(ctx, path, sqlstore.Options{Keys: keys})
	must(t, err, "reopen")
	defer again.Close()
	wantSecrets(t, again)
}

// TestSecretsNeedKeys checks that without keys secrets are refused, never stored in
// clear, and that a database holding secrets is not opened without its keys.
func TestSecretsNeedKeys(t *testing.T) {
	ctx := context.Background()
	s, path := openSQLite(t, sqlstore.Options{})
	err := s.PutProfile(ctx, &crmsync.ServerProfile{ID: "p1", Kind: crmsync.ServerIMAP, Credentials: crmsync.Credentials{Password: "x"}})
	if !errors.Is(err, sqlstore.ErrNoKeys) {
		t.Fatalf("PutProfile with a password and no keys: %v, want ErrNoKeys", err)
	}
	m := newMailbox("m1")
	m.Credentials.RefreshToken = "token"
	if _, err := s.MapMailbox(ctx, m, false); !errors.Is(err, sqlstore.ErrNoKeys) {
		t.Fatalf("MapMailbox with a refresh token and no keys: %v, want ErrNoKeys", err)
	}
	// Without secrets, all is well.
	must(t, s.PutProfile(ctx, &crmsync.ServerProfile{ID: "p1", Kind: crmsync.ServerIMAP, Credentials: crmsync.Credentials{Username: "u"}}), "PutProfile without secrets")
	m.Credentials = crmsync.Credentials{Username: "alice"}
	_, err = s.MapMailbox(ctx, m, false)
	must(t, err, "MapMailbox without secrets")
	_, err = s.UpdateMailbox(ctx, "m1", func(m *crmsync.Mailbox) error {
		m.Credentials.Password = "late"
		return nil
	})
	if !errors.Is(err, sqlstore.ErrNoKeys) {
		t.Fatalf("UpdateMailbox adding a password without keys: %v, want ErrNoKeys", err)
	}
	s.Close()

	// Secrets stored with a key: opening without it fails.
	k1 := sqlstore.Keyring{Current: "k1", Keys: map[sqlstore.KeyID][]byte{"k1": newKey(t)}}
	s, err = sqlstore.OpenSQLite(ctx, path, sqlstore.Options{Keys: k1})
	must(t, err, "open with keys")
	putSecrets(t, s)
	s.Close()
	if s, err := sqlstore.OpenSQLite(ctx, path, sqlstore.Options{}); !errors.Is(err, sqlstore.ErrNoKeys) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("opening a database with secrets without keys: %v, want ErrNoKeys", err)
	}
	other := sqlstore.Keyring{Current: "k2", Keys: map[sqlstore.KeyID][]byte{"k2": newKey(t)}}
	var unknown *sqlstore.UnknownKeyError
	if s, err := sqlstore.OpenSQLite(ctx, path, sqlstore.Options{Keys: other}); !errors.As(err, &unknown) || unknown.ID != "k1" {
		if s != nil {
			s.Close()
		}
		t.Fatalf("opening with a keyring lacking k1: %v, want *UnknownKeyError for k1", err)
	}
	// The same key ID with other bytes does not decrypt.
	wrong := sqlstore.Keyring{Current: "k1", Keys: map[sqlstore.KeyID][]byte{"k1": newKey(t)}}
	s, err = sqlstore.OpenSQLite(ctx, path, sqlstore.Options{Keys: wrong})
	must(t, err, "open with a wrong key under the right ID")
	defer s.Close()
	if _, err := s.Mailbox(ctx, "m1"); err == nil {
		t.Fatal("a secret decrypted with the wrong key")
	}
}

// TestSecretsBoundToTheirRow checks that a sealed secret copied to another row does
// not decrypt there.
func TestSecretsBoundToTheirRow(t *testing.T) {
	ctx := context.Background()
	keys := sqlstore.Keyring{Current: "k1", Keys: map[sqlstore.KeyID][]byte{"k1": newKey(t)}}
	s, _ := openSQLite(t, sqlstore.Options{Keys: keys})
	putSecrets(t, s)
	m2 := newMailbox("m2")
	m2.Credentials = crmsync.Credentials{Username: "bob", Password: "bobs-password"}
	_, err := s.MapMailbox(ctx, m2, false)
	must(t, err, "MapMailbox")
	_, err = sqlstore.RawDB(s).ExecContext(ctx,
		"UPDATE mailboxes SET password = (SELECT password FROM mailboxes WHERE id = 'm1') WHERE id = 'm2'")
	must(t, err, "copying a sealed password")
	if _, err := s.Mailbox(ctx, "m2"); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("reading a password copied from another mailbox: %v, want a decryption error", err)
	}
}

// TestRotateKeys rotates to a new key, drops the old one, reopens, and reads the
// secrets back.
func TestRotateKeys(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			k1, k2 := newKey(t), newKey(t)
			opts := sqlstore.Options{Keys: sqlstore.Keyring{Current: "k1", Keys: map[sqlstore.KeyID][]byte{"k1": k1}}, DatabaseClock: ptr(false)}
			s, where := d.open(t, opts)
			putSecrets(t, s)
			m3 := newMailbox("m3") // no secrets: nothing to rotate
			m3.Credentials.Username = "carol"
			_, err := s.MapMailbox(ctx, m3, false)
			must(t, err, "MapMailbox")
			s.Close()

			opts.Keys = sqlstore.Keyring{Current: "k2", Keys: map[sqlstore.KeyID][]byte{"k1": k1, "k2": k2}}
			s, err = d.reopen(ctx, where, opts)
			must(t, err, "reopen with both keys")
			wantSecrets(t, s) // old secrets read with k1
			n, err := s.RotateKeys(ctx)
			must(t, err, "RotateKeys")
			if n != len(secrets) {
				t.Fatalf("RotateKeys re-encrypted %d secrets, want %d", n, len(secrets))
			}
			if n, err := s.RotateKeys(ctx); err != nil || n != 0 {
				t.Fatalf("RotateKeys again = %d, %v; want nothing to do", n, err)
			}
			s.Close()

			opts.Keys = sqlstore.Keyring{Current: "k2", Keys: map[sqlstore.KeyID][]byte{"k2": k2}}
			s, err = d.reopen(ctx, where, opts)
			must(t, err, "reopen with the new key only")
			defer s.Close()
			wantSecrets(t, s)
			if m, err := s.Mailbox(ctx, "m3"); err != nil || m.Credentials != (crmsync.Credentials{Username: "carol"}) {
				t.Fatalf("mailbox without secrets after rotation: %+v, %v", m, err)
			}
		})
	}
}
