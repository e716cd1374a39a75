package filter

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func TestParsePrint(t *testing.T) {
	tests := []struct {
		kind      crmsync.ItemKind
		src, want string // want "" means src prints as itself
	}{
		{crmsync.KindTask, `owner = @me and (status != "completed" or due >= today)`, ""},
		{crmsync.KindTask, `OWNER EQ @ME AND (STATUS NE "completed" OR DUE GE TODAY)`, `owner = @me and (status != "completed" or due >= today)`},
		{crmsync.KindTask, `priority in (1, 2) or completed = true`, ""},
		{crmsync.KindTask, `a_and_b`, "!"}, // error, checked below
		{crmsync.KindTask, `due < 2026-03-01 and completed_at >= 2026-03-01T09:30:00Z`, ""},
		{crmsync.KindTask, `due <= 2026-03-01T09:30:00.5+02:00`, ""},
		{crmsync.KindTask, `due is null or due is not null`, ""},
		{crmsync.KindTask, `due is-null or due not-null`, `due is null or due is not null`},
		{crmsync.KindTask, `((priority = 1))`, `priority = 1`},
		{crmsync.KindTask, `priority = 1 and (priority = 2 and priority = 3)`, `priority = 1 and priority = 2 and priority = 3`},
		{crmsync.KindTask, `priority = 1 or (priority = 2 or priority = 3)`, `priority = 1 or priority = 2 or priority = 3`},
		{crmsync.KindTask, `priority = 1 and priority = 2 or priority = 3`, ""},
		{crmsync.KindTask, `priority = 1 and (priority = 2 or priority = 3)`, ""},
		{crmsync.KindTask, `priority=+1.50 and priority<>-2e3`, `priority = 1.5 and priority != -2000`},
		{crmsync.KindTask, "subject contains \"a \\\"quoted\\\" word\\n\"", ""},
		{crmsync.KindTask, `subject begins-with "Ré" and due = last-7-days`, ""},
		{crmsync.KindTask, `due = next-30-days or due = this-month or due = this-week`, ""},
		{crmsync.KindContact, `owner = @me`, ""},
		{crmsync.KindContact, `email contains "@contoso.com" and company in ("Contoso", "Fabrikam")`, ""},
		{crmsync.KindContact, `owner in (@me, "u-42")`, ""},
		{crmsync.KindAppointment, `start >= today and canceled = false and organizer = "ann@crm.example"`, ""},
		{crmsync.KindAppointment, "start >= today\n\tand\r\nend < tomorrow", `start >= today and end < tomorrow`},
		{crmsync.KindContact, ``, ""},
		{crmsync.KindContact, `   `, ""},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			f, err := Parse(tt.kind, tt.src)
			if tt.want == "!" {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			want := tt.want
			if want == "" {
				want = tt.src
				if f.Expr == nil {
					want = ""
				}
			}
			assert.Equal(t, want, f.String())
			again, err := Parse(tt.kind, f.String())
			require.NoError(t, err)
			assert.True(t, Equal(f.Expr, again.Expr), "round trip: %s", f.String())
			assert.NoError(t, f.Validate())
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		kind     crmsync.ItemKind
		src      string
		line     int
		col      int
		contains string
	}{
		{crmsync.KindTask, `owner = `, 1, 9, "expected a value"},
		{crmsync.KindTask, `owner = @you`, 1, 9, "@me"},
		{crmsync.KindTask, `owner`, 1, 6, "expected an operator"},
		{crmsync.KindTask, `colour = "red"`, 1, 1, `task has no field "colour"`},
		{crmsync.KindTask, `priority contains "x"`, 1, 1, "contains does not apply to number"},
		{crmsync.KindTask, `priority = "high"`, 1, 1, "cannot be compared with a string"},
		{crmsync.KindTask, `due = "tomorrow"`, 1, 1, "cannot be compared with a string"},
		{crmsync.KindTask, `due = someday`, 1, 7, "strings are in double quotes"},
		{crmsync.KindTask, `due = last-0-days`, 1, 7, "expected a value"},
		{crmsync.KindTask, `due = last-3651-days`, 1, 7, "expected a value"},
		{crmsync.KindTask, `due = 2026-13-01`, 1, 7, "bad date"},
		{crmsync.KindTask, `due = 2026-03-01T25:00:00Z`, 1, 7, "bad instant"},
		{crmsync.KindTask, `priority = 1e999`, 1, 12, "bad number"},
		{crmsync.KindTask, `priority = 0x10`, 1, 12, "bad number"},
		{crmsync.KindTask, `subject = "open`, 1, 11, "not terminated"},
		{crmsync.KindTask, `subject = "bad \q"`, 1, 11, "bad string"},
		{crmsync.KindTask, `(priority = 1`, 1, 14, `expected ")"`},
		{crmsync.KindTask, `priority = 1)`, 1, 13, `unexpected ")"`},
		{crmsync.KindTask, `priority = 1 priority = 2`, 1, 14, `unexpected "priority"`},
		{crmsync.KindTask, `priority in 1`, 1, 13, `expected "(" after "in"`},
		{crmsync.KindTask, `priority in (1 2)`, 1, 16, `expected "," or ")"`},
		{crmsync.KindTask, `priority in ()`, 1, 14, "expected a value"},
		{crmsync.KindTask, `due is not 3`, 1, 12, `expected "null"`},
		{crmsync.KindTask, `due = null`, 1, 7, "null is not a value"},
		{crmsync.KindTask, `and = 1`, 1, 1, "expected a field name"},
		{crmsync.KindTask, `priority ! 1`, 1, 10, `"!" must be followed by "="`},
		{crmsync.KindTask, `priority = 1 & 2`, 1, 14, "unexpected character"},
		{crmsync.KindTask, "priority = 1 and\n  colour = 2", 2, 3, "no field"},
		{crmsync.KindTask, "subject = \"été\" and é", 1, 21, "unexpected character"},
		{crmsync.KindTask, `completed is null`, 1, 1, "does not apply to bool"},
		{crmsync.KindContact, `owner < @me`, 1, 1, "does not apply to user"},
		{crmsync.KindContact, `owner = 3`, 1, 1, "cannot be compared with a number"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			_, err := Parse(tt.kind, tt.src)
			require.Error(t, err)
			var se *SyntaxError
			require.True(t, errors.As(err, &se), "%v", err)
			assert.Equal(t, tt.line, se.Line, err.Error())
			assert.Equal(t, tt.col, se.Col, err.Error())
			assert.Contains(t, se.Msg, tt.contains)
			assert.Contains(t, err.Error(), "filter: ")
		})
	}
	_, err := Parse(crmsync.ItemKind(9), "x = 1")
	assert.Error(t, err)
	_, err = ParseExpr(string(make([]byte, maxFilterLen+1)))
	assert.Error(t, err)
	deep := ""
	for range maxDepth + 2 {
		deep += "("
	}
	_, err = ParseExpr(deep + "x = 1")
	assert.ErrorContains(t, err, "nested")
}

