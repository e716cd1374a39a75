package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
)

// mailboxAlert builds an alert about the claim's mailbox, seen by its owner.
func (e *Engine) mailboxAlert(c *crmstore.Claim, level crmsync.AlertLevel, kind crmsync.Kind, msg string) *crmsync.Alert {
	return &crmsync.Alert{
		Level: level, Scope: crmsync.ScopeMailbox, ProfileID: c.Mailbox.ProfileID, MailboxID: c.MailboxID,
		Workload: c.Workload, Kind: kind, Message: msg, Recipients: []crmsync.Owner{c.Mailbox.Owner},
	}
}

// raise stores an alert and tells the observer. A failure to store it is logged: alerts
// must not fail a cycle.
func (e *Engine) raise(ctx context.Context, a *crmsync.Alert) {
	if a.At.IsZero() {
		a.At = e.clock.Now()
	}
	if err := e.store.AddAlert(ctx, a); err != nil {
		e.log.LogAttrs(ctx, slog.LevelError, "storing an alert failed", slog.String("mailbox", a.MailboxID), slog.Any("error", err))
		return
	}
	e.obs.AlertRaised(a)
}

// checkProfile raises a profile alert when more than ProfileAlertShare of the profile's
// mailboxes failed within ProfileAlertWindow: at most one per window, and it looks at the
// Store at most once a minute per profile, so a server outage does not turn every failed
// cycle into a scan.
func (e *Engine) checkProfile(ctx context.Context, p *crmsync.ServerProfile, now time.Time) {
	if p == nil {
		return
	}
	window := e.cfg.ProfileAlertWindow
	e.mu.Lock()
	last, ok := e.profCheck[p.ID]
	if ok && now.Sub(last) < time.Minute {
		e.mu.Unlock()
		return
	}
	e.profCheck[p.ID] = now
	e.mu.Unlock()

	since := now.Add(-window)
	h, err := e.store.ProfileHealth(ctx, p.ID, since)
	if err != nil || h.Mailboxes == 0 || float64(h.Failing) <= e.cfg.ProfileAlertShare*float64(h.Mailboxes) {
		return
	}
	recent, err := e.store.ListAlerts(ctx, crmstore.AlertQuery{ProfileID: p.ID, Scope: crmsync.ScopeProfile, Since: since, Limit: 1})
	if err != nil || len(recent) > 0 {
		return
	}
	recipients := []crmsync.Owner{{Kind: crmsync.OwnerUser, ID: p.OwnerID}}
	mbs, err := e.store.ListMailboxes(ctx, crmstore.MailboxQuery{ProfileID: p.ID})
	if err == nil {
		for _, m := range mbs {
			if failedSince(m, since) {
				recipients = append(recipients, m.Owner)
			}
		}
	}
	e.raise(ctx, &crmsync.Alert{
		Level: crmsync.AlertError, Scope: crmsync.ScopeProfile, ProfileID: p.ID,
		Message: fmt.Sprintf("%d of the %d mailboxes of server profile %s failed within the last %v: check the server and the profile",
			h.Failing, h.Mailboxes, p.Name, window),
		Recipients: recipients,
	})
}

func failedSince(m *crmsync.Mailbox, since time.Time) bool {
	for _, w := range crmsync.AllWorkloads() {
		st := m.State(w)
		if st.Status == crmsync.StatusFailure && !st.StatusAt.Before(since) {
			return true
		}
	}
	return false
}
