package mailparse

import (
	"bytes"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// field is one field of a header block, as the block holds it: its name without the
// spaces around it, and its raw value, from after the colon to the end of its last
// line, continuation lines and line breaks included.
type field struct {
	name, value []byte
	whole       []byte // the field, name to last line break
}

// fields are the fields of a header block in their order. They read the block in
// place: looking a field up makes the only copy of its value.
//
// A header is read this way, not with go-message's textproto.ReadHeader, because that
// reader allocates a map, a line buffer, a key and a value for every field, and a
// message's header is mostly fields the parser never looks at (Received, DKIM,
// X-*). scanHeader reads what ReadHeader reads (FuzzHeaderFields holds them to it).
type fields []field

// scanHeader appends the fields of a header block (without the empty line that ends
// it) to fs. It reports false where go-message's textproto.ReadHeader fails: the block
// starts with a continuation line, or a line is neither a continuation nor a field
// with a name of printable ASCII; the fields read up to there are of no use then. As
// ReadHeader does, it drops a field without a name (a line that starts with ':').
func scanHeader(head []byte, fs fields) (fields, bool) {
	if len(head) > 0 && isSpace(head[0]) {
		return fs, false
	}
	for rest := head; len(rest) > 0; {
		// The field's first line, then its continuation lines.
		end := lineEnd(rest, 0)
		for end < len(rest) && isSpace(rest[end]) {
			end = lineEnd(rest, end)
		}
		kv := rest[:end]
		rest = rest[end:]

		colon := bytes.IndexByte(firstLine(kv), ':')
		if colon < 0 {
			return fs, false
		}
		name := bytes.TrimRight(kv[:colon], " \t") // no leading space: that is a continuation
		if len(name) == 0 {
			continue // ReadHeader skips it
		}
		if !validFieldName(name) {
			return fs, false
		}
		fs = append(fs, field{name: name, value: kv[colon+1:], whole: kv})
	}
	return fs, true
}

// lineEnd returns the index just past the line break of the line that starts at i in
// b, or len(b) when the line has none.
func lineEnd(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// Get returns the value of the first field named key (in any case), unfolded as
// go-message's Header.Get returns it, or "" when there is none.
func (fs fields) Get(key string) string {
	for _, f := range fs {
		if equalFoldASCII(f.name, key) {
			return unfold(f.value)
		}
	}
	return ""
}

// Values returns the values of the fields named key, in their order.
func (fs fields) Values(key string) []string {
	var out []string
	for _, f := range fs {
		if equalFoldASCII(f.name, key) {
			out = append(out, unfold(f.value))
		}
	}
	return out
}

// mimeHeader returns the Content-* fields as a go-message header, as
// textproto.ReadHeader would have read them from the block.
func (fs fields) mimeHeader() message.Header {
	return message.Header{Header: fs.header(true)}
}

// header returns the fields (only the Content-* ones when contentOnly) as a go-message
// header, as textproto.ReadHeader would have read them from the block.
func (fs fields) header(contentOnly bool) textproto.Header {
	var h textproto.Header
	// ReadHeader's header holds its fields last first, so that its Get returns the
	// first one; AddRaw appends, so add them in that order.
	for i := len(fs) - 1; i >= 0; i-- {
		if n := fs[i].name; !contentOnly || len(n) >= 8 && equalFoldASCII(n[:8], "content-") {
			kv := fs[i].whole
			if kv[len(kv)-1] != '\n' {
				// The block's last line, without a line break: ReadHeader reads it
				// as if it had one (a carriage return at its end stays).
				kv = append(kv[:len(kv):len(kv)], '\r', '\n')
			}
			h.AddRaw(kv)
		}
	}
	return h
}

// equalFoldASCII reports whether b and s are equal under ASCII case folding; field
// names are ASCII, and a name with other bytes never matches one the parser asks for.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x != y && lower(x) != lower(y) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// unfold returns a raw field value as go-message reads it: each line without its line
// break (and one carriage return before it) and the spaces and tabs around it, the
// lines that are left joined by single spaces.
func unfold(v []byte) string {
	// The usual value is one line with a space before it: one copy, no builder.
	if i := bytes.IndexByte(v, '\n'); i < 0 || i == len(v)-1 {
		return string(trimLine(v, i >= 0))
	}
	var b strings.Builder
	b.Grow(len(v))
	for len(v) > 0 {
		line, broken := v, false
		if i := bytes.IndexByte(v, '\n'); i >= 0 {
			line, v, broken = v[:i+1], v[i+1:], true
		} else {
			v = nil
		}
		if line = trimLine(line, broken); len(line) > 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.Write(line)
		}
	}
	return b.String()
}

// trimLine trims a line of a value: the line break (and one carriage return before
// it) when broken says it had one, then spaces and tabs.
func trimLine(l []byte, broken bool) []byte {
	if broken {
		l = l[:len(l)-1]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
	}
	return bytes.Trim(l, " \t")
}
