package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/crmsync/crmsync"
)

// The parser is lenient, as mail clients are: a message fails only when it has no
// readable header. Damage it can work around (a malformed header line, an unknown
// charset or transfer encoding, a broken multipart) becomes a note on the email.

// Inbox is the Folder of every email a POP3 connection returns: POP3 reads the inbox
// only.
const Inbox = "INBOX"

// maxMIMEDepth bounds multipart nesting, against messages built to exhaust the parser.
const maxMIMEDepth = 32

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// splitMessage splits a raw message at the empty line that ends its header.
func splitMessage(raw []byte) (head, body []byte) {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return raw, nil
		}
		if len(bytes.TrimRight(raw[i:i+j+1], "\r\n")) == 0 {
			return raw[:i], raw[i+j+1:]
		}
		i += j + 1
	}
	return raw, nil
}

// readHeader reads a header block. Lines that are neither a field nor a continuation
// are dropped with a note, so that one bad line does not lose the rest.
func readHeader(head []byte) (message.Header, []string, error) {
	if rest, ok := bytes.CutPrefix(head, []byte("From ")); ok && !bytes.HasPrefix(bytes.TrimLeft(rest, " \t"), []byte(":")) {
		// An mbox "From sender date" line, left in by some servers.
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			head = head[i+1:]
		} else {
			head = nil
		}
	}
	h, err := readHeaderBlock(head)
	if err == nil {
		return h, nil, nil
	}
	clean, dropped := sanitizeHeader(head)
	if h, err = readHeaderBlock(clean); err != nil {
		return message.Header{}, nil, fmt.Errorf("unreadable header: %w", err)
	}
	return h, []string{fmt.Sprintf("%d malformed header line(s) were ignored", dropped)}, nil
}

func readHeaderBlock(head []byte) (message.Header, error) {
	var b bytes.Buffer
	b.Grow(len(head) + 4)
	b.Write(head)
	if len(head) > 0 && head[len(head)-1] != '\n' {
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	h, err := textproto.ReadHeader(bufio.NewReader(&b))
	return message.Header{Header: h}, err
}

// sanitizeHeader keeps the lines of a header block that are fields ("Name: value") or
// continuations of a kept field, and counts the others.
func sanitizeHeader(head []byte) ([]byte, int) {
	var out bytes.Buffer
	dropped, keep := 0, false
	for _, line := range bytes.SplitAfter(head, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if keep {
				out.Write(line)
			} else {
				dropped++
			}
			continue
		}
		i := bytes.IndexByte(line, ':')
		keep = i > 0 && validFieldName(bytes.TrimRight(line[:i], " \t"))
		if keep {
			out.Write(line)
		} else {
			dropped++
		}
	}
	return out.Bytes(), dropped
}

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

// parseHeaders returns the header-only email of a message, from its header (the answer
// to TOP n 0, or the whole message): identity, addresses, subject, dates and threading
// fields. ReceivedAt is the date of the newest Received field (the one on top, which
// the delivering server added), else the Date field, else firstSeen. It fails only
// when the message has no readable header.
func parseHeaders(raw []byte, firstSeen time.Time) (*crmsync.Email, error) {
	head, _ := splitMessage(raw)
	h, notes, err := readHeader(head)
	if err != nil {
		return nil, err
	}
	if h.Len() == 0 {
		return nil, errors.New("the message has no header")
	}
	e := headerEmail(h)
	e.Notes = notes
	e.ReceivedAt = receivedAt(h)
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = e.SentAt
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = firstSeen
	}
	return e, nil
}

// headerEmail builds the header fields of an email. A field it cannot read is left
// empty.
func headerEmail(h message.Header) *crmsync.Email {
	mh := mail.Header{Header: h}
	e := &crmsync.Email{Direction: crmsync.DirectionIncoming, Folder: Inbox}
	e.MessageID = messageID(mh)
	if l := msgIDList(mh, "In-Reply-To"); len(l) > 0 {
		e.InReplyTo = l[0]
	}
	e.References = msgIDList(mh, "References")
	e.ThreadIndex = strings.TrimSpace(h.Get("Thread-Index"))
	if from := addressList(mh, "From"); len(from) > 0 {
		e.From = from[0]
	} else if sender := addressList(mh, "Sender"); len(sender) > 0 {
		e.From = sender[0]
	}
	e.To = addressList(mh, "To")
	e.Cc = addressList(mh, "Cc")
	e.ReplyTo = addressList(mh, "Reply-To")
	e.Subject = decodeText(h.Get("Subject"))
	e.SentAt = parseDate(h.Get("Date"))
	return e
}

