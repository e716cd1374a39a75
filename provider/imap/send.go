package imap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// Send submits m over SMTP to its To, Cc and Bcc recipients (Bcc is not written in the
// message) and, unless the profile turned Sent copies off, appends a copy marked \Seen to
// the Sent folder, with a Bcc field as mail clients keep it. m.From
// defaults to the mailbox's address; an empty m.MessageID gets a generated one, which
// the receipt returns.
//
// A 5xx answer is a permanent error, a 4xx answer transient (throttled when the server
// says it limits the rate), a refused login an auth error; a connection that breaks
// after DATA leaves the outcome unknown and is transient, so that the engine calls
// FindSent before it sends again. A Sent copy that fails is logged and reported by
// SendReceipt.Copied only: the message did go out.
func (c *Conn) Send(ctx context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	const op = "smtp send"
	if m == nil {
		return provider.SendReceipt{}, crmsync.Errorf(crmsync.KindPermanent, op, "no email")
	}
	from := m.From
	if from.Email == "" && c.t.Mailbox != nil {
		from = crmsync.Address{Email: c.t.Mailbox.Address}
	}
	if from.Email == "" {
		return provider.SendReceipt{}, crmsync.Errorf(crmsync.KindPermanent, op, "email %s has no sender", m.ID)
	}
	rcpts := envelopeRecipients(m)
	if len(rcpts) == 0 {
		return provider.SendReceipt{}, crmsync.Errorf(crmsync.KindPermanent, op, "email %s has no recipients", m.ID)
	}
	msgID := strings.Trim(strings.TrimSpace(m.MessageID), "<>")
	if msgID == "" {
		msgID = newMessageID(from.Email)
	}
	sentAt := c.d.cfg.Clock.Now()
	raw, err := compose(m, from, msgID, sentAt, false)
	if err != nil {
		return provider.SendReceipt{}, crmsync.Errorf(crmsync.KindPermanent, op, "email %s cannot be written: %w", m.ID, err)
	}

	c.mu.Lock()
	reused := c.smtp != nil
	c.mu.Unlock()
	err = c.withSMTP(ctx, op, func(sc *smtp.Client) error { return c.submit(sc, from.Email, rcpts, raw) })
	var se *stageError
	if err != nil && reused && errors.As(err, &se) && se.beforeMail {
		// The server may have closed an idle session between two sends: try once on a
		// fresh one. Nothing was submitted.
		err = c.withSMTP(ctx, op, func(sc *smtp.Client) error { return c.submit(sc, from.Email, rcpts, raw) })
	}
	if errors.As(err, &se) {
		err = se.err
	}
	if err != nil {
		return provider.SendReceipt{}, err
	}

	receipt := provider.SendReceipt{MessageID: msgID, SentAt: sentAt}
	if c.t.Profile.SentCopy() {
		if len(m.Bcc) > 0 {
			// The sender's copy shows whom they blind-copied. It is composed again, so
			// only its MIME boundaries differ from the message submitted.
			if withBcc, err := compose(m, from, msgID, sentAt, true); err == nil {
				raw = withBcc
			}
		}
		if err := c.appendSent(ctx, raw, sentAt); err != nil {
			c.log.Warn("imap: the message was sent but its copy could not be saved to the Sent folder",
				"message_id", msgID, "err", err)
		} else {
			receipt.Copied = true
		}
	}
	return receipt, nil
}

// envelopeRecipients returns the addresses of To, Cc and Bcc, each once.
func envelopeRecipients(m *crmsync.Email) []string {
	seen := make(map[string]bool)
	var out []string
	for _, a := range m.Recipients() {
		key := strings.ToLower(strings.TrimSpace(a.Email))
		if key == "" || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, strings.TrimSpace(a.Email))
	}
	return out
}

// newMessageID makes a Message-ID in the sender's domain.
func newMessageID(from string) string {
	domain := "localhost"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		domain = from[i+1:]
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(time.Now().UnixNano(), 36) + "." + hex.EncodeToString(b[:]) + "@" + domain
}

