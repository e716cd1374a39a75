package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// mbsync runs isync's mbsync against an IMAP account, pulling INBOX into a local
// Maildir: the reference for the IMAP measurements.
type mbsync struct {
	bin  string
	dir  string // holds the config and the Maildir
	conf string
	sync string // the Sync option: "Pull" or "PullNew"

	port           int
	user, password string
}

// newMbsync writes a config for user at 127.0.0.1:port (plaintext IMAP, as the engine
// uses) into a new directory under base.
func newMbsync(bin, base string, port int, user, password, sync string) (*mbsync, error) {
	dir, err := os.MkdirTemp(base, "mbsync-")
	if err != nil {
		return nil, err
	}
	m := &mbsync{bin: bin, dir: dir, conf: filepath.Join(dir, "mbsyncrc"), sync: sync, port: port, user: user, password: password}
	return m, m.writeConfig()
}

// writeConfig (re)writes the config, with m.sync as the Sync option.
func (m *mbsync) writeConfig() error {
	conf := fmt.Sprintf(`# mailbench: pull INBOX, nothing else.
FSync no

IMAPAccount bench
Host 127.0.0.1
Port %d
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore far
Account bench

MaildirStore near
Path %s/
Inbox %s/INBOX

Channel bench
Far :far:
Near :near:
Patterns INBOX
Sync %s
Create Near
Expunge None
SyncState *
`, m.port, m.user, m.password, m.dir, m.dir, m.sync)
	return os.WriteFile(m.conf, []byte(conf), 0o600)
}

// run runs one sync and returns how long it took and the CPU time mbsync used.
func (m *mbsync) run(ctx context.Context) (wall, cpu time.Duration, err error) {
	return runTool(ctx, "mbsync", m.bin, "-c", m.conf, "-q", "bench")
}

// runTool runs a command and returns its wall and CPU (user + system) time.
func runTool(ctx context.Context, name, bin string, args ...string) (wall, cpu time.Duration, err error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return wall, cpu, fmt.Errorf("%s: %v\n%s", name, err, strings.TrimSpace(out.String()))
	}
	return wall, cpu, nil
}

// selfCPU returns the CPU time (user + system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// count returns the number of messages in the local Maildir.
func (m *mbsync) count() (int, error) {
	n := 0
	for _, sub := range []string{"cur", "new"} {
		es, err := os.ReadDir(filepath.Join(m.dir, "INBOX", sub))
		if err != nil && !os.IsNotExist(err) {
			return 0, err
		}
		n += len(es)
	}
	return n, nil
}

func (m *mbsync) remove() { os.RemoveAll(m.dir) }

// mpop runs mpop against a POP3 account, leaving the messages on the server (as the
// engine's POP3 provider does) and delivering them to a local Maildir.
type mpop struct {
	bin  string
	dir  string
	conf string
}

func newMpop(bin, base string, port int, user, password string) (*mpop, error) {
	dir, err := os.MkdirTemp(base, "mpop-")
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, "Maildir", sub), 0o700); err != nil {
			return nil, err
		}
	}
	m := &mpop{bin: bin, dir: dir, conf: filepath.Join(dir, "mpoprc")}
	conf := fmt.Sprintf(`# mailbench: read the maildrop, leave it on the server.
account bench
host 127.0.0.1
port %d
tls off
auth user
user %s
password %s
keep on
only_new on
uidls_file %s/uidls
delivery maildir %s/Maildir
`, port, user, password, dir, dir)
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mpop) run(ctx context.Context) (wall, cpu time.Duration, err error) {
	return runTool(ctx, "mpop", m.bin, "-C", m.conf, "-q", "bench")
}

func (m *mpop) count() (int, error) {
	n := 0
	for _, sub := range []string{"cur", "new"} {
		es, err := os.ReadDir(filepath.Join(m.dir, "Maildir", sub))
		if err != nil {
			return 0, err
		}
		n += len(es)
	}
	return n, nil
}

func (m *mpop) remove() { os.RemoveAll(m.dir) }
