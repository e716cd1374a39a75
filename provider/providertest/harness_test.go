package providertest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/providertest"
)

// fakeHarness runs the conformance suite against the fake server.
type fakeHarness struct {
	*providertest.Server
	caps providertest.Capabilities
	n    atomic.Int64
}

var (
	_ providertest.Harness         = (*fakeHarness)(nil)
	_ providertest.DatedDeliverer  = (*fakeHarness)(nil)
	_ providertest.BadCredentialer = (*fakeHarness)(nil)
)

const harnessPassword = "s3cret"

func (h *fakeHarness) Capabilities() providertest.Capabilities { return h.caps }

func (h *fakeHarness) NewMailbox(ctx context.Context, t *testing.T) provider.Target {
	n := h.n.Add(1)
	addr := fmt.Sprintf("user%d@fake.test", n)
	h.SetPassword(addr, harnessPassword)
	return provider.Target{
		Profile: &crmsync.ServerProfile{ID: "p1", Kind: crmsync.ServerIMAP},
		Mailbox: &crmsync.Mailbox{
			ID: fmt.Sprintf("mb%d", n), Address: addr, ProfileID: "p1",
			Credentials: crmsync.Credentials{Username: addr, Password: harnessPassword},
		},
	}
}

func (h *fakeHarness) Deliver(ctx context.Context, to provider.Target, raw []byte) error {
	return h.DeliverAt(ctx, to, raw, time.Time{})
}

func (h *fakeHarness) DeliverAt(ctx context.Context, to provider.Target, raw []byte, received time.Time) error {
	e, err := parseMessage(raw)
	if err != nil {
		return err
	}
	e.ReceivedAt = received
	h.Server.Deliver(to.Mailbox.Address, e)
	return nil
}

func (h *fakeHarness) WithBadCredentials(t provider.Target) provider.Target {
	mb := t.Mailbox.Clone()
	mb.Credentials.Password = "wrong"
	t.Mailbox = mb
	return t
}

// parseMessage is the fake harness's tiny RFC 5322 reader: the headers the engine uses,
// text and HTML bodies, and attachments, through multipart nesting.
func parseMessage(raw []byte) (*crmsync.Email, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	h := msg.Header
	var dec mime.WordDecoder
	e := &crmsync.Email{
		MessageID:   trimID(h.Get("Message-ID")),
		InReplyTo:   trimID(h.Get("In-Reply-To")),
		ThreadIndex: h.Get("Thread-Index"),
		Size:        int64(len(raw)),
	}
	for _, r := range strings.Fields(h.Get("References")) {
		e.References = append(e.References, trimID(r))
	}
	if e.Subject, err = dec.DecodeHeader(h.Get("Subject")); err != nil {
		e.Subject = h.Get("Subject")
	}
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		e.From = crmsync.Address{Name: from[0].Name, Email: from[0].Address}
	}
	e.To, e.Cc = addresses(h, "To"), addresses(h, "Cc")
	e.SentAt, _ = h.Date()
	return e, readPart(e, h, msg.Body, 0)
}

func trimID(s string) string { return strings.Trim(strings.TrimSpace(s), "<>") }

func addresses(h mail.Header, key string) []crmsync.Address {
	list, _ := h.AddressList(key)
	var out []crmsync.Address
	for _, a := range list {
		out = append(out, crmsync.Address{Name: a.Name, Email: a.Address})
	}
	return out
}

type header interface{ Get(string) string }

// readPart reads one MIME part into e: a text or HTML body, an attachment, or the parts
// of a multipart.
func readPart(e *crmsync.Email, h header, body io.Reader, depth int) error {
	if depth > 10 {
		return fmt.Errorf("multipart nested too deep")
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, params = "application/octet-stream", nil
	}
	if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "base64") {
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := readPart(e, p.Header, p, depth+1); err != nil {
				return err
			}
		}
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	switch {
	case disp != "attachment" && mt == "text/plain" && e.TextBody == "":
		e.TextBody = string(data)
	case disp != "attachment" && mt == "text/html" && e.HTMLBody == "":
		e.HTMLBody = string(data)
	default:
		name := dparams["filename"]
		if name == "" {
			name = params["name"]
		}
		e.Attachments = append(e.Attachments, crmsync.Attachment{
			Name: name, ContentType: mt, ContentID: trimID(h.Get("Content-ID")),
			Size: int64(len(data)), Content: data,
		})
	}
	return nil
}

func FuzzParseMessage(f *testing.F) {
	f.Add([]byte("From: a@b.c\r\nSubject: hi\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<p>\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		parseMessage(raw) // must not panic
	})
}

func TestParseMessage(t *testing.T) {
	raw := "From: \"Bob B\" <Bob@Example.com>\r\nTo: a@x.test, c@x.test\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n" +
		"Message-ID: <id1@x>\r\nReferences: <r1@x>\r\n\t<r2@x>\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n" +
		"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n" +
		"--b2\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsoft=\r\nbreak\r\n" +
		"--b2\r\nContent-Type: text/html\r\n\r\n<i>x</i>\r\n--b2--\r\n" +
		"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBE\r\nRg==\r\n--b1--\r\n"
	e, err := parseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if e.Subject != "Grüße" || e.From.Email != "Bob@Example.com" || len(e.To) != 2 || e.MessageID != "id1@x" ||
		len(e.References) != 2 || e.TextBody != "softbreak" || e.HTMLBody != "<i>x</i>" {
		t.Errorf("parsed %+v", e)
	}
	if len(e.Attachments) != 1 || e.Attachments[0].Name != "a.pdf" || string(e.Attachments[0].Content) != "%PDF" {
		t.Errorf("attachments %+v", e.Attachments)
	}
}
