package mailparse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"

	"github.com/crmsync/crmsync"
)

// Options tune Parse and ParseBody. The zero value keeps everything.
type Options struct {
	// AttachmentLimit skips attachments larger than this many bytes, decoded: they are
	// kept with Skipped set, no Content, a SkipReason, and a note on the email. Zero
	// means no limit.
	AttachmentLimit int64
}

// Reasons a message cannot be parsed, as ParseError.Reason gives them.
const (
	// ReasonEmpty: the message has no bytes at all.
	ReasonEmpty = "the message is empty"
	// ReasonNoHeader: nothing before the first empty line is a header field (binary
	// data, a body without a header, a file that is not a message).
	ReasonNoHeader = "the message has no header"
	// ReasonUnreadableHeader: the header block cannot be read even after dropping its
	// malformed lines.
	ReasonUnreadableHeader = "the message's header cannot be read"
)

// ParseError is the error of a message that cannot be parsed at all: the only error
// Parse, ParseHeader and ParseBody return. A provider reports such a message as a
// failed item of its batch, never as an error of the batch.
type ParseError struct {
	// Reason says what is wrong: one of the Reason constants.
	Reason string
	// Err is the underlying error, when there is one.
	Err error
}

func (e *ParseError) Error() string {
	if e.Err != nil {
		return "mailparse: " + e.Reason + ": " + e.Err.Error()
	}
	return "mailparse: " + e.Reason
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parse reads a whole message: the header fields as ParseHeader reads them, then the
// text and HTML bodies and the attachments as ParseBody reads them. It fails, with a
// *ParseError, only when the message has no readable header.
func Parse(raw []byte, opts Options) (*crmsync.Email, error) {
	e, err := ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	if err := ParseBody(e, raw, opts); err != nil {
		return nil, err
	}
	return e, nil
}

// ParseHeader reads the header of a message (raw may be the header block alone, as IMAP
// BODY[HEADER] or POP3 TOP n 0 return it, or the whole message) into a header-only
// email of direction incoming: Message-ID (HeaderMessageID's when there is none),
// In-Reply-To and References without angle brackets, Thread-Index, From (Sender when there is no From), To, Cc, Bcc, Reply-To,
// the decoded Subject, SentAt from Date, and ReceivedAt from the newest Received field
// (zero when there is none: the provider knows better, or falls back to SentAt).
//
// A field that cannot be read is left empty; malformed header lines are dropped and
// addresses that are not valid RFC 5322 are read as well as they can be, each with a
// note. It fails, with a *ParseError, only when the message has no readable header.
func ParseHeader(raw []byte) (*crmsync.Email, error) {
	head, _ := splitMessage(raw)
	var buf [32]field
	h, notes, err := readHeader(head, len(raw), buf[:0])
	if err != nil {
		return nil, err
	}
	e := headerEmail(h)
	e.Notes = append(notes, e.Notes...)
	if e.MessageID == "" {
		e.MessageID = HeaderMessageID(head)
	}
	return e, nil
}

// NoMessageIDDomain is the domain of the message ids HeaderMessageID makes (RFC 2606
// reserves .invalid: no real message has one).
const NoMessageIDDomain = "no-message-id.crmsync.invalid"

// HeaderMessageID returns the message id ParseHeader gives a message that has no
// Message-ID: a hash of its header block, "<hex>@" + NoMessageIDDomain. The same
// stored message always gets the same one, so that it keeps an identity when its
// provider identity changes (an IMAP folder whose UIDVALIDITY changed is read again
// from its start), and the Store refuses it the second time as it refuses any message
// it has by Message-ID. Two deliveries of one message differ in the fields their
// delivery added (Received, Delivered-To), so they get different ones.
func HeaderMessageID(head []byte) string {
	sum := sha256.Sum256(head)
	return hex.EncodeToString(sum[:16]) + "@" + NoMessageIDDomain
}

// ParseBody reads the bodies and attachments of raw, a whole message, into e, which
// carries its header fields (from ParseHeader, and whatever the caller added since):
// TextBody and HTMLBody from the text/plain and text/html parts that are not
// attachments, decoded to UTF-8 from their charset (undeclared 8-bit text is read as
// Windows-1252), and Attachments with their decoded file names. Attachments larger
// than opts.AttachmentLimit are kept as Skipped. What cannot be read is noted on e:
// a part in an unknown charset or transfer encoding, an undecodable attachment (kept as
// Skipped), a truncated multipart (the parts before the damage are kept), a MIME
// structure that cannot be read at all (the body is kept as plain text).
//
// It fails, with a *ParseError and leaving e as it was, only when the message has no
// readable header.
func ParseBody(e *crmsync.Email, raw []byte, opts Options) error {
	head, body := splitMessage(raw)
	h, err := readMIMEHeader(head, len(raw))
	if err != nil {
		return err
	}
	// What the parser adds is valid UTF-8; what e held already may not be.
	hadText := e.TextBody != "" || e.HTMLBody != ""
	p := &bodyParser{e: e, limit: opts.AttachmentLimit}
	if err := p.entity(h, source{data: body}, 0); err != nil {
		// Nothing of the MIME structure could be read: keep what there is as text.
		e.TextBody = validUTF8(string(bytes.TrimSpace(body)))
		e.HTMLBody, e.Attachments = "", nil
		if e.TextBody == "" {
			p.note("the message body is missing")
		} else {
			p.note("the message's MIME structure could not be read (%v); its body was kept as plain text", err)
		}
	}
	if hadText {
		e.TextBody = validUTF8(e.TextBody)
		e.HTMLBody = validUTF8(e.HTMLBody)
	}
	return nil
}
