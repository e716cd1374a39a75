package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// errUnmapped cancels the cycles of a mailbox that was unmapped or taken over.
var errUnmapped = errors.New("syncer: mailbox unmapped")

// errNotApproved fails a cycle of a mailbox whose address is not approved.
var errNotApproved = crmsync.Errorf(crmsync.KindPermanent, "approval", "the mailbox's email address is not approved")

// result is what a cycle's work returns.
type result struct {
	items int
	more  bool // stopped at the item bound with work left: run again at once
	// notBefore holds the next run back (a sending limit that frees at that time).
	notBefore time.Time
	err       error
}

// runCycle runs one claimed mailbox-workload from start to FinishCycle.
func (e *Engine) runCycle(c *crmstore.Claim) {
	start := e.clock.Now()
	info := CycleInfo{MailboxID: c.MailboxID, ProfileID: c.Mailbox.ProfileID, Workload: c.Workload, Due: c.Due, Start: start}
	e.obs.CycleStarted(info)
	if e.log.Enabled(e.workCtx, slog.LevelDebug) {
		e.log.LogAttrs(e.workCtx, slog.LevelDebug, "cycle started", e.cycleAttrs(c, slog.Duration("late", start.Sub(c.Due)))...)
	}

	ctx, cancel := context.WithCancelCause(e.workCtx)
	key := runKey{c.MailboxID, c.Workload}
	e.mu.Lock()
	e.running[key] = &cycle{start: start, cancel: cancel, lease: c.Lease}
	e.mu.Unlock()

	r := e.execute(ctx, c)

	e.mu.Lock()
	delete(e.running, key)
	e.mu.Unlock()
	cause := context.Cause(ctx)
	cancel(nil)
	e.finish(c, info, r, cause)
}

// execute connects under the profile's throttler and runs the workload's work.
func (e *Engine) execute(ctx context.Context, c *crmstore.Claim) result {
	mb, prof := c.Mailbox, c.Profile
	if prof == nil {
		return result{err: crmsync.Errorf(crmsync.KindPermanent, "cycle", "server profile %s not found", mb.ProfileID)}
	}
	if !e.cfg.SkipApproval && mb.Approval != crmsync.ApprovalApproved {
		return result{err: errNotApproved}
	}
	th, err := e.throttler(prof)
	if err != nil {
		return result{err: crmsync.WithKind(crmsync.KindPermanent, "throttle", err)}
	}
	release, err := th.Acquire(ctx, 1)
	if err != nil {
		return result{err: err}
	}
	defer release()
	conn, err := e.cfg.Dialer.Dial(ctx, provider.Target{Profile: prof, Mailbox: mb})
	if err != nil {
		th.Observe(err)
		return result{err: err}
	}
	defer conn.Close()

	var r result
	switch c.Workload {
	case crmsync.Incoming:
		r = e.incoming(ctx, conn, c)
	case crmsync.Outgoing:
		r = e.outgoing(ctx, conn, c)
	case crmsync.ACT:
		r = e.act(ctx, conn, c)
	default:
		r.err = crmsync.Errorf(crmsync.KindPermanent, "cycle", "unknown workload %d", c.Workload)
	}
	th.Observe(r.err)
	return r
}

