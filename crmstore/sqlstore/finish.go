package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// Group commit of FinishCycle on PostgreSQL. An engine's workers end their cycles at
// the same time, each with one FinishCycle, and a statement's round trip and commit
// cost more than the row it changes. So the calls that arrive while one is running
// wait for it, and then go to the database together: one UPDATE … FROM (VALUES …) for
// all of them, whose RETURNING tells which leases were still held. No goroutine runs
// in the background: one of the callers (the leader) runs the statement for the others
// and, once its own call is done, hands the lead to the next caller waiting.

// maxFinishBatch bounds the rows of one statement (14 parameters each).
const maxFinishBatch = 256

// finishCols is the number of parameters of one call in a group statement.
const finishCols = 14

// finishFlushTimeout bounds a group statement, which runs whatever happens to the
// contexts of the calls it serves.
const finishFlushTimeout = time.Minute

// finishGroup gathers the FinishCycle calls waiting for the database.
type finishGroup struct {
	mu       sync.Mutex
	pending  []*finishCall
	flushing bool // a leader is running a statement
}

// finishCall is one FinishCycle call.
type finishCall struct {
	l crmstore.Lease
	r crmstore.CycleResult
	// ready carries true when the call is done (err is its result), or false when its
	// caller is to lead the next statement.
	ready chan bool
	done  bool
	err   error
}

// finishGrouped records a cycle's outcome together with the calls made at the same time.
func (s *Store) finishGrouped(ctx context.Context, l crmstore.Lease, r crmstore.CycleResult) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &finishCall{l: l, r: r, ready: make(chan bool, 1)}
	g := &s.finish
	g.mu.Lock()
	g.pending = append(g.pending, c)
	lead := !g.flushing
	g.flushing = true
	g.mu.Unlock()
	if !lead {
		if done := <-c.ready; done {
			return c.err
		}
		// Promoted: lead from here.
	}
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishFlushTimeout)
	defer cancel()
	for {
		g.mu.Lock()
		batch := g.take()
		g.mu.Unlock()
		s.flushFinish(flushCtx, batch)
		if !c.done {
			continue // a call for the same lease went first; this one is next
		}
		g.mu.Lock()
		if len(g.pending) == 0 {
			g.flushing = false
		} else {
			g.pending[0].ready <- false // the first one waiting leads next
		}
		g.mu.Unlock()
		return c.err
	}
}

// take removes from pending the calls of the next statement: at most maxFinishBatch,
// and at most one per mailbox-workload (a second call for one lease must see the first
// one's outcome, as it would one after the other). g.mu is held.
func (g *finishGroup) take() []*finishCall {
	type row struct {
		mailbox string
		w       crmsync.Workload
	}
	seen := make(map[row]bool, len(g.pending))
	var batch, rest []*finishCall
	for _, c := range g.pending {
		k := row{c.l.MailboxID, c.l.Workload}
		if seen[k] || len(batch) == maxFinishBatch {
			rest = append(rest, c)
			continue
		}
		seen[k] = true
		batch = append(batch, c)
	}
	g.pending = rest
	return batch
}

// finishValuesSQL is the group statement for rows calls; see finishCycleQuery for
// what each column does.
func (s *Store) finishValuesSQL(rows int) string {
	// The first row's casts give the columns their types.
	first := "(CAST(? AS TEXT), CAST(? AS SMALLINT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS SMALLINT), " +
		"CAST(? AS TIMESTAMPTZ), CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION), CAST(? AS BOOLEAN), CAST(? AS TEXT), " +
		"CAST(? AS SMALLINT), CAST(? AS BOOLEAN), CAST(? AS BOOLEAN), CAST(? AS TIMESTAMPTZ))"
	var b strings.Builder
	b.WriteString(`UPDATE mailbox_workloads AS w SET status = v.status, status_at = v.at, failures = v.failures, load = v.load,
	lease_owner = NULL, lease_expires = NULL,
	last_error = CASE WHEN v.set_err THEN v.err ELSE w.last_error END,
	last_error_kind = CASE WHEN v.set_err THEN v.err_kind ELSE w.last_error_kind END,
	cursor = CASE WHEN v.reset THEN NULL ELSE w.cursor END,
	test = CASE WHEN v.disable THEN `)
	fmt.Fprintf(&b, "%d", crmsync.TestFailed)
	b.WriteString(` ELSE w.test END,
	tested_at = CASE WHEN v.disable THEN v.at ELSE w.tested_at END,
	test_error = CASE WHEN v.disable THEN v.err ELSE w.test_error END,
	next_run = CASE WHEN NOT v.disable AND w.`)
	b.WriteString(strings.ReplaceAll(runnableState, " AND ", " AND w."))
	b.WriteString(` THEN v.next END
FROM (VALUES `)
	b.WriteString(first)
	group := ", (" + placeholders(finishCols) + ")"
	for range rows - 1 {
		b.WriteString(group)
	}
	b.WriteString(`) AS v (mailbox_id, workload, owner, token, status, at, failures, load, set_err, err, err_kind, reset, disable, next)
WHERE w.mailbox_id = v.mailbox_id AND w.workload = v.workload AND w.lease_owner = v.owner AND w.lease_token = v.token
RETURNING w.mailbox_id, w.workload`)
	return s.q(b.String())
}

// flushFinish runs one group statement for batch and hands each call its result.
func (s *Store) flushFinish(ctx context.Context, batch []*finishCall) {
	args := make([]any, 0, finishCols*len(batch))
	for _, c := range batch {
		r := c.r
		setErr := r.Status == crmsync.StatusFailure || r.Err != ""
		args = append(args, c.l.MailboxID, int(c.l.Workload), c.l.Owner, c.l.Token, int(r.Status),
			s.ts(r.At), r.Failures, r.Load, setErr, r.Err,
			int(r.ErrKind), r.ResetCursor, r.Disable, s.nullTime(r.Next))
	}
	type row struct {
		mailbox string
		w       crmsync.Workload
	}
	held := make(map[row]bool, len(batch))
	err := func() error {
		rows, err := s.wdb.QueryContext(ctx, s.finishValuesSQL(len(batch)), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k row
			if err := rows.Scan(&k.mailbox, &k.w); err != nil {
				return err
			}
			held[k] = true
		}
		return rows.Err()
	}()
	for _, c := range batch {
		switch {
		case err != nil:
			c.err = fmt.Errorf("sqlstore: finish %v cycle of mailbox %s: %w", c.l.Workload, c.l.MailboxID, err)
		case !held[row{c.l.MailboxID, c.l.Workload}]:
			c.err = leaseLost(c.l)
		}
		c.done = true
		c.ready <- true
	}
}
