// Command mailbench is the benchmark of issue 3: crmsync's Engine against mbsync (isync)
// and mpop on the same Dovecot, in the same run.
//
//	(a) initial ingest of a generated mailbox (20,000 messages by default) through the
//	    Engine (syncer.Engine, memstore, provider/imap) against mbsync pulling it into a
//	    local Maildir;
//	(b) a no-change incoming cycle on that mailbox (a fresh connection, FetchIncoming with
//	    the saved cursor) against an mbsync run with nothing to do;
//	(c) POP3 ingest (5,000 messages by default) through the Engine and provider/pop3
//	    against mpop, leaving the messages on the server.
//
// Both sides use plaintext IMAP and POP3 on loopback. The timed runs go straight to the
// server; one more run of each tool goes through a counting TCP proxy (testenv.Proxy, in
// a process of its own), which gives the bytes and round trips per message
// (-time-through-proxy times through it instead). mbsync and mpop write to a Maildir on
// tmpfs with fsync off, the closest match to the Engine's in-memory store.
//
// It needs running mail servers (scripts/mailservers.sh start DIR, then -env DIR/env)
// and root (to add users). scripts/bench-mail.sh does all of it; the results are a
// Markdown table on stdout, progress goes to stderr.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/pop3"
)

type options struct {
	env                string
	messages           int
	pop3               int
	seed               uint64
	sessions           int
	runs               int
	noChange           int
	batch              int
	cycleItems         int
	work               string
	mbsync             string
	mpop               string
	cpuprofile         string
	pop3CPUProfile     string
	imapUser, pop3User string
	timeThroughProxy   bool
	latency            time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.env, "env", os.Getenv("CRMSYNC_MAIL_ENV"), "env file of running mail servers (scripts/mailservers.sh start DIR writes DIR/env)")
	flag.IntVar(&o.messages, "messages", 20000, "messages in the IMAP mailbox, for (a) and (b); 0 skips them")
	flag.IntVar(&o.pop3, "pop3", 5000, "messages in the POP3 maildrop, for (c); 0 skips (c)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the generated mailbox")
	flag.IntVar(&o.sessions, "lmtp-sessions", 4, "parallel LMTP sessions delivering the mailbox")
	flag.IntVar(&o.runs, "runs", 3, "ingest runs of each tool (the median is reported)")
	flag.IntVar(&o.noChange, "nochange", 15, "no-change runs of each tool (the median is reported)")
	flag.IntVar(&o.batch, "batch", 200, "the Engine's BatchSize")
	flag.IntVar(&o.cycleItems, "cycle-items", 20000, "the Engine's CycleItems")
	flag.StringVar(&o.work, "work", "/dev/shm", "where mbsync's and mpop's Maildirs go")
	flag.StringVar(&o.mbsync, "mbsync", "mbsync", "the mbsync binary")
	flag.StringVar(&o.mpop, "mpop", "mpop", "the mpop binary")
	flag.DurationVar(&o.latency, "latency", 0, "added to every answer of the servers, like a network round trip (0: loopback as it is)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the Engine's last IMAP ingest to this file")
	flag.BoolVar(&o.timeThroughProxy, "time-through-proxy", false, "time the runs through the counting proxy too (by default they go straight to the server, and one more run of each tool is counted)")
	flag.StringVar(&o.imapUser, "imap-user", "", "reuse this mailbox, already holding the generated -messages with -seed (skips the delivery)")
	flag.StringVar(&o.pop3User, "pop3-user", "", "reuse this POP3 maildrop, already holding the generated -pop3 messages (skips the delivery)")
	flag.StringVar(&o.pop3CPUProfile, "pop3-cpuprofile", "", "write a CPU profile of the Engine's last POP3 ingest to this file")
	serveTapTarget := flag.String("serve-tap", "", "(internal) run the counting proxy in front of this address and answer on stdin/stdout")
	flag.Parse()
	if *serveTapTarget != "" {
		if err := serveTap(*serveTapTarget, o.latency); err != nil {
			fmt.Fprintln(os.Stderr, "mailbench tap:", err)
			os.Exit(1)
		}
		return
	}
	if o.latency > 0 {
		o.timeThroughProxy = true // the latency is the proxy's
	}
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "mailbench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mailbench: "+format+"\n", args...)
}

