// Package crmstore defines the Store: the host's persistence of everything the engine
// reads and writes. A host implements Store over its own database (or uses
// crmstore/sqlstore, or crmstore/memstore in tests) and proves it with
// crmstore/storetest.Run, the conformance suite.
//
// The Store, not the engine, keeps the promises that survive a crash:
//   - tracking is idempotent: a second incoming email with the same ProviderID or the
//     same MessageID in one mailbox is refused as a duplicate, never stored twice;
//   - the emails an incoming cycle tracks and the cursor after them are committed in one
//     call (TrackIncoming), all or nothing;
//   - a mailbox-workload runs under a lease: ClaimDue hands each due mailbox-workload to
//     one owner until the lease expires, and every write of a cycle carries the Lease, so
//     a writer that lost its lease is refused with ErrLeaseLost (a fencing token);
//   - one owner has at most one mailbox, and one address (case-insensitive) belongs to
//     at most one mailbox.
package crmstore

import (
	"context"
	"errors"
	"time"

	"github.com/crmsync/crmsync"
)

// Store is the host's persistence. Every method is safe for concurrent use. Methods that
// return records return copies the caller may change. A missing record is an error
// wrapping crmsync.ErrNotFound.
type Store interface {
	ProfileStore
	MailboxStore
	ScheduleStore
	EmailStore
	ItemStore
	AlertStore
}

// ErrLeaseLost is returned by a write that carries a lease its holder no longer has: the
// lease expired and another owner claimed the mailbox-workload, or the mailbox was
// unmapped. The cycle must stop without retrying the write.
var ErrLeaseLost = errors.New("crmstore: lease lost")

// ProfileStore keeps server profiles.
type ProfileStore interface {
	// PutProfile inserts or replaces the profile with p.ID.
	PutProfile(ctx context.Context, p *crmsync.ServerProfile) error
	// Profile returns the profile with this id.
	Profile(ctx context.Context, id string) (*crmsync.ServerProfile, error)
}

// MailboxStore keeps mailboxes and enforces the mapping rules.
type MailboxStore interface {
	// MapMailbox inserts mailbox m, or replaces the one with m.ID, keeping its
	// scheduling state. It enforces one mailbox per owner and one owner per address:
	// when another mailbox holds m.Address or m.Owner it returns a
	// *crmsync.MappingConflictError, unless takeOver is true, in which case those
	// mailboxes are deleted (see DeleteMailbox) in the same step and returned.
	// The address is stored lower-cased. m must Validate.
	MapMailbox(ctx context.Context, m *crmsync.Mailbox, takeOver bool) (displaced []*crmsync.Mailbox, err error)
	// Mailbox returns the mailbox with this id.
	Mailbox(ctx context.Context, id string) (*crmsync.Mailbox, error)
	// MailboxByAddress returns the mailbox holding address (compared case-insensitively).
	MailboxByAddress(ctx context.Context, address string) (*crmsync.Mailbox, error)
	// UpdateMailbox applies fn to the mailbox with this id and saves the result, with
	// no other write to that mailbox in between. fn may not change ID, Address, Owner
	// or the workload states (those go through MapMailbox and SetWorkload); the store
	// returns an error if it does. An error from fn aborts the update and is returned.
	UpdateMailbox(ctx context.Context, id string, fn func(*crmsync.Mailbox) error) (*crmsync.Mailbox, error)
	// DeleteMailbox removes the mailbox, its schedule, leases and sync state (cursors).
	// Its emails, items and alerts stay. A held lease is lost.
	DeleteMailbox(ctx context.Context, id string) error
	// ListMailboxes returns mailboxes ordered by ID.
	ListMailboxes(ctx context.Context, q MailboxQuery) ([]*crmsync.Mailbox, error)
	// ProfileHealth counts the profile's mailboxes, and those with a workload whose
	// last status is Failure set at or after since.
	ProfileHealth(ctx context.Context, profileID string, since time.Time) (ProfileHealth, error)
}

// MailboxQuery selects mailboxes. Zero fields select everything.
type MailboxQuery struct {
	ProfileID string
	AfterID   string // for paging: only IDs greater than this
	Limit     int    // 0: no limit
}

