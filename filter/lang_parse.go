package filter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmsync/crmsync"
)

// SyntaxError is an error in a filter's text, with its position.
type SyntaxError struct {
	// Offset is the byte offset of the error in the text; Line and Col (in
	// characters) are 1-based.
	Offset    int
	Line, Col int
	Msg       string
}

// Error returns "filter: line:col: message".
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter: %d:%d: %s", e.Line, e.Col, e.Msg)
}

// maxFilterLen and maxDepth bound what Parse accepts: filters are written by people.
const (
	maxFilterLen = 64 << 10
	maxDepth     = 100
)

// Parse parses a filter on items of kind from the text syntax (see Filter), checking
// fields and types; errors are *SyntaxError. Empty text selects every item of kind.
func Parse(kind crmsync.ItemKind, src string) (*Filter, error) {
	f := &Filter{Kind: kind}
	if kind != crmsync.KindAppointment && kind != crmsync.KindContact && kind != crmsync.KindTask {
		return nil, fmt.Errorf("filter: kind %v cannot be filtered", kind)
	}
	e, err := parse(kind, src)
	if err != nil {
		return nil, err
	}
	f.Expr = e
	return f, nil
}

// ParseExpr parses an expression without checking it against a kind's fields: only
// the syntax and the values' forms. Empty text gives a nil Expr.
func ParseExpr(src string) (Expr, error) { return parse(0, src) }

// MustParse is Parse that panics on error, for filters written in code.
func MustParse(kind crmsync.ItemKind, src string) *Filter {
	f, err := Parse(kind, src)
	if err != nil {
		panic(err)
	}
	return f
}

func parse(kind crmsync.ItemKind, src string) (Expr, error) {
	p := &parser{src: src, kind: kind}
	if len(src) > maxFilterLen {
		return nil, p.errAt(0, "filter longer than %d bytes", maxFilterLen)
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tEOF {
		return nil, nil
	}
	e, err := p.orExpr(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errAt(p.tok.pos, "unexpected %s", p.tok.describe())
	}
	return e, nil
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tWord
	tString
	tLiteral // a number, a date or an instant
	tMe
	tLParen
	tRParen
	tComma
	tOp
)

type token struct {
	kind tokKind
	pos  int
	text string // the source text; for tString the unquoted string
	low  string // tWord: lower-cased
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of filter"
	case tString:
		return "string " + strconv.Quote(t.text)
	}
	return strconv.Quote(t.text)
}

type parser struct {
	src  string
	pos  int
	kind crmsync.ItemKind
	tok  token
}

func (p *parser) errAt(off int, format string, args ...any) *SyntaxError {
	off = min(max(off, 0), len(p.src))
	line := 1 + strings.Count(p.src[:off], "\n")
	start := strings.LastIndexByte(p.src[:off], '\n') + 1
	return &SyntaxError{Offset: off, Line: line, Col: 1 + utf8.RuneCountInString(p.src[start:off]), Msg: fmt.Sprintf(format, args...)}
}

// next reads the next token into p.tok.
func (p *parser) next() error {
	s := p.src
	for p.pos < len(s) && (s[p.pos] == ' ' || s[p.pos] == '\t' || s[p.pos] == '\n' || s[p.pos] == '\r') {
		p.pos++
	}
	start := p.pos
	if start >= len(s) {
		p.tok = token{kind: tEOF, pos: start}
		return nil
	}
	c := s[start]
	switch {
	case c == '(':
		p.pos++
		p.tok = token{kind: tLParen, pos: start, text: "("}
	case c == ')':
		p.pos++
		p.tok = token{kind: tRParen, pos: start, text: ")"}
	case c == ',':
		p.pos++
		p.tok = token{kind: tComma, pos: start, text: ","}
	case c == '=' || c == '!' || c == '<' || c == '>':
		n := 1
		if start+1 < len(s) && (s[start+1] == '=' || (c == '<' && s[start+1] == '>')) {
			n = 2
		}
		text := s[start : start+n]
		if text == "!" {
			return p.errAt(start, `"!" must be followed by "="`)
		}
		p.pos += n
		p.tok = token{kind: tOp, pos: start, text: text}
	case c == '"':
		return p.lexString()
	case c == '@':
		p.pos++
		w := p.word()
		if !strings.EqualFold(w, "me") {
			return p.errAt(start, "unknown %q: the only @ value is @me", "@"+w)
		}
		p.tok = token{kind: tMe, pos: start, text: "@me"}
	case isDigit(c) || ((c == '-' || c == '+') && start+1 < len(s) && isDigit(s[start+1])):
		p.pos++
		for p.pos < len(s) && isLiteralByte(s[p.pos]) {
			p.pos++
		}
		p.tok = token{kind: tLiteral, pos: start, text: s[start:p.pos]}
	case isWordStart(c):
		w := p.word()
		p.tok = token{kind: tWord, pos: start, text: w, low: strings.ToLower(w)}
	default:
		r, _ := utf8.DecodeRuneInString(s[start:])
		return p.errAt(start, "unexpected character %q", r)
	}
	return nil
}

