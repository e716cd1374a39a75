package mailparse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/emersion/go-message/textproto"
)

// multipartSplitter splits a multipart body that is in memory into its parts, as
// go-message's textproto.MultipartReader reads it from a stream, but handing each
// part's body out as a slice of the input instead of copying it through a buffered
// reader. It reads what that reader reads, fails where it fails and with the same
// errors (FuzzMultipart holds it to that), so that the parser's notes do not depend on
// which one read the message.
type multipartSplitter struct {
	buf       []byte
	pos       int // where the next line starts
	partEnd   int // where the current part's body ends; -1 before the first part
	partsRead int // parts started
	nl        []byte
	nlDash    []byte // nl + "--" + boundary
	dashDash  []byte // "--" + boundary + "--"
	dash      []byte // "--" + boundary
}

// bufioSize is the buffer of go-message's reader: a line longer than this outside a
// part's body is an error there, so it is one here.
const bufioSize = 4096

func newMultipartSplitter(body []byte, boundary string) *multipartSplitter {
	b := []byte("\r\n--" + boundary + "--")
	return &multipartSplitter{
		buf: body, partEnd: -1,
		nl: b[:2], nlDash: b[:len(b)-2], dashDash: b[2:], dash: b[2 : len(b)-2],
	}
}

// next returns the next part: its header, its (still transfer-encoded) body, and the
// error that cut the body short (io.ErrUnexpectedEOF when no boundary follows it). At
// the end of the parts it returns io.EOF; any other error ends the parts as it ends
// go-message's.
func (m *multipartSplitter) next() (textproto.Header, source, error) {
	if m.partEnd >= 0 {
		m.pos = m.partEnd // the rest of the previous part is skipped
	}
	if string(m.dash) == "--" {
		return textproto.Header{}, source{}, fmt.Errorf("multipart: boundary is empty")
	}
	expectNewPart := false
	for {
		line, err := m.readLine()
		if err == io.EOF && m.isFinalBoundary(line) {
			return textproto.Header{}, source{}, io.EOF
		}
		if err != nil {
			return textproto.Header{}, source{}, fmt.Errorf("multipart: NextPart: %v", err)
		}
		if m.isBoundaryDelimiterLine(line) {
			m.partsRead++
			h, err := m.readPartHeader()
			if err != nil {
				return textproto.Header{}, source{}, err
			}
			end, clean := m.bodyEnd(m.pos)
			src := source{data: m.buf[m.pos:end:end]}
			if !clean {
				src.err = io.ErrUnexpectedEOF
			}
			m.partEnd = end
			return h, src, nil
		}
		if m.isFinalBoundary(line) {
			return textproto.Header{}, source{}, io.EOF
		}
		if expectNewPart {
			return textproto.Header{}, source{}, fmt.Errorf("multipart: expecting a new Part; got line %q", string(line))
		}
		if m.partsRead == 0 {
			continue // the preamble
		}
		if bytes.Equal(line, m.nl) {
			expectNewPart = true
			continue
		}
		return textproto.Header{}, source{}, fmt.Errorf("multipart: unexpected line in Next(): %q", line)
	}
}

// readLine returns the next line with its end, as bufio.Reader.ReadSlice('\n') does on
// a buffer of bufioSize: io.EOF with the last bytes when they have no line end, and
// bufio.ErrBufferFull when the line does not fit.
func (m *multipartSplitter) readLine() ([]byte, error) {
	rest := m.buf[m.pos:]
	i := bytes.IndexByte(rest, '\n')
	switch {
	case i >= bufioSize || (i < 0 && len(rest) > bufioSize):
		m.pos += bufioSize
		return rest[:bufioSize], bufio.ErrBufferFull
	case i < 0:
		m.pos = len(m.buf)
		return rest, io.EOF
	}
	m.pos += i + 1
	return rest[:i+1], nil
}

