// Package provider defines what a connection to a mail server can do, in one small base
// interface and optional capabilities found by type assertion, the way net/http finds a
// Flusher: a POP3 connection is an IncomingMail and an OutgoingMail, a Graph connection is
// all of them and an ItemSync too. The engine asks for a capability only where it needs
// it, so a provider implements what its server can do and nothing more.
//
// Every error a provider returns is classified (see crmsync.KindOf): the helpers in this
// package turn network, TLS and HTTP failures into *crmsync.Error values at the
// provider's boundary. Sub-packages implement providers for real servers;
// provider/providertest holds a scriptable fake and the conformance suite they all run.
package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/schedule"
)

// Provider is one open connection (or session) to a mailbox's server. The engine opens
// one per cycle through a Dialer, uses it from one goroutine, and closes it.
type Provider interface {
	// Test is the Test & Enable probe for workload w: connect, log in and make a
	// harmless call. A workload the server cannot do returns an error wrapping
	// crmsync.ErrNotSupported with a message that says so.
	Test(ctx context.Context, w crmsync.Workload) error
	// Close ends the connection. It is safe to call more than once.
	Close() error
}

// Target is what a Dialer needs to open a connection for one mailbox.
type Target struct {
	Profile *crmsync.ServerProfile
	Mailbox *crmsync.Mailbox
}

// Credentials returns the credentials to use: the profile's or the mailbox's, as the
// profile's CredentialSource says.
func (t Target) Credentials() crmsync.Credentials {
	if t.Profile != nil && t.Profile.CredentialSource == crmsync.CredentialsFromProfile {
		return t.Profile.Credentials
	}
	if t.Mailbox == nil {
		return crmsync.Credentials{}
	}
	return t.Mailbox.Credentials
}

// Dialer opens provider connections. Errors are classified like every provider error.
type Dialer interface {
	Dial(ctx context.Context, t Target) (Provider, error)
}

// DialerFunc adapts a function to a Dialer.
type DialerFunc func(ctx context.Context, t Target) (Provider, error)

// Dial calls f.
func (f DialerFunc) Dial(ctx context.Context, t Target) (Provider, error) { return f(ctx, t) }

// Mux is a Dialer that routes each target to the Dialer for its profile's server kind.
type Mux map[crmsync.ServerKind]Dialer

// Dial routes t by t.Profile.Kind; an unknown kind is a permanent error.
func (m Mux) Dial(ctx context.Context, t Target) (Provider, error) {
	d, ok := m[t.Profile.Kind]
	if !ok {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "dial", "no provider for server kind %s: %w", t.Profile.Kind, crmsync.ErrNotSupported)
	}
	return d.Dial(ctx, t)
}

// NewThrottler implements ThrottlerMaker: it asks the Dialer for the profile's kind when
// that Dialer makes throttlers of its own (so a Mux does not hide a provider's limits),
// and otherwise returns a Limiter with the profile's connection cap.
func (m Mux) NewThrottler(p *crmsync.ServerProfile, clock schedule.Clock) Throttler {
	if tm, ok := m[p.Kind].(ThrottlerMaker); ok {
		return tm.NewThrottler(p, clock)
	}
	l, err := NewLimiter(LimiterConfig{Capacity: p.Connections(), Clock: clock})
	if err != nil {
		l, _ = NewLimiter(LimiterConfig{Capacity: crmsync.DefaultMaxConnections, Clock: clock})
	}
	return l
}

// ItemRef names one message or item at the provider.
type ItemRef struct {
	Folder string
	ID     string // the provider identity, as in crmsync.Email.ProviderID
}

// String returns "folder/id".
func (r ItemRef) String() string { return r.Folder + "/" + r.ID }

// IncomingMail is a provider that can read incoming email.
type IncomingMail interface {
	// FetchIncoming returns the messages that arrived after req.Cursor, headers first:
	// it calls req.Screen with the new messages' headers and fetches the bodies of the
	// accepted ones only. The batch's Cursor covers every message it looked at,
	// screened out or not; the engine commits it with the tracked emails.
	FetchIncoming(ctx context.Context, req FetchRequest) (*Batch, error)
}

// ScreenFunc decides, from headers only, which messages to track: it returns one verdict
// per email, true to fetch the body and track it. The emails carry headers, identity,
// folder and size, but no body or attachments.
type ScreenFunc func(ctx context.Context, headers []*crmsync.Email) ([]bool, error)

