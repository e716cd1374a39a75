package filter

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

var taskColumns = ColumnMap{
	"subject": "t.subject", "due": "t.due", "completed": "t.completed", "completed_at": "t.completed_at",
	"priority": "t.priority", "owner": "t.owner_id", "status": "t.status",
}

var contactColumns = ColumnMap{
	"first_name": "c.first_name", "last_name": "c.last_name", "company": "c.company", "job_title": "c.job_title",
	"email": "c.email", "phone": "c.phone", "owner": "c.owner_id",
}

var apptColumns = ColumnMap{
	"subject": "a.subject", "location": "a.location", "start": "a.start_at", "end": "a.end_at", "all_day": "a.all_day",
	"organizer": "a.organizer", "owner": "a.owner_id", "canceled": "a.canceled", "recurring": "a.recurring", "status": "a.status",
}

func TestToSQL(t *testing.T) {
	env := Env{Now: evalNow, UserID: "u-ann"}
	today := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	tomorrow := today.AddDate(0, 0, 1)
	tests := []struct {
		src      string
		sqlite   string
		postgres string
		params   []any
	}{
		{`owner = @me and (status != "completed" or due >= today)`,
			`t.owner_id = ? AND (t.status <> ? OR t.due >= ?)`,
			`t.owner_id = $1 AND (t.status <> $2 OR t.due >= $3)`,
			[]any{"u-ann", "completed", today}},
		{`due = today`, `(t.due >= ? AND t.due < ?)`, `(t.due >= $1 AND t.due < $2)`, []any{today, tomorrow}},
		{`due != today`, `(t.due < ? OR t.due >= ?)`, `(t.due < $1 OR t.due >= $2)`, []any{today, tomorrow}},
		{`due < today or due <= today or due > today`, `t.due < ? OR t.due < ? OR t.due >= ?`, `t.due < $1 OR t.due < $2 OR t.due >= $3`,
			[]any{today, tomorrow, tomorrow}},
		{`due <= 2026-03-10T10:00:00+01:00`, `t.due <= ?`, `t.due <= $1`, []any{time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}},
		{`due is null or completed_at is not null`, `t.due IS NULL OR t.completed_at IS NOT NULL`, `t.due IS NULL OR t.completed_at IS NOT NULL`, nil},
		{`priority in (1, 2) and completed = false`, `t.priority IN (?, ?) AND t.completed = ?`, `t.priority IN ($1, $2) AND t.completed = $3`,
			[]any{1.0, 2.0, false}},
		{`subject contains "50%_off\\"`, `LOWER(t.subject) LIKE ? ESCAPE '\'`, `LOWER(t.subject) LIKE $1 ESCAPE '\'`, []any{`%50\%\_off\\%`}},
		{`subject begins-with "Call"`, `LOWER(t.subject) LIKE ? ESCAPE '\'`, `LOWER(t.subject) LIKE $1 ESCAPE '\'`, []any{`call%`}},
		{`subject = "x' OR 1=1 --"`, `t.subject = ?`, `t.subject = $1`, []any{`x' OR 1=1 --`}},
		{`(priority = 1 or priority = 2) and (due = today or due is null)`,
			`(t.priority = ? OR t.priority = ?) AND ((t.due >= ? AND t.due < ?) OR t.due IS NULL)`,
			`(t.priority = $1 OR t.priority = $2) AND ((t.due >= $3 AND t.due < $4) OR t.due IS NULL)`, nil},
		{``, `1=1`, `1=1`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			f := MustParse(crmsync.KindTask, tt.src)
			where, params, err := ToSQL(f, SQLite, taskColumns, env)
			require.NoError(t, err)
			assert.Equal(t, tt.sqlite, where)
			if tt.params != nil {
				assert.Equal(t, tt.params, params)
			}
			pwhere, pparams, err := ToSQL(f, Postgres, taskColumns, env)
			require.NoError(t, err)
			assert.Equal(t, tt.postgres, pwhere)
			assert.Equal(t, params, pparams)
			assert.Equal(t, strings.Count(where, "?"), len(params))
		})
	}
}

