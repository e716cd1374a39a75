package mailparse

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/crmsync/crmsync"
)

// maxMIMEDepth bounds multipart nesting, against messages built to exhaust the parser.
const maxMIMEDepth = 32

// bodyParser reads the MIME parts of one message into its email.
type bodyParser struct {
	e     *crmsync.Email
	limit int64
}

// source is the raw (still transfer-encoded) body of an entity, and the error that cut
// it short, if any.
type source struct {
	data []byte
	err  error
}

// reader reads the body as a stream would: the bytes, then the error.
func (s source) reader() io.Reader {
	if s.err == nil {
		return bytes.NewReader(s.data)
	}
	return io.MultiReader(bytes.NewReader(s.data), errReader{s.err})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// note adds a note to the email; the errors it quotes may carry the message's raw bytes.
func (p *bodyParser) note(format string, args ...any) {
	p.e.Notes = append(p.e.Notes, validUTF8(fmt.Sprintf(format, args...)))
}

// entity reads one MIME entity from its header and raw body.
// It returns an error only for a multipart none of whose parts can be read.
func (p *bodyParser) entity(h message.Header, body source, depth int) error {
	t, params := contentType(h)
	if !strings.HasPrefix(t, "multipart/") {
		p.leaf(h, t, params, body)
		return nil
	}
	boundary := params["boundary"]
	if boundary == "" {
		return errors.New("a multipart has no boundary")
	}
	if depth >= maxMIMEDepth {
		p.note("MIME parts nested deeper than %d levels were not read", maxMIMEDepth)
		return nil
	}
	next := newMultipartSplitter(body.data, boundary).next // the parts are slices of the body
	if body.err != nil {
		// A part of a broken multipart: go-message's reader meets the error where the
		// bytes end.
		mr := textproto.NewMultipartReader(body.reader(), boundary)
		next = func() (textproto.Header, source, error) {
			part, err := mr.NextPart()
			if err != nil {
				return textproto.Header{}, source{}, err
			}
			var src source
			src.data, src.err = io.ReadAll(part)
			return part.Header, src, nil
		}
	}
	for n := 0; ; n++ {
		h, src, err := next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if n == 0 {
				return err
			}
			p.note("the rest of the message could not be read: %v", err)
			return nil
		}
		if err := p.entity(message.Header{Header: h}, src, depth+1); err != nil {
			p.note("a part of the message could not be read: %v", err)
		}
	}
}

// leaf files one non-multipart part as a body or an attachment.
func (p *bodyParser) leaf(h message.Header, t string, params map[string]string, raw source) {
	disp, dparams := disposition(h)
	name := fileName(h, params, dparams)
	isText := (t == "text/plain" || t == "text/html") && disp != "attachment" && name == ""

	cte := transferEncoding(h.Get("Content-Transfer-Encoding"))

	// The common case in one pass over the bytes in hand: no transfer encoding or
	// well-formed base64, and text in UTF-8 (or no text at all). Everything else, and
	// what this cannot decode, goes through go-message's readers, which say what is
	// wrong with it.
	data, fresh, ok := decodeTransfer(cte, raw)
	if ok && (!strings.HasPrefix(t, "text/") || isUTF8Charset(params)) {
		if isText {
			p.addText(string(data), t, params)
			return
		}
		if !fresh {
			data = bytes.Clone(data)
		}
		p.addAttachment(h, t, name, data, 0, nil)
		return
	}

	// Let go-message undo the charset, and the transfer encoding unless that is done
	// already, from repaired fields.
	h = message.Header{Header: h.Header.Copy()}
	if h.Get("Content-Type") != "" {
		setContentType(&h, t, params)
	}
	body := raw.reader()
	switch {
	case ok:
		h.Del("Content-Transfer-Encoding")
		body = bytes.NewReader(data)
	case cte != "":
		h.Set("Content-Transfer-Encoding", cte)
	}
	ent, err := message.New(h, body)
	if err != nil {
		p.entityNote(err, h, params)
		if ent == nil {
			return
		}
	}
	if isText {
		p.text(ent.Body, t, params)
		return
	}
	p.attachment(h, ent.Body, t, name)
}