// FetchRequest asks for the next batch of incoming email.
type FetchRequest struct {
	// Cursor is the opaque position the last committed batch returned; nil on the first
	// cycle or after a cursor expired.
	Cursor []byte
	// Since is the effective start date: messages received before it are not looked at.
	Since time.Time
	// Max bounds the number of messages the batch returns (screened in or out); zero
	// means the provider's own default. More is set when messages remain.
	Max int
	// Screen decides which messages to fetch in full; nil accepts all.
	Screen ScreenFunc
	// Folders are tracked folders to read besides the inbox.
	Folders []string
	// AttachmentLimit skips attachments larger than this many bytes (0: no limit).
	AttachmentLimit int64
}

// Batch is what one FetchIncoming call returns.
type Batch struct {
	// Emails are the accepted messages, parsed in full, each with ProviderID and Folder.
	Emails []*crmsync.Email
	// Failed are accepted messages that could not be read or parsed.
	Failed []FailedItem
	// Cursor is the position after this batch.
	Cursor []byte
	// More is true when messages remain after this batch.
	More bool
}

// FailedItem is a message that could not be fetched or parsed.
type FailedItem struct {
	Ref       ItemRef
	MessageID string // when the headers gave one
	Err       error
}

// FolderMover is a provider that can move a message, e.g. to the Undeliverable folder.
type FolderMover interface {
	// MoveToFolder moves the message to folder, creating the folder if needed.
	MoveToFolder(ctx context.Context, ref ItemRef, folder string) error
}

// OutgoingMail is a provider that can send email.
type OutgoingMail interface {
	// Send submits m, which has a MessageID, and copies it to Sent Items unless the
	// profile turned that off. An error of a retryable kind leaves the outcome
	// unknown: the engine calls FindSent before it sends again.
	Send(ctx context.Context, m *crmsync.Email) (SendReceipt, error)
	// FindSent reports whether a message with this Message-ID (no angle brackets) is in
	// Sent Items or the provider's sent log: the duplicate-send guard.
	FindSent(ctx context.Context, messageID string) (bool, error)
}

// SendReceipt describes an accepted submission.
type SendReceipt struct {
	MessageID string
	SentAt    time.Time
	// Copied is true when a copy was saved to Sent Items.
	Copied bool
}

// ItemSync is a provider that syncs appointments, contacts and tasks.
type ItemSync interface {
	// Changes returns the items of kind that changed after cursor (all of them when
	// cursor is nil), deletions as items with Deleted set, and the next cursor.
	Changes(ctx context.Context, kind crmsync.ItemKind, cursor []byte) (*ItemChanges, error)
	// Apply creates, updates or deletes items in the mailbox, one result per op.
	Apply(ctx context.Context, kind crmsync.ItemKind, ops []ItemOp) ([]ItemResult, error)
}

// ItemChanges is one page of item changes.
type ItemChanges struct {
	Items  []crmsync.Item
	Cursor []byte
	More   bool
}

// OpKind is what an ItemOp does.
type OpKind uint8

// Item operations.
const (
	OpCreate OpKind = iota + 1
	OpUpdate
	OpDelete
)

// ItemOp is one change to make in the mailbox.
type ItemOp struct {
	Op   OpKind
	Item crmsync.Item
}

// ItemResult is the outcome of one ItemOp.
type ItemResult struct {
	ProviderID string
	ChangeKey  string
	Err        error
}

// String returns "create", "update" or "delete".
func (k OpKind) String() string {
	switch k {
	case OpCreate:
		return "create"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// ErrNotSubmitted is wrapped by a Send error when the provider knows the message was not
// accepted for delivery: any failure before the server invited the message data (SMTP's
// 354), a refusal of the data the server answered in full, or a sending limit that held
// it back. The engine returns the email to Pending Send instead of treating the outcome as
// unknown.
var ErrNotSubmitted = errors.New("provider: message not submitted")

// SendQuota is an optional interface of an OutgoingMail provider whose server limits how
// much may be sent (Gmail's messages per day, Exchange Online's recipients per day). The
// engine asks it before claiming emails, so a backlog larger than the limit waits in
// Pending Send instead of failing.
type SendQuota interface {
	// SendAllowance returns how many messages may be sent now and, when that is zero,
	// when the next one may be.
	SendAllowance(ctx context.Context) (n int, next time.Time, err error)
}
