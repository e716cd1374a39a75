package filter

import (
	"fmt"

	"github.com/crmsync/crmsync"
)

// Reason says why a message is or is not tracked. The first eight are the reasons
// Dynamics 365's CheckIncomingEmail answers with (its ReasonCode is the value minus
// one); ReasonManual and ReasonFolder are crmsync's, for tracking that bypasses the
// incoming option.
type Reason uint8

// Reasons.
const (
	ReasonUnknown Reason = iota
	// ReasonDuplicate: the mailbox already tracked this Message-ID (any mailbox, when
	// email between CRM users is kept as one activity). Refused.
	ReasonDuplicate
	// ReasonNoCorrelationMatch: the option tracks replies only, and the message
	// answers no CRM email. Refused.
	ReasonNoCorrelationMatch
	// ReasonCorrelationMatch: the message answers a CRM email. Accepted.
	ReasonCorrelationMatch
	// ReasonNoRecipientMatch: no recipient is a CRM user or queue whose mailbox
	// tracks email (every candidate mailbox has IncomingNone). Refused.
	ReasonNoRecipientMatch
	// ReasonInternalEmail: the sender is a CRM user or queue, and the option tracks
	// mail from CRM records only. Refused.
	ReasonInternalEmail
	// ReasonSenderMatch: the sender is a record the option accepts mail from. Accepted.
	ReasonSenderMatch
	// ReasonAcceptAll: a recipient's mailbox tracks all messages. Accepted.
	ReasonAcceptAll
	// ReasonInvalidSender: the sender's address is missing or malformed, or is no
	// record the option accepts mail from. Refused.
	ReasonInvalidSender
	// ReasonManual: the user asked to track the message (manual or category
	// tracking). Accepted whatever the option.
	ReasonManual
	// ReasonFolder: the message is in a tracked folder. Accepted whatever the option.
	ReasonFolder
)

// String returns the reason's name, such as "correlation match".
func (r Reason) String() string {
	switch r {
	case ReasonUnknown:
		return "unknown"
	case ReasonDuplicate:
		return "duplicate"
	case ReasonNoCorrelationMatch:
		return "no correlation match"
	case ReasonCorrelationMatch:
		return "correlation match"
	case ReasonNoRecipientMatch:
		return "no recipient match"
	case ReasonInternalEmail:
		return "internal email"
	case ReasonSenderMatch:
		return "sender match"
	case ReasonAcceptAll:
		return "accept all"
	case ReasonInvalidSender:
		return "invalid sender"
	case ReasonManual:
		return "manual"
	case ReasonFolder:
		return "tracked folder"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Decision is the verdict on one incoming message.
type Decision struct {
	// Track is true when the message is to be tracked.
	Track  bool
	Reason Reason
	// Mailbox is the ID of the mailbox whose incoming option decided: the receiving
	// mailbox or the mailbox of a recipient. Empty for duplicates, for manual and
	// folder tracking, and when no candidate mailbox tracks email at all.
	Mailbox string
	// Match is the correlation found. Its Method is CorrelationSkipped when no
	// candidate mailbox needed it (correlation runs for the replies option only).
	Match Match
	// Sender is the record the sender resolved to, when a sender-based option looked
	// it up.
	Sender *Party
}

// String returns e.g. "track (correlation match)".
func (d Decision) String() string {
	verb := "skip"
	if d.Track {
		verb = "track"
	}
	return verb + " (" + d.Reason.String() + ")"
}

// Bypass says why a message is tracked whatever the incoming option.
type Bypass uint8

// Bypasses.
const (
	BypassNone   Bypass = iota
	BypassManual        // the user asked: Outlook's Track, the "tracked" category
	BypassFolder        // the message is in a tracked folder
)

// Input is one message to decide on, with what the headers cannot say.
type Input struct {
	Email *crmsync.Email
	// Bypass, when set, tracks the message whatever the incoming option (duplicates
	// are still refused).
	Bypass Bypass
}
