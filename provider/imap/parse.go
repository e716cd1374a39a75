package imap

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

// The parser is lenient, as mail clients are: a message is only a failure when nothing
// of it can be read. Damage it can work around (a malformed header line, an unknown
// charset, a truncated multipart, an undecodable attachment) becomes a note on the
// email instead.

// maxMIMEDepth bounds multipart nesting, against messages built to exhaust the parser.
const maxMIMEDepth = 32

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// readHeader reads a header block from br up to and including the blank line that ends
// it (or EOF). Lines that are neither a field nor a continuation are dropped and noted,
// so that one bad line does not lose the rest of the header.
func readHeader(br *bufio.Reader) (message.Header, []string, error) {
	var block bytes.Buffer
	partial := false // the previous read ended inside a long line
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			block.Write(line)
			partial = true
			continue
		}
		if !partial && len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the blank line, or EOF
		}
		partial = false
		block.Write(line)
		if err != nil {
			if err != io.EOF {
				return message.Header{}, nil, err
			}
			break
		}
	}
	raw := block.Bytes()
	if rest, ok := bytes.CutPrefix(raw, []byte("From ")); ok && !bytes.HasPrefix(bytes.TrimLeft(rest, " \t"), []byte(":")) {
		// An mbox "From sender date" separator line, left in by some exports.
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		raw = append(raw, '\r', '\n')
	}
	h, err := textproto.ReadHeader(bufio.NewReader(io.MultiReader(bytes.NewReader(raw), strings.NewReader("\r\n"))))
	if err == nil {
		return message.Header{Header: h}, nil, nil
	}
	clean, dropped := sanitizeHeader(raw)
	h, err = textproto.ReadHeader(bufio.NewReader(io.MultiReader(bytes.NewReader(clean), strings.NewReader("\r\n"))))
	if err != nil {
		return message.Header{}, nil, fmt.Errorf("unreadable header: %w", err)
	}
	var notes []string
	if dropped > 0 {
		notes = append(notes, fmt.Sprintf("%d malformed header line(s) were ignored", dropped))
	}
	return message.Header{Header: h}, notes, nil
}

// sanitizeHeader keeps the lines of a header block that are fields ("Key: value") or
// continuations of a kept field, and counts the others.
func sanitizeHeader(raw []byte) ([]byte, int) {
	var out bytes.Buffer
	dropped := 0
	keep := false // whether the current field is kept, for its continuation lines
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
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

// headerEmail builds the header-only Email of a message: identity, addresses, subject,
// dates and threading fields. It never fails: a field it cannot read is left empty.
func headerEmail(h message.Header) *crmsync.Email {
	mh := mail.Header{Header: h}
	e := &crmsync.Email{Direction: crmsync.DirectionIncoming}
	e.MessageID = messageID(mh)
	e.InReplyTo = firstOf(msgIDList(mh, "In-Reply-To"))
	e.References = msgIDList(mh, "References")
	e.ThreadIndex = strings.TrimSpace(h.Get("Thread-Index"))
	if from := addressList(mh, "From"); len(from) > 0 {
		e.From = from[0]
	} else if sender := addressList(mh, "Sender"); len(sender) > 0 {
		e.From = sender[0]
	}
	e.To = addressList(mh, "To")
	e.Cc = addressList(mh, "Cc")
	e.Bcc = addressList(mh, "Bcc")
	e.ReplyTo = addressList(mh, "Reply-To")
	e.Subject = decodeText(h.Get("Subject"))
	if t, err := mh.Date(); err == nil {
		e.SentAt = t
	} else if t, ok := lenientDate(h.Get("Date")); ok {
		e.SentAt = t
	}
	return e
}

func firstOf(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
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

// addressList parses an address field, and when it is not valid RFC 5322 falls back
// to whatever looks like an address in it, so that a sloppy sender is still resolved.
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
	for _, part := range splitAddresses(decodeText(v)) {
		if a, err := netmail.ParseAddress(part); err == nil {
			out = append(out, crmsync.Address{Name: a.Name, Email: a.Address})
			continue
		}
		addr := addrSpecPattern.FindString(part)
		if addr == "" {
			continue
		}
		name := strings.TrimSpace(strings.Replace(part, addr, "", 1))
		name = strings.Trim(name, ` "'<>`)
		out = append(out, crmsync.Address{Name: name, Email: addr})
	}
	return out
}

// splitAddresses splits an address list on commas and semicolons outside quotes and
// angle brackets.
func splitAddresses(s string) []string {
	var parts []string
	var cur strings.Builder
	quoted, angle := false, 0
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == '<' && !quoted:
			angle++
		case r == '>' && !quoted && angle > 0:
			angle--
		case (r == ',' || r == ';') && !quoted && angle == 0:
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	parts = append(parts, strings.TrimSpace(cur.String()))
	return parts
}

// parseMessage reads the bodies and attachments of a whole message into e, which
// already carries the header fields and the header's notes (see headerEmail and
// readHeader). Attachments larger than limit (0: no limit) are kept as Skipped, with a
// note. It fails only when the message has no readable header; a body whose MIME
// structure cannot be read at all is kept as plain text, with a note.
func parseMessage(e *crmsync.Email, raw []byte, limit int64) error {
	br := bufio.NewReader(bytes.NewReader(raw))
	h, _, err := readHeader(br)
	if err != nil {
		return err
	}
	if h.Len() == 0 {
		return errors.New("the message has no header")
	}
	body, _ := io.ReadAll(br) // cannot fail on a bytes.Reader
	p := &bodyParser{e: e, limit: limit}
	if err := p.entity(h, bytes.NewReader(body), 0); err != nil {
		// Nothing of the MIME structure could be read: keep what there is as text.
		e.TextBody = validUTF8(string(bytes.TrimSpace(body)))
		e.HTMLBody = ""
		e.Attachments = nil
		if e.TextBody == "" {
			p.note("the message body is missing")
		} else {
			p.note("the message's MIME structure could not be read (%v); its body was kept as plain text", err)
		}
	}
	e.TextBody = validUTF8(e.TextBody)
	e.HTMLBody = validUTF8(e.HTMLBody)
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
// It returns an error only for a multipart none of whose parts can be read.
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

// contentType reads a Content-Type leniently: a type with broken parameters keeps the
// parameters that can be read (go-message would drop them all, and with them a
// multipart's boundary). No Content-Type means text/plain (RFC 2045).
func contentType(h message.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	t, params, err := mime.ParseMediaType(v)
	if err != nil {
		t, params = lenientMediaType(v)
		if t == "" {
			return "application/octet-stream", map[string]string{}
		}
	}
	return strings.ToLower(t), params
}

// disposition reads a Content-Disposition as leniently as contentType.
func disposition(h message.Header) (string, map[string]string) {
	v := h.Get("Content-Disposition")
	if strings.TrimSpace(v) == "" {
		return "", map[string]string{}
	}
	d, params, err := mime.ParseMediaType(v)
	if err != nil {
		parts := strings.SplitN(v, ";", 2)
		d = strings.TrimSpace(parts[0])
		params = map[string]string{}
		if len(parts) == 2 {
			_, params = lenientMediaType("x/x;" + parts[1])
		}
	}
	return strings.ToLower(d), params
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
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if _, dup := params[k]; !dup && k != "" {
			params[k] = val
		}
	}
	return t, params
}

// rfc2231Param decodes a "key*=charset'lang'value" parameter in any charset go-message
// knows, or returns "".
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
// "8bits", "quoted printable", "base64;", "plain", …) to the ones go-message decodes.
// Unknown values are kept, so that the part is read raw with a note.
func transferEncoding(v string) string {
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), ";\"' "))
	switch {
	case v == "", v == "7bit", v == "8bit", v == "binary":
		return v
	case strings.Contains(v, "base64"):
		return "base64"
	case strings.Contains(v, "quoted"):
		return "quoted-printable"
	case strings.Contains(v, "uu"), strings.HasPrefix(v, "x-"):
		return v
	}
	return "8bit" // "7-bit", "8bits", "plain", a content type…: not encoded
}

