package filter

import (
	"fmt"
	"sort"
	"time"

	"github.com/crmsync/crmsync"
)

// FieldType is the type of a filterable field.
type FieldType uint8

// Field types and the operators and values each takes:
//
//	string  = != contains begins-with in, is null; string values
//	number  = != < <= > >= in, is null; number values
//	bool    = !=; true or false (never null)
//	time    = != < <= > >=, is null; dates, instants, relative dates
//	user    = != in, is null; @me or a user ID as a string
const (
	TypeString FieldType = iota + 1
	TypeNumber
	TypeBool
	TypeTime
	TypeUser
)

// String returns the type's name.
func (t FieldType) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeNumber:
		return "number"
	case TypeBool:
		return "bool"
	case TypeTime:
		return "time"
	case TypeUser:
		return "user"
	}
	return fmt.Sprintf("field-type(%d)", uint8(t))
}

// Field is one filterable field of an item kind.
type Field struct {
	Name string
	Type FieldType
	// Multi is true for a list (a contact's emails and phones): a comparison holds
	// when it holds for any element, "!=" when it holds for every element.
	Multi bool
	// Doc says where the value comes from.
	Doc string
	get func(*crmsync.Item) fieldValue
}

type fieldValue struct {
	null bool
	s    string
	ss   []string
	n    float64
	b    bool
	t    time.Time
}

func str(s string) fieldValue     { return fieldValue{null: s == "", s: s} }
func strs(ss []string) fieldValue { return fieldValue{null: len(ss) == 0, ss: ss} }
func tm(t time.Time) fieldValue   { return fieldValue{null: t.IsZero(), t: t} }
func boolean(b bool) fieldValue   { return fieldValue{b: b} }
func number(n float64) fieldValue { return fieldValue{n: n} }
func contactOf(it *crmsync.Item) *crmsync.Contact {
	if it.Contact == nil {
		return &crmsync.Contact{}
	}
	return it.Contact
}
func apptOf(it *crmsync.Item) *crmsync.Appointment {
	if it.Appointment == nil {
		return &crmsync.Appointment{}
	}
	return it.Appointment
}
func taskOf(it *crmsync.Item) *crmsync.Task {
	if it.Task == nil {
		return &crmsync.Task{}
	}
	return it.Task
}

var fieldTable = map[crmsync.ItemKind][]Field{
	crmsync.KindContact: {
		{Name: "first_name", Type: TypeString, Doc: "Contact.FirstName", get: func(it *crmsync.Item) fieldValue { return str(contactOf(it).FirstName) }},
		{Name: "last_name", Type: TypeString, Doc: "Contact.LastName", get: func(it *crmsync.Item) fieldValue { return str(contactOf(it).LastName) }},
		{Name: "company", Type: TypeString, Doc: "Contact.Company", get: func(it *crmsync.Item) fieldValue { return str(contactOf(it).Company) }},
		{Name: "job_title", Type: TypeString, Doc: "Contact.JobTitle", get: func(it *crmsync.Item) fieldValue { return str(contactOf(it).JobTitle) }},
		{Name: "email", Type: TypeString, Multi: true, Doc: "Contact.Emails", get: func(it *crmsync.Item) fieldValue { return strs(contactOf(it).Emails) }},
		{Name: "phone", Type: TypeString, Multi: true, Doc: "Contact.Phones", get: func(it *crmsync.Item) fieldValue { return strs(contactOf(it).Phones) }},
		{Name: "owner", Type: TypeUser, Doc: "Contact.OwnerUserID", get: func(it *crmsync.Item) fieldValue { return str(contactOf(it).OwnerUserID) }},
	},
	crmsync.KindAppointment: {
		{Name: "subject", Type: TypeString, Doc: "Appointment.Subject", get: func(it *crmsync.Item) fieldValue { return str(apptOf(it).Subject) }},
		{Name: "location", Type: TypeString, Doc: "Appointment.Location", get: func(it *crmsync.Item) fieldValue { return str(apptOf(it).Location) }},
		{Name: "start", Type: TypeTime, Doc: "Appointment.Start", get: func(it *crmsync.Item) fieldValue { return tm(apptOf(it).Start) }},
		{Name: "end", Type: TypeTime, Doc: "Appointment.End", get: func(it *crmsync.Item) fieldValue { return tm(apptOf(it).End) }},
		{Name: "all_day", Type: TypeBool, Doc: "Appointment.AllDay", get: func(it *crmsync.Item) fieldValue { return boolean(apptOf(it).AllDay) }},
		{Name: "organizer", Type: TypeString, Doc: "Appointment.Organizer.Email", get: func(it *crmsync.Item) fieldValue { return str(apptOf(it).Organizer.Email) }},
		{Name: "owner", Type: TypeUser, Doc: "Appointment.OwnerUserID", get: func(it *crmsync.Item) fieldValue { return str(apptOf(it).OwnerUserID) }},
		{Name: "canceled", Type: TypeBool, Doc: "Appointment.Canceled", get: func(it *crmsync.Item) fieldValue { return boolean(apptOf(it).Canceled) }},
		{Name: "recurring", Type: TypeBool, Doc: "Appointment.Recurrence != nil", get: func(it *crmsync.Item) fieldValue { return boolean(apptOf(it).Recurrence != nil) }},
		{Name: "status", Type: TypeString, Doc: `"canceled" or "scheduled"`, get: func(it *crmsync.Item) fieldValue {
			if apptOf(it).Canceled {
				return str("canceled")
			}
			return str("scheduled")
		}},
	},
	crmsync.KindTask: {
		{Name: "subject", Type: TypeString, Doc: "Task.Subject", get: func(it *crmsync.Item) fieldValue { return str(taskOf(it).Subject) }},
		{Name: "due", Type: TypeTime, Doc: "Task.Due", get: func(it *crmsync.Item) fieldValue { return tm(taskOf(it).Due) }},
		{Name: "completed", Type: TypeBool, Doc: "Task.Completed", get: func(it *crmsync.Item) fieldValue { return boolean(taskOf(it).Completed) }},
		{Name: "completed_at", Type: TypeTime, Doc: "Task.CompletedAt", get: func(it *crmsync.Item) fieldValue { return tm(taskOf(it).CompletedAt) }},
		{Name: "priority", Type: TypeNumber, Doc: "Task.Priority: 0 low, 1 normal, 2 high", get: func(it *crmsync.Item) fieldValue { return number(float64(taskOf(it).Priority)) }},
		{Name: "owner", Type: TypeUser, Doc: "Task.OwnerUserID", get: func(it *crmsync.Item) fieldValue { return str(taskOf(it).OwnerUserID) }},
		{Name: "status", Type: TypeString, Doc: `"completed" or "open"`, get: func(it *crmsync.Item) fieldValue {
			if taskOf(it).Completed {
				return str("completed")
			}
			return str("open")
		}},
	},
}

