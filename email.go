package crmsync

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// EmailStatus is the status of a CRM email activity, with the product's codes.
type EmailStatus uint8

// Email statuses. The engine moves Pending Send → Sending → Sent, or Failed.
const (
	EmailDraft       EmailStatus = 1
	EmailCompleted   EmailStatus = 2
	EmailSent        EmailStatus = 3
	EmailReceived    EmailStatus = 4
	EmailCanceled    EmailStatus = 5
	EmailPendingSend EmailStatus = 6
	EmailSending     EmailStatus = 7
	EmailFailed      EmailStatus = 8
)

// String returns the status's name, such as "pending send".
func (s EmailStatus) String() string {
	switch s {
	case EmailDraft:
		return "draft"
	case EmailCompleted:
		return "completed"
	case EmailSent:
		return "sent"
	case EmailReceived:
		return "received"
	case EmailCanceled:
		return "canceled"
	case EmailPendingSend:
		return "pending send"
	case EmailSending:
		return "sending"
	case EmailFailed:
		return "failed"
	}
	return fmt.Sprintf("email-status(%d)", uint8(s))
}

// Direction says whether an email came into the CRM or goes out of it.
type Direction uint8

// Directions.
const (
	DirectionIncoming Direction = iota + 1
	DirectionOutgoing
)

// Correlation says how a tracked email was linked to the CRM email it answers.
type Correlation uint8

// Correlation methods, in the order the engine tries them.
const (
	CorrelationNone Correlation = iota
	CorrelationSkipped
	CorrelationInReplyTo
	CorrelationTrackingToken
	CorrelationConversationIndex
	CorrelationSmartMatching
	CorrelationCustom
)

// Address is a mailbox address with its display name.
type Address struct {
	Name  string
	Email string
}

// String returns `"Name" <email>` or just the email.
func (a Address) String() string {
	if a.Name == "" {
		return a.Email
	}
	return fmt.Sprintf("%q <%s>", a.Name, a.Email)
}

// Attachment is a file attached to an email. An attachment over the profile's limit,
// or blocked, is kept with Skipped set and no Content, so the email records that it
// was there.
type Attachment struct {
	Name        string
	ContentType string
	ContentID   string // for inline parts
	Size        int64  // bytes, as received
	Content     []byte
	Skipped     bool   // true when the content was not kept
	SkipReason  string // why, e.g. "larger than 5 MiB"
}

// PartyRole is the part a party plays in an email.
type PartyRole uint8

// Party roles.
const (
	PartyFrom PartyRole = iota + 1
	PartyTo
	PartyCc
	PartyBcc
)

// String returns "from", "to", "cc" or "bcc".
func (r PartyRole) String() string {
	switch r {
	case PartyFrom:
		return "from"
	case PartyTo:
		return "to"
	case PartyCc:
		return "cc"
	case PartyBcc:
		return "bcc"
	}
	return fmt.Sprintf("party-role(%d)", uint8(r))
}

// Party is the sender or a recipient of an email and the CRM record its address was
// matched to. RecordKind and RecordID are empty when the address stayed unresolved (no
// record has it, or too many do); the address is kept either way.
type Party struct {
	Role    PartyRole
	Address Address
	// RecordKind is the kind of record: "user", "queue", "contact", "account",
	// "lead" or "other" (another email-enabled record).
	RecordKind string
	RecordID   string
}