// mailEnv is what the benchmark needs of the servers' env file.
type mailEnv struct {
	dir, script, imapAddr, pop3Addr, lmtp, domain, password string
}

func loadEnv(path string) (*mailEnv, error) {
	if path == "" {
		return nil, errors.New("no -env (or CRMSYNC_MAIL_ENV): start the servers with scripts/mailservers.sh start DIR")
	}
	vars, err := testenv.ReadEnvFile(path)
	if err != nil {
		return nil, err
	}
	e := &mailEnv{
		dir: vars["CRMSYNC_MAIL_DIR"], script: vars["CRMSYNC_MAIL_SCRIPT"], imapAddr: vars["CRMSYNC_IMAP_ADDR"],
		pop3Addr: vars["CRMSYNC_POP3_ADDR"], lmtp: vars["CRMSYNC_LMTP"], domain: vars["CRMSYNC_MAIL_DOMAIN"],
		password: vars["CRMSYNC_MAIL_PASSWORD"],
	}
	for k, v := range map[string]string{"CRMSYNC_MAIL_DIR": e.dir, "CRMSYNC_MAIL_SCRIPT": e.script, "CRMSYNC_IMAP_ADDR": e.imapAddr,
		"CRMSYNC_POP3_ADDR": e.pop3Addr, "CRMSYNC_LMTP": e.lmtp, "CRMSYNC_MAIL_DOMAIN": e.domain, "CRMSYNC_MAIL_PASSWORD": e.password} {
		if v == "" {
			return nil, fmt.Errorf("%s has no %s", path, k)
		}
	}
	return e, nil
}

// addUser adds a fresh mailbox through the servers' script and returns its address.
func (e *mailEnv) addUser(ctx context.Context, local string) (string, error) {
	var b [4]byte
	rand.Read(b[:])
	addr := local + "-" + hex.EncodeToString(b[:]) + "@" + e.domain
	out, err := exec.CommandContext(ctx, "bash", e.script, "adduser", e.dir, addr, e.password).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("adduser %s: %v\n%s", addr, err, out)
	}
	return addr, nil
}

func endpoint(port int) crmsync.Endpoint {
	return crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: crmsync.SecurityPlaintext}
}

func mailbox(addr, password string) *crmsync.Mailbox {
	local, _, _ := strings.Cut(addr, "@")
	return &crmsync.Mailbox{
		ID: "mb-" + local, Address: addr, ProfileID: "bench",
		Owner:    crmsync.Owner{Kind: crmsync.OwnerUser, ID: local},
		Approval: crmsync.ApprovalApproved, IncomingOption: crmsync.IncomingAll,
		// Everything in the mailbox counts: it was all delivered before Test & Enable.
		ProcessEmailAfter: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		Credentials:       crmsync.Credentials{Username: addr, Password: password},
		Incoming:          crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
	}
}

func run(ctx context.Context, o options) error {
	env, err := loadEnv(o.env)
	if err != nil {
		return err
	}
	for _, bin := range []string{o.mbsync, o.mpop} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (apt-get install isync mpop): %w", bin, err)
		}
	}
	rep := &report{o: o}
	if err := rep.versions(ctx, o); err != nil {
		return err
	}
	if o.messages > 0 {
		if err := benchIMAP(ctx, o, env, rep); err != nil {
			return err
		}
	}
	if o.pop3 > 0 {
		if err := benchPOP3(ctx, o, env, rep); err != nil {
			return err
		}
	}
	rep.write(os.Stdout)
	return nil
}