// ProfileHealth is the failure count behind the profile alert.
type ProfileHealth struct {
	Mailboxes int
	Failing   int
}

// ScheduleStore keeps each mailbox-workload's schedule, lease and sync state.
type ScheduleStore interface {
	// SetWorkload sets the state of workload w of the mailbox and schedules its next
	// run at next, in one step. A zero next unschedules it: ClaimDue will not return it.
	// It does not touch a held lease or the cursor.
	SetWorkload(ctx context.Context, mailboxID string, w crmsync.Workload, st crmsync.WorkloadState, next time.Time) error
	// ClaimDue leases up to q.Limit mailbox-workloads of q.Workload whose next run is at
	// or before q.Now and that no one holds (or whose lease expired), earliest due
	// first, to q.Owner until q.Now+q.LeaseFor. Only runnable workloads are claimed
	// (crmsync.WorkloadState.Runnable). Each Claim carries a new fencing token.
	ClaimDue(ctx context.Context, q ClaimQuery) ([]*Claim, error)
	// NextDue returns the earliest next run of workload w among scheduled
	// mailbox-workloads that no one holds, and false if there is none.
	NextDue(ctx context.Context, w crmsync.Workload) (time.Time, bool, error)
	// RenewLease extends a held lease to until. ErrLeaseLost if it is no longer held.
	RenewLease(ctx context.Context, l Lease, until time.Time) error
	// FinishCycle records a cycle's outcome and releases the lease: the workload's
	// status, the sync state, and the next run. A workload that is no longer runnable
	// (disabled while the cycle ran) stays unscheduled whatever r.Next says.
	// ErrLeaseLost if the lease is not held.
	FinishCycle(ctx context.Context, l Lease, r CycleResult) error
}

// ClaimQuery asks for due mailbox-workloads.
type ClaimQuery struct {
	Workload crmsync.Workload
	Owner    string // the claiming engine
	// Now is the claimer's time. A store with an authoritative clock (a shared
	// database) may use its own instead, for due times and lease expiry alike.
	Now      time.Time
	LeaseFor time.Duration
	Limit    int
}

// Lease is a held claim on one mailbox-workload. Token increases with every claim of that
// mailbox-workload, so a stale holder is told apart from the current one.
type Lease struct {
	MailboxID string
	Workload  crmsync.Workload
	Owner     string
	Token     int64
	Expires   time.Time
}

// Claim is a leased mailbox-workload and what its cycle needs to start.
type Claim struct {
	Lease
	// Due is when the run was scheduled; the engine measures lateness from it.
	Due     time.Time
	State   SyncState
	Mailbox *crmsync.Mailbox
	Profile *crmsync.ServerProfile
}

// SyncState is what a mailbox-workload carries from one cycle to the next.
type SyncState struct {
	// Cursor is the provider's opaque position; nil before the first commit.
	Cursor []byte
	// Failures counts failed cycles in a row; zero after a success.
	Failures int
	// Load is the moving average of items per cycle (schedule.UpdateLoad).
	Load float64
}

// CycleResult is what FinishCycle records.
type CycleResult struct {
	At     time.Time
	Status crmsync.SyncStatus
	// Err and ErrKind describe a failed cycle.
	Err     string
	ErrKind crmsync.Kind
	// Failures and Load replace the sync state's.
	Failures int
	Load     float64
	// Next is the next run; zero unschedules the workload.
	Next time.Time
	// Disable marks the workload's Test & Enable as failed with Err: it will not run
	// again until Test & Enable passes.
	Disable bool
	// ResetCursor clears the cursor, so the next cycle starts over.
	ResetCursor bool
}

