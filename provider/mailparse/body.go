package mailparse

import (
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

// note adds a note to the email; the errors it quotes may carry the message's raw bytes.
func (p *bodyParser) note(format string, args ...any) {
	p.e.Notes = append(p.e.Notes, validUTF8(fmt.Sprintf(format, args...)))
}

// entity reads one MIME entity from its header and raw (still transfer-encoded) body.
// It returns an error only for a multipart none of whose parts can be read.
func (p *bodyParser) entity(h message.Header, body io.Reader, depth int) error {
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

// leaf files one non-multipart part as a body or an attachment.
func (p *bodyParser) leaf(h message.Header, t string, params map[string]string, raw io.Reader) {
	disp, dparams := disposition(h)
	name := fileName(h, params, dparams)

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
			return
		}
	}
	if (t == "text/plain" || t == "text/html") && disp != "attachment" && name == "" {
		p.text(ent.Body, t, params)
		return
	}
	p.attachment(h, ent.Body, t, name)
}

// text appends a text/plain or text/html part to the email's body of that type.
func (p *bodyParser) text(body io.Reader, t string, params map[string]string) {
	b, err := io.ReadAll(body)
	if err != nil {
		p.note("part of a %s body could not be decoded: %v", t, err)
	}
	s := string(b)
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