// benchIMAP runs (a) and (b).
func benchIMAP(ctx context.Context, o options, env *mailEnv, rep *report) error {
	user, err := o.imapUser, error(nil)
	if user == "" {
		if user, err = env.addUser(ctx, "bench-imap"); err != nil {
			return err
		}
	}
	gen := newGenerator(o.seed, user)
	rep.imap.messages = o.messages
	rep.imap.bytes, rep.imap.attachments = gen.stats(o.messages)
	if o.imapUser == "" {
		logf("delivering %d messages (%.0f MB, %d with attachments) to %s over LMTP",
			o.messages, mib(rep.imap.bytes), rep.imap.attachments, user)
		t0 := time.Now()
		if err := deliver(ctx, env.lmtp, user, gen, o.messages, o.sessions); err != nil {
			return err
		}
		rep.imap.deliver = time.Since(t0)
		logf("delivered in %v", rep.imap.deliver.Round(time.Millisecond))
	}

	tp, err := startTap(env.imapAddr, o.latency)
	if err != nil {
		return err
	}
	defer tp.close()
	direct, err := o.timedPort(env.imapAddr, tp)
	if err != nil {
		return err
	}
	profile := func(port int) *crmsync.ServerProfile {
		return &crmsync.ServerProfile{ID: "bench", Name: "mailbench", Kind: crmsync.ServerIMAP, OwnerID: "admin",
			Incoming: endpoint(port), Outgoing: endpoint(port)}
	}
	mbox := mailbox(user, env.password)
	dialer := imap.NewDialer(imap.Config{})
	ec := engineConfig{BatchSize: o.batch, CycleItems: o.cycleItems}

	// (a) initial ingest, the tools taking turns, mbsync first; the timed runs, then
	// one of each through the counting proxy.
	var synced *mbsync
	var cursor []byte
	for r := range o.runs + 1 {
		counted := r == o.runs
		port := direct
		if counted {
			port = tp.port()
		}
		// mbsync starts on a quiet machine: the last Maildir gone, the last Engine's
		// garbage collected and its memory returned to the system.
		if synced != nil {
			synced.remove()
			synced = nil
		}
		debug.FreeOSMemory()
		m, err := newMbsync(o.mbsync, o.work, port, user, env.password, "Pull")
		if err != nil {
			return err
		}
		before := tp.snapshot()
		d, cpu, err := m.run(ctx)
		if err != nil {
			return err
		}
		rep.imap.tool.record(counted, d, cpu, tp.snapshot().Sub(before))
		if n, err := m.count(); err != nil || n != o.messages {
			return fmt.Errorf("mbsync pulled %d messages, want %d (%v)", n, o.messages, err)
		}
		logf("(a) run %d%s: mbsync %v", r+1, countedNote(counted), d.Round(time.Millisecond))
		synced = m

		// The Engine is a long-running library: the last run's garbage is collected,
		// and the memory stays the process's, as between the cycles of a real one.
		runtime.GC()
		cpuprofile := ""
		if r == o.runs-1 {
			cpuprofile = o.cpuprofile
		}
		before, cpu0 := tp.snapshot(), selfCPU()
		er, err := ingest(ctx, dialer, profile(port), mbox, o.messages, ec, cpuprofile)
		if err != nil {
			return fmt.Errorf("engine ingest over IMAP: %w", err)
		}
		rep.imap.engine.record(counted, er.elapsed, selfCPU()-cpu0, tp.snapshot().Sub(before))
		if d := er.store.dups.Load(); d != 0 {
			return fmt.Errorf("engine ingest: the store refused %d duplicates", d)
		}
		rep.imap.batches = er.store.batches.Load()
		cursor = er.store.savedCursor()
		logf("(a) run %d%s: engine %v (%d batches)", r+1, countedNote(counted), er.elapsed.Round(time.Millisecond), rep.imap.batches)
	}
	defer synced.remove()
	runtime.GC()

	// (b) no-change runs: timed, then one through the proxy.
	for r := range o.noChange + 1 {
		counted := r == o.noChange
		port := direct
		if counted {
			port = tp.port()
		}
		prof := profile(port)
		before := tp.snapshot()
		start := time.Now()
		c, err := dialer.Dial(ctx, provider.Target{Profile: prof, Mailbox: mbox})
		if err != nil {
			return err
		}
		b, err := c.(provider.IncomingMail).FetchIncoming(ctx, provider.FetchRequest{
			Cursor: cursor, Since: mbox.EffectiveStart(prof), Max: o.batch,
		})
		c.Close()
		d := time.Since(start)
		if err != nil {
			return fmt.Errorf("no-change FetchIncoming: %w", err)
		}
		if len(b.Emails) != 0 || b.More {
			return fmt.Errorf("no-change FetchIncoming returned %d emails, More %v", len(b.Emails), b.More)
		}
		rep.noChange.engine.record(counted, d, 0, tp.snapshot().Sub(before))
	}
	for _, sync := range []string{"Pull", "PullNew"} {
		res := &rep.noChange.tool
		if sync == "PullNew" {
			res = &rep.noChange.toolNew
		}
		for r := range o.noChange + 1 {
			counted := r == o.noChange
			synced.sync, synced.port = sync, direct
			if counted {
				synced.port = tp.port()
			}
			if err := synced.writeConfig(); err != nil {
				return err
			}
			before := tp.snapshot()
			d, cpu, err := synced.run(ctx)
			if err != nil {
				return err
			}
			res.record(counted, d, cpu, tp.snapshot().Sub(before))
		}
		if n, err := synced.count(); err != nil || n != o.messages {
			return fmt.Errorf("after no-change runs mbsync has %d messages, want %d (%v)", n, o.messages, err)
		}
	}
	logf("(b) engine %v, mbsync %v (Sync Pull), %v (Sync PullNew)",
		rep.noChange.engine.median(), rep.noChange.tool.median(), rep.noChange.toolNew.median())
	return nil
}