// receivedAt returns the date of the newest (topmost) Received field that has one.
func receivedAt(h message.Header) time.Time {
	for _, v := range h.Values("Received") {
		if i := strings.LastIndexByte(v, ';'); i >= 0 {
			if t := parseDate(v[i+1:]); !t.IsZero() {
				return t
			}
		}
	}
	return time.Time{}
}

// decodeText decodes encoded words and returns valid UTF-8 in any case.
func decodeText(v string) string {
	v = strings.TrimSpace(v)
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		v = d
	}
	return validUTF8(v)
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

var msgIDPattern = regexp.MustCompile(`<([^<>\s]+)>`)

// messageID reads Message-ID without angle brackets, leniently.
func messageID(h mail.Header) string {
	if id, err := h.MessageID(); err == nil && id != "" {
		return id
	}
	v := strings.TrimSpace(h.Get("Message-Id"))
	if m := msgIDPattern.FindStringSubmatch(v); m != nil {
		return m[1]
	}
	if f := strings.Fields(strings.Trim(v, "<>")); len(f) > 0 {
		return strings.Trim(f[0], "<>")
	}
	return ""
}

// msgIDList reads a list of message ids (In-Reply-To, References) without angle
// brackets, leniently.
func msgIDList(h mail.Header, key string) []string {
	if l, err := h.MsgIDList(key); err == nil {
		return l
	}
	var l []string
	for _, m := range msgIDPattern.FindAllStringSubmatch(h.Get(key), -1) {
		l = append(l, m[1])
	}
	return l
}

var addrSpecPattern = regexp.MustCompile(`[^\s<>(),;:"\[\]]+@[^\s<>(),;:"\[\]]+`)

// addressList parses an address field; when it is not valid RFC 5322 it falls back to
// whatever looks like an address in it, so that a sloppy sender is still resolved.
func addressList(h mail.Header, key string) []crmsync.Address {
	v := h.Get(key)
	if strings.TrimSpace(v) == "" {
		return nil
	}
	if list, err := h.AddressList(key); err == nil {
		out := make([]crmsync.Address, 0, len(list))
		for _, a := range list {
			out = append(out, crmsync.Address{Name: validUTF8(a.Name), Email: validUTF8(a.Address)})
		}
		return out
	}
	var out []crmsync.Address
	for _, part := range strings.FieldsFunc(decodeText(v), func(r rune) bool { return r == ',' || r == ';' }) {
		if a, err := netmail.ParseAddress(part); err == nil {
			out = append(out, crmsync.Address{Name: a.Name, Email: a.Address})
			continue
		}
		addr := addrSpecPattern.FindString(part)
		if addr == "" {
			continue
		}
		name := strings.Trim(strings.TrimSpace(strings.Replace(part, addr, "", 1)), ` "'<>`)
		out = append(out, crmsync.Address{Name: name, Email: addr})
	}
	return out
}

// dateLayouts are forms of dates seen in the wild that net/mail does not read.
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon, 2 Jan 06 15:04:05 -0700",
	time.RFC3339,
}

// parseDate reads an RFC 5322 date leniently; the zero time when it cannot.
func parseDate(v string) time.Time {
	v = strings.Join(strings.Fields(v), " ")
	if v == "" {
		return time.Time{}
	}
	if t, err := netmail.ParseDate(v); err == nil {
		return t
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t
		}
	}
	return time.Time{}
}

// parseBody reads a whole message into e, which carries its header fields (see
// parseHeaders): the text and HTML bodies and the attachments. Attachments larger than
// limit bytes (0: no limit) are kept as Skipped, without content, with a note. It fails
// only when the message has no readable header; a body whose MIME structure cannot be
// read is kept as plain text, with a note.
func parseBody(e *crmsync.Email, raw []byte, limit int64) error {
	head, body := splitMessage(raw)
	h, _, err := readHeader(head)
	if err != nil {
		return err
	}
	if h.Len() == 0 {
		return errors.New("the message has no header")
	}
	p := &bodyParser{e: e, limit: limit}
	if err := p.entity(h, bytes.NewReader(body), 0); err != nil {
		e.TextBody = validUTF8(string(bytes.TrimSpace(body)))
		e.HTMLBody, e.Attachments = "", nil
		p.note("the message's MIME structure could not be read (%v); its body was kept as plain text", err)
	}
	return nil
}

