package filter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/crmsync/crmsync"
)

// evalNow is a Tuesday.
var evalNow = time.Date(2026, 3, 10, 15, 4, 5, 0, time.UTC)

func task(mod func(*crmsync.Task)) *crmsync.Item {
	t := &crmsync.Task{Subject: "Call Contoso", OwnerUserID: "u-ann", Priority: 1}
	if mod != nil {
		mod(t)
	}
	return &crmsync.Item{Kind: crmsync.KindTask, Task: t}
}

func due(t time.Time) func(*crmsync.Task) { return func(x *crmsync.Task) { x.Due = t } }

func TestEvalTasks(t *testing.T) {
	env := Env{Now: evalNow, UserID: "u-ann"}
	day := func(d int) time.Time { return time.Date(2026, 3, d, 9, 0, 0, 0, time.UTC) }
	tests := []struct {
		src  string
		item *crmsync.Item
		want bool
	}{
		{`owner = @me`, task(nil), true},
		{`owner = @me`, task(func(x *crmsync.Task) { x.OwnerUserID = "u-bob" }), false},
		{`owner != @me`, task(func(x *crmsync.Task) { x.OwnerUserID = "" }), false},
		{`owner is null`, task(func(x *crmsync.Task) { x.OwnerUserID = "" }), true},
		{`owner in ("u-bob", @me)`, task(nil), true},
		{`owner = "u-ann"`, task(nil), true},
		{`owner = @me and (status != "completed" or due >= today)`, task(func(x *crmsync.Task) { x.Completed = true; x.Due = day(10) }), true},
		{`owner = @me and (status != "completed" or due >= today)`, task(func(x *crmsync.Task) { x.Completed = true; x.Due = day(9) }), false},
		{`owner = @me and (status != "completed" or due >= today)`, task(nil), true},
		{`status = "open"`, task(nil), true},
		{`completed = false`, task(nil), true},
		{`completed != false`, task(nil), false},
		{`priority >= 1 and priority < 2`, task(nil), true},
		{`priority in (0, 2)`, task(nil), false},
		{`priority > 1`, task(nil), false},
		{`priority <= 1`, task(nil), true},
		{`priority != 1`, task(nil), false},
		{`subject contains "contoso"`, task(nil), true},
		{`subject begins-with "CALL"`, task(nil), true},
		{`subject begins-with "contoso"`, task(nil), false},
		{`subject = "call contoso"`, task(nil), false},
		{`subject != "x"`, task(nil), true},
		{`subject in ("Call Contoso")`, task(nil), true},
		{`subject not-null`, task(nil), true},
		{`due = today`, task(due(day(10))), true},
		{`due = today`, task(due(day(11))), false},
		{`due != today`, task(due(day(11))), true},
		{`due != today`, task(nil), false}, // null fails every comparison
		{`due is null`, task(nil), true},
		{`due < today`, task(due(day(9))), true},
		{`due < today`, task(due(day(10))), false},
		{`due <= today`, task(due(day(10))), true},
		{`due > today`, task(due(day(10))), false},
		{`due > today`, task(due(day(11))), true},
		{`due = yesterday`, task(due(day(9))), true},
		{`due = tomorrow`, task(due(day(11))), true},
		{`due = this-week`, task(due(day(9))), true},  // Monday
		{`due = this-week`, task(due(day(15))), true}, // Sunday
		{`due = this-week`, task(due(day(16))), false},
		{`due = next-week`, task(due(day(16))), true},
		{`due = last-week`, task(due(day(8))), true},
		{`due = this-month`, task(due(day(31))), true},
		{`due = last-month`, task(due(time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC))), true},
		{`due = next-month`, task(due(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))), true},
		{`due = this-year`, task(due(time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC))), true},
		{`due = last-7-days`, task(due(day(3))), true},
		{`due = last-7-days`, task(due(day(2))), false},
		{`due = last-7-days`, task(due(day(10).Add(10 * time.Hour))), true},
		{`due = next-30-days`, task(due(time.Date(2026, 4, 9, 23, 0, 0, 0, time.UTC))), true},
		{`due = next-30-days`, task(due(time.Date(2026, 4, 10, 0, 0, 0, 0, time.UTC))), false},
		{`due = 2026-03-10`, task(due(day(10))), true},
		{`due > 2026-03-10`, task(due(day(10))), false},
		{`due = 2026-03-10T09:00:00Z`, task(due(day(10))), true},
		{`due = 2026-03-10T10:00:00+01:00`, task(due(day(10))), true},
		{`due <= 2026-03-10T09:00:00Z`, task(due(day(10))), true},
		{`due < 2026-03-10T09:00:00Z`, task(due(day(10))), false},
		{`due > 2026-03-10T08:59:59Z`, task(due(day(10))), true},
		{``, task(nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			f := MustParse(crmsync.KindTask, tt.src)
			assert.Equal(t, tt.want, f.Match(tt.item, env))
		})
	}
}