// Fields returns the filterable fields of kind, sorted by name:
//
//	contact:     first_name, last_name, company, job_title, email (list), phone (list), owner
//	appointment: subject, location, start, end, all_day, organizer (its address),
//	             owner, canceled, recurring, status ("canceled" or "scheduled")
//	task:        subject, due, completed, completed_at, priority (0–2), owner,
//	             status ("completed" or "open")
func Fields(kind crmsync.ItemKind) []Field {
	fs := append([]Field(nil), fieldTable[kind]...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].Name < fs[j].Name })
	return fs
}

func lookupField(kind crmsync.ItemKind, name string) (*Field, bool) {
	fs := fieldTable[kind]
	for i := range fs {
		if fs[i].Name == name {
			return &fs[i], true
		}
	}
	return nil, false
}

// opsFor lists the operators each field type takes.
var opsFor = map[FieldType][]Op{
	TypeString: {OpEq, OpNe, OpContains, OpBeginsWith, OpIn, OpIsNull, OpNotNull},
	TypeNumber: {OpEq, OpNe, OpLt, OpLe, OpGt, OpGe, OpIn, OpIsNull, OpNotNull},
	TypeBool:   {OpEq, OpNe},
	TypeTime:   {OpEq, OpNe, OpLt, OpLe, OpGt, OpGe, OpIsNull, OpNotNull},
	TypeUser:   {OpEq, OpNe, OpIn, OpIsNull, OpNotNull},
}

// check validates c against kind's field table.
func (c Cond) check(kind crmsync.ItemKind) error {
	f, ok := lookupField(kind, c.Field)
	if !ok {
		return fmt.Errorf("%s has no field %q", kind, c.Field)
	}
	return c.checkField(f)
}

func (c Cond) checkField(f *Field) error {
	allowed := false
	for _, o := range opsFor[f.Type] {
		allowed = allowed || o == c.Op
	}
	if !allowed {
		return fmt.Errorf("operator %s does not apply to %s field %q", c.Op, f.Type, f.Name)
	}
	switch {
	case c.Op == OpIsNull || c.Op == OpNotNull:
		if len(c.Values) != 0 {
			return fmt.Errorf("%s %s takes no value", f.Name, c.Op)
		}
		return nil
	case c.Op == OpIn:
		if len(c.Values) == 0 {
			return fmt.Errorf("%s in () needs a value", f.Name)
		}
	case len(c.Values) != 1:
		return fmt.Errorf("%s %s takes one value", f.Name, c.Op)
	}
	for _, v := range c.Values {
		if !valueFits(f.Type, v.Kind) {
			return fmt.Errorf("%s field %q cannot be compared with %s", f.Type, f.Name, v.describe())
		}
		if v.Kind == ValRelative {
			if _, ok := parseRelative(v.Str); !ok {
				return fmt.Errorf("%q is not a relative date", v.Str)
			}
		}
	}
	return nil
}

func valueFits(t FieldType, k ValueKind) bool {
	switch t {
	case TypeString:
		return k == ValString
	case TypeNumber:
		return k == ValNumber
	case TypeBool:
		return k == ValBool
	case TypeTime:
		return k == ValTime || k == ValDate || k == ValRelative
	case TypeUser:
		return k == ValMe || k == ValString
	}
	return false
}

func (v Value) describe() string {
	switch v.Kind {
	case ValString:
		return "a string"
	case ValNumber:
		return "a number"
	case ValBool:
		return "a boolean"
	case ValTime:
		return "an instant"
	case ValDate:
		return "a date"
	case ValRelative:
		return "a relative date"
	case ValMe:
		return "@me"
	}
	return "an unknown value"
}
