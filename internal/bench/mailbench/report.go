package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/crmsync/crmsync/internal/testenv"
)

// measure is one tool's runs of one measurement.
type measure struct {
	times []time.Duration
	cpu   []time.Duration // the client's CPU time (user + system)
	cost  testenv.Counts  // what went through the proxy in the last run
}

// record adds a timed run, or sets the counts from the run through the proxy.
func (m *measure) record(counted bool, d, cpu time.Duration, c testenv.Counts) {
	if counted {
		m.cost = c
		return
	}
	m.times = append(m.times, d)
	m.cpu = append(m.cpu, cpu)
}

func (m *measure) median() time.Duration { return median(m.times) }

func (m *measure) medianCPU() time.Duration { return median(m.cpu) }

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// ingestReport is an initial ingest, the Engine's against the other tool's.
type ingestReport struct {
	messages    int
	bytes       int64
	attachments int
	deliver     time.Duration
	batches     int64
	engine      measure
	tool        measure
}

// report collects the results and writes them as Markdown.
type report struct {
	o         options
	env       []string // versions and machine
	loadStart string
	imap      ingestReport
	pop3      ingestReport
	noChange  struct{ engine, tool, toolNew measure }
}

func (r *report) versions(ctx context.Context, o options) error {
	ver := func(name string, args ...string) string {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return name + " (version unknown)"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	r.loadStart = loadAvg()
	r.env = []string{
		fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		"Dovecot " + ver("dovecot", "--version"),
		ver(o.mbsync, "--version"),
		ver(o.mpop, "--version"),
	}
	return nil
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func ratio(engine, tool time.Duration) string {
	if engine <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", tool.Seconds()/engine.Seconds())
}

func rate(n int, d time.Duration) string {
	return fmt.Sprintf("%.0f msg/s", float64(n)/d.Seconds())
}

func perMsg(v int64, n int) string {
	if n == 0 {
		return "–"
	}
	x := float64(v) / float64(n)
	if x < 10 {
		return fmt.Sprintf("%.3f", x)
	}
	return fmt.Sprintf("%.0f", x)
}

func (r *report) write(w io.Writer) {
	var b bytes.Buffer
	o := r.o
	fmt.Fprintf(&b, "Environment: %s. Load average %s at the start, %s at the end.\n\n", strings.Join(r.env, "; "), r.loadStart, loadAvg())
	if r.imap.messages > 0 {
		fmt.Fprintf(&b, "Mailbox: %d generated messages, %.0f MB (%d with an attachment of up to 200 KB; seed %d), delivered over LMTP in %s.",
			r.imap.messages, mib(r.imap.bytes), r.imap.attachments, o.seed, ms(r.imap.deliver))
	}
	if r.pop3.messages > 0 {
		fmt.Fprintf(&b, " POP3 maildrop: %d messages, %.0f MB (seed %d).", r.pop3.messages, mib(r.pop3.bytes), o.seed+1)
	}
	fmt.Fprintf(&b, "\n\nEngine: syncer.Engine on memstore with provider/imap (and provider/pop3 for (c)), BatchSize %d, CycleItems %d "+
		"(one cycle reads the whole mailbox), the default AcceptScreener. mbsync (Sync Pull, FSync no) and mpop (keep on) write Maildirs on %s. "+
		"Both sides speak plaintext IMAP/POP3 to Dovecot on loopback%s. "+
		"Times are medians of %d ingest runs and %d no-change runs, the tools taking turns (reference tool first)%s. "+
		"CPU is the client's user+system time; Dovecot's is not counted.\n\n",
		o.batch, o.cycleItems, o.work, latencyNote(o.latency), o.runs, o.noChange, proxyNote(o.timeThroughProxy))

	b.WriteString("| measurement | crmsync Engine | reference tool | speed ratio (tool time ÷ Engine time; > 1: the Engine is faster) |\n")
	b.WriteString("|---|---|---|---|\n")
	ingestRow := func(what string, ir *ingestReport, tool string) {
		e, t := ir.engine.median(), ir.tool.median()
		fmt.Fprintf(&b, "| %s | %s, %s, CPU %s | %s: %s, %s, CPU %s | %s |\n", what,
			ms(e), rate(ir.messages, e), ms(ir.engine.medianCPU()),
			tool, ms(t), rate(ir.messages, t), ms(ir.tool.medianCPU()), ratio(e, t))
	}
	if r.imap.messages > 0 {
		ingestRow(fmt.Sprintf("(a) initial ingest of %d messages over IMAP", r.imap.messages), &r.imap, "mbsync")
		e, t := r.noChange.engine.median(), r.noChange.tool.median()
		fmt.Fprintf(&b, "| (b) no-change cycle on %d messages | %s | mbsync (Sync Pull): %s, CPU %s | %s |\n",
			r.imap.messages, ms(e), ms(t), ms(r.noChange.tool.medianCPU()), ratio(e, t))
		t = r.noChange.toolNew.median()
		fmt.Fprintf(&b, "| (b) the same, mbsync syncing new messages only | %s | mbsync (Sync PullNew): %s, CPU %s | %s |\n",
			ms(e), ms(t), ms(r.noChange.toolNew.medianCPU()), ratio(e, t))
	}
	if r.pop3.messages > 0 {
		ingestRow(fmt.Sprintf("(c) initial ingest of %d messages over POP3", r.pop3.messages), &r.pop3, "mpop")
	}

	b.WriteString("\nEvery run, in seconds (in order):\n\n")
	runs := func(name string, m *measure) {
		var l []string
		for _, d := range m.times {
			l = append(l, fmt.Sprintf("%.3f", d.Seconds()))
		}
		fmt.Fprintf(&b, "- %s: %s\n", name, strings.Join(l, ", "))
	}
	if r.imap.messages > 0 {
		runs("(a) Engine", &r.imap.engine)
		runs("(a) mbsync", &r.imap.tool)
		runs("(b) Engine", &r.noChange.engine)
		runs("(b) mbsync, Sync Pull", &r.noChange.tool)
		runs("(b) mbsync, Sync PullNew", &r.noChange.toolNew)
	}
	if r.pop3.messages > 0 {
		runs("(c) Engine", &r.pop3.engine)
		runs("(c) mpop", &r.pop3.tool)
	}

	b.WriteString("\nWhat went over the wire, counted at the proxy (a round trip is a turn of the client after the server spoke, so commands sent together count once; " +
		"on loopback a pipelined command sometimes meets the answer to the one before and counts as a turn):\n\n")
	b.WriteString("| run | bytes from the server / message | bytes to the server / message | round trips / message | commands / message | round trips |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	row := func(name string, c testenv.Counts, n int) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d |\n", name, perMsg(c.Down, n), perMsg(c.Up, n), perMsg(c.Turns, n), perMsg(c.Lines, n), c.Turns)
	}
	if r.imap.messages > 0 {
		row(fmt.Sprintf("(a) Engine, IMAP (%d batches)", r.imap.batches), r.imap.engine.cost, r.imap.messages)
		row("(a) mbsync", r.imap.tool.cost, r.imap.messages)
	}
	if r.pop3.messages > 0 {
		row(fmt.Sprintf("(c) Engine, POP3 (%d batches)", r.pop3.batches), r.pop3.engine.cost, r.pop3.messages)
		row("(c) mpop", r.pop3.tool.cost, r.pop3.messages)
	}
	if r.imap.messages > 0 {
		b.WriteString("\n| no-change run | bytes from the server | bytes to the server | round trips | commands |\n|---|---|---|---|---|\n")
		nc := func(name string, c testenv.Counts) {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", name, c.Down, c.Up, c.Turns, c.Lines)
		}
		nc("(b) Engine: a fresh connection, FetchIncoming with the saved cursor, Close", r.noChange.engine.cost)
		nc("(b) mbsync, Sync Pull", r.noChange.tool.cost)
		nc("(b) mbsync, Sync PullNew", r.noChange.toolNew.cost)
	}
	w.Write(b.Bytes())
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func proxyNote(through bool) string {
	if through {
		return ", all through the counting TCP proxy (a process of its own)"
	}
	return "; the timed runs go straight to the server, and one more run of each tool goes through the counting TCP proxy (a process of its own) for the bytes and round trips"
}

func latencyNote(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(", which adds %v to every answer of the server (a network round trip)", d)
}
