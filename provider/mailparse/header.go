package mailparse

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"sync"

	"github.com/emersion/go-message"

	"github.com/crmsync/crmsync"
)

// splitMessage splits a raw message at the empty line that ends its header; a message
// without one is all header.
func splitMessage(raw []byte) (head, body []byte) {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return raw, nil
		}
		if isBlank(raw[i : i+j]) {
			return raw[:i], raw[i+j+1:]
		}
		i += j + 1
	}
	return raw, nil
}

// isBlank reports whether a line without its line feed is empty but for carriage
// returns.
func isBlank(line []byte) bool {
	for _, c := range line {
		if c != '\r' {
			return false
		}
	}
	return true
}

// readHeader reads a header block; size is the size of the whole message, to tell an
// empty message from one without a header. Lines that are neither a field nor the
// continuation of one are dropped with a note, so that one bad line does not lose the
// rest of the header.
//
// The fields are appended to buf, which the caller may give a stack array's room.
func readHeader(head []byte, size int, buf fields) (fields, []string, error) {
	if size == 0 {
		return nil, nil, &ParseError{Reason: ReasonEmpty}
	}
	head = stripMboxFrom(head)
	fs, ok := scanHeader(head, buf)
	var notes []string
	if !ok {
		clean, dropped := sanitizeHeader(head)
		if fs, ok = scanHeader(clean, fs[:0]); !ok {
			// Every line left is a field or the continuation of one.
			return nil, nil, &ParseError{Reason: ReasonUnreadableHeader}
		}
		if dropped > 0 {
			notes = append(notes, fmt.Sprintf("%d malformed header line(s) were ignored", dropped))
		}
	}
	if len(fs) == 0 {
		return nil, nil, &ParseError{Reason: ReasonNoHeader}
	}
	return fs, notes, nil
}

// stripMboxFrom drops an mbox "From sender date" separator line, left in by some
// servers and exports, from the start of a header block.
func stripMboxFrom(head []byte) []byte {
	if rest, ok := bytes.CutPrefix(head, []byte("From ")); ok && !bytes.HasPrefix(bytes.TrimLeft(rest, " \t"), []byte(":")) {
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			return head[i+1:]
		}
		return nil
	}
	return head
}

// readMIMEHeader reads the Content-* fields of a header block, which are all that
// ParseBody needs; it fails exactly when readHeader does.
func readMIMEHeader(head []byte, size int) (message.Header, error) {
	var buf [32]field
	fs, _, err := readHeader(head, size, buf[:0])
	if err != nil {
		return message.Header{}, err
	}
	return fs.mimeHeader(), nil
}

// headerReaders are the buffered readers go-message's header reader needs for the
// header of a MIME part: each read would otherwise allocate (and clear) a 4 KiB buffer.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// sanitizeHeader keeps the lines of a header block that are fields ("Name: value", with
// a valid name) or continuations of a kept field, and counts the others (continuations
// of a dropped line included).
func sanitizeHeader(head []byte) (kept []byte, dropped int) {
	isField := false // of the current line's field
	for rest := head; len(rest) > 0; {
		line := rest[:lineEnd(rest, 0)]
		rest = rest[len(line):]
		if !isSpace(line[0]) {
			i := bytes.IndexByte(line, ':')
			isField = i > 0 && validFieldName(bytes.TrimRight(line[:i], " \t"))
		}
		if isField {
			kept = append(kept, line...)
		} else {
			dropped++
		}
	}
	return kept, dropped
}

// validFieldName reports whether b is a field name: printable ASCII but the colon.
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// headerEmail builds the header-only email of a header. It never fails: a field it
// cannot read is left empty, and what it reads leniently is noted.
func headerEmail(h fields) *crmsync.Email {
	e := &crmsync.Email{Direction: crmsync.DirectionIncoming}
	// Identifiers are copied, not decoded: raw 8-bit bytes in them are replaced, so
	// every field of an email is valid UTF-8 (stores such as PostgreSQL require it).
	e.MessageID = validUTF8(NormalizeMessageID(h.Get("Message-Id")))
	if l := SplitMessageIDs(h.Get("In-Reply-To")); len(l) > 0 {
		e.InReplyTo = validUTF8(l[0])
	}
	e.References = SplitMessageIDs(h.Get("References"))
	for i, r := range e.References {
		e.References[i] = validUTF8(r)
	}
	e.ThreadIndex = validUTF8(strings.TrimSpace(h.Get("Thread-Index")))
	addresses := func(key string) []crmsync.Address {
		l, notes := ParseAddressList(h.Get(key))
		for _, n := range notes {
			e.Notes = append(e.Notes, key+": "+n)
		}
		return l
	}
	if from := addresses("From"); len(from) > 0 {
		e.From = from[0]
	} else if sender := addresses("Sender"); len(sender) > 0 {
		e.From = sender[0]
	}
	e.To = addresses("To")
	e.Cc = addresses("Cc")
	e.Bcc = addresses("Bcc")
	e.ReplyTo = addresses("Reply-To")
	e.Subject = DecodeText(h.Get("Subject"))
	e.SentAt, _ = ParseDate(h.Get("Date"))
	e.ReceivedAt = receivedAt(h)
	return e
}
