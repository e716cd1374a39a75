package filter

import (
	"strconv"
	"strings"
	"time"
)

// String returns the terms joined by "and"; an Or term is parenthesized.
func (a And) String() string {
	var b strings.Builder
	for i, t := range a {
		if i > 0 {
			b.WriteString(" and ")
		}
		if _, ok := t.(Or); ok && len(t.(Or)) > 1 {
			b.WriteString("(" + t.String() + ")")
			continue
		}
		b.WriteString(exprString(t))
	}
	return b.String()
}

// String returns the terms joined by "or".
func (o Or) String() string {
	var b strings.Builder
	for i, t := range o {
		if i > 0 {
			b.WriteString(" or ")
		}
		b.WriteString(exprString(t))
	}
	return b.String()
}

// String returns the condition, such as `due >= today` or `priority in (1, 2)`.
func (c Cond) String() string {
	var b strings.Builder
	b.WriteString(c.Field)
	b.WriteByte(' ')
	b.WriteString(c.Op.String())
	switch c.Op {
	case OpIsNull, OpNotNull:
	case OpIn:
		b.WriteString(" (")
		for i, v := range c.Values {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(v.String())
		}
		b.WriteByte(')')
	default:
		for _, v := range c.Values {
			b.WriteByte(' ')
			b.WriteString(v.String())
		}
	}
	return b.String()
}

func exprString(e Expr) string {
	if e == nil {
		return ""
	}
	return e.String()
}

// String returns the value as the text syntax writes it.
func (v Value) String() string {
	switch v.Kind {
	case ValString:
		return strconv.Quote(v.Str)
	case ValNumber:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case ValBool:
		return strconv.FormatBool(v.Bool)
	case ValTime:
		return v.Time.Format(time.RFC3339Nano)
	case ValDate:
		return v.Time.Format(time.DateOnly)
	case ValRelative:
		return v.Str
	case ValMe:
		return "@me"
	}
	return "<invalid value>"
}
