package filter

import (
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// Env is what a filter is evaluated against besides the item: the time (relative dates
// and dates are taken in Now's location) and the mailbox's user (@me).
type Env struct {
	Now    time.Time
	UserID string
}

// EnvFor returns the environment of mailbox mb's filters at now: @me is the mailbox's
// user (a queue's mailbox has no @me: such conditions match nothing).
func EnvFor(mb *crmsync.Mailbox, now time.Time) Env {
	env := Env{Now: now}
	if mb != nil && mb.Owner.Kind == crmsync.OwnerUser {
		env.UserID = mb.Owner.ID
	}
	return env
}

// Match reports whether item it passes f: it is of f's kind and the expression holds.
func (f *Filter) Match(it *crmsync.Item, env Env) bool {
	if it == nil || it.Kind != f.Kind {
		return false
	}
	return f.Expr == nil || eval(f.Kind, f.Expr, it, env)
}

// Set is a user's synchronization filters. Filters on one kind are OR'ed; a kind with
// no filter does not sync.
type Set []*Filter

// Syncs reports whether kind has a filter.
func (s Set) Syncs(kind crmsync.ItemKind) bool {
	for _, f := range s {
		if f.Kind == kind {
			return true
		}
	}
	return false
}

// Match reports whether any filter of it's kind passes it.
func (s Set) Match(it *crmsync.Item, env Env) bool {
	for _, f := range s {
		if f.Match(it, env) {
			return true
		}
	}
	return false
}

// Of returns the filters of kind.
func (s Set) Of(kind crmsync.ItemKind) Set {
	var out Set
	for _, f := range s {
		if f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

// Validate validates every filter.
func (s Set) Validate() error {
	for _, f := range s {
		if err := f.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func eval(kind crmsync.ItemKind, e Expr, it *crmsync.Item, env Env) bool {
	switch e := e.(type) {
	case And:
		for _, t := range e {
			if !eval(kind, t, it, env) {
				return false
			}
		}
		return len(e) > 0
	case Or:
		for _, t := range e {
			if eval(kind, t, it, env) {
				return true
			}
		}
		return false
	case Cond:
		f, ok := lookupField(kind, e.Field)
		return ok && e.checkField(f) == nil && evalCond(f, e, f.get(it), env)
	}
	return false
}

func evalCond(f *Field, c Cond, v fieldValue, env Env) bool {
	switch c.Op {
	case OpIsNull:
		return v.null
	case OpNotNull:
		return !v.null
	}
	if v.null {
		return false
	}
	if f.Multi {
		if c.Op == OpNe {
			for _, s := range v.ss {
				if !cmpScalar(f.Type, OpNe, fieldValue{s: s}, c.Values, env) {
					return false
				}
			}
			return true
		}
		for _, s := range v.ss {
			if cmpScalar(f.Type, c.Op, fieldValue{s: s}, c.Values, env) {
				return true
			}
		}
		return false
	}
	return cmpScalar(f.Type, c.Op, v, c.Values, env)
}

func cmpScalar(t FieldType, op Op, v fieldValue, vals []Value, env Env) bool {
	if op == OpIn {
		for _, x := range vals {
			if cmpScalar(t, OpEq, v, []Value{x}, env) {
				return true
			}
		}
		return false
	}
	x := vals[0]
	switch t {
	case TypeString:
		switch op {
		case OpEq:
			return v.s == x.Str
		case OpNe:
			return v.s != x.Str
		case OpContains:
			return strings.Contains(strings.ToLower(v.s), strings.ToLower(x.Str))
		case OpBeginsWith:
			return strings.HasPrefix(strings.ToLower(v.s), strings.ToLower(x.Str))
		}
	case TypeUser:
		want := x.Str
		if x.Kind == ValMe {
			if env.UserID == "" {
				return false
			}
			want = env.UserID
		}
		switch op {
		case OpEq:
			return v.s == want
		case OpNe:
			return v.s != want
		}
	case TypeNumber:
		switch op {
		case OpEq:
			return v.n == x.Num
		case OpNe:
			return v.n != x.Num
		case OpLt:
			return v.n < x.Num
		case OpLe:
			return v.n <= x.Num
		case OpGt:
			return v.n > x.Num
		case OpGe:
			return v.n >= x.Num
		}
	case TypeBool:
		switch op {
		case OpEq:
			return v.b == x.Bool
		case OpNe:
			return v.b != x.Bool
		}
	case TypeTime:
		start, end := x.interval(env)
		switch op {
		case OpEq:
			return !v.t.Before(start) && v.t.Before(end)
		case OpNe:
			return v.t.Before(start) || !v.t.Before(end)
		case OpLt:
			return v.t.Before(start)
		case OpLe:
			return v.t.Before(end)
		case OpGt:
			return !v.t.Before(end)
		case OpGe:
			return !v.t.Before(start)
		}
	}
	return false
}

// interval returns the range [start, end) a time value stands for at env.
func (v Value) interval(env Env) (start, end time.Time) {
	loc := env.Now.Location()
	switch v.Kind {
	case ValTime:
		return v.Time, v.Time.Add(time.Nanosecond)
	case ValDate:
		d := time.Date(v.Time.Year(), v.Time.Month(), v.Time.Day(), 0, 0, 0, 0, loc)
		return d, d.AddDate(0, 0, 1)
	case ValRelative:
		r, _ := parseRelative(v.Str)
		return r.interval(env.Now)
	}
	return time.Time{}, time.Time{}
}

// relative is a parsed relative date.
type relative struct {
	unit   string // "day", "week", "month", "year"
	offset int    // in units from the current one
	days   int    // for last-N-days (negative N) and next-N-days (positive N)
}

const maxRelativeDays = 3650

var relativeNames = map[string]relative{
	"today": {unit: "day"}, "yesterday": {unit: "day", offset: -1}, "tomorrow": {unit: "day", offset: 1},
	"this-week": {unit: "week"}, "last-week": {unit: "week", offset: -1}, "next-week": {unit: "week", offset: 1},
	"this-month": {unit: "month"}, "last-month": {unit: "month", offset: -1}, "next-month": {unit: "month", offset: 1},
	"this-year": {unit: "year"},
}

// parseRelative parses a relative date's (lower-case) name.
func parseRelative(s string) (relative, bool) {
	if r, ok := relativeNames[s]; ok {
		return r, true
	}
	var sign int
	var rest string
	switch {
	case strings.HasPrefix(s, "last-"):
		sign, rest = -1, s[len("last-"):]
	case strings.HasPrefix(s, "next-"):
		sign, rest = 1, s[len("next-"):]
	default:
		return relative{}, false
	}
	num, ok := strings.CutSuffix(rest, "-days")
	if !ok || num == "" || num[0] == '0' || len(num) > 4 || !allDigits(num) {
		return relative{}, false
	}
	n, _ := strconv.Atoi(num)
	if n < 1 || n > maxRelativeDays {
		return relative{}, false
	}
	return relative{unit: "days", days: sign * n}, true
}

func (r relative) interval(now time.Time) (time.Time, time.Time) {
	y, m, d := now.Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, now.Location())
	switch r.unit {
	case "day":
		s := today.AddDate(0, 0, r.offset)
		return s, s.AddDate(0, 0, 1)
	case "week":
		back := (int(today.Weekday()) + 6) % 7 // days since Monday
		s := today.AddDate(0, 0, -back+7*r.offset)
		return s, s.AddDate(0, 0, 7)
	case "month":
		s := time.Date(y, m+time.Month(r.offset), 1, 0, 0, 0, 0, now.Location())
		return s, s.AddDate(0, 1, 0)
	case "year":
		s := time.Date(y, 1, 1, 0, 0, 0, 0, now.Location())
		return s, s.AddDate(1, 0, 0)
	case "days":
		if r.days < 0 {
			return today.AddDate(0, 0, r.days), today.AddDate(0, 0, 1)
		}
		return today, today.AddDate(0, 0, r.days+1)
	}
	return today, today
}
