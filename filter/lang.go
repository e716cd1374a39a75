package filter

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// Filter is one synchronization filter: which CRM records of one kind sync to a user's
// mailbox. Several filters on one kind are OR'ed (see Set); a kind without a filter
// does not sync.
//
// # The language
//
// A filter's expression is conditions joined by "and" and "or" ("and" binds tighter;
// parentheses group):
//
//	owner = @me and (status != "completed" or due >= today)
//
// A condition is a field, an operator and a value:
//
//	field = value        field != value       (also: eq, ne; "<>" for !=)
//	field < value        field <= value       field > value     field >= value
//	                                          (also: lt, le, gt, ge)
//	field contains "text"                     field begins-with "text"
//	field in (value, value, ...)
//	field is null        field is not null    (also: is-null, not-null)
//
// Values are typed: strings in double quotes with Go escapes ("a \"b\""), numbers
// (3, -1.5, 1e3), true and false, dates (2026-03-01: that whole day), instants in RFC
// 3339 (2026-03-01T09:30:00Z), relative dates, and @me, the mailbox's user. Relative
// dates are ranges of whole days in the clock's time zone: today, yesterday, tomorrow,
// this-week, last-week, next-week (weeks start on Monday), this-month, last-month,
// next-month, this-year, last-N-days (today and the N days before) and next-N-days
// (today and the N days after), N from 1 to 3650.
//
// A date or relative date is a range [start, end): "=" means within it, "!=" outside
// it, "<" before its start, "<=" before its end, ">" at or after its end, ">=" at or
// after its start. An instant is a range of one nanosecond, so these are the usual
// comparisons.
//
// A field that is null (an empty string, a zero time, a list without elements) fails
// every comparison, "!=" included; only "is null" matches it. This is SQL's rule, so
// the in-memory evaluation and ToSQL agree. Keywords are case-insensitive; field names
// are lower-case. The fields of each kind are in Fields.
type Filter struct {
	// Name is a label for people, such as "My contacts".
	Name string
	Kind crmsync.ItemKind
	// Expr selects the records; nil selects every record of Kind.
	Expr Expr
}

// String returns the filter's expression in the text syntax.
func (f *Filter) String() string {
	if f.Expr == nil {
		return ""
	}
	return f.Expr.String()
}

// Validate checks that every field exists for f.Kind and every operator and value suits
// its field.
func (f *Filter) Validate() error {
	if f.Kind != crmsync.KindAppointment && f.Kind != crmsync.KindContact && f.Kind != crmsync.KindTask {
		return fmt.Errorf("filter %q: kind %v cannot be filtered", f.Name, f.Kind)
	}
	if f.Expr == nil {
		return nil
	}
	if err := check(f.Kind, f.Expr); err != nil {
		return fmt.Errorf("filter %q: %w", f.Name, err)
	}
	return nil
}

func check(kind crmsync.ItemKind, e Expr) error {
	switch e := e.(type) {
	case And:
		return checkTerms(kind, "and", e)
	case Or:
		return checkTerms(kind, "or", e)
	case Cond:
		return e.check(kind)
	case nil:
		return errors.New("nil expression")
	}
	return fmt.Errorf("unknown expression %T", e)
}

func checkTerms(kind crmsync.ItemKind, op string, terms []Expr) error {
	if len(terms) == 0 {
		return fmt.Errorf("empty %q", op)
	}
	for _, t := range terms {
		if err := check(kind, t); err != nil {
			return err
		}
	}
	return nil
}

// Expr is a filter expression: And, Or or Cond.
type Expr interface {
	// String returns the expression in the text syntax; parsing it gives the
	// expression back (with nested ands and ors flattened).
	String() string
	isExpr()
}

// And matches when every term matches. It must have at least one term.
type And []Expr

// Or matches when any term matches. It must have at least one term.
type Or []Expr

func (And) isExpr()  {}
func (Or) isExpr()   {}
func (Cond) isExpr() {}