func TestSetToSQL(t *testing.T) {
	env := Env{Now: evalNow, UserID: "u-ann"}
	set := append(DefaultSet(), &Filter{Name: "Contoso", Kind: crmsync.KindContact, Expr: C("company", OpEq, String("Contoso"))})
	where, params, err := set.ToSQL(crmsync.KindContact, Postgres, contactColumns, env)
	require.NoError(t, err)
	assert.Equal(t, `(c.owner_id = $1) OR (c.company = $2)`, where)
	assert.Equal(t, []any{"u-ann", "Contoso"}, params)

	where, params, err = Set{MyContacts()}.ToSQL(crmsync.KindTask, SQLite, taskColumns, env)
	require.NoError(t, err)
	assert.Equal(t, "1=0", where, "no filter: the kind does not sync")
	assert.Empty(t, params)

	where, _, err = ToSQLFrom(MyContacts(), Postgres, contactColumns, env, 4)
	require.NoError(t, err)
	assert.Equal(t, "c.owner_id = $4", where)
}

func TestToSQLErrors(t *testing.T) {
	env := Env{Now: evalNow, UserID: "u-ann"}
	_, _, err := ToSQL(MyContacts(), SQLite, ColumnMap{}, env)
	assert.ErrorContains(t, err, `no column for field "owner"`)
	_, _, err = ToSQL(MyContacts(), "oracle", contactColumns, env)
	assert.ErrorContains(t, err, "dialect")
	_, _, err = ToSQL(MyContacts(), SQLite, contactColumns, Env{Now: evalNow})
	assert.True(t, errors.Is(err, ErrNoUser))
	_, _, err = ToSQL(&Filter{Kind: crmsync.KindTask, Expr: C("colour", OpEq, String("x"))}, SQLite, taskColumns, env)
	assert.Error(t, err)
}

