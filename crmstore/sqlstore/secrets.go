package sqlstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/crmsync/crmsync"
)

// KeyID names one key of a Keyring. Every stored secret records the KeyID it was
// encrypted with, so a key may be retired only once no secret uses it.
type KeyID string

// Keyring holds the keys that encrypt the secrets of credentials (Credentials.Password
// and Credentials.RefreshToken of server profiles and mailboxes) with AES-256-GCM.
// Secrets are written with the Current key and read with the key they record.
//
// To rotate keys: add the new key and make it Current (keeping the old one) on every
// Store that shares the database, call RotateKeys, then drop the old key.
type Keyring struct {
	Current KeyID
	// Keys maps each key's ID to its 32 bytes.
	Keys map[KeyID][]byte
}

// ErrNoKeys is returned (wrapped) when a secret would have to be stored, or read, and
// Options.Keys holds no key: secrets are never stored in clear.
var ErrNoKeys = errors.New("sqlstore: no encryption key for credential secrets (Options.Keys)")

// UnknownKeyError is returned when a stored secret was encrypted with a key the
// keyring does not hold.
type UnknownKeyError struct {
	ID KeyID
}

// Error names the missing key.
func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("sqlstore: a stored secret was encrypted with key %q, which Options.Keys does not hold", e.ID)
}

// keyring is a Keyring ready for use.
type keyring struct {
	current KeyID
	aeads   map[KeyID]cipher.AEAD
}

