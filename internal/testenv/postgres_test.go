package testenv

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDBName(t *testing.T) {
	seen := map[string]bool{}
	for _, test := range []string{"TestX", "TestConformance/Schedule/TokensIncrease", strings.Repeat("Long名前/", 30), ""} {
		for range 3 {
			name := dbName(test)
			if len(name) > 63 || !strings.HasPrefix(name, "t_") || seen[name] {
				t.Fatalf("dbName(%q) = %q: too long, badly prefixed, or seen before", test, name)
			}
			for _, r := range name {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
					t.Fatalf("dbName(%q) = %q holds %q", test, name, r)
				}
			}
			seen[name] = true
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:5432/crmsync?sslmode=disable", "postgres://postgres@127.0.0.1:5432/t_x?sslmode=disable"},
		{"postgres://u:p@h:1/db", "postgres://u:p@h:1/t_x"},
		{"postgres://u@h:1", "postgres://u@h:1/t_x"},
	} {
		if got := withDatabase(tc.dsn, "t_x"); got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}

// TestPostgres starts a cluster for one test (as in a binary without RunMain), makes a
// database on it, and checks that the database is empty and usable, that it is dropped when its test ends,
// and that the cluster is stopped and removed when its test ends.
func TestPostgres(t *testing.T) {
	// What is tested here is a cluster started for one test, not the one the whole run
	// may share (scripts/test.sh sets CRMSYNC_PG_ENV), nor the one RunMain shares.
	t.Setenv(PGEnvVar, "")
	inMain := pg.setInMain(false)
	t.Cleanup(func() { pg.setInMain(inMain) })
	ctx := context.Background()
	var dir string
	t.Run("cluster", func(t *testing.T) {
		c := PostgresCluster(t)
		dir = c.Dir
		var name string
		t.Run("database", func(t *testing.T) {
			// Without RunMain, each test that asks for a database gets a cluster of its own.
			if other := Postgres(t); strings.HasPrefix(other, strings.TrimSuffix(c.DSN, "crmsync?sslmode=disable")) {
				t.Fatalf("Postgres made %s on the cluster of the parent test", other)
			}
			dsn := c.NewDatabase(t)
			name = dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
			out, err := c.psqlOn(ctx, dsn, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
			if err != nil || strings.TrimSpace(string(out)) != "0" {
				t.Fatalf("counting the new database's tables: %q, %v; want 0", out, err)
			}
			if out, err := c.psqlOn(ctx, dsn, "CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT sum(x) FROM t"); err != nil || strings.TrimSpace(string(out)) != "1" {
				t.Fatalf("using the new database: %q, %v", out, err)
			}
		})
		out, err := c.psqlOn(ctx, c.AdminDSN, "SELECT count(*) FROM pg_database WHERE datname = '"+name+"'")
		if err != nil || strings.TrimSpace(string(out)) != "0" {
			t.Fatalf("database %s after its test: %q, %v; want it dropped", name, out, err)
		}
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the cluster's directory %s is still there after its test: %v", dir, err)
	}
}