// benchPOP3 runs (c).
func benchPOP3(ctx context.Context, o options, env *mailEnv, rep *report) error {
	user, err := o.pop3User, error(nil)
	if user == "" {
		if user, err = env.addUser(ctx, "bench-pop3"); err != nil {
			return err
		}
	}
	gen := newGenerator(o.seed+1, user)
	rep.pop3.messages = o.pop3
	rep.pop3.bytes, rep.pop3.attachments = gen.stats(o.pop3)
	if o.pop3User == "" {
		logf("delivering %d messages (%.0f MB) to %s over LMTP", o.pop3, mib(rep.pop3.bytes), user)
		t0 := time.Now()
		if err := deliver(ctx, env.lmtp, user, gen, o.pop3, o.sessions); err != nil {
			return err
		}
		rep.pop3.deliver = time.Since(t0)
	}

	tp, err := startTap(env.pop3Addr, o.latency)
	if err != nil {
		return err
	}
	defer tp.close()
	direct, err := o.timedPort(env.pop3Addr, tp)
	if err != nil {
		return err
	}
	mbox := mailbox(user, env.password)
	dialer := pop3.NewDialer(pop3.Config{})
	ec := engineConfig{BatchSize: o.batch, CycleItems: max(o.cycleItems, o.pop3)}
	for r := range o.runs + 1 {
		counted := r == o.runs
		port := direct
		if counted {
			port = tp.port()
		}
		debug.FreeOSMemory()
		m, err := newMpop(o.mpop, o.work, port, user, env.password)
		if err != nil {
			return err
		}
		before := tp.snapshot()
		d, cpu, err := m.run(ctx)
		if err != nil {
			return err
		}
		rep.pop3.tool.record(counted, d, cpu, tp.snapshot().Sub(before))
		n, err := m.count()
		m.remove()
		if err != nil || n != o.pop3 {
			return fmt.Errorf("mpop fetched %d messages, want %d (%v)", n, o.pop3, err)
		}
		logf("(c) run %d%s: mpop %v", r+1, countedNote(counted), d.Round(time.Millisecond))

		runtime.GC()
		before, cpu0 := tp.snapshot(), selfCPU()
		cpuprofile := ""
		if r == o.runs-1 {
			cpuprofile = o.pop3CPUProfile
		}
		prof := &crmsync.ServerProfile{ID: "bench", Name: "mailbench", Kind: crmsync.ServerPOP3, OwnerID: "admin",
			Incoming: endpoint(port), Outgoing: endpoint(port)}
		er, err := ingest(ctx, dialer, prof, mbox, o.pop3, ec, cpuprofile)
		if err != nil {
			return fmt.Errorf("engine ingest over POP3: %w", err)
		}
		rep.pop3.engine.record(counted, er.elapsed, selfCPU()-cpu0, tp.snapshot().Sub(before))
		if d := er.store.dups.Load(); d != 0 {
			return fmt.Errorf("engine POP3 ingest: the store refused %d duplicates", d)
		}
		rep.pop3.batches = er.store.batches.Load()
		logf("(c) run %d%s: engine %v (%d batches)", r+1, countedNote(counted), er.elapsed.Round(time.Millisecond), rep.pop3.batches)
	}
	return nil
}

// timedPort returns the port the timed runs use: the server's own, or the proxy's with
// -time-through-proxy.
func (o options) timedPort(serverAddr string, tp *tapProc) (int, error) {
	if o.timeThroughProxy {
		return tp.port(), nil
	}
	_, p, err := net.SplitHostPort(serverAddr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

func countedNote(counted bool) string {
	if counted {
		return " (counted, through the proxy)"
	}
	return ""
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