func (p *parser) word() string {
	start := p.pos
	for p.pos < len(p.src) && isWordByte(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

func (p *parser) lexString() error {
	s, start := p.src, p.pos
	i := start + 1
	for i < len(s) && s[i] != '"' {
		if s[i] == '\\' {
			i++
		}
		if i < len(s) && s[i] == '\n' {
			return p.errAt(i, "newline in string")
		}
		i++
	}
	if i >= len(s) {
		return p.errAt(start, "string not terminated")
	}
	raw := s[start : i+1]
	v, err := strconv.Unquote(raw)
	if err != nil {
		return p.errAt(start, "bad string %s: %v", raw, err)
	}
	p.pos = i + 1
	p.tok = token{kind: tString, pos: start, text: v}
	return nil
}

func isWordStart(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }
func isWordByte(c byte) bool  { return isWordStart(c) || isDigit(c) || c == '-' }
func isLiteralByte(c byte) bool {
	return isWordStart(c) || isDigit(c) || c == '-' || c == '+' || c == ':' || c == '.'
}

// orExpr = andExpr { "or" andExpr }
func (p *parser) orExpr(depth int) (Expr, error) {
	if depth > maxDepth {
		return nil, p.errAt(p.tok.pos, "nested more than %d deep", maxDepth)
	}
	first, err := p.andExpr(depth)
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for p.tok.kind == tWord && p.tok.low == "or" {
		if err := p.next(); err != nil {
			return nil, err
		}
		t, err := p.andExpr(depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return flatten[Or](terms), nil
}

// andExpr = term { "and" term }
func (p *parser) andExpr(depth int) (Expr, error) {
	first, err := p.term(depth)
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for p.tok.kind == tWord && p.tok.low == "and" {
		if err := p.next(); err != nil {
			return nil, err
		}
		t, err := p.term(depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return flatten[And](terms), nil
}

// flatten merges nested terms of the same kind: a and (b and c) is a and b and c.
func flatten[T And | Or](terms []Expr) T {
	var out T
	for _, t := range terms {
		if inner, ok := t.(T); ok {
			out = append(out, inner...)
		} else {
			out = append(out, t)
		}
	}
	return out
}

// term = "(" orExpr ")" | cond
func (p *parser) term(depth int) (Expr, error) {
	if p.tok.kind == tLParen {
		open := p.tok.pos
		if err := p.next(); err != nil {
			return nil, err
		}
		e, err := p.orExpr(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tRParen {
			return nil, p.errAt(p.tok.pos, "expected \")\" to close \"(\" at %d, got %s", open+1, p.tok.describe())
		}
		return e, p.next()
	}
	return p.cond()
}

var opWords = map[string]Op{
	"=": OpEq, "==": OpEq, "eq": OpEq,
	"!=": OpNe, "<>": OpNe, "ne": OpNe,
	"<": OpLt, "lt": OpLt, "<=": OpLe, "le": OpLe,
	">": OpGt, "gt": OpGt, ">=": OpGe, "ge": OpGe,
	"contains": OpContains, "begins-with": OpBeginsWith, "in": OpIn,
	"is-null": OpIsNull, "not-null": OpNotNull,
}

var keywords = map[string]bool{"and": true, "or": true, "in": true, "is": true, "not": true, "null": true,
	"true": true, "false": true, "contains": true, "begins-with": true, "is-null": true, "not-null": true}

// cond = field op value | field "in" "(" value {"," value} ")" | field "is" ["not"] "null"
func (p *parser) cond() (Expr, error) {
	ft := p.tok
	if ft.kind != tWord || keywords[ft.low] || strings.Contains(ft.low, "-") {
		return nil, p.errAt(ft.pos, "expected a field name, got %s", ft.describe())
	}
	c := Cond{Field: ft.low}
	var field *Field
	if p.kind != 0 {
		f, ok := lookupField(p.kind, c.Field)
		if !ok {
			return nil, p.errAt(ft.pos, "%s has no field %q (fields: %s)", p.kind, c.Field, fieldNames(p.kind))
		}
		field = f
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	opTok := p.tok
	var op Op
	switch {
	case opTok.kind == tOp:
		op = opWords[opTok.text]
	case opTok.kind == tWord && opTok.low == "is":
		if err := p.next(); err != nil {
			return nil, err
		}
		op = OpIsNull
		if p.tok.kind == tWord && p.tok.low == "not" {
			op = OpNotNull
			if err := p.next(); err != nil {
				return nil, err
			}
		}
		if p.tok.kind != tWord || p.tok.low != "null" {
			return nil, p.errAt(p.tok.pos, "expected \"null\" after \"is\", got %s", p.tok.describe())
		}
	case opTok.kind == tWord:
		op = opWords[opTok.low]
	}
	if op == 0 {
		return nil, p.errAt(opTok.pos, "expected an operator after %q, got %s", c.Field, opTok.describe())
	}
	c.Op = op
	if err := p.next(); err != nil {
		return nil, err
	}
	switch op {
	case OpIsNull, OpNotNull:
	case OpIn:
		if p.tok.kind != tLParen {
			return nil, p.errAt(p.tok.pos, "expected \"(\" after \"in\", got %s", p.tok.describe())
		}
		for {
			if err := p.next(); err != nil {
				return nil, err
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			c.Values = append(c.Values, v)
			if p.tok.kind == tRParen {
				break
			}
			if p.tok.kind != tComma {
				return nil, p.errAt(p.tok.pos, "expected \",\" or \")\" in the list, got %s", p.tok.describe())
			}
		}
		if err := p.next(); err != nil {
			return nil, err
		}
	default:
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.Values = []Value{v}
	}
	if field != nil {
		if err := c.checkField(field); err != nil {
			return nil, p.errAt(ft.pos, "%v", err)
		}
	}
	return c, nil
}

func fieldNames(kind crmsync.ItemKind) string {
	var names []string
	for _, f := range Fields(kind) {
		names = append(names, f.Name)
	}
	return strings.Join(names, ", ")
}

// value reads one value and the token after it.
func (p *parser) value() (Value, error) {
	t := p.tok
	var v Value
	switch t.kind {
	case tString:
		v = String(t.text)
	case tMe:
		v = Me()
	case tLiteral:
		var err error
		if v, err = parseLiteral(t.text); err != nil {
			return v, p.errAt(t.pos, "%v", err)
		}
	case tWord:
		switch t.low {
		case "true":
			v = Bool(true)
		case "false":
			v = Bool(false)
		case "null":
			return v, p.errAt(t.pos, "null is not a value: write \"is null\" or \"is not null\"")
		default:
			if _, ok := parseRelative(t.low); !ok {
				return v, p.errAt(t.pos, "expected a value, got %s (strings are in double quotes)", t.describe())
			}
			v = Value{Kind: ValRelative, Str: t.low}
		}
	default:
		return v, p.errAt(t.pos, "expected a value, got %s", t.describe())
	}
	return v, p.next()
}

// parseLiteral reads a number, a date (2006-01-02) or an RFC 3339 instant.
func parseLiteral(s string) (Value, error) {
	if len(s) == 10 && s[4] == '-' && s[7] == '-' {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return Value{}, fmt.Errorf("bad date %q: %v", s, err)
		}
		return Value{Kind: ValDate, Time: t}, nil
	}
	if strings.ContainsAny(s, "Tt") && len(s) > 10 && s[4] == '-' {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Value{}, fmt.Errorf("bad instant %q (want RFC 3339, such as 2026-03-01T09:30:00Z)", s)
		}
		return Time(t), nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) || strings.ContainsAny(s, "xX_") {
		return Value{}, fmt.Errorf("bad number %q", s)
	}
	return Number(n), nil
}