// isUTF8Charset reports whether a text part's charset needs no conversion: none
// declared, UTF-8 or US-ASCII (the ones go-message passes through as they are).
func isUTF8Charset(params map[string]string) bool {
	cs, ok := params["charset"]
	cs = strings.ToLower(cs) // as go-message compares it
	return !ok || cs == "utf-8" || cs == "us-ascii"
}

// entityNote notes why go-message could not fully decode a part.
func (p *bodyParser) entityNote(err error, h message.Header, params map[string]string) {
	switch {
	case message.IsUnknownCharset(err):
		p.note("a part in charset %q, which is not supported, may read wrong", params["charset"])
	case message.IsUnknownEncoding(err):
		p.note("a part in transfer encoding %q, which is not supported, was kept encoded", h.Get("Content-Transfer-Encoding"))
	default:
		p.note("%v", err)
	}
}

// decodeTransfer undoes the transfer encoding cte of a complete body when that is
// simple: none, or base64 that decodes without error. fresh says the bytes are newly
// allocated rather than raw's own. It reports false when the body needs a streaming
// decoder (quoted-printable, an unknown encoding, broken base64, a body cut short).
func decodeTransfer(cte string, raw source) (data []byte, fresh, ok bool) {
	if raw.err != nil {
		return nil, false, false
	}
	switch cte {
	case "", "7bit", "8bit", "binary":
		return raw.data, false, true
	case "base64":
		data, ok := decodeBase64(raw.data)
		return data, true, ok
	}
	return nil, false, false
}

// decodeBase64 decodes a base64 body in one pass, ignoring line breaks, spaces and
// tabs (as go-message's reader does); false if it is not valid base64.
func decodeBase64(src []byte) ([]byte, bool) {
	dst := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
	if n, ok := decodeBase64Lines(dst, src); ok {
		return dst[:n], true
	}
	// Decode skips CR and LF itself; spaces and tabs (a continuation indent) are rare.
	if bytes.IndexByte(src, ' ') >= 0 || bytes.IndexByte(src, '\t') >= 0 {
		src = bytes.Map(func(r rune) rune {
			if r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, src)
	}
	n, err := base64.StdEncoding.Decode(dst, src)
	if err != nil {
		return nil, false
	}
	return dst[:n], true
}

// decodeBase64Lines decodes base64 laid out as encoders write it, into dst: lines of
// whole quanta (four characters each), each ending in CRLF or LF, padding only at the
// end. Lines are decoded one by one with decodeQuanta, which is half again as fast as
// base64's decoder and never meets a line break (that decoder takes its slow path at
// each). It reports false for anything else, which decodeBase64 then decodes in one
// piece; what it decodes, it decodes as that would (FuzzBase64 holds it to that).
func decodeBase64Lines(dst, src []byte) (int, bool) {
	n := 0
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			src = nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line)%4 != 0 {
			return 0, false
		}
		m, ok := decodeQuanta(dst[n:], line)
		if !ok {
			// Padding, or a byte outside the alphabet: base64 says which.
			var err error
			if m, err = base64.StdEncoding.Decode(dst[n:], line); err != nil {
				return 0, false
			}
			if bytes.IndexByte(line, '=') >= 0 && len(bytes.Trim(src, "\r\n")) > 0 {
				return 0, false // padding before the end
			}
		}
		n += m
	}
	return n, true
}

// base64Quanta maps a character of the base64 alphabet to its six bits, shifted to
// their place in a quantum of four characters: base64Quanta[i][c] for the i-th. The other
// bytes (padding included) map to invalidQuantum.
var base64Quanta = func() (t [4][256]uint32) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		for c := range t[i] {
			t[i][c] = invalidQuantum
		}
		for v, c := range []byte(alphabet) {
			t[i][c] = uint32(v) << (18 - 6*i)
		}
	}
	return t
}()

const invalidQuantum = 0xff000000