// finish records the cycle's outcome: success, a retry, a disable, or nothing at all when
// the lease is gone.
func (e *Engine) finish(c *crmstore.Claim, info CycleInfo, r result, cause error) {
	ctx := context.WithoutCancel(e.workCtx)
	end := e.clock.Now()
	st := c.Mailbox.State(c.Workload)
	out := CycleOutcome{End: end, Items: r.items, Err: r.err, Kind: crmsync.KindOf(r.err)}
	defer func() {
		e.obs.CycleFinished(info, out)
		// A next run within the poll interval (a cycle cut short, a resync, a short
		// retry) must not wait for the dispatcher's next poll.
		if !out.Next.IsZero() && out.Next.Sub(e.clock.Now()) < e.cfg.PollInterval {
			e.Wake(c.Workload)
		}
	}()

	switch {
	case errors.Is(cause, crmstore.ErrLeaseLost), errors.Is(r.err, crmstore.ErrLeaseLost), errors.Is(cause, errUnmapped):
		// Another owner holds the mailbox-workload now, or the mailbox is gone:
		// anything written would be stale, so write nothing.
		out.Abandoned = true
		e.log.LogAttrs(ctx, slog.LevelInfo, "cycle lost its lease", e.cycleAttrs(c)...)
		return

	case r.err != nil && e.workCtx.Err() != nil:
		// The engine is stopping and abandoned the cycle: release the lease so it runs
		// again soon, and leave the status as it was. What was committed stays
		// committed; the rest is replayed.
		out.Abandoned = true
		out.Next = end
		err := e.store.FinishCycle(ctx, c.Lease, crmstore.CycleResult{
			At: end, Status: st.Status, Err: st.LastError, ErrKind: st.LastErrorKind,
			Failures: c.State.Failures, Load: c.State.Load, Next: end,
		})
		e.logFinishError(c, err)
		return

	case r.err == nil:
		load := c.State.Load
		if c.Workload == crmsync.ACT {
			load = schedule.UpdateLoad(load, r.items)
		}
		next := e.policy.Next(c.Workload, end, e.runInfo(c, load))
		if r.more {
			next = end
		}
		if r.notBefore.After(next) {
			next = r.notBefore
		}
		out.Next = next
		err := e.store.FinishCycle(ctx, c.Lease, crmstore.CycleResult{
			At: end, Status: crmsync.StatusSuccess, Failures: 0, Load: load, Next: next,
		})
		e.logFinishError(c, err)
		if e.log.Enabled(ctx, slog.LevelDebug) {
			e.log.LogAttrs(ctx, slog.LevelDebug, "cycle done", e.cycleAttrs(c, slog.Int("items", r.items), slog.Time("next", next))...)
		}
		return
	}

	// A failed cycle.
	err := r.err
	if errors.Is(cause, errCycleTimeout) {
		err = fmt.Errorf("%w (after %v): %w", errCycleTimeout, e.cfg.CycleTimeout, err)
	}
	kind := crmsync.KindOf(err)
	out.Kind, out.Err = kind, err
	failures := c.State.Failures + 1
	res := crmstore.CycleResult{
		At: end, Status: crmsync.StatusFailure, Err: err.Error(), ErrKind: kind,
		Failures: failures, Load: c.State.Load,
	}
	var alert *crmsync.Alert
	if kind.Retryable() {
		next, giveUp := e.policy.Retry(end, failures, crmsync.RetryAfter(err), rand.Float64())
		if kind == crmsync.KindCursorExpired {
			res.ResetCursor = true
			if !giveUp {
				next = end // resync at once; the Store refuses duplicates
			}
		}
		if giveUp {
			res.Disable = true
			alert = e.mailboxAlert(c, crmsync.AlertError, kind, fmt.Sprintf(
				"%s for mailbox %s failed %d times in a row and is disabled until Test & Enable passes again; last error: %v",
				c.Workload, c.Mailbox.Address, failures, err))
		} else {
			res.Next = e.notBeforeMinPoll(c, end, next)
			if failures == 1 {
				alert = e.mailboxAlert(c, crmsync.AlertWarning, kind, fmt.Sprintf(
					"%s for mailbox %s failed and will be retried at %s: %v",
					c.Workload, c.Mailbox.Address, res.Next.UTC().Format(time.RFC3339), err))
			}
		}
	} else {
		res.Disable = true
		alert = e.mailboxAlert(c, crmsync.AlertError, kind, fmt.Sprintf(
			"%s for mailbox %s is disabled until Test & Enable passes again: %v", c.Workload, c.Mailbox.Address, err))
	}
	out.Next, out.Disabled = res.Next, res.Disable
	ferr := e.store.FinishCycle(ctx, c.Lease, res)
	e.logFinishError(c, ferr)
	if ferr != nil {
		return
	}
	level := slog.LevelWarn
	if res.Disable {
		level = slog.LevelError
	}
	e.log.LogAttrs(ctx, level, "cycle failed", e.cycleAttrs(c, slog.String("kind", kind.String()),
		slog.Int("failures", failures), slog.Bool("disabled", res.Disable), slog.Any("error", err))...)
	if alert != nil {
		e.raise(ctx, alert)
	}
	e.checkProfile(ctx, c.Profile, end)
}

func (e *Engine) runInfo(c *crmstore.Claim, load float64) schedule.RunInfo {
	info := schedule.RunInfo{Load: load, AlsoIncoming: c.Mailbox.Incoming.Runnable()}
	if c.Profile != nil {
		info.MinInterval = c.Profile.MinPollInterval
	}
	return info
}

// notBeforeMinPoll keeps a retry no sooner than the profile's minimum polling interval.
func (e *Engine) notBeforeMinPoll(c *crmstore.Claim, end, next time.Time) time.Time {
	if c.Profile != nil && c.Profile.MinPollInterval > 0 {
		if earliest := end.Add(c.Profile.MinPollInterval); next.Before(earliest) {
			return earliest
		}
	}
	return next
}

func (e *Engine) logFinishError(c *crmstore.Claim, err error) {
	if err == nil {
		return
	}
	level := slog.LevelError
	if errors.Is(err, crmstore.ErrLeaseLost) {
		level = slog.LevelInfo
	}
	e.log.LogAttrs(context.Background(), level, "recording the cycle failed", e.cycleAttrs(c, slog.Any("error", err))...)
}

func (e *Engine) cycleAttrs(c *crmstore.Claim, extra ...slog.Attr) []slog.Attr {
	return append([]slog.Attr{
		slog.String("mailbox", c.MailboxID), slog.String("workload", c.Workload.String()),
		slog.String("profile", c.Mailbox.ProfileID), slog.Int64("lease", c.Token),
	}, extra...)
}