// stageError marks a submission error that happened before MAIL FROM was answered,
// when nothing can have been sent.
type stageError struct {
	err        error
	beforeMail bool
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

// submit runs one SMTP transaction.
func (c *Conn) submit(sc *smtp.Client, from string, rcpts []string, raw []byte) error {
	const op = "smtp send"
	opts := &smtp.MailOptions{Size: int64(len(raw))}
	if !isASCII(from) || !allASCII(rcpts) {
		if ok, _ := sc.Extension("SMTPUTF8"); !ok {
			return crmsync.Errorf(crmsync.KindPermanent, op, "the server does not accept internationalized addresses (SMTPUTF8)")
		}
		opts.UTF8 = true
	}
	if err := sc.Mail(from, opts); err != nil {
		var se *smtp.SMTPError
		return &stageError{err: c.smtpFail(sc, op, err, false), beforeMail: !errors.As(err, &se)}
	}
	for _, r := range rcpts {
		if err := sc.Rcpt(r, nil); err != nil {
			return c.smtpFail(sc, op, fmt.Errorf("recipient %s: %w", r, err), false)
		}
	}
	w, err := sc.Data()
	if err != nil {
		return c.smtpFail(sc, op, err, false)
	}
	if _, err := w.Write(raw); err != nil {
		return c.smtpFail(sc, op, err, true)
	}
	if err := w.Close(); err != nil {
		return c.smtpFail(sc, op, err, true)
	}
	return nil
}

// smtpFail classifies err and leaves the session ready for the next message: after a
// refusal it aborts the transaction with RSET, after anything else it drops the session.
func (c *Conn) smtpFail(sc *smtp.Client, op string, err error, dataSent bool) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code != 421 {
		if rerr := sc.Reset(); rerr != nil {
			c.closeSMTP(false)
		}
	} else {
		c.closeSMTP(false)
	}
	return smtpError(op, err, dataSent)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(l []string) bool {
	for _, s := range l {
		if !isASCII(s) {
			return false
		}
	}
	return true
}

// appendSent saves raw to the Sent folder, marked \Seen.
func (c *Conn) appendSent(ctx context.Context, raw []byte, date time.Time) error {
	return c.withIMAP(ctx, "imap append", func(cl *imapclient.Client) error {
		name, err := c.sentFolder(cl, true)
		if err != nil {
			return err
		}
		err = appendMessage(cl, name, raw, date)
		if err != nil && missingMailbox(err) {
			// The folder went away since it was found.
			c.sent = ""
			if name, err = c.sentFolder(cl, true); err != nil {
				return err
			}
			err = appendMessage(cl, name, raw, date)
		}
		return err
	})
}

func appendMessage(cl *imapclient.Client, mailbox string, raw []byte, date time.Time) error {
	cmd := cl.Append(mailbox, int64(len(raw)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: date})
	if _, err := cmd.Write(raw); err != nil {
		cmd.Close()
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// sentNames are the names a Sent folder goes by when the server marks none \Sent.
var sentNames = []string{"Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX.Sent", "INBOX/Sent"}

// sentFolder finds the Sent folder: the mailbox with the \Sent attribute, else the
// configured name or a usual one (case-insensitively). When there is none it creates
// the configured one if create is set, else returns "".
func (c *Conn) sentFolder(cl *imapclient.Client, create bool) (string, error) {
	if c.sent != "" {
		return c.sent, nil
	}
	opts := &imap.ListOptions{}
	if cl.Caps().Has(imap.CapSpecialUse) {
		opts.ReturnSpecialUse = true
	}
	list, err := cl.List("", "*", opts).Collect()
	if err != nil {
		return "", err
	}
	for _, l := range list {
		for _, a := range l.Attrs {
			if strings.EqualFold(string(a), string(imap.MailboxAttrSent)) {
				c.sent = l.Mailbox
				return c.sent, nil
			}
		}
	}
	for _, want := range append([]string{c.d.cfg.SentFolder}, sentNames...) {
		for _, l := range list {
			if strings.EqualFold(l.Mailbox, want) {
				c.sent = l.Mailbox
				return c.sent, nil
			}
		}
	}
	if !create {
		return "", nil
	}
	if err := cl.Create(c.d.cfg.SentFolder, &imap.CreateOptions{SpecialUse: specialUse(cl)}).Wait(); err != nil && !alreadyExists(err) {
		return "", err
	}
	c.sent = c.d.cfg.SentFolder
	return c.sent, nil
}

// specialUse asks for \Sent on a folder the provider creates, where the server can.
func specialUse(cl *imapclient.Client) []imap.MailboxAttr {
	if cl.Caps().Has(imap.CapCreateSpecialUse) {
		return []imap.MailboxAttr{imap.MailboxAttrSent}
	}
	return nil
}

// FindSent reports whether a message with this Message-ID is in the Sent folder: UID
// SEARCH HEADER Message-ID, then an exact comparison of the matches' Message-ID fields
// (the search matches substrings). No Sent folder means not found.
func (c *Conn) FindSent(ctx context.Context, messageID string) (bool, error) {
	const op = "imap find sent"
	id := strings.Trim(strings.TrimSpace(messageID), "<>")
	if id == "" {
		return false, crmsync.Errorf(crmsync.KindPermanent, op, "empty Message-ID")
	}
	found := false
	err := c.withIMAP(ctx, op, func(cl *imapclient.Client) error {
		name, err := c.sentFolder(cl, false)
		if err != nil || name == "" {
			return err
		}
		if _, err := cl.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			return err
		}
		data, err := cl.UIDSearch(&imap.SearchCriteria{
			Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: "<" + id + ">"}},
		}, nil).Wait()
		if err != nil {
			return err
		}
		uids := data.AllUIDs()
		if len(uids) == 0 {
			return nil
		}
		section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
		bufs, err := cl.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{
			UID: true, BodySection: []*imap.FetchItemBodySection{section},
		}).Collect()
		if err != nil {
			return err
		}
		for _, b := range bufs {
			if messageIDOf(b.FindBodySection(section)) == id {
				found = true
			}
		}
		return nil
	})
	return found, err
}