// readPartHeader reads a part's header as go-message's own reader does, and moves past
// what that reader consumes: in place when scanHeader can read it, else with that
// reader.
func (m *multipartSplitter) readPartHeader() (textproto.Header, error) {
	// The header ends at the first empty line, or at the end of the input.
	end, next := len(m.buf), len(m.buf)
	for i := m.pos; i < len(m.buf); {
		j := lineEnd(m.buf, i)
		if line := m.buf[i:j]; string(line) == "\n" || string(line) == "\r\n" {
			end, next = i, j
			break
		}
		i = j
	}
	var buf [16]field
	if fs, ok := scanHeader(m.buf[m.pos:end], buf[:0]); ok {
		m.pos = next
		return fs.header(false), nil
	}
	rest := bytes.NewReader(m.buf[m.pos:])
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(rest)
	h, err := textproto.ReadHeader(br)
	m.pos = len(m.buf) - rest.Len() - br.Buffered()
	br.Reset(nil)
	headerReaders.Put(br)
	return h, err
}

// bodyEnd finds where a body starting at start ends: before the line break of the next
// boundary line (clean), or at the end of the input (not clean) but for a last few
// bytes that could have begun a boundary, which go-message's reader leaves unread (and
// the next part's search then reads as lines).
func (m *multipartSplitter) bodyEnd(start int) (end int, clean bool) {
	at := start
	if rest := m.buf[start:]; bytes.HasPrefix(rest, m.dash) {
		// A boundary right at the start: an empty body.
		if m.boundaryFollows(start + len(m.dash)) {
			return start, true
		}
		at += len(m.dash)
	} else if bytes.HasPrefix(m.dash, rest) {
		return start, false // the input ends inside what may be a boundary
	}
	for {
		i := m.indexDelimiter(at)
		if i < 0 {
			break
		}
		if m.boundaryFollows(i + len(m.nlDash)) {
			return i, true
		}
		at = i + len(m.nlDash) // "--boundaryX": part of the body
	}
	// No boundary follows: the body runs to the end, but for a partial one at the end.
	if i := bytes.LastIndexByte(m.buf[at:], m.nlDash[0]); i >= 0 && bytes.HasPrefix(m.nlDash, m.buf[at+i:]) {
		return at + i, false
	}
	return len(m.buf), false
}

// indexDelimiter returns where the first line break and "--boundary" at or after at
// begins, or -1. It looks for the dashes, which are rare, rather than for the line
// break, which ends every line.
func (m *multipartSplitter) indexDelimiter(at int) int {
	for from := at; ; {
		j := bytes.Index(m.buf[from:], m.dash)
		if j < 0 {
			return -1
		}
		j += from
		if k := j - len(m.nl); k >= at && bytes.Equal(m.buf[k:j], m.nl) {
			return k
		}
		from = j + 1
	}
}

// boundaryFollows reports whether what follows a boundary's dashes at i ends it: the
// end of the input, white space, a line break or the closing "--".
func (m *multipartSplitter) boundaryFollows(i int) bool {
	if i >= len(m.buf) {
		return true
	}
	c := m.buf[i]
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-'
}

func (m *multipartSplitter) isFinalBoundary(line []byte) bool {
	if !bytes.HasPrefix(line, m.dashDash) {
		return false
	}
	rest := skipLWSP(line[len(m.dashDash):])
	return len(rest) == 0 || bytes.Equal(rest, m.nl)
}

func (m *multipartSplitter) isBoundaryDelimiterLine(line []byte) bool {
	if !bytes.HasPrefix(line, m.dash) {
		return false
	}
	rest := skipLWSP(line[len(m.dash):])
	// The first boundary line tells whether the message's lines end in CRLF or LF.
	if m.partsRead == 0 && len(rest) == 1 && rest[0] == '\n' {
		m.nl = m.nl[1:]
		m.nlDash = m.nlDash[1:]
	}
	return bytes.Equal(rest, m.nl)
}

func skipLWSP(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