// Op is a condition's operator.
type Op uint8

// Operators.
const (
	OpEq Op = iota + 1
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
	OpContains
	OpBeginsWith
	OpIn
	OpIsNull
	OpNotNull
)

var opText = [...]string{
	OpEq: "=", OpNe: "!=", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">=",
	OpContains: "contains", OpBeginsWith: "begins-with", OpIn: "in",
	OpIsNull: "is null", OpNotNull: "is not null",
}

// String returns the operator as the text syntax writes it.
func (o Op) String() string {
	if int(o) < len(opText) && opText[o] != "" {
		return opText[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Cond is one condition. Values holds one value, except for OpIn (one or more) and
// OpIsNull and OpNotNull (none).
type Cond struct {
	Field  string
	Op     Op
	Values []Value
}

// C returns the condition field op v..., a shorthand for building filters in code.
func C(field string, op Op, v ...Value) Cond { return Cond{Field: field, Op: op, Values: v} }

// ValueKind is the type of a literal value.
type ValueKind uint8

// Value kinds.
const (
	ValString ValueKind = iota + 1
	ValNumber
	ValBool
	ValTime     // an instant
	ValDate     // a calendar day
	ValRelative // a relative date such as "today" or "last-7-days"
	ValMe       // the mailbox's user
)

// Value is a typed literal.
type Value struct {
	Kind ValueKind
	// Str is the string, or the relative date's name.
	Str  string
	Num  float64
	Bool bool
	// Time is the instant, or for a date midnight UTC of that day.
	Time time.Time
}

// String returns a string value.
func String(s string) Value { return Value{Kind: ValString, Str: s} }

// Number returns a number value.
func Number(n float64) Value { return Value{Kind: ValNumber, Num: n} }

// Bool returns a boolean value.
func Bool(b bool) Value { return Value{Kind: ValBool, Bool: b} }

// Time returns an instant.
func Time(t time.Time) Value { return Value{Kind: ValTime, Time: t} }

// Date returns a calendar day, taken in the evaluation's time zone.
func Date(year int, month time.Month, day int) Value {
	return Value{Kind: ValDate, Time: time.Date(year, month, day, 0, 0, 0, 0, time.UTC)}
}

// Relative returns a relative date such as "today" or "next-30-days"; see Filter.
func Relative(name string) (Value, error) {
	name = strings.ToLower(name)
	if _, ok := parseRelative(name); !ok {
		return Value{}, fmt.Errorf("filter: %q is not a relative date", name)
	}
	return Value{Kind: ValRelative, Str: name}, nil
}

// Me returns @me, the mailbox's user.
func Me() Value { return Value{Kind: ValMe} }

// equal reports whether two values are the same literal.
func (v Value) equal(w Value) bool {
	if v.Kind != w.Kind {
		return false
	}
	switch v.Kind {
	case ValString, ValRelative:
		return v.Str == w.Str
	case ValNumber:
		return v.Num == w.Num
	case ValBool:
		return v.Bool == w.Bool
	case ValTime, ValDate:
		return v.Time.Equal(w.Time)
	}
	return true
}

// Equal reports whether two expressions are the same (values compared as literals).
func Equal(a, b Expr) bool {
	switch a := a.(type) {
	case And:
		b, ok := b.(And)
		return ok && equalTerms(a, b)
	case Or:
		b, ok := b.(Or)
		return ok && equalTerms(a, b)
	case Cond:
		c, ok := b.(Cond)
		return ok && equalCond(a, c)
	case nil:
		return b == nil
	}
	return false
}

func equalTerms(a, b []Expr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func equalCond(a, c Cond) bool {
	if a.Field != c.Field || a.Op != c.Op || len(a.Values) != len(c.Values) {
		return false
	}
	for i := range a.Values {
		if !a.Values[i].equal(c.Values[i]) {
			return false
		}
	}
	return true
}
