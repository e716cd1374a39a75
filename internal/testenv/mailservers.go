// Package testenv gives tests the real servers of crmsync's full test suite (DESIGN.md, "Real parts, and how
// tests start them"). It uses the standard library only.
//
// MailServers returns real Dovecot (IMAP, POP3, LMTP, SMTP submission) and OpenSMTPD (the MTA behind the
// submission service, delivering to Dovecot over LMTP) servers on loopback, started by scripts/mailservers.sh:
// a message submitted over SMTP arrives in the recipient's IMAP/POP3 INBOX. The split is the project's:
// `go test -short ./...` runs unit tests only and MailServers skips; without -short MailServers never skips:
// servers that cannot start fail the test.
//
// Where the servers come from, in order:
//
//  1. CRMSYNC_MAIL_ENV names an env file written by `scripts/mailservers.sh start DIR` (DIR/env): the servers
//     already run (scripts/test.sh, and so CI, starts one instance for the whole run) and are used as they are.
//  2. The test binary's TestMain calls RunMain: one instance is started on first use, shared by every test of
//     the binary, and stopped when the binary's tests are done.
//  3. Otherwise each test that calls MailServers starts an instance of its own and stops it in t.Cleanup
//     (correct, but a few hundred milliseconds per test).
//
// So a package whose tests use the servers has this TestMain:
//
//	func TestMain(m *testing.M) { testenv.RunMain(m) }
//
// Whichever it is, tests share the servers: a test that needs a mailbox of its own takes one from AddUser.
// Starting needs root (the script installs missing Debian packages and OpenSMTPD runs as root).
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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

// EnvVar names the environment variable that points at the env file of servers started outside the tests.
const EnvVar = "CRMSYNC_MAIL_ENV"

// Env describes running mail servers. Addresses are host:port on 127.0.0.1.
type Env struct {
	Dir string // the servers' state directory (CRMSYNC_MAIL_DIR)

	IMAPAddr  string // IMAP, plaintext with STARTTLS (CRMSYNC_IMAP_ADDR)
	IMAPSAddr string // IMAP over implicit TLS (CRMSYNC_IMAPS_ADDR)
	POP3Addr  string // POP3, plaintext with STLS (CRMSYNC_POP3_ADDR)
	POP3SAddr string // POP3 over implicit TLS (CRMSYNC_POP3S_ADDR)
	SMTPAddr  string // SMTP submission (Dovecot's): STARTTLS, AUTH required (CRMSYNC_SMTP_ADDR)
	SMTPSAddr string // SMTP submission over implicit TLS, AUTH required (CRMSYNC_SMTPS_ADDR)
	MTAAddr   string // OpenSMTPD: plain SMTP from localhost, no TLS, no AUTH (CRMSYNC_MTA_ADDR)
	LMTP      string // Dovecot's LMTP unix socket (CRMSYNC_LMTP)
	LMTPAddr  string // Dovecot's LMTP on TCP (CRMSYNC_LMTP_ADDR)

	CAFile     string         // PEM of the CA that signed the servers' certificate (CRMSYNC_TLS_CA)
	CAPool     *x509.CertPool // CAFile, loaded
	ServerName string         // the name the certificate is for: "localhost" (CRMSYNC_TLS_SERVER_NAME)

	Domain   string   // the local mail domain: "example.test" (CRMSYNC_MAIL_DOMAIN)
	Password string   // the password of Users and of users made by AddUser (CRMSYNC_MAIL_PASSWORD)
	Users    []string // the seeded users alice@, bob@ and carol@ the domain (CRMSYNC_MAIL_USERS)
	Sink     string   // the mailbox that receives mail for any other domain (CRMSYNC_MAIL_SINK)

	// Vars holds every KEY=VALUE of the env file.
	Vars map[string]string

	script     string
	startedDir string // where this process started them, if it did
}

// TLSConfig returns a client configuration that verifies the servers' certificate.
func (e *Env) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: e.CAPool, ServerName: e.ServerName, MinVersion: tls.VersionTLS12}
}