// TestSQLAgreesWithMatch generates filters and items, and checks that evaluating a
// filter in memory and evaluating its SQL (with a small SQL interpreter, with SQL's
// three-valued logic) over the item as a row agree.
func TestSQLAgreesWithMatch(t *testing.T) {
	kinds := []struct {
		kind crmsync.ItemKind
		cols ColumnMap
	}{
		{crmsync.KindTask, taskColumns}, {crmsync.KindContact, contactColumns}, {crmsync.KindAppointment, apptColumns},
	}
	n := 3000
	if testing.Short() {
		n = 500
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range kinds {
		for i := range n {
			env := Env{Now: timePool[r.IntN(len(timePool))], UserID: pick3(r, "u-ann", "u-bob", "")}
			f := &Filter{Kind: k.kind, Expr: genExpr(r, k.kind, 3)}
			require.NoError(t, f.Validate(), f.String())
			where, params, err := ToSQL(f, Postgres, k.cols, env)
			if errors.Is(err, ErrNoUser) {
				continue
			}
			require.NoError(t, err)
			for range 10 {
				it := genItem(r, k.kind)
				row := itemRow(it, k.cols)
				got, err := evalSQL(where, params, row)
				require.NoError(t, err, where)
				require.Equal(t, f.Match(it, env), got, "case %d\nfilter: %s\nsql: %s\nparams: %v\nrow: %v", i, f, where, params, row)
			}
		}
	}
}

func pick3[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

var genStrings = []string{"", "Contoso", "contoso", "Call Contoso", "50%", "a_b", `back\slash`, "Ré", "open", "completed", "scheduled", "canceled", "u-ann", "u-bob", "ann@crm.example"}

// timePool holds the instants items and values are made of: day, week, month and year
// boundaries (where range comparisons differ) and instants next to them.
var timePool = func() []time.Time {
	var out []time.Time
	for d := -12; d <= 12; d++ {
		mid := time.Date(2026, 3, 10+d, 0, 0, 0, 0, time.UTC)
		out = append(out, mid, mid.Add(-time.Nanosecond), mid.Add(15*time.Hour+4*time.Minute+5*time.Second))
	}
	return append(out, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC))
}()

func genTime(r *rand.Rand) time.Time {
	if r.IntN(5) == 0 {
		return time.Time{}
	}
	return timePool[r.IntN(len(timePool))]
}

func genItem(r *rand.Rand, kind crmsync.ItemKind) *crmsync.Item {
	s := func() string { return pick3(r, genStrings...) }
	owner := pick3(r, "u-ann", "u-bob", "")
	it := &crmsync.Item{Kind: kind}
	switch kind {
	case crmsync.KindTask:
		it.Task = &crmsync.Task{Subject: s(), Due: genTime(r), Completed: r.IntN(2) == 0, CompletedAt: genTime(r), Priority: r.IntN(3), OwnerUserID: owner}
	case crmsync.KindContact:
		c := &crmsync.Contact{FirstName: s(), LastName: s(), Company: s(), JobTitle: s(), OwnerUserID: owner}
		if e := s(); e != "" {
			c.Emails = []string{e}
		}
		if p := s(); p != "" {
			c.Phones = []string{p}
		}
		it.Contact = c
	case crmsync.KindAppointment:
		a := &crmsync.Appointment{Subject: s(), Location: s(), Start: genTime(r), End: genTime(r), AllDay: r.IntN(2) == 0,
			Organizer: addr(s()), OwnerUserID: owner, Canceled: r.IntN(2) == 0}
		if r.IntN(2) == 0 {
			a.Recurrence = &crmsync.Recurrence{RRule: "FREQ=DAILY"}
		}
		it.Appointment = a
	}
	return it
}

// itemRow is the item as a table row: NULL for absent values, one column per field.
func itemRow(it *crmsync.Item, cols ColumnMap) map[string]any {
	row := make(map[string]any)
	for _, f := range fieldTable[it.Kind] {
		v := f.get(it)
		var x any
		switch {
		case v.null:
			x = nil
		case f.Multi:
			x = v.ss[0]
		case f.Type == TypeString || f.Type == TypeUser:
			x = v.s
		case f.Type == TypeNumber:
			x = v.n
		case f.Type == TypeBool:
			x = v.b
		case f.Type == TypeTime:
			x = v.t.UTC()
		}
		row[cols[f.Name]] = x
	}
	return row
}

var genRelatives = []string{"today", "yesterday", "tomorrow", "this-week", "last-week", "next-week", "this-month", "last-month", "next-month", "this-year", "last-7-days", "next-30-days", "last-1-days"}

func genValue(r *rand.Rand, t FieldType) Value {
	switch t {
	case TypeString:
		return String(pick3(r, genStrings[1:]...))
	case TypeNumber:
		return Number(float64(r.IntN(4)) - 0.5*float64(r.IntN(2)))
	case TypeBool:
		return Bool(r.IntN(2) == 0)
	case TypeUser:
		if r.IntN(2) == 0 {
			return Me()
		}
		return String(pick3(r, "u-ann", "u-bob", "u-x"))
	case TypeTime:
		switch r.IntN(3) {
		case 0:
			v, _ := Relative(pick3(r, genRelatives...))
			return v
		case 1:
			d := evalNow.AddDate(0, 0, r.IntN(20)-10)
			return Date(d.Year(), d.Month(), d.Day())
		default:
			t := genTime(r)
			if t.IsZero() {
				t = evalNow
			}
			return Time(t)
		}
	}
	panic("no type")
}

func genExpr(r *rand.Rand, kind crmsync.ItemKind, depth int) Expr {
	if depth > 0 && r.IntN(3) == 0 {
		n := 2 + r.IntN(2)
		terms := make([]Expr, n)
		for i := range terms {
			terms[i] = genExpr(r, kind, depth-1)
		}
		if r.IntN(2) == 0 {
			return And(terms)
		}
		return Or(terms)
	}
	fs := fieldTable[kind]
	f := fs[r.IntN(len(fs))]
	op := opsFor[f.Type][r.IntN(len(opsFor[f.Type]))]
	c := Cond{Field: f.Name, Op: op}
	switch op {
	case OpIsNull, OpNotNull:
	case OpIn:
		for range 1 + r.IntN(3) {
			c.Values = append(c.Values, genValue(r, f.Type))
		}
	case OpContains, OpBeginsWith:
		c.Values = []Value{String(pick3(r, "con", "CON", "50%", "_", `\`, "ré", "call", "x"))}
	default:
		c.Values = []Value{genValue(r, f.Type)}
	}
	return c
}

// evalSQL interprets the SQL that ToSQL writes over one row, with three-valued logic.
func evalSQL(where string, params []any, row map[string]any) (bool, error) {
	toks, err := sqlTokens(where)
	if err != nil {
		return false, err
	}
	p := &sqlEval{toks: toks, params: params, row: row}
	v, err := p.or()
	if err != nil {
		return false, err
	}
	if p.i != len(p.toks) {
		return false, fmt.Errorf("trailing %q", p.toks[p.i:])
	}
	return v == triTrue, nil
}

type tri int

const (
	triFalse tri = iota
	triTrue
	triUnknown
)

func sqlTokens(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ':
			i++
		case strings.HasPrefix(s[i:], `'\'`):
			out = append(out, `'\'`)
			i += 3
		case strings.ContainsRune("(),", rune(c)):
			out = append(out, string(c))
			i++
		case c == '<' || c == '>' || c == '=':
			j := i + 1
			if j < len(s) && (s[j] == '=' || s[j] == '>') {
				j++
			}
			out = append(out, s[i:j])
			i = j
		case c == '?' || c == '$' || isWordByte(c) || c == '.':
			j := i + 1
			for j < len(s) && (isWordByte(s[j]) || s[j] == '.') && s[j] != '-' {
				j++
			}
			out = append(out, s[i:j])
			i = j
		default:
			return nil, fmt.Errorf("bad SQL at %d: %q", i, s[i:])
		}
	}
	return out, nil
}

type sqlEval struct {
	toks   []string
	i      int
	params []any
	row    map[string]any
	nextQ  int
}

func (p *sqlEval) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *sqlEval) take(want string) error {
	if p.peek() != want {
		return fmt.Errorf("want %q, got %q at %d", want, p.peek(), p.i)
	}
	p.i++
	return nil
}

func (p *sqlEval) or() (tri, error) {
	v, err := p.and()
	for err == nil && p.peek() == "OR" {
		p.i++
		var w tri
		if w, err = p.and(); err == nil {
			switch {
			case v == triTrue || w == triTrue:
				v = triTrue
			case v == triUnknown || w == triUnknown:
				v = triUnknown
			}
		}
	}
	return v, err
}

func (p *sqlEval) and() (tri, error) {
	v, err := p.primary()
	for err == nil && p.peek() == "AND" {
		p.i++
		var w tri
		if w, err = p.primary(); err == nil {
			switch {
			case v == triFalse || w == triFalse:
				v = triFalse
			case v == triUnknown || w == triUnknown:
				v = triUnknown
			}
		}
	}
	return v, err
}

func (p *sqlEval) param() (any, error) {
	t := p.peek()
	p.i++
	if t == "?" {
		p.nextQ++
		return p.params[p.nextQ-1], nil
	}
	if strings.HasPrefix(t, "$") {
		n, err := strconv.Atoi(t[1:])
		if err != nil || n < 1 || n > len(p.params) {
			return nil, fmt.Errorf("bad placeholder %q", t)
		}
		return p.params[n-1], nil
	}
	return nil, fmt.Errorf("want a placeholder, got %q", t)
}

func (p *sqlEval) primary() (tri, error) {
	switch t := p.peek(); {
	case t == "(":
		p.i++
		v, err := p.or()
		if err != nil {
			return 0, err
		}
		return v, p.take(")")
	case t == "1" && p.i+2 < len(p.toks) && p.toks[p.i+1] == "=":
		p.i += 3
		if p.toks[p.i-1] == "1" {
			return triTrue, nil
		}
		return triFalse, nil
	case t == "LOWER":
		p.i++
		if err := p.take("("); err != nil {
			return 0, err
		}
		col := p.row[p.peek()]
		p.i++
		if err := p.take(")"); err != nil {
			return 0, err
		}
		if err := p.take("LIKE"); err != nil {
			return 0, err
		}
		pat, err := p.param()
		if err != nil {
			return 0, err
		}
		if err := p.take("ESCAPE"); err != nil {
			return 0, err
		}
		if err := p.take(`'\'`); err != nil {
			return 0, err
		}
		if col == nil {
			return triUnknown, nil
		}
		return boolTri(like(strings.ToLower(col.(string)), pat.(string))), nil
	}
	colName := p.peek()
	col, ok := p.row[colName]
	if !ok {
		return 0, fmt.Errorf("unknown column %q", colName)
	}
	p.i++
	op := p.peek()
	p.i++
	switch op {
	case "IS":
		not := p.peek() == "NOT"
		if not {
			p.i++
		}
		if err := p.take("NULL"); err != nil {
			return 0, err
		}
		return boolTri((col == nil) != not), nil
	case "IN":
		if err := p.take("("); err != nil {
			return 0, err
		}
		res := triFalse
		for {
			x, err := p.param()
			if err != nil {
				return 0, err
			}
			if col == nil {
				res = triUnknown
			} else if c, _ := sqlCompare(col, x); c == 0 {
				res = triTrue
			}
			if p.peek() == ")" {
				p.i++
				return res, nil
			}
			if err := p.take(","); err != nil {
				return 0, err
			}
		}
	}
	x, err := p.param()
	if err != nil {
		return 0, err
	}
	if col == nil {
		return triUnknown, nil
	}
	c, err := sqlCompare(col, x)
	if err != nil {
		return 0, err
	}
	switch op {
	case "=":
		return boolTri(c == 0), nil
	case "<>":
		return boolTri(c != 0), nil
	case "<":
		return boolTri(c < 0), nil
	case "<=":
		return boolTri(c <= 0), nil
	case ">":
		return boolTri(c > 0), nil
	case ">=":
		return boolTri(c >= 0), nil
	}
	return 0, fmt.Errorf("unknown operator %q", op)
}

func boolTri(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

func sqlCompare(a, b any) (int, error) {
	switch a := a.(type) {
	case string:
		return strings.Compare(a, b.(string)), nil
	case float64:
		b := b.(float64)
		switch {
		case a < b:
			return -1, nil
		case a > b:
			return 1, nil
		}
		return 0, nil
	case bool:
		if a == b.(bool) {
			return 0, nil
		}
		return 1, nil
	case time.Time:
		return a.Compare(b.(time.Time)), nil
	}
	return 0, fmt.Errorf("cannot compare %T", a)
}

// like matches s against a LIKE pattern with \ as the escape character.
func like(s, pat string) bool {
	if pat == "" {
		return s == ""
	}
	switch pat[0] {
	case '%':
		for i := 0; i <= len(s); i++ {
			if like(s[i:], pat[1:]) {
				return true
			}
		}
		return false
	case '_':
		return s != "" && like(s[1:], pat[1:])
	case '\\':
		return len(pat) > 1 && s != "" && s[0] == pat[1] && like(s[1:], pat[2:])
	}
	return s != "" && s[0] == pat[0] && like(s[1:], pat[1:])
}

func TestMiniSQLInterpreter(t *testing.T) {
	row := map[string]any{"a": nil, "b": "x"}
	for _, tt := range []struct {
		sql  string
		want bool
	}{
		{"a = ? OR b = ?", true},
		{"a = ? AND b = ?", false},
		{"(a = ? OR b <> ?) OR b IS NOT NULL", true},
		{"a IS NULL AND LOWER(b) LIKE ? ESCAPE '\\'", true},
		{"1=0 OR 1=1", true},
	} {
		got, err := evalSQL(tt.sql, []any{"x", "x", "x", "x"}, row)
		require.NoError(t, err, tt.sql)
		assert.Equal(t, tt.want, got, tt.sql)
	}
	assert.True(t, like("50% off", `50\%%`))
	assert.False(t, like("500 off", `50\%%`))
	assert.True(t, like("a_b", `a\_b`))
	assert.False(t, like("axb", `a\_b`))
}
