package testenv

// PostgreSQL for the tests of crmstore/sqlstore (and of anything else that needs a real database).
//
// Postgres returns the DSN of a fresh, empty database made for the calling test and dropped when it ends, on a
// cluster started by scripts/postgres.sh. As with MailServers, `go test -short` skips, and without -short Postgres
// never skips: a cluster that cannot be had fails the test. Where the cluster comes from, in order:
//
//  1. CRMSYNC_PG_ENV names an env file written by `scripts/postgres.sh start DIR` (DIR/env): the cluster already
//     runs (started once for a whole test run) and is used as it is.
//  2. The test binary's TestMain calls RunMain: one cluster is started on first use, shared by every test of
//     the binary, and stopped when the binary's tests are done.
//  3. Otherwise each test that calls Postgres starts a cluster of its own and stops it in t.Cleanup (correct, but
//     about a second per test).
//
// The databases are made and dropped with the cluster's psql, so this package still imports the standard library
// only. Starting a cluster as root runs it as the OS user postgres (initdb refuses root).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PGEnvVar names the environment variable that points at the env file of a PostgreSQL cluster started outside
// the tests (scripts/postgres.sh start DIR writes DIR/env).
const PGEnvVar = "CRMSYNC_PG_ENV"

// PGCluster is a running PostgreSQL cluster.
type PGCluster struct {
	Dir      string // the cluster's directory (CRMSYNC_PG_DIR)
	DSN      string // the database crmsync (CRMSYNC_PG_DSN)
	AdminDSN string // the database postgres, to create and drop others (CRMSYNC_PG_ADMIN_DSN)
	Bin      string // the PostgreSQL binaries: psql is there (CRMSYNC_PG_BIN)

	script string
}

// pg is the PostgreSQL cluster of this test binary (see server).
var pg = &server[*PGCluster]{
	what: "PostgreSQL", envVar: PGEnvVar, load: loadPGEnv, start: startPG,
	stop: func(c *PGCluster) error { return stopPG(c.script, c.Dir) },
}

// Postgres returns the DSN (a postgres:// URL) of a new, empty database on a real PostgreSQL cluster, starting
// the cluster when needed (see the comment at the top of this file). The database has a name unique to this
// call and is dropped, with any connection left to it, when the test ends. It skips the test under -short and
// fails it, with the script's output, when no cluster can be had.
func Postgres(t testing.TB) string {
	t.Helper()
	return PostgresCluster(t).NewDatabase(t)
}

// NewDatabase creates an empty database on the cluster, dropped (with any connection left to it) when the test
// ends, and returns its DSN.
func (c *PGCluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := dbName(t.Name())
	if out, err := c.psql(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: CREATE DATABASE %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := c.psql(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: DROP DATABASE %s: %v\n%s", name, err, out)
		}
	})
	return withDatabase(c.DSN, name)
}

// PostgresCluster returns the running cluster Postgres makes its databases on, starting it when needed. Most
// tests want Postgres instead: a database of their own.
func PostgresCluster(t testing.TB) *PGCluster {
	t.Helper()
	return pg.get(t)
}

// dbName returns a database name for a test: a prefix of the test's name, made safe, and random hex.
func dbName(test string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var x [6]byte
	_, _ = rand.Read(x[:])
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(x[:]))
	return b.String() // at most 2+40+1+12 = 55 bytes: PostgreSQL allows 63
}

// withDatabase returns dsn (a postgres:// URL) with its database replaced by name.
func withDatabase(dsn, name string) string {
	rest, query, _ := strings.Cut(dsn, "?")
	if i := strings.LastIndex(rest, "/"); i > len("postgres://") {
		rest = rest[:i]
	}
	out := rest + "/" + name
	if query != "" {
		out += "?" + query
	}
	return out
}

// psql runs one SQL command on the cluster's database postgres.
func (c *PGCluster) psql(ctx context.Context, command string) ([]byte, error) {
	return c.psqlOn(ctx, c.AdminDSN, command)
}

// psqlOn runs one SQL command on the database of dsn and returns its output: the rows, unaligned, without
// headers, or the error messages.
func (c *PGCluster) psqlOn(ctx context.Context, dsn, command string) ([]byte, error) {
	psql := filepath.Join(c.Bin, "psql")
	if _, err := os.Stat(psql); err != nil {
		psql = "psql"
	}
	cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", command)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// startPG runs `postgres.sh start` in a new directory.
func startPG() (*PGCluster, error) {
	script, err := findScript("postgres.sh")
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: the server runs as the OS user postgres, which must reach the directory, and t.TempDir's
	// parents are private to the test's user.
	dir, err := os.MkdirTemp("", "crmsync-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A generous bound: on a fresh machine the script first installs PostgreSQL.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	t0 := time.Now()
	// The script's watchdog stops the cluster if this process dies without stopping it (a test timeout).
	out, err := runScript(ctx, []string{"CRMSYNC_PG_WATCH_PID=" + strconv.Itoa(os.Getpid())}, script, "start", dir)
	if err != nil {
		_, _ = runScript(context.Background(), nil, script, "stop", dir)
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting PostgreSQL (bash %s start %s) failed after %v: %v\n%s",
			script, dir, time.Since(t0).Round(time.Millisecond), err, out)
	}
	c, err := loadPGEnv(filepath.Join(dir, "env"))
	if err != nil {
		_ = stopPG(script, dir)
		return nil, err
	}
	c.script = script
	return c, nil
}

// stopPG runs `postgres.sh stop` and removes the directory.
func stopPG(script, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := runScript(ctx, nil, script, "stop", dir)
	if rmErr := os.RemoveAll(dir); err == nil && rmErr != nil {
		return fmt.Errorf("removing %s: %w", dir, rmErr)
	}
	if err != nil {
		return fmt.Errorf("stopping PostgreSQL in %s: %v\n%s", dir, err, out)
	}
	return nil
}

// loadPGEnv reads an env file written by `postgres.sh start`.
func loadPGEnv(path string) (*PGCluster, error) {
	vars, err := ReadEnvFile(path)
	if err != nil {
		return nil, err
	}
	c := &PGCluster{
		Dir:      vars["CRMSYNC_PG_DIR"],
		DSN:      vars["CRMSYNC_PG_DSN"],
		AdminDSN: vars["CRMSYNC_PG_ADMIN_DSN"],
		Bin:      vars["CRMSYNC_PG_BIN"],
		script:   vars["CRMSYNC_PG_SCRIPT"],
	}
	if c.DSN == "" {
		return nil, fmt.Errorf("%s lacks CRMSYNC_PG_DSN", path)
	}
	if !strings.HasPrefix(c.DSN, "postgres://") && !strings.HasPrefix(c.DSN, "postgresql://") {
		return nil, fmt.Errorf("%s: CRMSYNC_PG_DSN is not a postgres:// URL: %q", path, c.DSN)
	}
	if c.AdminDSN == "" {
		c.AdminDSN = withDatabase(c.DSN, "postgres")
	}
	if s, err := findScript("postgres.sh"); err == nil {
		c.script = s
	}
	return c, nil
}
