package crmsync

import (
	"fmt"
	"time"
)

// ItemKind is the kind of a synchronized non-email item.
type ItemKind uint8

// Item kinds of the ACT workload.
const (
	KindAppointment ItemKind = iota + 1
	KindContact
	KindTask
)

// String returns "appointment", "contact" or "task".
func (k ItemKind) String() string {
	switch k {
	case KindAppointment:
		return "appointment"
	case KindContact:
		return "contact"
	case KindTask:
		return "task"
	}
	return fmt.Sprintf("item-kind(%d)", uint8(k))
}

// Contact is a CRM contact as it syncs with a mailbox's address book.
type Contact struct {
	FirstName   string
	LastName    string
	Company     string
	JobTitle    string
	Emails      []string
	Phones      []string
	OwnerUserID string
}

// Attendee is one participant of an appointment.
type Attendee struct {
	Address  Address
	Response string // "accepted", "declined", "tentative", "none"
	Required bool
}

// Recurrence is a recurring appointment's rule, as an RFC 5545 RRULE value.
type Recurrence struct {
	RRule string
	// ExceptionDates are the original start times of occurrences that were changed or
	// removed; changed ones are Items of their own with MasterID set.
	ExceptionDates []time.Time
}

// Appointment is a calendar event. A recurring one is a master (Recurrence set) plus
// exceptions (MasterID set).
type Appointment struct {
	Subject     string
	Location    string
	Body        string
	Start, End  time.Time
	AllDay      bool
	Organizer   Address
	Attendees   []Attendee
	Recurrence  *Recurrence
	MasterID    string // for an exception: the ItemID of its master
	Canceled    bool
	OwnerUserID string
}

// Task is a to-do item.
type Task struct {
	Subject     string
	Body        string
	Due         time.Time
	Completed   bool
	CompletedAt time.Time
	Priority    int // 0 low, 1 normal, 2 high
	OwnerUserID string
}

// Item is one appointment, contact or task, linked between the CRM and a mailbox. Exactly
// one of Appointment, Contact and Task is set, matching Kind.
type Item struct {
	Kind      ItemKind
	MailboxID string
	// RecordID is the CRM record's id; empty for an item not yet linked.
	RecordID string
	// ProviderID is the item's identity in the mailbox; ChangeKey its version there
	// (an ETag or Graph changeKey), used to detect concurrent changes.
	ProviderID string
	ChangeKey  string
	Deleted    bool
	ModifiedAt time.Time

	Appointment *Appointment
	Contact     *Contact
	Task        *Task
}
