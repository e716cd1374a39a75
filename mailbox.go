package crmsync

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// OwnerKind says whether a mailbox belongs to a user or a queue.
type OwnerKind uint8

// Owner kinds.
const (
	OwnerUser  OwnerKind = iota + 1 // a CRM user
	OwnerQueue                      // a CRM queue (a shared mailbox)
)

// Owner is the CRM user or queue a mailbox belongs to.
type Owner struct {
	Kind OwnerKind
	ID   string
}

// IsZero reports whether no owner is set.
func (o Owner) IsZero() bool { return o == Owner{} }

// String returns "user:ID" or "queue:ID".
func (o Owner) String() string {
	switch o.Kind {
	case OwnerUser:
		return "user:" + o.ID
	case OwnerQueue:
		return "queue:" + o.ID
	}
	return "owner:" + o.ID
}

// Approval is the state of a mailbox's email address approval.
type Approval uint8

// Approval states. Only approved mailboxes are processed when the host requires
// approval (the default).
const (
	ApprovalEmpty Approval = iota
	ApprovalApproved
	ApprovalPending
	ApprovalRejected
)

// String returns the approval state's name.
func (a Approval) String() string {
	switch a {
	case ApprovalEmpty:
		return "empty"
	case ApprovalApproved:
		return "approved"
	case ApprovalPending:
		return "pending approval"
	case ApprovalRejected:
		return "rejected"
	}
	return fmt.Sprintf("approval(%d)", uint8(a))
}

// IncomingOption says which incoming messages a mailbox tracks.
type IncomingOption uint8

// Incoming processing options. The zero value is the product's default, replies to CRM
// email.
const (
	IncomingReplies     IncomingOption = iota // replies to CRM email
	IncomingAll                               // all messages
	IncomingFromCRM                           // messages from CRM leads, contacts and accounts
	IncomingFromEnabled                       // messages from email-enabled records
	IncomingNone                              // no messages
)

// Mailbox is one user's or queue's mailbox: the unit the engine synchronizes. One user has
// at most one mailbox, and one address belongs to at most one mailbox.
type Mailbox struct {
	ID        string
	Address   string // the email address, compared case-insensitively
	Owner     Owner
	ProfileID string

	Approval Approval
	// ProcessEmailAfter is the mailbox's own start date for incoming mail. Test & Enable
	// sets it; see EffectiveStart.
	ProcessEmailAfter time.Time
	// Credentials are used when the profile's CredentialSource is CredentialsFromMailbox
	// or CredentialsOAuthGrant.
	Credentials    Credentials
	IncomingOption IncomingOption
	// TrackedFolders are folders whose messages are tracked whatever IncomingOption says.
	TrackedFolders []string

	Incoming WorkloadState
	Outgoing WorkloadState
	ACT      WorkloadState
}

// State returns a pointer to the state of workload w, or nil if w is not a workload.
func (m *Mailbox) State(w Workload) *WorkloadState {
	switch w {
	case Incoming:
		return &m.Incoming
	case Outgoing:
		return &m.Outgoing
	case ACT:
		return &m.ACT
	}
	return nil
}

// EffectiveStart returns the time before which incoming mail is ignored: the later of
// the profile's ProcessEmailFrom and the mailbox's ProcessEmailAfter.
func (m *Mailbox) EffectiveStart(p *ServerProfile) time.Time {
	t := m.ProcessEmailAfter
	if p != nil && p.ProcessEmailFrom.After(t) {
		t = p.ProcessEmailFrom
	}
	return t
}

// Clone returns a deep copy of m.
func (m *Mailbox) Clone() *Mailbox {
	c := *m
	c.TrackedFolders = append([]string(nil), m.TrackedFolders...)
	return &c
}

// Validate checks the mailbox's fields. The error names the first bad field.
func (m *Mailbox) Validate() error {
	var errs []error
	if m.ID == "" {
		errs = append(errs, errors.New("ID is empty"))
	}
	if _, err := NormalizeAddress(m.Address); err != nil {
		errs = append(errs, fmt.Errorf("Address: %w", err))
	}
	if m.ProfileID == "" {
		errs = append(errs, errors.New("ProfileID is empty"))
	}
	if m.Owner.Kind != OwnerUser && m.Owner.Kind != OwnerQueue {
		errs = append(errs, errors.New("Owner.Kind must be OwnerUser or OwnerQueue"))
	}
	if m.Owner.ID == "" {
		errs = append(errs, errors.New("Owner.ID is empty"))
	}
	if len(errs) > 0 {
		return &ValidationError{What: "mailbox " + m.ID, Err: errors.Join(errs...)}
	}
	return nil
}

// NormalizeAddress checks that s is a bare email address and returns it lower-cased, the
// form in which addresses are compared.
func NormalizeAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an email address: %w", s, err)
	}
	if a.Address != s {
		return "", fmt.Errorf("%q is not a bare email address", s)
	}
	return strings.ToLower(a.Address), nil
}

// MappingConflictError is returned when mapping a mailbox would give one user two
// mailboxes or one address two users. The caller may retry with take-over.
type MappingConflictError struct {
	Address string // the address being mapped
	Owner   Owner  // the owner being mapped
	// HeldBy is the mailbox that already holds the address or the owner.
	HeldBy      string
	HeldByOwner Owner
	// SameOwner is true when the owner already has another mailbox; false when the
	// address belongs to another owner.
	SameOwner bool
}

func (e *MappingConflictError) Error() string {
	if e.SameOwner {
		return fmt.Sprintf("crmsync: %s already has mailbox %s", e.Owner, e.HeldBy)
	}
	return fmt.Sprintf("crmsync: address %s is held by mailbox %s of %s", e.Address, e.HeldBy, e.HeldByOwner)
}

// Is makes errors.Is(err, ErrMappingConflict) true.
func (e *MappingConflictError) Is(target error) bool { return target == ErrMappingConflict }

// ErrMappingConflict matches every *MappingConflictError.
var ErrMappingConflict = errors.New("crmsync: mailbox mapping conflict")
