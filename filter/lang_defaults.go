package filter

import "github.com/crmsync/crmsync"

// MyContacts returns the default contact filter: contacts the mailbox's user owns.
//
//	owner = @me
func MyContacts() *Filter {
	return &Filter{Name: "My contacts", Kind: crmsync.KindContact, Expr: C("owner", OpEq, Me())}
}

// MyOpenActivities returns the default activity filters: appointments and tasks the
// mailbox's user owns that are not canceled or completed.
//
//	appointment: owner = @me and canceled = false
//	task:        owner = @me and completed = false
func MyOpenActivities() Set {
	return Set{
		{Name: "My open activities", Kind: crmsync.KindAppointment,
			Expr: And{C("owner", OpEq, Me()), C("canceled", OpEq, Bool(false))}},
		{Name: "My open activities", Kind: crmsync.KindTask,
			Expr: And{C("owner", OpEq, Me()), C("completed", OpEq, Bool(false))}},
	}
}

// DefaultSet returns the filters a new user starts with: MyContacts and
// MyOpenActivities.
func DefaultSet() Set {
	return append(Set{MyContacts()}, MyOpenActivities()...)
}
