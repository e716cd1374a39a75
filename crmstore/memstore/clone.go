package memstore

import "github.com/crmsync/crmsync"

// The Store keeps its own copies of what it is given and hands out copies of what it
// keeps, so no caller can reach its state. These are the deep copies the root package
// does not provide.

func cloneProfile(p *crmsync.ServerProfile) *crmsync.ServerProfile {
	c := *p
	if p.KeepSentCopy != nil {
		b := *p.KeepSentCopy
		c.KeepSentCopy = &b
	}
	return &c
}

func cloneItem(it *crmsync.Item) *crmsync.Item {
	c := *it
	if a := it.Appointment; a != nil {
		ac := *a
		ac.Attendees = append([]crmsync.Attendee(nil), a.Attendees...)
		if a.Recurrence != nil {
			r := *a.Recurrence
			r.ExceptionDates = append(r.ExceptionDates[:0:0], a.Recurrence.ExceptionDates...)
			ac.Recurrence = &r
		}
		c.Appointment = &ac
	}
	if k := it.Contact; k != nil {
		kc := *k
		kc.Emails = append([]string(nil), k.Emails...)
		kc.Phones = append([]string(nil), k.Phones...)
		c.Contact = &kc
	}
	if t := it.Task; t != nil {
		tc := *t
		c.Task = &tc
	}
	return &c
}

func cloneAlert(a *crmsync.Alert) *crmsync.Alert {
	c := *a
	c.Recipients = append([]crmsync.Owner(nil), a.Recipients...)
	return &c
}

// cloneCursor copies a cursor, keeping nil apart from empty.
func cloneCursor(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) == 0 {
		return []byte{}
	}
	return append([]byte(nil), b...)
}
