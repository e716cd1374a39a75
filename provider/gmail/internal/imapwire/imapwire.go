// Package imapwire reads and parses the IMAP protocol at the byte level, for the parts of Gmail's dialect
// that go-imap's client cannot speak (X-GM-MSGID, X-GM-LABELS): framing a stream into lines and literals,
// parsing a response into values, quoting, and modified UTF-7 mailbox names. provider/gmail and its test
// server share it.
package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
)

// MaxLine bounds one line (without its literals). Servers and clients keep lines far shorter.
const MaxLine = 1 << 20

// ErrLineTooLong is returned for a line longer than MaxLine.
var ErrLineTooLong = errors.New("imapwire: line too long")

// ReadLine reads one line, CRLF included, and reports the literal it announces at its end: the size
// (-1 when there is none) and whether it is a non-synchronizing literal ({n+}, LITERAL+), which the sender
// writes without waiting for a continuation request.
func ReadLine(br *bufio.Reader) (line []byte, literal int64, nonSync bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > MaxLine {
			return nil, -1, false, ErrLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, -1, false, err
		}
		break
	}
	n, ns := LiteralAt(line)
	return line, n, ns, nil
}

// LiteralAt returns the size of the literal a line announces at its end ("{12}\r\n", "{12+}\r\n" or
// "~{12}\r\n"), or -1.
func LiteralAt(line []byte) (n int64, nonSync bool) {
	s := bytes.TrimRight(line, "\r\n")
	if len(s) < 3 || s[len(s)-1] != '}' {
		return -1, false
	}
	open := bytes.LastIndexByte(s, '{')
	if open < 0 {
		return -1, false
	}
	num := s[open+1 : len(s)-1]
	if len(num) > 0 && num[len(num)-1] == '+' {
		num, nonSync = num[:len(num)-1], true
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || v < 0 {
		return -1, false
	}
	return v, nonSync
}

// ReadMessage reads one whole response or command: its lines and the literals between them. It is for
// messages whose literals need no continuation request (responses, or commands with non-synchronizing
// literals); max bounds the total size.
func ReadMessage(br *bufio.Reader, max int64) ([]byte, error) {
	var out []byte
	for {
		line, n, _, err := ReadLine(br)
		if err != nil {
			return nil, err
		}
		out = append(out, line...)
		if n < 0 {
			return out, nil
		}
		if int64(len(out))+n > max {
			return nil, fmt.Errorf("imapwire: message larger than %d bytes", max)
		}
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(br, out[start:]); err != nil {
			return nil, err
		}
	}
}

// Tag returns the first word of a response or command: "*", "+" or a tag.
func Tag(msg []byte) string {
	s := msg
	if i := bytes.IndexAny(s, " \r\n"); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// Kind is the kind of a parsed Value.
type Kind uint8

// Value kinds.
const (
	Atom   Kind = iota + 1 // an atom or a number, as written
	String                 // a quoted string or a literal, decoded
	List                   // a parenthesized list
	Nil                    // NIL
)

// Value is one element of a parsed response.
type Value struct {
	Kind Kind
	Text string  // Atom and String
	List []Value // List
}

// String returns v as IMAP would write it, strings quoted (for messages and tests).
func (v Value) String() string {
	switch v.Kind {
	case Atom:
		return v.Text
	case String:
		return Quote(v.Text)
	case Nil:
		return "NIL"
	}
	parts := make([]string, len(v.List))
	for i, x := range v.List {
		parts[i] = x.String()
	}
	return "(" + strings.Join(parts, " ") + ")"
}

// Parse parses msg (a whole response or command, as ReadMessage returns it) into values, the tag first.
// An atom that opens a bracket ("BODY[HEADER.FIELDS (A B)]") runs to the bracket's close.
func Parse(msg []byte) ([]Value, error) {
	p := &parser{b: msg}
	var out []Value
	for {
		p.skipSpace()
		if p.done() {
			return out, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

type parser struct {
	b []byte
	i int
}

func (p *parser) done() bool {
	return p.i >= len(p.b) || p.b[p.i] == '\r' || p.b[p.i] == '\n'
}

func (p *parser) skipSpace() {
	for p.i < len(p.b) && p.b[p.i] == ' ' {
		p.i++
	}
}

func (p *parser) value() (Value, error) {
	switch c := p.b[p.i]; {
	case c == '(':
		p.i++
		var list []Value
		for {
			p.skipSpace()
			if p.i >= len(p.b) {
				return Value{}, errors.New("imapwire: unclosed list")
			}
			if p.b[p.i] == ')' {
				p.i++
				return Value{Kind: List, List: list}, nil
			}
			if p.done() {
				return Value{}, errors.New("imapwire: unclosed list")
			}
			v, err := p.value()
			if err != nil {
				return Value{}, err
			}
			list = append(list, v)
		}
	case c == '"':
		return p.quoted()
	case c == '{' || (c == '~' && p.i+1 < len(p.b) && p.b[p.i+1] == '{'):
		return p.literal()
	case c == ')':
		return Value{}, errors.New("imapwire: unexpected )")
	}
	return p.atom()
}

func (p *parser) quoted() (Value, error) {
	p.i++ // the opening quote
	var sb strings.Builder
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch c {
		case '"':
			p.i++
			return Value{Kind: String, Text: sb.String()}, nil
		case '\\':
			if p.i+1 >= len(p.b) {
				return Value{}, errors.New("imapwire: unterminated quoted string")
			}
			sb.WriteByte(p.b[p.i+1])
			p.i += 2
		case '\r', '\n':
			return Value{}, errors.New("imapwire: line break in a quoted string")
		default:
			sb.WriteByte(c)
			p.i++
		}
	}
	return Value{}, errors.New("imapwire: unterminated quoted string")
}

func (p *parser) literal() (Value, error) {
	if p.b[p.i] == '~' {
		p.i++
	}
	end := bytes.IndexByte(p.b[p.i:], '}')
	if end < 0 {
		return Value{}, errors.New("imapwire: malformed literal")
	}
	num := strings.TrimSuffix(string(p.b[p.i+1:p.i+end]), "+")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return Value{}, fmt.Errorf("imapwire: malformed literal size %q", num)
	}
	p.i += end + 1
	if !bytes.HasPrefix(p.b[p.i:], []byte("\r\n")) {
		return Value{}, errors.New("imapwire: literal size not followed by CRLF")
	}
	p.i += 2
	if len(p.b)-p.i < n {
		return Value{}, errors.New("imapwire: literal shorter than announced")
	}
	v := Value{Kind: String, Text: string(p.b[p.i : p.i+n])}
	p.i += n
	return v, nil
}

func (p *parser) atom() (Value, error) {
	start := p.i
	depth := 0
	for p.i < len(p.b) {
		c := p.b[p.i]
		if depth > 0 {
			switch c {
			case ']':
				depth--
			case '\r', '\n':
				return Value{}, errors.New("imapwire: unclosed bracket")
			}
			p.i++
			continue
		}
		if c == '[' {
			depth++
			p.i++
			continue
		}
		if c == ' ' || c == '(' || c == ')' || c == '"' || c == '{' || c == '\r' || c == '\n' {
			break
		}
		p.i++
	}
	if depth > 0 {
		return Value{}, errors.New("imapwire: unclosed bracket")
	}
	if p.i == start {
		return Value{}, fmt.Errorf("imapwire: unexpected %q", p.b[p.i])
	}
	text := string(p.b[start:p.i])
	if strings.EqualFold(text, "NIL") {
		return Value{Kind: Nil}, nil
	}
	return Value{Kind: Atom, Text: text}, nil
}

// Attrs returns the attribute-value pairs of a FETCH response's list, keyed by upper-case name
// ("UID", "X-GM-MSGID", "BODY[HEADER]"). It reports false when msg is not "* n FETCH (...)".
func Attrs(vals []Value) (seq string, attrs map[string]Value, ok bool) {
	if len(vals) != 4 || vals[0].Text != "*" || vals[1].Kind != Atom || !strings.EqualFold(vals[2].Text, "FETCH") || vals[3].Kind != List {
		return "", nil, false
	}
	list := vals[3].List
	attrs = make(map[string]Value, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		if list[i].Kind != Atom {
			return "", nil, false
		}
		attrs[strings.ToUpper(list[i].Text)] = list[i+1]
	}
	return vals[1].Text, attrs, true
}

// Quote returns s as an IMAP quoted string, or as a literal when it holds a line break or a NUL.
func Quote(s string) string {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "{" + strconv.Itoa(len(s)) + "+}\r\n" + s
	}
	var sb strings.Builder
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	sb.WriteByte('"')
	return sb.String()
}

// Capabilities returns the capability names of a "* CAPABILITY ..." response or of a "[CAPABILITY ...]"
// response code in a line, upper-cased; nil when the line carries none.
func Capabilities(line []byte) []string {
	s := strings.TrimRight(string(line), "\r\n")
	var list string
	switch {
	case strings.HasPrefix(strings.ToUpper(s), "* CAPABILITY "):
		list = s[len("* CAPABILITY "):]
	default:
		i := strings.Index(strings.ToUpper(s), "[CAPABILITY ")
		if i < 0 {
			return nil
		}
		rest := s[i+len("[CAPABILITY "):]
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			return nil
		}
		list = rest[:j]
	}
	return strings.Fields(strings.ToUpper(list))
}

// DecodeMailbox decodes a mailbox name (or a Gmail label) from IMAP's modified UTF-7 (RFC 3501 5.1.3). A
// name that is not valid modified UTF-7 is returned as it is.
func DecodeMailbox(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			sb.WriteByte(s[i])
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return s
		}
		enc := s[i+1 : i+1+end]
		i += end + 1
		if enc == "" {
			sb.WriteByte('&')
			continue
		}
		dec, ok := decodeB64(enc)
		if !ok {
			return s
		}
		sb.WriteString(dec)
	}
	return sb.String()
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