// Email is a CRM email activity: one tracked incoming message or one outgoing CRM email.
type Email struct {
	ID        string
	MailboxID string
	Direction Direction
	Status    EmailStatus

	// MessageID is the RFC 5322 Message-ID without angle brackets. The Store refuses a
	// second incoming email with the same MessageID in one mailbox. An incoming message
	// that has none gets one from its provider, stable for the stored message
	// (provider/mailparse: a hash of its header, at no-message-id.crmsync.invalid).
	MessageID  string
	InReplyTo  string   // without angle brackets
	References []string // without angle brackets
	// ThreadIndex is Outlook's Thread-Index header, base64 as received.
	ThreadIndex string
	// ProviderID is the message's identity at the provider (for IMAP
	// "folder/UIDVALIDITY/UID", for POP3 the UIDL, for Graph the item id). Unique per
	// mailbox.
	ProviderID string
	// Folder is where the provider found the message.
	Folder string

	From    Address
	To      []Address
	Cc      []Address
	Bcc     []Address
	ReplyTo []Address
	Subject string

	TextBody    string
	HTMLBody    string
	Attachments []Attachment
	// Size is the raw message size in bytes, when known.
	Size int64

	// SentAt is the Date header (incoming) or the submission time (outgoing).
	SentAt     time.Time
	ReceivedAt time.Time

	RegardingID string
	Correlation Correlation
	// Parties are the sender and recipients matched to CRM records in the documented
	// priority: user, queue, contact, account, lead, other email-enabled records;
	// unresolved ones keep only the address. The sender comes first, then To, Cc and
	// Bcc in the email's order. filter's Resolution.Apply sets them on tracked email.
	Parties []Party

	// Correlation keys, kept so a Store can find this email when a later message
	// answers it (see filter's TokenIndex, ConversationIndex and SubjectIndex):
	// TrackingToken is the tracking token in the subject, in canonical form;
	// ConversationID the conversation GUID of ThreadIndex; SubjectHash the hash of the
	// subject stripped of reply prefixes and token, for smart matching.
	TrackingToken  string
	ConversationID string
	SubjectHash    string

	// DeliveryAttempts counts submissions of an outgoing email.
	DeliveryAttempts int
	// FailureReason says why an outgoing email Failed.
	FailureReason string
	// Notes are remarks the engine made while tracking, such as a skipped attachment.
	Notes []string

	CreatedAt  time.Time
	ModifiedAt time.Time
}

// Clone returns a deep copy of e.
func (e *Email) Clone() *Email {
	c := *e
	c.References = append([]string(nil), e.References...)
	c.To = append([]Address(nil), e.To...)
	c.Cc = append([]Address(nil), e.Cc...)
	c.Bcc = append([]Address(nil), e.Bcc...)
	c.ReplyTo = append([]Address(nil), e.ReplyTo...)
	c.Notes = append([]string(nil), e.Notes...)
	c.Parties = append([]Party(nil), e.Parties...)
	if e.Attachments != nil {
		c.Attachments = make([]Attachment, len(e.Attachments))
		for i, a := range e.Attachments {
			a.Content = append([]byte(nil), a.Content...)
			c.Attachments[i] = a
		}
	}
	return &c
}

// Recipients returns To, Cc and Bcc in that order.
func (e *Email) Recipients() []Address {
	out := make([]Address, 0, len(e.To)+len(e.Cc)+len(e.Bcc))
	out = append(out, e.To...)
	out = append(out, e.Cc...)
	return append(out, e.Bcc...)
}

// Sanitize makes every text field of e valid UTF-8 without NUL bytes, replacing what is
// not with U+FFFD (a NUL is dropped). Mail in the wild carries both, and databases such
// as PostgreSQL refuse them, which would fail a whole batch for one bad message. The
// engine sanitizes every email before the Store sees it.
func (e *Email) Sanitize() {
	for _, s := range []*string{&e.MessageID, &e.InReplyTo, &e.ThreadIndex, &e.ProviderID, &e.Folder, &e.Subject,
		&e.TextBody, &e.HTMLBody, &e.RegardingID, &e.FailureReason, &e.TrackingToken, &e.ConversationID, &e.SubjectHash} {
		*s = cleanText(*s)
	}
	for i := range e.References {
		e.References[i] = cleanText(e.References[i])
	}
	for i := range e.Notes {
		e.Notes[i] = cleanText(e.Notes[i])
	}
	e.From = cleanAddress(e.From)
	for _, list := range [][]Address{e.To, e.Cc, e.Bcc, e.ReplyTo} {
		for i := range list {
			list[i] = cleanAddress(list[i])
		}
	}
	for i := range e.Parties {
		p := &e.Parties[i]
		p.Address, p.RecordKind, p.RecordID = cleanAddress(p.Address), cleanText(p.RecordKind), cleanText(p.RecordID)
	}
	for i := range e.Attachments {
		a := &e.Attachments[i]
		a.Name, a.ContentType, a.ContentID, a.SkipReason = cleanText(a.Name), cleanText(a.ContentType), cleanText(a.ContentID), cleanText(a.SkipReason)
	}
}

func cleanAddress(a Address) Address {
	return Address{Name: cleanText(a.Name), Email: cleanText(a.Email)}
}

func cleanText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}