// decodeQuanta decodes src, whole quanta of base64 without padding, into dst, a table
// look-up per character and one store per eight characters. It reports false, with
// what it decoded, at a byte outside the alphabet.
func decodeQuanta(dst, src []byte) (int, bool) {
	q := &base64Quanta
	n := 0
	for len(src) >= 8 && len(dst)-n >= 8 {
		x := q[0][src[0]] | q[1][src[1]] | q[2][src[2]] | q[3][src[3]]
		y := q[0][src[4]] | q[1][src[5]] | q[2][src[6]] | q[3][src[7]]
		if (x|y)&invalidQuantum != 0 {
			return n, false
		}
		binary.BigEndian.PutUint64(dst[n:], uint64(x)<<40|uint64(y)<<16)
		n += 6
		src = src[8:]
	}
	for len(src) >= 4 {
		x := q[0][src[0]] | q[1][src[1]] | q[2][src[2]] | q[3][src[3]]
		if x&invalidQuantum != 0 {
			return n, false
		}
		dst[n], dst[n+1], dst[n+2] = byte(x>>16), byte(x>>8), byte(x)
		n += 3
		src = src[4:]
	}
	return n, true
}

// text appends a text/plain or text/html part to the email's body of that type.
func (p *bodyParser) text(body io.Reader, t string, params map[string]string) {
	b, err := io.ReadAll(body)
	if err != nil {
		p.note("part of a %s body could not be decoded: %v", t, err)
	}
	p.addText(string(b), t, params)
}

// addText appends decoded text to the email's body of type t.
func (p *bodyParser) addText(s, t string, params map[string]string) {
	if _, declared := params["charset"]; !declared {
		s = from8bit(s)
	}
	s = validUTF8(s)
	dst := &p.e.TextBody
	if t == "text/html" {
		dst = &p.e.HTMLBody
	}
	if *dst != "" && s != "" {
		*dst += "\n"
	}
	*dst += s
}

// attachment appends a part to the email's attachments: with its content, or Skipped
// when it is over the limit or cannot be decoded.
func (p *bodyParser) attachment(h message.Header, body io.Reader, t, name string) {
	r := body
	if p.limit > 0 {
		r = io.LimitReader(body, p.limit+1)
	}
	data, err := io.ReadAll(r)
	var rest int64
	if err != nil || (p.limit > 0 && int64(len(data)) > p.limit) {
		rest, _ = io.Copy(io.Discard, body)
	}
	p.addAttachment(h, t, name, data, rest, err)
}

// addAttachment appends an attachment whose decoded content is data followed by rest
// more bytes; err is the error that stopped its decoding.
func (p *bodyParser) addAttachment(h message.Header, t, name string, data []byte, rest int64, err error) {
	a := crmsync.Attachment{
		Name:        name,
		ContentType: t,
		ContentID:   validUTF8(strings.Trim(strings.TrimSpace(h.Get("Content-Id")), "<>")),
		Size:        int64(len(data)) + rest,
	}
	if a.Name == "" {
		a.Name = defaultName(t, len(p.e.Attachments)+1)
	}
	switch {
	case err != nil:
		a.Skipped = true
		a.SkipReason = "could not be decoded: " + err.Error()
		p.note("attachment %q was skipped: it could not be decoded (%v)", a.Name, err)
	case p.limit > 0 && a.Size > p.limit:
		a.Skipped = true
		a.SkipReason = "larger than " + ByteSize(p.limit)
		p.note("attachment %q (%s) was skipped: larger than the %s limit", a.Name, ByteSize(a.Size), ByteSize(p.limit))
	default:
		a.Content = data
	}
	p.e.Attachments = append(p.e.Attachments, a)
}

// defaultName names an attachment that has no file name.
func defaultName(t string, n int) string {
	switch t {
	case "message/rfc822", "message/global":
		return fmt.Sprintf("message-%d.eml", n)
	case "text/calendar":
		return fmt.Sprintf("invite-%d.ics", n)
	case "message/delivery-status", "message/global-delivery-status":
		return fmt.Sprintf("delivery-status-%d.txt", n)
	case "text/rfc822-headers", "message/rfc822-headers":
		return fmt.Sprintf("headers-%d.txt", n)
	}
	ext := ""
	if exts, _ := mime.ExtensionsByType(t); len(exts) > 0 {
		ext = exts[0]
	}
	return fmt.Sprintf("attachment-%d%s", n, ext)
}

// ByteSize formats n bytes for people: "512 B", "5 MiB", "1.5 KiB". Providers use it in
// the notes and errors they write about sizes.
func ByteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := []string{"KiB", "MiB", "GiB", "TiB"}[exp]
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