func TestParseExprWithoutKind(t *testing.T) {
	e, err := ParseExpr(`colour = "red" and size > 3`)
	require.NoError(t, err)
	assert.Equal(t, And{C("colour", OpEq, String("red")), C("size", OpGt, Number(3))}, e)
	f := &Filter{Name: "f", Kind: crmsync.KindTask, Expr: e}
	assert.ErrorContains(t, f.Validate(), `task has no field "colour"`)
}

func TestValidateBuiltFilters(t *testing.T) {
	rel, err := Relative("Next-7-Days")
	require.NoError(t, err)
	assert.Equal(t, "next-7-days", rel.Str)
	_, err = Relative("soon")
	assert.Error(t, err)

	tests := []struct {
		name string
		f    Filter
		ok   bool
	}{
		{"good", Filter{Kind: crmsync.KindTask, Expr: Or{C("due", OpGe, rel), C("due", OpEq, Date(2026, 1, 2))}}, true},
		{"nil expr", Filter{Kind: crmsync.KindTask}, true},
		{"empty and", Filter{Kind: crmsync.KindTask, Expr: And{}}, false},
		{"empty or", Filter{Kind: crmsync.KindTask, Expr: Or{}}, false},
		{"nil term", Filter{Kind: crmsync.KindTask, Expr: And{nil}}, false},
		{"bad kind", Filter{Kind: 0, Expr: C("due", OpIsNull)}, false},
		{"null op with value", Filter{Kind: crmsync.KindTask, Expr: C("due", OpIsNull, Date(2026, 1, 1))}, false},
		{"two values", Filter{Kind: crmsync.KindTask, Expr: C("priority", OpEq, Number(1), Number(2))}, false},
		{"bad relative", Filter{Kind: crmsync.KindTask, Expr: C("due", OpEq, Value{Kind: ValRelative, Str: "soon"})}, false},
		{"time in", Filter{Kind: crmsync.KindTask, Expr: C("due", OpIn, Time(time.Now()))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
	assert.Panics(t, func() { MustParse(crmsync.KindTask, "colour = 1") })
}

func TestFieldsDocumented(t *testing.T) {
	for _, k := range []crmsync.ItemKind{crmsync.KindContact, crmsync.KindAppointment, crmsync.KindTask} {
		fs := Fields(k)
		require.NotEmpty(t, fs)
		names := map[string]bool{}
		for _, f := range fs {
			assert.NotEmpty(t, f.Doc, f.Name)
			assert.NotContains(t, f.Type.String(), "field-type")
			assert.False(t, names[f.Name])
			names[f.Name] = true
		}
		assert.True(t, names["owner"], "every kind has an owner")
	}
}