type bodyParser struct {
	e     *crmsync.Email
	limit int64
}

func (p *bodyParser) note(format string, args ...any) {
	p.e.Notes = append(p.e.Notes, fmt.Sprintf(format, args...))
}

// entity reads one MIME entity from its header and raw (still transfer-encoded) body.
// It fails only for a multipart none of whose parts can be read.
func (p *bodyParser) entity(h message.Header, body io.Reader, depth int) error {
	t, params := contentType(h)
	if !strings.HasPrefix(t, "multipart/") {
		return p.leaf(h, t, params, body)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return errors.New("a multipart has no boundary")
	}
	if depth >= maxMIMEDepth {
		p.note("MIME parts nested deeper than %d levels were not read", maxMIMEDepth)
		return nil
	}
	mr := textproto.NewMultipartReader(body, boundary)
	for n := 0; ; n++ {
		part, err := mr.NextPart()
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
		if err := p.entity(message.Header{Header: part.Header}, part, depth+1); err != nil {
			p.note("a part of the message could not be read: %v", err)
		}
	}
}

// contentType reads a Content-Type leniently: broken parameters keep the ones that can
// be read (a multipart's boundary above all). No Content-Type means text/plain (RFC
// 2045).
func contentType(h message.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	t, params, err := mime.ParseMediaType(v)
	if err != nil {
		if t, params = lenientMediaType(v); t == "" {
			return "application/octet-stream", map[string]string{}
		}
	}
	return strings.ToLower(t), params
}

// lenientMediaType reads "type/subtype; k=v; k=v" without failing on bad parameters;
// the first value of a repeated parameter wins. It returns "" for an unreadable type.
func lenientMediaType(v string) (string, map[string]string) {
	parts := strings.Split(v, ";")
	t := strings.ToLower(strings.TrimSpace(parts[0]))
	if !strings.Contains(t, "/") || strings.ContainsAny(t, " \t\"") {
		return "", nil
	}
	params := make(map[string]string)
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := params[k]; !dup && k != "" {
			params[k] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return t, params
}

// fileName returns a part's decoded file name: Content-Disposition's filename, else
// Content-Type's name, with RFC 2231 values in any charset go-message knows, and RFC
// 2047 encoded words (which many mailers use there) decoded.
func fileName(h message.Header, params map[string]string) string {
	var dparams map[string]string
	if v := h.Get("Content-Disposition"); v != "" {
		if _, ps, err := mime.ParseMediaType(v); err == nil {
			dparams = ps
		} else if _, rest, ok := strings.Cut(v, ";"); ok {
			_, dparams = lenientMediaType("x/x;" + rest)
		}
	}
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if name == "" {
		// mime.ParseMediaType drops RFC 2231 values in charsets other than UTF-8.
		name = rfc2231Param(h.Get("Content-Disposition"), "filename")
	}
	if name == "" {
		name = rfc2231Param(h.Get("Content-Type"), "name")
	}
	return decodeText(name)
}

// disposition returns a part's Content-Disposition type in lower case, or "".
func disposition(h message.Header) string {
	v, _, _ := strings.Cut(h.Get("Content-Disposition"), ";")
	return strings.ToLower(strings.TrimSpace(v))
}

// rfc2231Param decodes a "key*=charset'lang'value" parameter, or returns "".
func rfc2231Param(v, key string) string {
	_, rest, ok := strings.Cut(v, ";")
	if !ok {
		return ""
	}
	_, params := lenientMediaType("x/x;" + rest)
	enc, ok := params[key+"*"]
	if !ok {
		return ""
	}
	cs, rest, ok := strings.Cut(enc, "'")
	if !ok {
		return ""
	}
	_, value, ok := strings.Cut(rest, "'")
	if !ok {
		return ""
	}
	raw, err := url.PathUnescape(value)
	if err != nil {
		return ""
	}
	r, err := charset.Reader(strings.ToLower(cs), strings.NewReader(raw))
	if err != nil {
		return ""
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return ""
	}
	return string(b)
}

// transferEncoding maps the Content-Transfer-Encoding values seen in the wild ("7-bit",
// "quoted printable", "base64;") to the ones go-message decodes. Unknown values are
// kept, so that the part is read raw with a note.
func transferEncoding(v string) string {
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), ";\"' "))
	switch {
	case v == "", v == "7bit", v == "8bit", v == "binary":
		return v
	case strings.Contains(v, "base64"):
		return "base64"
	case strings.Contains(v, "quoted"):
		return "quoted-printable"
	case strings.HasPrefix(v, "x-"), strings.Contains(v, "uu"):
		return v
	}
	return "8bit"
}