// compile checks the keyring and builds its ciphers; an empty Keyring gives nil.
func (k Keyring) compile() (*keyring, error) {
	if len(k.Keys) == 0 {
		if k.Current != "" {
			return nil, fmt.Errorf("sqlstore: Options.Keys: Current is %q but Keys is empty", k.Current)
		}
		return nil, nil
	}
	kr := &keyring{current: k.Current, aeads: make(map[KeyID]cipher.AEAD, len(k.Keys))}
	for id, key := range k.Keys {
		if id == "" || len(id) > 255 {
			return nil, fmt.Errorf("sqlstore: Options.Keys: a key ID must have 1 to 255 bytes, not %d", len(id))
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("sqlstore: Options.Keys: key %q has %d bytes, want 32 (AES-256)", id, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		kr.aeads[id] = aead
	}
	if _, ok := kr.aeads[k.Current]; !ok {
		return nil, fmt.Errorf("sqlstore: Options.Keys: Current key %q is not in Keys", k.Current)
	}
	return kr, nil
}

// The stored form of a secret: a version byte (1), the length of the key ID, the key
// ID, the 12-byte nonce, then the AES-GCM ciphertext and tag. The additional data binds
// it to its row and field, so a ciphertext copied to another row does not decrypt.
const sealVersion = 1

// seal encrypts secret for the field of a row; an empty secret is stored as NULL.
func (k *keyring) seal(secret, table, id, field string) (any, error) {
	if secret == "" {
		return nil, nil
	}
	if k == nil {
		return nil, fmt.Errorf("%w: the %s of %s %s has one", ErrNoKeys, field, singular(table), id)
	}
	aead := k.aeads[k.current]
	out := make([]byte, 0, 2+len(k.current)+aead.NonceSize()+len(secret)+aead.Overhead())
	out = append(out, sealVersion, byte(len(k.current)))
	out = append(out, k.current...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, []byte(secret), aad(table, id, field)), nil
}

// open decrypts a secret stored by seal; NULL gives "".
func (k *keyring) open(b []byte, table, id, field string) (string, error) {
	if len(b) == 0 {
		return "", nil
	}
	kid, rest, err := splitSealed(b)
	if err != nil {
		return "", fmt.Errorf("sqlstore: the %s of %s %s: %w", field, singular(table), id, err)
	}
	if k == nil {
		return "", fmt.Errorf("%w: the %s of %s %s is encrypted with key %q", ErrNoKeys, field, singular(table), id, kid)
	}
	aead := k.aeads[kid]
	if aead == nil {
		return "", &UnknownKeyError{ID: kid}
	}
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return "", fmt.Errorf("sqlstore: the %s of %s %s: sealed secret too short", field, singular(table), id)
	}
	nonce, ct := rest[:aead.NonceSize()], rest[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, ct, aad(table, id, field))
	if err != nil {
		return "", fmt.Errorf("sqlstore: the %s of %s %s does not decrypt with key %q: %w", field, singular(table), id, kid, err)
	}
	return string(plain), nil
}

func splitSealed(b []byte) (KeyID, []byte, error) {
	if len(b) < 2 || b[0] != sealVersion || len(b) < 2+int(b[1]) {
		return "", nil, errors.New("not a sealed secret")
	}
	n := int(b[1])
	return KeyID(b[2 : 2+n]), b[2+n:], nil
}

// singular names one row of a table of secrets, for messages.
func singular(table string) string {
	if table == "mailboxes" {
		return "mailbox"
	}
	return strings.TrimSuffix(table, "s")
}

func aad(table, id, field string) []byte {
	return []byte("crmsync/sqlstore\x00" + table + "\x00" + id + "\x00" + field)
}

// sealedCredentials is the stored form of crmsync.Credentials: the username in clear,
// the secrets sealed, and the key that sealed them (NULL without secrets).
type sealedCredentials struct {
	username               string
	password, refresh, key any
}

func (s *Store) sealCredentials(c crmsync.Credentials, table, id string) (sealedCredentials, error) {
	out := sealedCredentials{username: c.Username}
	var err error
	if out.password, err = s.keys.seal(c.Password, table, id, "password"); err != nil {
		return out, err
	}
	if out.refresh, err = s.keys.seal(c.RefreshToken, table, id, "refresh token"); err != nil {
		return out, err
	}
	if out.password != nil || out.refresh != nil {
		out.key = string(s.keys.current)
	}
	return out, nil
}

func (s *Store) openCredentials(username string, password, refresh []byte, table, id string) (crmsync.Credentials, error) {
	c := crmsync.Credentials{Username: username}
	var err error
	if c.Password, err = s.keys.open(password, table, id, "password"); err != nil {
		return c, err
	}
	if c.RefreshToken, err = s.keys.open(refresh, table, id, "refresh token"); err != nil {
		return c, err
	}
	return c, nil
}

// secretTables are the tables whose rows hold sealed credentials.
var secretTables = []string{"profiles", "mailboxes"}

// checkKeys refuses to open a database holding secrets the keyring cannot read.
func (s *Store) checkKeys(ctx context.Context) error {
	var used []KeyID
	for _, table := range secretTables {
		rows, err := s.rdb.QueryContext(ctx, "SELECT DISTINCT secret_key FROM "+table+" WHERE secret_key IS NOT NULL")
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			used = append(used, KeyID(id))
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	if len(used) == 0 {
		return nil
	}
	if s.keys == nil {
		return fmt.Errorf("%w: the database holds secrets encrypted with key %q", ErrNoKeys, used[0])
	}
	sort.Slice(used, func(i, j int) bool { return used[i] < used[j] })
	for _, id := range used {
		if s.keys.aeads[id] == nil {
			return &UnknownKeyError{ID: id}
		}
	}
	return nil
}

// rotateBatch is how many rows RotateKeys re-encrypts in one transaction.
const rotateBatch = 500

// RotateKeys re-encrypts with the current key every secret stored with another one,
// and returns how many secrets it re-encrypted. It works in short transactions, so it
// may run while engines use the database; afterwards the other keys can be dropped
// from the Keyring. Without keys it does nothing.
func (s *Store) RotateKeys(ctx context.Context) (n int, err error) {
	if s.keys == nil {
		return 0, nil
	}
	cur := string(s.keys.current)
	for _, table := range secretTables {
		for {
			done, err := s.rotateSome(ctx, table, cur)
			n += done
			if err != nil {
				return n, err
			}
			if done == 0 {
				break
			}
		}
	}
	return n, nil
}

// rotateSome re-encrypts up to rotateBatch rows of table and returns how many secrets
// it re-encrypted. A row written meanwhile (with another key) is left to the next
// call; one still with an old key when no progress was made ends the rotation.
func (s *Store) rotateSome(ctx context.Context, table, cur string) (int, error) {
	n := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.QueryContext(ctx, s.q("SELECT id, username, password, refresh_token, secret_key FROM "+table+
			" WHERE secret_key IS NOT NULL AND secret_key <> ? ORDER BY id LIMIT ?"+s.d.forUpdate), cur, rotateBatch)
		if err != nil {
			return err
		}
		type row struct {
			id, username, key string
			password, refresh []byte
		}
		var todo []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.username, &r.password, &r.refresh, &r.key); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, r)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, r := range todo {
			c, err := s.openCredentials(r.username, r.password, r.refresh, table, r.id)
			if err != nil {
				return err
			}
			sc, err := s.sealCredentials(c, table, r.id)
			if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, s.q("UPDATE "+table+" SET password = ?, refresh_token = ?, secret_key = ? WHERE id = ? AND secret_key = ?"),
				sc.password, sc.refresh, sc.key, r.id, r.key)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 1 {
				n += countNonNil(sc.password, sc.refresh)
			}
		}
		return nil
	})
	return n, err
}

func countNonNil(vs ...any) int {
	n := 0
	for _, v := range vs {
		if v != nil {
			n++
		}
	}
	return n
}