func TestEvalContactsAndAppointments(t *testing.T) {
	env := Env{Now: evalNow, UserID: "u-ann"}
	carl := &crmsync.Item{Kind: crmsync.KindContact, Contact: &crmsync.Contact{
		FirstName: "Carl", Company: "Contoso", Emails: []string{"carl@contoso.com", "carl@home.example"}, OwnerUserID: "u-ann"}}
	noMail := &crmsync.Item{Kind: crmsync.KindContact, Contact: &crmsync.Contact{FirstName: "Dora"}}
	meeting := &crmsync.Item{Kind: crmsync.KindAppointment, Appointment: &crmsync.Appointment{
		Subject: "Review", Start: evalNow.Add(time.Hour), End: evalNow.Add(2 * time.Hour),
		Organizer: addr("ann@crm.example"), OwnerUserID: "u-ann", Recurrence: &crmsync.Recurrence{RRule: "FREQ=WEEKLY"}}}
	tests := []struct {
		kind crmsync.ItemKind
		src  string
		item *crmsync.Item
		want bool
	}{
		{crmsync.KindContact, `email = "carl@home.example"`, carl, true},
		{crmsync.KindContact, `email contains "contoso"`, carl, true},
		{crmsync.KindContact, `email != "carl@home.example"`, carl, false}, // != holds for every element
		{crmsync.KindContact, `email != "x@y"`, carl, true},
		{crmsync.KindContact, `email is null`, noMail, true},
		{crmsync.KindContact, `email != "x@y"`, noMail, false},
		{crmsync.KindContact, `last_name is null and company is null`, noMail, true},
		{crmsync.KindContact, `company in ("Fabrikam", "Contoso")`, carl, true},
		{crmsync.KindContact, `owner = @me`, noMail, false},
		{crmsync.KindAppointment, `start >= today and end < tomorrow`, meeting, true},
		{crmsync.KindAppointment, `recurring = true and all_day = false and canceled = false`, meeting, true},
		{crmsync.KindAppointment, `status = "scheduled" and organizer = "ann@crm.example"`, meeting, true},
		{crmsync.KindAppointment, `location is null`, meeting, true},
		{crmsync.KindAppointment, `subject = "Review"`, carl, false}, // wrong kind
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			assert.Equal(t, tt.want, MustParse(tt.kind, tt.src).Match(tt.item, env))
		})
	}
	// An item with its payload missing is all nulls, not a panic.
	assert.True(t, MustParse(crmsync.KindTask, "subject is null").Match(&crmsync.Item{Kind: crmsync.KindTask}, env))
	assert.False(t, MustParse(crmsync.KindTask, "subject is null").Match(nil, env))
}

func TestEvalTimeZone(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	env := Env{Now: time.Date(2026, 3, 10, 0, 30, 0, 0, berlin)} // 23:30 UTC the day before
	it := task(due(time.Date(2026, 3, 9, 23, 15, 0, 0, time.UTC)))
	assert.True(t, MustParse(crmsync.KindTask, "due = today").Match(it, env), "today is the clock's day")
	assert.True(t, MustParse(crmsync.KindTask, "due = 2026-03-10").Match(it, env), "a date is a day in the clock's zone")
}

func TestMeWithoutUser(t *testing.T) {
	f := MustParse(crmsync.KindTask, "owner = @me or owner != @me")
	assert.False(t, f.Match(task(nil), Env{Now: evalNow}), "a queue's mailbox has no @me")
	env := EnvFor(&crmsync.Mailbox{Owner: crmsync.Owner{Kind: crmsync.OwnerQueue, ID: "q"}}, evalNow)
	assert.Equal(t, "", env.UserID)
	env = EnvFor(&crmsync.Mailbox{Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-ann"}}, evalNow)
	assert.Equal(t, "u-ann", env.UserID)
	assert.True(t, f.Match(task(nil), env))
}

func TestSetsAndDefaults(t *testing.T) {
	env := Env{Now: evalNow, UserID: "u-ann"}
	set := DefaultSet()
	assert.NoError(t, set.Validate())
	assert.Equal(t, "owner = @me", MyContacts().String())
	for _, f := range MyOpenActivities() {
		assert.Equal(t, "My open activities", f.Name)
	}
	assert.Equal(t, "owner = @me and canceled = false", set.Of(crmsync.KindAppointment)[0].String())
	assert.Equal(t, "owner = @me and completed = false", set.Of(crmsync.KindTask)[0].String())

	mine := &crmsync.Item{Kind: crmsync.KindContact, Contact: &crmsync.Contact{OwnerUserID: "u-ann"}}
	theirs := &crmsync.Item{Kind: crmsync.KindContact, Contact: &crmsync.Contact{OwnerUserID: "u-bob", Company: "Contoso"}}
	done := task(func(x *crmsync.Task) { x.Completed = true })
	open := task(nil)
	canceled := &crmsync.Item{Kind: crmsync.KindAppointment, Appointment: &crmsync.Appointment{OwnerUserID: "u-ann", Canceled: true}}
	assert.True(t, set.Match(mine, env))
	assert.False(t, set.Match(theirs, env))
	assert.True(t, set.Match(open, env))
	assert.False(t, set.Match(done, env))
	assert.False(t, set.Match(canceled, env))

	// Several filters on one kind are OR'ed.
	set = append(set, &Filter{Name: "Contoso", Kind: crmsync.KindContact, Expr: C("company", OpEq, String("Contoso"))})
	assert.True(t, set.Match(theirs, env))
	// No filter on a kind: it does not sync.
	onlyContacts := Set{MyContacts()}
	assert.True(t, onlyContacts.Syncs(crmsync.KindContact))
	assert.False(t, onlyContacts.Syncs(crmsync.KindTask))
	assert.False(t, onlyContacts.Match(open, env))
	var none Set
	assert.False(t, none.Match(mine, env))
}
