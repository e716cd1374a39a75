package crmsync

import (
	"fmt"
	"time"
)

// AlertLevel is how serious an alert is.
type AlertLevel uint8

// Alert levels: information, warning for transient trouble, error for permanent.
const (
	AlertInfo AlertLevel = iota + 1
	AlertWarning
	AlertError
)

// String returns "info", "warning" or "error".
func (l AlertLevel) String() string {
	switch l {
	case AlertInfo:
		return "info"
	case AlertWarning:
		return "warning"
	case AlertError:
		return "error"
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

// AlertScope says what an alert is about, and so who sees it.
type AlertScope uint8

// Alert scopes.
const (
	ScopeEmail   AlertScope = iota + 1 // one email; its mailbox's owner sees it
	ScopeMailbox                       // one mailbox; its owner sees it
	ScopeProfile                       // one server profile; its owner sees it, affected mailbox owners are informed
)

// String returns "email", "mailbox" or "profile".
func (s AlertScope) String() string {
	switch s {
	case ScopeEmail:
		return "email"
	case ScopeMailbox:
		return "mailbox"
	case ScopeProfile:
		return "profile"
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// Alert is a message for a CRM user about synchronization trouble or news.
type Alert struct {
	ID        string
	Level     AlertLevel
	Scope     AlertScope
	ProfileID string
	MailboxID string // empty for a profile alert
	EmailID   string // set for an email alert
	Workload  Workload
	Kind      Kind   // the error kind behind the alert, if any
	Message   string // for people; names the mailbox and the operation, never a secret
	At        time.Time
	// Recipients are the CRM users who see the alert: the mailbox owner, or the
	// profile owner and the owners of the affected mailboxes.
	Recipients []Owner
}