// leaf files one non-multipart part as a body or an attachment.
func (p *bodyParser) leaf(h message.Header, t string, params map[string]string, raw io.Reader) error {
	name := fileName(h, params)
	disp := disposition(h)

	// Let go-message undo the transfer encoding and the charset, from repaired fields.
	h = message.Header{Header: h.Header.Copy()}
	if cte := transferEncoding(h.Get("Content-Transfer-Encoding")); cte != "" {
		h.Set("Content-Transfer-Encoding", cte)
	}
	if h.Get("Content-Type") != "" {
		if mime.FormatMediaType(t, params) != "" {
			h.SetContentType(t, params)
		} else {
			h.Set("Content-Type", t)
		}
	}
	ent, err := message.New(h, raw)
	if err != nil {
		switch {
		case message.IsUnknownCharset(err):
			p.note("a part in charset %q, which is not supported, may read wrong", params["charset"])
		case message.IsUnknownEncoding(err):
			p.note("a part in transfer encoding %q, which is not supported, was kept encoded", h.Get("Content-Transfer-Encoding"))
		default:
			p.note("%v", err)
		}
		if ent == nil {
			return nil
		}
	}
	if (t == "text/plain" || t == "text/html") && disp != "attachment" && name == "" {
		p.text(ent.Body, t, params)
		return nil
	}
	p.attachment(h, ent.Body, t, name)
	return nil
}

func (p *bodyParser) text(body io.Reader, t string, params map[string]string) {
	b, err := io.ReadAll(body)
	if err != nil {
		p.note("part of a %s body could not be decoded: %v", t, err)
	}
	if _, declared := params["charset"]; !declared && !utf8.Valid(b) {
		// Undeclared 8-bit text is most often Windows-1252.
		if r, err := charset.Reader("windows-1252", bytes.NewReader(b)); err == nil {
			if d, err := io.ReadAll(r); err == nil {
				b = d
			}
		}
	}
	s := validUTF8(string(b))
	dst := &p.e.TextBody
	if t == "text/html" {
		dst = &p.e.HTMLBody
	}
	if *dst != "" && s != "" {
		*dst += "\n"
	}
	*dst += s
}

func (p *bodyParser) attachment(h message.Header, body io.Reader, t, name string) {
	a := crmsync.Attachment{
		Name:        name,
		ContentType: t,
		ContentID:   strings.Trim(strings.TrimSpace(h.Get("Content-Id")), "<>"),
	}
	if a.Name == "" {
		a.Name = defaultName(t, len(p.e.Attachments)+1)
	}
	r := body
	if p.limit > 0 {
		r = io.LimitReader(body, p.limit+1)
	}
	data, err := io.ReadAll(r)
	a.Size = int64(len(data))
	switch {
	case err != nil:
		rest, _ := io.Copy(io.Discard, body)
		a.Size += rest
		a.Skipped = true
		a.SkipReason = "could not be decoded: " + err.Error()
		p.note("attachment %q was skipped: it could not be decoded (%v)", a.Name, err)
	case p.limit > 0 && a.Size > p.limit:
		rest, _ := io.Copy(io.Discard, body)
		a.Size += rest
		a.Skipped = true
		a.SkipReason = "larger than " + byteSize(p.limit)
		p.note("attachment %q (%s) was skipped: larger than the %s limit", a.Name, byteSize(a.Size), byteSize(p.limit))
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
	}
	ext := ""
	if exts, _ := mime.ExtensionsByType(t); len(exts) > 0 {
		ext = exts[0]
	}
	return fmt.Sprintf("attachment-%d%s", n, ext)
}

// byteSize formats n bytes for people: "512 B", "5 MiB", "1.5 KiB".
func byteSize(n int64) string {
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
