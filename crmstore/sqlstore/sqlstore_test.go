package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/sqlstore"
	"github.com/crmsync/crmsync/crmstore/storetest"
	"github.com/crmsync/crmsync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.RunMain(m) }

func ptr[T any](v T) *T { return &v }

// openSQLite opens a store on a new database file, closed when the test ends.
func openSQLite(t testing.TB, opts sqlstore.Options) (*sqlstore.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crmsync.db")
	s, err := sqlstore.OpenSQLite(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// openPostgres opens a store on a new database, closed (and dropped) when the test ends.
func openPostgres(t testing.TB, opts sqlstore.Options) (*sqlstore.Store, string) {
	t.Helper()
	dsn := testenv.Postgres(t)
	s, err := sqlstore.OpenPostgres(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func TestConformanceSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) crmstore.Store {
		s, _ := openSQLite(t, sqlstore.Options{})
		return s
	})
}

// TestConformancePostgres runs the suite with the engines' clock: the suite's time is
// January 2026, whatever the database's clock says.
func TestConformancePostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) crmstore.Store {
		s, _ := openPostgres(t, sqlstore.Options{DatabaseClock: ptr(false)})
		return s
	})
}
