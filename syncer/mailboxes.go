package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// PutProfile validates and stores a server profile. A changed connection cap applies to
// connections opened after the call.
func (e *Engine) PutProfile(ctx context.Context, p *crmsync.ServerProfile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if err := e.store.PutProfile(ctx, p); err != nil {
		return fmt.Errorf("syncer: put profile %s: %w", p.ID, err)
	}
	e.mu.Lock()
	if t, ok := e.throttlers[p.ID]; ok {
		if l, ok := t.(*provider.Limiter); !ok || l.Capacity() != p.Connections() {
			delete(e.throttlers, p.ID)
		}
	}
	e.mu.Unlock()
	return nil
}

// MapOptions modify MapMailbox.
type MapOptions struct {
	// TakeOver breaks the mapping of any other mailbox that holds the address or the
	// owner: that mailbox is removed, its synchronization stopped and its sync state
	// cleared. Without it such a conflict is refused with *crmsync.MappingConflictError.
	TakeOver bool
}

// MapMailbox maps mailbox m to its owner: it creates the mailbox, or updates the one with
// m.ID. One user has at most one mailbox and one address belongs to one owner; a conflict
// is refused with a *crmsync.MappingConflictError unless opts.TakeOver is set. It returns
// the mailboxes a take-over displaced.
//
// The engine owns the test and status fields of m's workload states; only their Method
// is taken from m. A new mailbox, or a change of address, profile, credentials or
// delivery method, needs Test & Enable before the affected workloads run again.
func (e *Engine) MapMailbox(ctx context.Context, m *crmsync.Mailbox, opts MapOptions) ([]*crmsync.Mailbox, error) {
	m = m.Clone()
	addr, err := crmsync.NormalizeAddress(m.Address)
	if err == nil {
		m.Address = addr
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if _, err := e.store.Profile(ctx, m.ProfileID); err != nil {
		return nil, fmt.Errorf("syncer: map mailbox %s: profile %s: %w", m.ID, m.ProfileID, err)
	}
	old, err := e.store.Mailbox(ctx, m.ID)
	if err != nil && !errors.Is(err, crmsync.ErrNotFound) {
		return nil, fmt.Errorf("syncer: map mailbox %s: %w", m.ID, err)
	}
	retest := old == nil || old.Address != m.Address || old.ProfileID != m.ProfileID || old.Credentials != m.Credentials
	var unschedule []crmsync.Workload
	for _, w := range crmsync.AllWorkloads() {
		want := m.State(w).Method
		var st crmsync.WorkloadState
		if old != nil {
			st = *old.State(w)
		}
		if retest || st.Method != want {
			st.Test, st.TestedAt, st.TestError = crmsync.TestNotRun, time.Time{}, ""
			unschedule = append(unschedule, w)
		}
		st.Method = want
		*m.State(w) = st
	}
	displaced, err := e.store.MapMailbox(ctx, m, opts.TakeOver)
	if err != nil {
		return nil, fmt.Errorf("syncer: map mailbox %s: %w", m.ID, err)
	}
	for _, w := range unschedule {
		if err := e.store.SetWorkload(ctx, m.ID, w, *m.State(w), time.Time{}); err != nil {
			return displaced, fmt.Errorf("syncer: map mailbox %s: %w", m.ID, err)
		}
	}
	for _, d := range displaced {
		e.cancelMailbox(d.ID, errUnmapped)
		e.log.LogAttrs(ctx, slog.LevelInfo, "mailbox taken over", slog.String("mailbox", d.ID), slog.String("by", m.ID))
		e.raise(ctx, &crmsync.Alert{
			Level: crmsync.AlertInfo, Scope: crmsync.ScopeMailbox, ProfileID: d.ProfileID, MailboxID: d.ID,
			Message:    fmt.Sprintf("mailbox %s of %s was unmapped and its synchronization stopped: mailbox %s of %s took it over", d.Address, d.Owner, m.ID, m.Owner),
			Recipients: []crmsync.Owner{d.Owner},
		})
	}
	return displaced, nil
}

// UnmapMailbox removes a mailbox: its synchronization stops at once and its sync state is
// cleared. Its tracked emails stay.
func (e *Engine) UnmapMailbox(ctx context.Context, id string) error {
	if err := e.store.DeleteMailbox(ctx, id); err != nil {
		return fmt.Errorf("syncer: unmap mailbox %s: %w", id, err)
	}
	e.cancelMailbox(id, errUnmapped)
	return nil
}

// TestResult is the outcome of Test & Enable for one workload.
type TestResult struct {
	Workload crmsync.Workload
	Err      error // nil when the probe passed
}

// TestReport is the outcome of Test & Enable for a mailbox: one result per workload whose
// delivery method is server-side synchronization.
type TestReport struct {
	MailboxID string
	At        time.Time
	Results   []TestResult
}

// Passed reports whether workload w was tested and passed.
func (r *TestReport) Passed(w crmsync.Workload) bool {
	for _, x := range r.Results {
		if x.Workload == w {
			return x.Err == nil
		}
	}
	return false
}

// Err returns the failures joined, or nil when every tested workload passed.
func (r *TestReport) Err() error {
	var errs []error
	for _, x := range r.Results {
		if x.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", x.Workload, x.Err))
		}
	}
	return errors.Join(errs...)
}