// AddUser creates a new mailbox, unique to this call, whose address starts with localPart (e.g. "bob" gives
// "bob-3f9c2a1d@example.test") and whose password is e.Password, and returns its address. The user can log in
// over IMAP, POP3 and SMTP submission and receives mail at once.
func (e *Env) AddUser(t testing.TB, localPart string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	addr := sanitizeLocalPart(localPart) + "-" + hex.EncodeToString(b[:]) + "@" + e.Domain
	if e.script == "" {
		t.Fatalf("testenv: cannot add %s: scripts/mailservers.sh not found", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := runScript(ctx, nil, e.script, "adduser", e.Dir, addr, e.Password); err != nil {
		t.Fatalf("testenv: adding mail user %s: %v\n%s", addr, err, out)
	}
	return addr
}

func sanitizeLocalPart(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "user"
	}
	return b.String()
}

// mail is the mail servers of this test binary (see server).
var mail = &server[*Env]{
	what: "real mail servers", envVar: EnvVar, load: loadEnv,
	start: func() (*Env, error) {
		env, dir, err := start()
		if err == nil {
			env.startedDir = dir
		}
		return env, err
	},
	stop: func(env *Env) error { return stop(env.script, env.startedDir) },
}

// MailServers returns the real mail servers, starting them when needed (see the package comment). It skips
// the test under -short and fails it, with the script's output, when the servers cannot be had.
func MailServers(t testing.TB) *Env {
	t.Helper()
	return mail.get(t)
}

// RunMain runs the tests of a package whose tests call MailServers or Postgres (or both),
// sharing one instance of the mail servers and one PostgreSQL cluster among them (each
// started on first use, stopped after the last test), and exits. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.RunMain(m) }
func RunMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	mail.setInMain(true)
	pg.setInMain(true)
	code := m.Run()
	for _, stop := range []func() error{mail.stopShared, pg.stopShared} {
		if err := stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// start runs `mailservers.sh start` in a new directory and returns the servers and the directory.
func start() (*Env, string, error) {
	script, err := findScript("mailservers.sh")
	if err != nil {
		return nil, "", err
	}
	// Not t.TempDir: Dovecot runs as an unprivileged user that must reach the directory, and t.TempDir's
	// parents are private to the test's user.
	dir, err := os.MkdirTemp("", "crmsync-mail-")
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	// A generous bound: on a fresh machine the script first installs the Debian packages.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	t0 := time.Now()
	// The script's watchdog stops the servers if this process dies without stopping them (a test timeout).
	out, err := runScript(ctx, []string{"CRMSYNC_MAIL_WATCH_PID=" + strconv.Itoa(os.Getpid())}, script, "start", dir)
	if err != nil {
		_, _ = runScript(context.Background(), nil, script, "stop", dir)
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("starting the mail servers (bash %s start %s) failed after %v: %v\n%s",
			script, dir, time.Since(t0).Round(time.Millisecond), err, out)
	}
	env, err := loadEnv(filepath.Join(dir, "env"))
	if err != nil {
		_ = stop(script, dir)
		return nil, "", err
	}
	env.script = script
	return env, dir, nil
}

// stop runs `mailservers.sh stop` and removes the directory.
func stop(script, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := runScript(ctx, nil, script, "stop", dir)
	if rmErr := os.RemoveAll(dir); err == nil && rmErr != nil {
		return fmt.Errorf("removing %s: %w", dir, rmErr)
	}
	if err != nil {
		return fmt.Errorf("stopping the mail servers in %s: %v\n%s", dir, err, out)
	}
	return nil
}

// runScript runs the script with bash, with env added to the environment, and returns its stderr followed by
// its stdout.
func runScript(ctx context.Context, env []string, script string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second // the servers must not hold our pipes; do not hang if they do
	err := cmd.Run()
	return append(stderr.Bytes(), stdout.Bytes()...), err
}

// loadEnv reads an env file written by `mailservers.sh start`.
func loadEnv(path string) (*Env, error) {
	vars, err := ReadEnvFile(path)
	if err != nil {
		return nil, err
	}
	var missing []string
	get := func(k string) string {
		v, ok := vars[k]
		if !ok || v == "" {
			missing = append(missing, k)
		}
		return v
	}
	e := &Env{
		Dir:        get("CRMSYNC_MAIL_DIR"),
		IMAPAddr:   get("CRMSYNC_IMAP_ADDR"),
		IMAPSAddr:  get("CRMSYNC_IMAPS_ADDR"),
		POP3Addr:   get("CRMSYNC_POP3_ADDR"),
		POP3SAddr:  get("CRMSYNC_POP3S_ADDR"),
		SMTPAddr:   get("CRMSYNC_SMTP_ADDR"),
		SMTPSAddr:  vars["CRMSYNC_SMTPS_ADDR"],
		MTAAddr:    vars["CRMSYNC_MTA_ADDR"],
		LMTP:       get("CRMSYNC_LMTP"),
		LMTPAddr:   vars["CRMSYNC_LMTP_ADDR"],
		CAFile:     get("CRMSYNC_TLS_CA"),
		ServerName: vars["CRMSYNC_TLS_SERVER_NAME"],
		Domain:     get("CRMSYNC_MAIL_DOMAIN"),
		Password:   get("CRMSYNC_MAIL_PASSWORD"),
		Sink:       vars["CRMSYNC_MAIL_SINK"],
		Vars:       vars,
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s lacks %s", path, strings.Join(missing, ", "))
	}
	if e.ServerName == "" {
		e.ServerName = "localhost"
	}
	if u := vars["CRMSYNC_MAIL_USERS"]; u != "" {
		e.Users = strings.Split(u, ",")
	}
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s: CRMSYNC_TLS_CA: %w", path, err)
	}
	e.CAPool = x509.NewCertPool()
	if !e.CAPool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate in %s", path, e.CAFile)
	}
	if s, err := findScript("mailservers.sh"); err == nil {
		e.script = s
	} else if s := vars["CRMSYNC_MAIL_SCRIPT"]; s != "" {
		e.script = s
	}
	return e, nil
}
