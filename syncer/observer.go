package syncer

import (
	"time"

	"github.com/crmsync/crmsync"
)

// Observer receives the engine's events for metrics. The engine calls it synchronously
// from its workers, so an implementation must be quick and safe for concurrent use. Embed
// NoopObserver so that methods added later do not break an implementation.
type Observer interface {
	// CycleStarted is called when a claimed mailbox-workload starts its cycle.
	CycleStarted(c CycleInfo)
	// CycleFinished is called when a cycle ends, whatever its outcome.
	CycleFinished(c CycleInfo, o CycleOutcome)
	// EmailSent is called when an outgoing email reached Sent.
	EmailSent(mailboxID, emailID string)
	// AlertRaised is called for every alert the engine stores.
	AlertRaised(a *crmsync.Alert)
}

// NoopObserver implements Observer and does nothing; embed it in your own.
type NoopObserver struct{}

// CycleStarted does nothing.
func (NoopObserver) CycleStarted(CycleInfo) {}

// CycleFinished does nothing.
func (NoopObserver) CycleFinished(CycleInfo, CycleOutcome) {}

// EmailSent does nothing.
func (NoopObserver) EmailSent(string, string) {}

// AlertRaised does nothing.
func (NoopObserver) AlertRaised(*crmsync.Alert) {}

// CycleInfo describes a cycle as it starts.
type CycleInfo struct {
	MailboxID string
	ProfileID string
	Workload  crmsync.Workload
	// Due is when the cycle was scheduled, Start when it started: Start−Due is how late.
	Due, Start time.Time
}

// Lateness is how long after its due time the cycle started.
func (c CycleInfo) Lateness() time.Duration { return c.Start.Sub(c.Due) }

// CycleOutcome describes how a cycle ended.
type CycleOutcome struct {
	End time.Time
	// Items counts what the cycle handled: messages tracked, emails sent, items synced.
	Items int
	// Err is the cycle's error, nil on success; Kind its kind.
	Err  error
	Kind crmsync.Kind
	// Next is the next run, zero when the workload was disabled or unmapped.
	Next     time.Time
	Disabled bool
	// Abandoned is true when the engine stopped before the cycle finished.
	Abandoned bool
}
