package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The schema of each dialect is a sequence of migrations: migrations/DIALECT/NNNN_name.sql,
// applied in order, each once, by the Store that opens the database. The schema_version
// table records the versions applied. Both dialects have the same versions: a change
// adds one file to each directory.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

func migrationsOf(dialect string) fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations/"+dialect)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// SchemaTooNewError is returned by OpenSQLite and OpenPostgres when the database's schema
// is newer than this code knows: a newer version of crmsync migrated it, and this one
// could misread it. Upgrade the code, or restore a database of the right version.
type SchemaTooNewError struct {
	Have  int // the database's schema version
	Known int // the newest version this code knows
}

// Error says which versions differ.
func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("sqlstore: the database schema is at version %d, newer than the %d this code knows; refusing to open it", e.Have, e.Known)
}

// migration is one schema version.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads a dialect's migrations in version order.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlstore: migration %s: the name must be NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlstore: migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// KnownSchemaVersion is the newest schema version this code knows.
func KnownSchemaVersion() int {
	ms, err := loadMigrations(migrationsOf("sqlite"))
	if err != nil {
		panic(err)
	}
	return len(ms)
}

// migrate brings the schema to the newest version in one transaction, or refuses a
// schema newer than the code.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations(s.d.migrations)
	if err != nil {
		return err
	}
	if s.schemaVersion > 0 {
		ms = ms[:min(s.schemaVersion, len(ms))]
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.lockMigrations != nil {
			if err := s.d.lockMigrations(ctx, tx); err != nil {
				return fmt.Errorf("sqlstore: locking the schema for migrations: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at TEXT NOT NULL
)`); err != nil {
			return fmt.Errorf("sqlstore: creating schema_version: %w", err)
		}
		var have sql.NullInt64
		if err := tx.QueryRowContext(ctx, "SELECT max(version) FROM schema_version").Scan(&have); err != nil {
			return fmt.Errorf("sqlstore: reading schema_version: %w", err)
		}
		if int(have.Int64) > len(ms) {
			return &SchemaTooNewError{Have: int(have.Int64), Known: len(ms)}
		}
		for _, m := range ms[have.Int64:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("sqlstore: applying migration %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, s.q("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)"),
				m.version, m.name, time.Now().UTC().Format(time.RFC3339)); err != nil {
				return fmt.Errorf("sqlstore: recording migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// SchemaVersion returns the database's schema version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, "SELECT max(version) FROM schema_version").Scan(&v)
	return int(v.Int64), err
}