// EmailStore keeps CRM email activities.
type EmailStore interface {
	// CreateEmail stores a new email (a draft, or one the host puts in Pending Send),
	// assigning e.ID if it is empty and setting CreatedAt and ModifiedAt if zero.
	CreateEmail(ctx context.Context, e *crmsync.Email) error
	// Email returns the email with this id.
	Email(ctx context.Context, id string) (*crmsync.Email, error)
	// UpdateEmail applies fn to the email with this id and saves it, with no other
	// write to that email in between.
	UpdateEmail(ctx context.Context, id string, fn func(*crmsync.Email) error) (*crmsync.Email, error)
	// ListEmails returns emails ordered by CreatedAt, then ID.
	ListEmails(ctx context.Context, q EmailQuery) ([]*crmsync.Email, error)
	// EmailsByMessageID returns the emails of any mailbox whose MessageID is one of ids.
	EmailsByMessageID(ctx context.Context, ids []string) ([]*crmsync.Email, error)

	// TrackIncoming stores the emails of one incoming batch, skipping each one whose
	// ProviderID or MessageID (when not empty) an email of the same mailbox already
	// has, and saves cursor as the incoming workload's cursor: all in one step. The
	// emails get IDs, and their position in the result tells which were new.
	// ErrLeaseLost (and nothing written) if l is not held. The emails are handed over:
	// the store may keep their attachments' contents (the byte slices) rather than
	// copy them, and the caller does not change them afterwards.
	TrackIncoming(ctx context.Context, l Lease, emails []*crmsync.Email, cursor []byte) (TrackResult, error)

	// ClaimOutgoing returns up to limit emails of the lease's mailbox that are in
	// Pending Send or Sending, oldest first. Pending Send ones are moved to Sending
	// with DeliveryAttempts incremented, and given newMessageID(e) as MessageID when
	// they have none, in the same step. Ones already in Sending come back with
	// Unknown set: an earlier attempt's outcome is unknown.
	ClaimOutgoing(ctx context.Context, l Lease, limit int, newMessageID func(*crmsync.Email) string) ([]OutgoingEmail, error)
	// FinishSend records the outcome of one send: Status Sent (with SentAt), Failed
	// (with Reason), Pending Send (not sent, try later) or Sending (outcome unknown,
	// with Reason); Attempt true counts one more delivery attempt.
	FinishSend(ctx context.Context, l Lease, id string, r SendResult) error
}

// EmailQuery selects emails. Zero fields select everything.
type EmailQuery struct {
	MailboxID string
	Status    crmsync.EmailStatus
	Direction crmsync.Direction
	Limit     int
}

// TrackResult tells what TrackIncoming did with each email, in order.
type TrackResult struct {
	// IDs holds the new email's ID, or "" for a duplicate.
	IDs        []string
	Tracked    int
	Duplicates int
}

// OutgoingEmail is one email claimed for sending.
type OutgoingEmail struct {
	Email *crmsync.Email
	// Unknown is true when the email was already in Sending: an earlier attempt may
	// have reached the server, so the engine looks for it in Sent Items first.
	Unknown bool
}

// SendResult is what FinishSend records.
type SendResult struct {
	Status  crmsync.EmailStatus
	Reason  string
	SentAt  time.Time
	Attempt bool
	At      time.Time // modification time
}

// ItemStore keeps appointments, contacts and tasks linked to mailboxes.
type ItemStore interface {
	// CommitItems upserts items by (mailbox, kind, ProviderID), removes those with
	// Deleted set, and saves cursor as the ACT workload's cursor: all in one step.
	// ErrLeaseLost (and nothing written) if l is not held.
	CommitItems(ctx context.Context, l Lease, items []crmsync.Item, cursor []byte) error
	// Items returns the mailbox's items of kind, ordered by ProviderID.
	Items(ctx context.Context, mailboxID string, kind crmsync.ItemKind) ([]crmsync.Item, error)
}

// AlertStore keeps alerts.
type AlertStore interface {
	// AddAlert stores a, assigning a.ID if it is empty.
	AddAlert(ctx context.Context, a *crmsync.Alert) error
	// ListAlerts returns alerts ordered by At, then ID.
	ListAlerts(ctx context.Context, q AlertQuery) ([]*crmsync.Alert, error)
}

// AlertQuery selects alerts. Zero fields select everything.
type AlertQuery struct {
	ProfileID string
	MailboxID string
	Scope     crmsync.AlertScope
	Since     time.Time // at or after
	Limit     int
}
