package smtp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/mailparse"
)

// Compose returns the RFC 5322 message of m, as it is submitted: From, To, Cc,
// Reply-To, Subject (with encoded words where needed), Date (now), Message-ID,
// In-Reply-To, References and Thread-Index; a text/plain or text/html body in UTF-8,
// multipart/alternative when m has both, inside multipart/mixed when it has
// attachments. Skipped attachments (kept without content) are left out. Bcc is never
// written: its recipients get the message through the envelope only. Lines end in CRLF.
//
// m must have a sender (From.Email) and a MessageID (with or without angle brackets);
// Sender.Send gives them defaults first.
func Compose(m *crmsync.Email, now time.Time) ([]byte, error) {
	return compose(m, now, false)
}

// ComposeSentCopy is Compose with a Bcc field: the sender's own copy, as mail clients
// keep it in the Sent folder, shows whom they blind-copied. It is never what is
// submitted.
func ComposeSentCopy(m *crmsync.Email, now time.Time) ([]byte, error) {
	return compose(m, now, true)
}

func compose(m *crmsync.Email, date time.Time, withBcc bool) ([]byte, error) {
	if m == nil {
		return nil, errors.New("no email")
	}
	if strings.TrimSpace(m.From.Email) == "" {
		return nil, errors.New("the email has no sender")
	}
	msgID := mailparse.NormalizeMessageID(m.MessageID)
	if msgID == "" {
		return nil, errors.New("the email has no Message-ID")
	}
	var h mail.Header
	h.SetDate(date)
	h.SetAddressList("From", mailAddresses([]crmsync.Address{m.From}))
	h.SetAddressList("To", mailAddresses(m.To))
	h.SetAddressList("Cc", mailAddresses(m.Cc))
	if withBcc {
		h.SetAddressList("Bcc", mailAddresses(m.Bcc))
	}
	h.SetAddressList("Reply-To", mailAddresses(m.ReplyTo))
	h.SetSubject(m.Subject)
	h.SetMessageID(msgID)
	if id := mailparse.NormalizeMessageID(m.InReplyTo); id != "" {
		h.SetMsgIDList("In-Reply-To", []string{id})
	}
	if refs := normalizeIDs(m.References); len(refs) > 0 {
		h.SetMsgIDList("References", refs)
	}
	if m.ThreadIndex != "" {
		h.Set("Thread-Index", m.ThreadIndex)
	}

	var atts []crmsync.Attachment
	for _, a := range m.Attachments {
		if !a.Skipped {
			atts = append(atts, a)
		}
	}

	var buf bytes.Buffer
	if len(atts) == 0 {
		if err := writeBody(&buf, h, m); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	w, err := mail.CreateWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	if err := writeBodyPart(w, m); err != nil {
		return nil, err
	}
	for i, a := range atts {
		if err := writeAttachment(w, a, i+1); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// normalizeIDs returns the ids of l without angle brackets, empty ones dropped.
func normalizeIDs(l []string) []string {
	var out []string
	for _, id := range l {
		if id = mailparse.NormalizeMessageID(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

func mailAddresses(l []crmsync.Address) []*mail.Address {
	out := make([]*mail.Address, 0, len(l))
	for _, a := range l {
		if a.Email != "" {
			out = append(out, &mail.Address{Name: a.Name, Address: a.Email})
		}
	}
	return out
}

func textHeader(t string) mail.InlineHeader {
	var h mail.InlineHeader
	h.SetContentType(t, map[string]string{"charset": "utf-8"})
	return h
}

// writeBody writes a message without attachments: one text part, or an alternative.
func writeBody(w io.Writer, h mail.Header, m *crmsync.Email) error {
	switch {
	case m.TextBody != "" && m.HTMLBody != "":
		iw, err := mail.CreateInlineWriter(w, h)
		if err != nil {
			return err
		}
		if err := writeAlternatives(iw, m); err != nil {
			return err
		}
		return iw.Close()
	default:
		t, body := single(m)
		h = mail.Header{Header: h.Header.Copy()}
		h.SetContentType(t, map[string]string{"charset": "utf-8"})
		wc, err := mail.CreateSingleInlineWriter(w, h)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(wc, body); err != nil {
			return err
		}
		return wc.Close()
	}
}

// writeBodyPart writes the text of a message with attachments.
func writeBodyPart(w *mail.Writer, m *crmsync.Email) error {
	if m.TextBody != "" && m.HTMLBody != "" {
		iw, err := w.CreateInline()
		if err != nil {
			return err
		}
		if err := writeAlternatives(iw, m); err != nil {
			return err
		}
		return iw.Close()
	}
	t, body := single(m)
	wc, err := w.CreateSingleInline(textHeader(t))
	if err != nil {
		return err
	}
	if _, err := io.WriteString(wc, body); err != nil {
		return err
	}
	return wc.Close()
}

func writeAlternatives(iw *mail.InlineWriter, m *crmsync.Email) error {
	for _, p := range []struct{ t, body string }{{"text/plain", m.TextBody}, {"text/html", m.HTMLBody}} {
		wc, err := iw.CreatePart(textHeader(p.t))
		if err != nil {
			return err
		}
		if _, err := io.WriteString(wc, p.body); err != nil {
			return err
		}
		if err := wc.Close(); err != nil {
			return err
		}
	}
	return nil
}

// single returns the one body a message has (HTML when it has no text).
func single(m *crmsync.Email) (string, string) {
	if m.TextBody == "" && m.HTMLBody != "" {
		return "text/html", m.HTMLBody
	}
	return "text/plain", m.TextBody
}

func writeAttachment(w *mail.Writer, a crmsync.Attachment, n int) error {
	var h mail.AttachmentHeader
	t := a.ContentType
	if t == "" {
		t = mime.TypeByExtension(path.Ext(a.Name))
	}
	mt, params, err := mime.ParseMediaType(t)
	if err != nil || mt == "" {
		mt, params = "application/octet-stream", nil
	}
	name := a.Name
	if name == "" {
		name = fmt.Sprintf("attachment-%d", n)
	}
	h.SetContentType(mt, params)
	h.SetFilename(name)
	if a.ContentID != "" {
		h.Set("Content-Id", "<"+strings.Trim(a.ContentID, "<>")+">")
	}
	wc, err := w.CreateAttachment(h)
	if err != nil {
		return err
	}
	if _, err := wc.Write(a.Content); err != nil {
		return err
	}
	return wc.Close()
}
