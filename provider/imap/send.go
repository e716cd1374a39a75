package imap

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailparse"
	"github.com/crmsync/crmsync/provider/smtp"
)

// Send submits m over SMTP with the profile's outgoing endpoint (see provider/smtp:
// Bcc recipients get the message through the envelope only) and, unless the profile
// turned Sent copies off, appends a copy marked \Seen to the Sent folder, with a Bcc
// field as mail clients keep it. m.From defaults to the mailbox's address; an empty
// m.MessageID gets a generated one, which the receipt returns.
//
// Errors are classified as provider/smtp classifies them: a refused login is an auth
// error, a 5xx answer permanent, a 4xx answer transient (throttled when the server says
// it limits the rate). An error wrapping smtp.ErrNotSubmitted means the message
// definitely did not go out; a connection that breaks while the message is being sent
// leaves the outcome unknown, a transient error without it, so that the engine calls
// FindSent before it sends again. A Sent copy that fails is logged and reported by
// SendReceipt.Copied only: the message did go out.
func (c *Conn) Send(ctx context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	s, err := c.sender()
	if err != nil {
		return provider.SendReceipt{}, fmt.Errorf("%w (%w)", err, smtp.ErrNotSubmitted)
	}
	receipt, raw, err := s.Send(ctx, m)
	if err != nil {
		return provider.SendReceipt{}, err
	}
	if !c.t.Profile.SentCopy() {
		return receipt, nil
	}
	if len(m.Bcc) > 0 {
		// The sender's copy shows whom they blind-copied. It is composed again, so only
		// its MIME boundaries differ from the message submitted.
		cp := *m
		if strings.TrimSpace(cp.From.Email) == "" && c.t.Mailbox != nil {
			cp.From = crmsync.Address{Email: c.t.Mailbox.Address}
		}
		cp.MessageID = receipt.MessageID
		if withBcc, err := smtp.ComposeSentCopy(&cp, receipt.SentAt); err == nil {
			raw = withBcc
		}
	}
	if err := c.appendSent(ctx, raw, receipt.SentAt); err != nil {
		c.log.Warn("imap: the message was sent but its copy could not be saved to the Sent folder",
			"message_id", receipt.MessageID, "err", err)
	} else {
		receipt.Copied = true
	}
	return receipt, nil
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

// FindSent reports whether a message with this Message-ID (angle brackets optional) is
// in the Sent folder: UID SEARCH HEADER Message-ID, then an exact comparison of the
// matches' Message-ID fields (the search matches substrings). No Sent folder means not
// found.
//
// When the profile turned Sent copies off, no copy can be found, so FindSent returns a
// permanent error wrapping crmsync.ErrNotSupported, without touching the server: "not
// found" would make the engine send again an email that may have gone out. The engine
// then refuses to resend an email whose outcome is unknown rather than risk sending it
// twice.
func (c *Conn) FindSent(ctx context.Context, messageID string) (bool, error) {
	const op = "imap find sent"
	if !c.t.Profile.SentCopy() {
		return false, crmsync.WithKind(crmsync.KindPermanent, op, fmt.Errorf(
			"%s: the profile keeps no copy of sent email, so whether a message went out cannot be checked: %w",
			c.whoOr("the mailbox"), crmsync.ErrNotSupported))
	}
	id := mailparse.NormalizeMessageID(messageID)
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
			if e, err := mailparse.ParseHeader(b.FindBodySection(section)); err == nil && e.MessageID == id {
				found = true
			}
		}
		return nil
	})
	return found, err
}