func decodeB64(enc string) (string, bool) {
	var bits, n uint32
	var units []uint16
	for i := 0; i < len(enc); i++ {
		v := strings.IndexByte(b64, enc[i])
		if v < 0 {
			return "", false
		}
		bits = bits<<6 | uint32(v)
		n += 6
		if n >= 16 {
			n -= 16
			units = append(units, uint16(bits>>n))
			bits &= 1<<n - 1
		}
	}
	if len(units) == 0 {
		return "", false
	}
	return string(utf16.Decode(units)), true
}

// EncodeMailbox encodes a UTF-8 mailbox name in modified UTF-7.
func EncodeMailbox(s string) string {
	var sb strings.Builder
	var pending []rune
	flush := func() {
		if len(pending) == 0 {
			return
		}
		units := utf16.Encode(pending)
		var bits, n uint32
		sb.WriteByte('&')
		for _, u := range units {
			bits = bits<<16 | uint32(u)
			n += 16
			for n >= 6 {
				n -= 6
				sb.WriteByte(b64[(bits>>n)&63])
			}
		}
		if n > 0 {
			sb.WriteByte(b64[(bits<<(6-n))&63])
		}
		sb.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			sb.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			sb.WriteRune(r)
		default:
			pending = append(pending, r)
		}
	}
	flush()
	return sb.String()
}
