package filter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/crmsync/crmsync"
)

// Dialect is the SQL placeholder style ToSQL writes.
type Dialect string

// Dialects.
const (
	SQLite   Dialect = "sqlite"   // ? placeholders
	Postgres Dialect = "postgres" // $1, $2, … placeholders
)

// ColumnMap maps a kind's field names to SQL column expressions. The expressions are
// written into the query as they are: they come from the host's code, never from
// users.
type ColumnMap map[string]string

// ErrNoUser is returned by ToSQL for a filter using @me when Env has no UserID.
var ErrNoUser = errors.New("filter: @me used without a user")

// ToSQL translates f into a parameterized SQL condition (for a WHERE clause) and its
// parameters, with placeholders in dialect d starting at the first ($1). Relative dates
// and dates become time ranges computed at env.Now; @me becomes env.UserID. Strings
// are parameters, never spliced. String parameters are strings, numbers float64,
// booleans bool, times time.Time in UTC.
//
// The SQL means what Match means when the table stores absent values as NULL (not
// empty strings or zero times), booleans as non-NULL, and list fields as one column;
// "contains" and "begins-with" compare LOWER(column) with LIKE, which SQLite folds for
// ASCII only.
func ToSQL(f *Filter, d Dialect, cols ColumnMap, env Env) (string, []any, error) {
	return ToSQLFrom(f, d, cols, env, 1)
}

// ToSQLFrom is ToSQL with Postgres placeholders starting at $first, for a query that
// has parameters before the filter's.
func ToSQLFrom(f *Filter, d Dialect, cols ColumnMap, env Env, first int) (string, []any, error) {
	if err := f.Validate(); err != nil {
		return "", nil, err
	}
	if d != SQLite && d != Postgres {
		return "", nil, fmt.Errorf("filter: unknown SQL dialect %q", d)
	}
	if f.Expr == nil {
		return "1=1", nil, nil
	}
	w := &sqlWriter{d: d, cols: cols, env: env, kind: f.Kind, next: first}
	if err := w.expr(f.Expr, false); err != nil {
		return "", nil, fmt.Errorf("filter %q: %w", f.Name, err)
	}
	return w.b.String(), w.params, nil
}

// ToSQL translates the filters of kind, OR'ed, as ToSQL does. With no filter on kind
// the condition is "1=0": that kind does not sync.
func (s Set) ToSQL(kind crmsync.ItemKind, d Dialect, cols ColumnMap, env Env) (string, []any, error) {
	fs := s.Of(kind)
	if len(fs) == 0 {
		return "1=0", nil, nil
	}
	var parts []string
	var params []any
	for _, f := range fs {
		where, ps, err := ToSQLFrom(f, d, cols, env, 1+len(params))
		if err != nil {
			return "", nil, err
		}
		if len(fs) > 1 {
			where = "(" + where + ")"
		}
		parts = append(parts, where)
		params = append(params, ps...)
	}
	return strings.Join(parts, " OR "), params, nil
}

type sqlWriter struct {
	d      Dialect
	cols   ColumnMap
	env    Env
	kind   crmsync.ItemKind
	b      strings.Builder
	params []any
	next   int
}

func (w *sqlWriter) param(v any) string {
	w.params = append(w.params, v)
	if w.d == Postgres {
		w.next++
		return "$" + strconv.Itoa(w.next-1)
	}
	return "?"
}

func (w *sqlWriter) expr(e Expr, nested bool) error {
	switch e := e.(type) {
	case And:
		return w.terms(e, " AND ", nested)
	case Or:
		return w.terms(e, " OR ", nested)
	case Cond:
		return w.cond(e)
	}
	return fmt.Errorf("unknown expression %T", e)
}

func (w *sqlWriter) terms(ts []Expr, sep string, nested bool) error {
	if len(ts) > 1 && nested {
		w.b.WriteByte('(')
	}
	for i, t := range ts {
		if i > 0 {
			w.b.WriteString(sep)
		}
		if err := w.expr(t, true); err != nil {
			return err
		}
	}
	if len(ts) > 1 && nested {
		w.b.WriteByte(')')
	}
	return nil
}

func (w *sqlWriter) cond(c Cond) error {
	f, _ := lookupField(w.kind, c.Field)
	col, ok := w.cols[c.Field]
	if !ok || col == "" {
		return fmt.Errorf("no column for field %q", c.Field)
	}
	b := &w.b
	switch c.Op {
	case OpIsNull:
		b.WriteString(col + " IS NULL")
		return nil
	case OpNotNull:
		b.WriteString(col + " IS NOT NULL")
		return nil
	case OpIn:
		b.WriteString(col + " IN (")
		for i, v := range c.Values {
			if i > 0 {
				b.WriteString(", ")
			}
			p, err := w.scalar(f.Type, v)
			if err != nil {
				return err
			}
			b.WriteString(w.param(p))
		}
		b.WriteByte(')')
		return nil
	case OpContains, OpBeginsWith:
		pat := escapeLike(strings.ToLower(c.Values[0].Str)) + "%"
		if c.Op == OpContains {
			pat = "%" + pat
		}
		b.WriteString("LOWER(" + col + ") LIKE " + w.param(pat) + ` ESCAPE '\'`)
		return nil
	}
	v := c.Values[0]
	if f.Type == TypeTime && v.Kind != ValTime {
		return w.timeRange(col, c.Op, v)
	}
	p, err := w.scalar(f.Type, v)
	if err != nil {
		return err
	}
	b.WriteString(col + " " + sqlOps[c.Op] + " " + w.param(p))
	return nil
}

var sqlOps = map[Op]string{OpEq: "=", OpNe: "<>", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">="}

// timeRange writes a comparison with a date or relative date, the range [s, e).
func (w *sqlWriter) timeRange(col string, op Op, v Value) error {
	s, e := v.interval(w.env)
	s, e = s.UTC(), e.UTC()
	b := &w.b
	switch op {
	case OpEq:
		b.WriteString("(" + col + " >= " + w.param(s) + " AND " + col + " < " + w.param(e) + ")")
	case OpNe:
		b.WriteString("(" + col + " < " + w.param(s) + " OR " + col + " >= " + w.param(e) + ")")
	case OpLt:
		b.WriteString(col + " < " + w.param(s))
	case OpLe:
		b.WriteString(col + " < " + w.param(e))
	case OpGt:
		b.WriteString(col + " >= " + w.param(e))
	case OpGe:
		b.WriteString(col + " >= " + w.param(s))
	default:
		return fmt.Errorf("operator %s does not apply to times", op)
	}
	return nil
}

// scalar returns the parameter for a value compared with a field of type t.
func (w *sqlWriter) scalar(t FieldType, v Value) (any, error) {
	switch v.Kind {
	case ValString:
		return v.Str, nil
	case ValNumber:
		return v.Num, nil
	case ValBool:
		return v.Bool, nil
	case ValTime:
		return v.Time.UTC(), nil
	case ValMe:
		if w.env.UserID == "" {
			return nil, ErrNoUser
		}
		return w.env.UserID, nil
	}
	return nil, fmt.Errorf("%s cannot be a %s parameter", v.describe(), t)
}

// escapeLike escapes LIKE's wildcards and the escape character itself.
func escapeLike(s string) string {
	if !strings.ContainsAny(s, `\%_`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '%' || c == '_' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