// leaf files one non-multipart part as a body or an attachment.
func (p *bodyParser) leaf(h message.Header, t string, params map[string]string, raw io.Reader) error {
	disp, dparams := disposition(h)
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
	name = decodeText(name)

	// Let go-message undo the transfer encoding and the charset, from repaired fields.
	h = message.Header{Header: h.Header.Copy()}
	if cte := transferEncoding(h.Get("Content-Transfer-Encoding")); cte != "" {
		h.Set("Content-Transfer-Encoding", cte)
	}
	if h.Get("Content-Type") != "" {
		setContentType(&h, t, params)
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

	isText := t == "text/plain" || t == "text/html"
	if isText && disp != "attachment" && name == "" {
		p.text(ent.Body, t, params)
		return nil
	}
	p.attachment(h, ent.Body, t, name)
	return nil
}

// setContentType writes a repaired Content-Type; parameters that cannot be written
// again are dropped, all but the charset first, then the charset too.
func setContentType(h *message.Header, t string, params map[string]string) {
	if mime.FormatMediaType(t, params) != "" {
		h.SetContentType(t, params)
		return
	}
	if cs := params["charset"]; cs != "" && mime.FormatMediaType(t, map[string]string{"charset": cs}) != "" {
		h.SetContentType(t, map[string]string{"charset": cs})
		return
	}
	if mime.FormatMediaType(t, nil) != "" {
		h.Set("Content-Type", t)
		return
	}
	h.Set("Content-Type", "application/octet-stream")
}

func (p *bodyParser) text(body io.Reader, t string, params map[string]string) {
	b, err := io.ReadAll(body)
	if err != nil {
		p.note("part of a %s body could not be decoded: %v", t, err)
	}
	if !utf8.Valid(b) {
		if _, declared := params["charset"]; !declared {
			// Undeclared 8-bit text is most often Windows-1252.
			if r, cerr := charset.Reader("windows-1252", bytes.NewReader(b)); cerr == nil {
				if d, rerr := io.ReadAll(r); rerr == nil {
					b = d
				}
			}
		}
	}
	s := validUTF8(string(b))
	switch t {
	case "text/plain":
		if p.e.TextBody != "" && s != "" {
			p.e.TextBody += "\n"
		}
		p.e.TextBody += s
	case "text/html":
		if p.e.HTMLBody != "" && s != "" {
			p.e.HTMLBody += "\n"
		}
		p.e.HTMLBody += s
	}
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

// byteSize formats n bytes for people: "512 B", "5 MiB".
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
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

// dateLayouts are forms of Date seen in the wild that net/mail does not read.
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"Monday, January 2, 2006 3:04 PM",
	time.RFC3339,
}

// lenientDate reads a Date value that net/mail refused.
func lenientDate(v string) (time.Time, bool) {
	v = strings.Join(strings.Fields(v), " ")
	if v == "" {
		return time.Time{}, false
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