// TestAndEnable probes each workload of the mailbox whose delivery method is server-side
// synchronization, for real (connect, log in, a harmless call), and records the result:
// a workload that passed is scheduled to run now, one that failed will not run until a
// later Test & Enable passes. The mailbox must be approved unless Config.SkipApproval is
// set. When incoming email passes and the mailbox has no ProcessEmailAfter yet, it is set
// to now (to the second), so mail received before the mailbox was enabled is not tracked.
//
// The returned error is for a failure to run the test at all (a Store error, an unknown
// mailbox); the report tells each workload's result.
func (e *Engine) TestAndEnable(ctx context.Context, mailboxID string) (*TestReport, error) {
	mb, err := e.store.Mailbox(ctx, mailboxID)
	if err != nil {
		return nil, fmt.Errorf("syncer: test mailbox %s: %w", mailboxID, err)
	}
	prof, err := e.store.Profile(ctx, mb.ProfileID)
	if err != nil {
		return nil, fmt.Errorf("syncer: test mailbox %s: profile %s: %w", mailboxID, mb.ProfileID, err)
	}
	now := e.clock.Now()
	report := &TestReport{MailboxID: mb.ID, At: now}
	var tested []crmsync.Workload
	for _, w := range crmsync.AllWorkloads() {
		if mb.State(w).Method == crmsync.DeliveryServerSideSync {
			tested = append(tested, w)
		}
	}
	results := make(map[crmsync.Workload]error, len(tested))
	switch {
	case len(tested) == 0:
	case !e.cfg.SkipApproval && mb.Approval != crmsync.ApprovalApproved:
		for _, w := range tested {
			results[w] = fmt.Errorf("the email address %s is not approved (approval: %s)", mb.Address, mb.Approval)
		}
	default:
		e.probe(ctx, prof, mb, tested, results)
	}

	if err := results[crmsync.Incoming]; err == nil && mb.Incoming.Method == crmsync.DeliveryServerSideSync && mb.ProcessEmailAfter.IsZero() {
		if _, err := e.store.UpdateMailbox(ctx, mb.ID, func(m *crmsync.Mailbox) error {
			if m.ProcessEmailAfter.IsZero() {
				// Whole seconds: servers date messages to the second (IMAP's
				// INTERNALDATE), so mail that arrives in the same second counts.
				m.ProcessEmailAfter = now.Truncate(time.Second)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("syncer: test mailbox %s: %w", mailboxID, err)
		}
	}
	for _, w := range crmsync.AllWorkloads() {
		st := *mb.State(w)
		var next time.Time
		if st.Method == crmsync.DeliveryServerSideSync {
			err := results[w]
			report.Results = append(report.Results, TestResult{Workload: w, Err: err})
			st.TestedAt = now
			if err == nil {
				st.Test, st.TestError = crmsync.TestPassed, ""
				next = now
			} else {
				st.Test, st.TestError = crmsync.TestFailed, err.Error()
			}
		}
		if err := e.store.SetWorkload(ctx, mb.ID, w, st, next); err != nil {
			return nil, fmt.Errorf("syncer: test mailbox %s: %w", mailboxID, err)
		}
		if !next.IsZero() {
			e.Wake(w)
		}
	}
	if err := report.Err(); err != nil {
		e.raise(ctx, &crmsync.Alert{
			Level: crmsync.AlertError, Scope: crmsync.ScopeMailbox, ProfileID: mb.ProfileID, MailboxID: mb.ID,
			Kind:       crmsync.KindOf(err),
			Message:    fmt.Sprintf("Test & Enable of mailbox %s failed: %v", mb.Address, err),
			Recipients: []crmsync.Owner{mb.Owner},
		})
	}
	e.log.LogAttrs(ctx, slog.LevelInfo, "test and enable", slog.String("mailbox", mb.ID), slog.Any("result", report.Err()))
	return report, nil
}

// probe connects once and runs each workload's Test.
func (e *Engine) probe(ctx context.Context, prof *crmsync.ServerProfile, mb *crmsync.Mailbox, tested []crmsync.Workload, results map[crmsync.Workload]error) {
	fail := func(err error) {
		for _, w := range tested {
			results[w] = err
		}
	}
	th, err := e.throttler(prof)
	if err != nil {
		fail(err)
		return
	}
	release, err := th.Acquire(ctx, 1)
	if err != nil {
		fail(err)
		return
	}
	defer release()
	conn, err := e.cfg.Dialer.Dial(ctx, provider.Target{Profile: prof, Mailbox: mb})
	if err != nil {
		th.Observe(err)
		fail(err)
		return
	}
	defer conn.Close()
	for _, w := range tested {
		results[w] = conn.Test(ctx, w)
		th.Observe(results[w])
	}
}

// SendOptions modify SendEmail.
type SendOptions struct {
	// NoIssue records the email as sent without sending it, as the product does when
	// "issue send" is off.
	NoIssue bool
}

// ErrNotSendable is returned by SendEmail for an email that is not a draft or a failed
// outgoing email.
var ErrNotSendable = errors.New("syncer: email cannot be sent in its status")

// SendEmail is the host's Send request: it moves a Draft (or Failed) outgoing email to
// Pending Send, giving it a Message-ID, so that its mailbox's next outgoing cycle submits
// it. With opts.NoIssue the email is recorded as Sent instead, and nothing is sent.
func (e *Engine) SendEmail(ctx context.Context, emailID string, opts SendOptions) (*crmsync.Email, error) {
	now := e.clock.Now()
	m, err := e.store.UpdateEmail(ctx, emailID, func(m *crmsync.Email) error {
		if m.Direction == 0 {
			m.Direction = crmsync.DirectionOutgoing
		}
		if m.Direction != crmsync.DirectionOutgoing {
			return fmt.Errorf("%w: email %s is incoming", ErrNotSendable, m.ID)
		}
		if m.Status != crmsync.EmailDraft && m.Status != crmsync.EmailFailed {
			return fmt.Errorf("%w: email %s is %s", ErrNotSendable, m.ID, m.Status)
		}
		if m.MessageID == "" {
			m.MessageID = e.cfg.NewMessageID(m)
		}
		if e.cfg.Stamper != nil && !opts.NoIssue {
			if err := e.cfg.Stamper.Stamp(ctx, m); err != nil {
				return err
			}
		}
		m.FailureReason = ""
		m.ModifiedAt = now
		if opts.NoIssue {
			m.Status, m.SentAt = crmsync.EmailSent, now
		} else {
			m.Status = crmsync.EmailPendingSend
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("syncer: send email %s: %w", emailID, err)
	}
	return m, nil
}
