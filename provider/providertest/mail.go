package providertest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// Deliver adds messages to the inbox of the mailbox at address, as if they had just
// arrived. The server keeps copies without the CRM's own fields (ID, MailboxID, Status,
// Direction, RegardingID, Notes and the like), and fills in the caller's ProviderID (when
// empty), Folder and ReceivedAt (when zero, the Clock's time), so the test can refer to
// them. A ProviderID the caller chooses must be unique in the mailbox.
func (s *Server) Deliver(address string, msgs ...*crmsync.Email) {
	s.DeliverTo(address, Inbox, msgs...)
}

// DeliverTo is Deliver into another folder, such as a tracked folder.
func (s *Server) DeliverTo(address, folder string, msgs ...*crmsync.Email) {
	mb := s.box(address)
	now := s.clock.Now()
	mb.mu.Lock()
	defer mb.mu.Unlock()
	for _, m := range msgs {
		c := mailCopy(m)
		if c.ReceivedAt.IsZero() {
			c.ReceivedAt = now
		}
		mb.addLocked(c, folder)
		m.ProviderID, m.Folder, m.ReceivedAt = c.ProviderID, c.Folder, c.ReceivedAt
	}
}

// Move moves a message of the mailbox at address to folder, as a user would, and
// returns its new ProviderID: as on IMAP and Graph, a moved message has a new identity,
// and it counts as a new arrival, so a FetchIncoming that reads folder returns it again.
// It reports false when the mailbox has no such message.
func (s *Server) Move(address, providerID, folder string) (string, bool) {
	mb := s.lookup(address)
	if mb == nil {
		return "", false
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	m, ok := mb.moveLocked(providerID, folder)
	if !ok {
		return "", false
	}
	return m.email.ProviderID, true
}

// FailBody makes the body of a message unreadable: FetchIncoming reports it, once
// screened in, in Batch.Failed with err instead of in Batch.Emails. It reports false
// when the mailbox has no such message.
func (s *Server) FailBody(address, providerID string, err error) bool {
	if err == nil {
		err = provider.Permanent(opNames[2], fmt.Errorf("message %s cannot be parsed", providerID))
	}
	mb := s.lookup(address)
	if mb == nil {
		return false
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	m := mb.byID[providerID]
	if m == nil {
		return false
	}
	m.bodyErr = err
	return true
}

// Messages returns copies of the messages in folder of the mailbox at address, in order
// of arrival. Like every method that only reads, it creates no mailbox.
func (s *Server) Messages(address, folder string) []*crmsync.Email {
	mb := s.lookup(address)
	if mb == nil {
		return nil
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var out []*crmsync.Email
	for _, m := range mb.msgs {
		if !m.gone && m.email.Folder == folder {
			out = append(out, m.email.Clone())
		}
	}
	return out
}

// SentItems returns copies of the messages in the Sent folder of the mailbox at address.
func (s *Server) SentItems(address string) []*crmsync.Email { return s.Messages(address, SentFolder) }

// Submitted returns copies of every message a Send accepted, from any mailbox, in
// order, including those whose outcome was made unknown: a message that appears twice
// was sent twice.
func (s *Server) Submitted() []*crmsync.Email {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	out := make([]*crmsync.Email, len(s.submitted))
	for i, m := range s.submitted {
		out[i] = m.Clone()
	}
	return out
}

// FetchIncoming implements provider.IncomingMail. It looks at the messages that arrived
// after req.Cursor in the inbox and in req.Folders, in order of arrival, skipping those
// received before req.Since (the cursor moves past them). It screens up to req.Max of
// them (DefaultFetchMax when zero) with header-only copies, returns full copies of the
// accepted ones, and sets More when more remain. The returned cursor covers every
// message it looked at; a cursor that ExpireCursors made old fails with a
// crmsync.KindCursorExpired error.
func (c *Conn) FetchIncoming(ctx context.Context, req provider.FetchRequest) (*provider.Batch, error) {
	const op = "fake fetch"
	if err := c.enter(ctx, OpFetch, ""); err != nil {
		return nil, err
	}
	max := req.Max
	if max <= 0 {
		max = DefaultFetchMax
	}
	mb := c.mb
	mb.mu.Lock()
	after, err := mb.position(op, req.Cursor, tagMail)
	if err != nil {
		mb.mu.Unlock()
		return nil, err
	}
	var picked []*message
	last, more := after, false
	for i := mb.firstAfter(after); i < len(mb.msgs); i++ {
		m := mb.msgs[i]
		if m.gone || !reads(m.email.Folder, req.Folders) || m.email.ReceivedAt.Before(req.Since) {
			last = m.seq
			continue
		}
		if len(picked) == max {
			more = true
			break
		}
		picked = append(picked, m)
		last = m.seq
	}
	epoch := mb.epoch
	mb.mu.Unlock()

	b := &provider.Batch{Cursor: req.Cursor, More: more}
	if last != after {
		b.Cursor = appendCursor(tagMail, epoch, last)
	}
	if len(picked) == 0 {
		return b, nil
	}
	var verdicts []bool
	if req.Screen != nil {
		headers := make([]*crmsync.Email, len(picked))
		for i, m := range picked {
			headers[i] = headerCopy(m.email)
		}
		verdicts, err = req.Screen(ctx, headers)
		if err != nil {
			return nil, fmt.Errorf("%s: mailbox %s: screening: %w", op, mb.addr, err)
		}
		if len(verdicts) != len(picked) {
			return nil, crmsync.Errorf(crmsync.KindPermanent, op, "mailbox %s: screen gave %d verdicts for %d messages", mb.addr, len(verdicts), len(picked))
		}
	}
	for i, m := range picked {
		if verdicts != nil && !verdicts[i] {
			continue
		}
		if m.bodyErr != nil {
			b.Failed = append(b.Failed, provider.FailedItem{
				Ref:       provider.ItemRef{Folder: m.email.Folder, ID: m.email.ProviderID},
				MessageID: m.email.MessageID,
				Err:       m.bodyErr,
			})
			continue
		}
		b.Emails = append(b.Emails, fullCopy(m.email, req.AttachmentLimit))
	}
	return b, nil
}

// reads reports whether a fetch that tracks folders reads folder.
func reads(folder string, folders []string) bool {
	return folder == Inbox || slices.Contains(folders, folder)
}

// MoveToFolder implements provider.FolderMover. The message gets a new ProviderID, as
// on IMAP and Graph. A message that is not there (or not in ref.Folder, when set) is a
// crmsync.KindNotFound error.
func (c *Conn) MoveToFolder(ctx context.Context, ref provider.ItemRef, folder string) error {
	const op = "fake move"
	if err := c.enter(ctx, OpMove, ""); err != nil {
		return err
	}
	if folder == "" {
		return crmsync.Errorf(crmsync.KindPermanent, op, "mailbox %s: empty folder name", c.mb.addr)
	}
	mb := c.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if m := mb.byID[ref.ID]; m == nil || ref.Folder != "" && m.email.Folder != ref.Folder {
		return provider.NotFound(op, fmt.Errorf("mailbox %s: no message %s: %w", mb.addr, ref, crmsync.ErrNotFound))
	}
	mb.moveLocked(ref.ID, folder)
	return nil
}

// Send implements provider.OutgoingMail. m must have a MessageID (else a permanent
// error). The server records a copy in Submitted, keeps one in the sender's Sent folder
// unless the profile turned Sent copies off, and delivers one (without Bcc) to the
// inbox of every recipient that is a mailbox of this server. From defaults to the
// mailbox's address.
func (c *Conn) Send(ctx context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	const op = "fake send"
	if err := c.enter(ctx, OpSend, ""); err != nil {
		return provider.SendReceipt{}, err
	}
	if m == nil || m.MessageID == "" {
		return provider.SendReceipt{}, crmsync.Errorf(crmsync.KindPermanent, op, "mailbox %s: the message has no Message-ID", c.mb.addr)
	}
	s, mb := c.s, c.mb
	now := s.clock.Now()
	msg := mailCopy(m)
	msg.ProviderID, msg.Folder = "", ""
	msg.MessageID = strings.Trim(msg.MessageID, "<>")
	if msg.From.Email == "" {
		msg.From = crmsync.Address{Email: mb.addr}
	}
	if msg.SentAt.IsZero() {
		msg.SentAt = now
	}
	msg.ReceivedAt = now

	mb.mu.Lock()
	unknown := mb.unknownSends > 0
	if unknown {
		mb.unknownSends--
	}
	if c.sentCopy {
		mb.addLocked(msg.Clone(), SentFolder)
	}
	mb.mu.Unlock()

	s.subMu.Lock()
	s.submitted = append(s.submitted, msg.Clone())
	s.subMu.Unlock()

	var done []string
	for _, r := range msg.Recipients() {
		addr := normAddress(r.Email)
		if slices.Contains(done, addr) {
			continue
		}
		done = append(done, addr)
		rb := s.lookup(addr)
		if rb == nil {
			continue
		}
		in := msg.Clone()
		in.Bcc = nil
		rb.mu.Lock()
		rb.addLocked(in, Inbox)
		rb.mu.Unlock()
	}
	if unknown {
		return provider.SendReceipt{}, provider.Transient(op, fmt.Errorf("mailbox %s: %w", mb.addr, ErrOutcomeUnknown))
	}
	return provider.SendReceipt{MessageID: msg.MessageID, SentAt: now, Copied: c.sentCopy}, nil
}

// FindSent implements provider.OutgoingMail: it looks for the Message-ID in the Sent
// folder of the connection's mailbox.
func (c *Conn) FindSent(ctx context.Context, messageID string) (bool, error) {
	if err := c.enter(ctx, OpFindSent, ""); err != nil {
		return false, err
	}
	id := strings.Trim(messageID, "<>")
	c.mb.mu.Lock()
	defer c.mb.mu.Unlock()
	return c.mb.sent[id] > 0, nil
}

// mailCopy returns what a server keeps of m: a deep copy without the CRM's own fields,
// with attachment sizes and the message size filled in when they are zero.
func mailCopy(m *crmsync.Email) *crmsync.Email {
	c := m.Clone()
	c.ID, c.MailboxID, c.Direction, c.Status = "", "", 0, 0
	c.RegardingID, c.Correlation = "", crmsync.CorrelationNone
	c.DeliveryAttempts, c.FailureReason, c.Notes = 0, "", nil
	c.CreatedAt, c.ModifiedAt = time.Time{}, time.Time{}
	size := int64(len(c.TextBody) + len(c.HTMLBody))
	for i := range c.Attachments {
		a := &c.Attachments[i]
		if a.Size == 0 {
			a.Size = int64(len(a.Content))
		}
		size += a.Size
	}
	if c.Size == 0 {
		c.Size = size
	}
	return c
}

// headerCopy returns what a client sees of e before it fetches the body.
func headerCopy(e *crmsync.Email) *crmsync.Email {
	c := *e
	c.TextBody, c.HTMLBody, c.Attachments = "", "", nil
	c.References = slices.Clone(e.References)
	c.To = slices.Clone(e.To)
	c.Cc = slices.Clone(e.Cc)
	c.Bcc = slices.Clone(e.Bcc)
	c.ReplyTo = slices.Clone(e.ReplyTo)
	c.Notes = nil
	return &c
}

// fullCopy returns a full copy of e with the attachments over limit (if positive)
// skipped.
func fullCopy(e *crmsync.Email, limit int64) *crmsync.Email {
	c := e.Clone()
	if limit <= 0 {
		return c
	}
	for i := range c.Attachments {
		if a := &c.Attachments[i]; a.Size > limit {
			a.Content, a.Skipped = nil, true
			a.SkipReason = fmt.Sprintf("larger than %d bytes", limit)
		}
	}
	return c
}
