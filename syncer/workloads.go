package syncer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/provider"
)

// UndeliverableFolder is where an unreadable incoming message is moved when the profile
// asks for it.
const UndeliverableFolder = "Undeliverable"

func notSupported(what string) error {
	return crmsync.Errorf(crmsync.KindPermanent, "cycle", "this server does not support %s: %w", what, crmsync.ErrNotSupported)
}

// incoming fetches new messages batch by batch, headers first, and commits each batch's
// emails together with its cursor.
func (e *Engine) incoming(ctx context.Context, conn provider.Provider, c *crmstore.Claim) result {
	im, ok := conn.(provider.IncomingMail)
	if !ok {
		return result{err: notSupported("incoming email")}
	}
	mb, prof := c.Mailbox, c.Profile
	screen := func(ctx context.Context, headers []*crmsync.Email) ([]bool, error) {
		return e.cfg.Screener.Screen(ctx, mb, headers)
	}
	cursor := c.State.Cursor
	budget := e.cfg.CycleItems
	var r result
	for {
		max := min(e.cfg.BatchSize, budget)
		b, err := im.FetchIncoming(ctx, provider.FetchRequest{
			Cursor: cursor, Since: mb.EffectiveStart(prof), Max: max, Screen: screen,
			Folders: mb.TrackedFolders, AttachmentLimit: prof.AttachmentLimit(),
		})
		if err != nil {
			r.err = err
			return r
		}
		now := e.clock.Now()
		for _, m := range b.Emails {
			m.Sanitize()
			m.MailboxID = mb.ID
			m.Direction = crmsync.DirectionIncoming
			if m.Status == 0 {
				m.Status = crmsync.EmailReceived
			}
			if m.CreatedAt.IsZero() {
				m.CreatedAt = now
			}
			m.ModifiedAt = now
		}
		if e.cfg.Linker != nil && len(b.Emails) > 0 {
			if err := e.cfg.Linker.Link(ctx, mb, b.Emails); err != nil {
				r.err = fmt.Errorf("linking tracked emails: %w", err)
				return r
			}
		}
		res, err := e.store.TrackIncoming(ctx, c.Lease, b.Emails, b.Cursor)
		if err != nil {
			r.err = err
			return r
		}
		r.items += res.Tracked
		if len(b.Failed) > 0 {
			e.handleUnreadable(ctx, conn, c, b.Failed)
		}
		cursor = b.Cursor
		if !b.More {
			return r
		}
		budget -= max
		if budget <= 0 {
			r.more = true
			return r
		}
	}
}

// handleUnreadable reports messages the provider could not read and, when the profile
// asks, moves them to the Undeliverable folder.
func (e *Engine) handleUnreadable(ctx context.Context, conn provider.Provider, c *crmstore.Claim, failed []provider.FailedItem) {
	mover, canMove := conn.(provider.FolderMover)
	move := canMove && c.Profile.MoveFailedToUndeliverable
	for _, f := range failed {
		msg := fmt.Sprintf("message %s in mailbox %s could not be read and was not tracked: %v", f.Ref, c.Mailbox.Address, f.Err)
		if move {
			if err := mover.MoveToFolder(ctx, f.Ref, UndeliverableFolder); err != nil {
				msg += fmt.Sprintf("; moving it to %s failed: %v", UndeliverableFolder, err)
			} else {
				msg += "; it was moved to " + UndeliverableFolder
			}
		}
		e.log.LogAttrs(ctx, slog.LevelWarn, "unreadable message", e.cycleAttrs(c, slog.String("ref", f.Ref.String()), slog.Any("error", f.Err))...)
		e.raise(ctx, e.mailboxAlert(c, crmsync.AlertWarning, crmsync.KindOf(f.Err), msg))
	}
}

// outgoing submits the mailbox's emails in Pending Send, one claim at a time so that an
// email is moved to Sending (and its attempt counted) only when it is about to be sent.
// An email whose earlier attempt has an unknown outcome is looked up in Sent Items
// first, so no email goes out twice; where the provider cannot look (no Sent folder),
// it is failed with that reason rather than risk a duplicate. A provider with a sending
// limit (provider.SendQuota) is asked first: a backlog larger than the limit waits in
// Pending Send, and the cycle ends without error until the limit frees.
func (e *Engine) outgoing(ctx context.Context, conn provider.Provider, c *crmstore.Claim) result {
	om, ok := conn.(provider.OutgoingMail)
	if !ok {
		return result{err: notSupported("outgoing email")}
	}
	quota, hasQuota := conn.(provider.SendQuota)
	var r result
	for r.items < e.cfg.CycleItems {
		if hasQuota {
			n, next, err := quota.SendAllowance(ctx)
			if err != nil {
				r.err = err
				return r
			}
			if n <= 0 {
				r.notBefore = next
				return r
			}
		}
		claimed, err := e.store.ClaimOutgoing(ctx, c.Lease, 1, e.cfg.NewMessageID)
		if err != nil || len(claimed) == 0 {
			r.err = err
			return r
		}
		if err := e.sendOne(ctx, om, c, claimed[0]); err != nil {
			var limit *sendLimitError
			if errors.As(err, &limit) {
				r.notBefore = limit.until
				return r
			}
			r.err = err
			return r
		}
		r.items++
	}
	r.more = true
	return r
}

// sendLimitError ends an outgoing cycle without failure: the server refused to take more
// mail until a time.
type sendLimitError struct {
	until time.Time
	err   error
}

func (e *sendLimitError) Error() string { return e.err.Error() }
func (e *sendLimitError) Unwrap() error { return e.err }

// sendOne takes one claimed email to Sent, Failed or back to Pending Send. An error ends
// the cycle.
func (e *Engine) sendOne(ctx context.Context, om provider.OutgoingMail, c *crmstore.Claim, o crmstore.OutgoingEmail) error {
	m := o.Email
	if o.Unknown {
		found, err := om.FindSent(ctx, m.MessageID)
		switch {
		case errors.Is(err, crmsync.ErrNotSupported):
			// No way to know whether the earlier attempt went out: never risk sending
			// it twice.
			return e.failEmail(ctx, c, m, "an earlier delivery attempt may have reached the server and this server "+
				"cannot confirm it (no Sent Items to look in), so the email is not sent again: check with the recipient")
		case err != nil:
			return err
		case found:
			return e.finishSend(ctx, c, m, crmstore.SendResult{Status: crmsync.EmailSent, SentAt: e.clock.Now()})
		}
		// Not sent: this is a new attempt; count it before it starts.
		if err := e.store.FinishSend(ctx, c.Lease, m.ID, crmstore.SendResult{Status: crmsync.EmailSending, Attempt: true, At: e.clock.Now()}); err != nil {
			return err
		}
		m.DeliveryAttempts++
	}
	if m.DeliveryAttempts > e.cfg.MaxDeliveryAttempts {
		return e.failEmail(ctx, c, m, fmt.Sprintf("gave up after %d delivery attempts", m.DeliveryAttempts-1))
	}
	receipt, err := om.Send(ctx, m)
	kind := crmsync.KindOf(err)
	switch {
	case err == nil:
		sentAt := receipt.SentAt
		if sentAt.IsZero() {
			sentAt = e.clock.Now()
		}
		return e.finishSend(ctx, c, m, crmstore.SendResult{Status: crmsync.EmailSent, SentAt: sentAt})
	case kind == crmsync.KindPermanent || kind == crmsync.KindNotFound:
		// This email cannot be sent (a refused recipient, say); the others may.
		return e.failEmail(ctx, c, m, err.Error())
	case errors.Is(err, provider.ErrNotSubmitted):
		// Definitely not sent: back to Pending Send for the next cycle.
		if ferr := e.store.FinishSend(ctx, c.Lease, m.ID, crmstore.SendResult{Status: crmsync.EmailPendingSend, Reason: err.Error(), At: e.clock.Now()}); ferr != nil {
			return ferr
		}
		if kind == crmsync.KindThrottled {
			// A sending limit the server enforces (Gmail's 550 5.4.5, say): wait for it
			// without counting a failure; it can last a day.
			return &sendLimitError{until: e.clock.Now().Add(crmsync.RetryAfter(err)), err: err}
		}
		return err
	default:
		// Auth, throttled or transient after submission began: the outcome is unknown.
		// The email stays in Sending, so the next attempt looks in Sent Items first.
		if ferr := e.store.FinishSend(ctx, c.Lease, m.ID, crmstore.SendResult{Status: crmsync.EmailSending, Reason: err.Error(), At: e.clock.Now()}); ferr != nil {
			return ferr
		}
		return err
	}
}

func (e *Engine) finishSend(ctx context.Context, c *crmstore.Claim, m *crmsync.Email, res crmstore.SendResult) error {
	res.At = e.clock.Now()
	if err := e.store.FinishSend(ctx, c.Lease, m.ID, res); err != nil {
		return err
	}
	if res.Status == crmsync.EmailSent {
		e.obs.EmailSent(c.MailboxID, m.ID)
	}
	return nil
}

func (e *Engine) failEmail(ctx context.Context, c *crmstore.Claim, m *crmsync.Email, reason string) error {
	if err := e.finishSend(ctx, c, m, crmstore.SendResult{Status: crmsync.EmailFailed, Reason: reason}); err != nil {
		return err
	}
	a := e.mailboxAlert(c, crmsync.AlertError, crmsync.KindPermanent,
		fmt.Sprintf("email %q from mailbox %s could not be sent: %s", m.Subject, c.Mailbox.Address, reason))
	a.Scope, a.EmailID = crmsync.ScopeEmail, m.ID
	e.raise(ctx, a)
	return nil
}

// act pulls appointment, contact and task changes from the mailbox and commits each page
// with the cursor that follows it.
func (e *Engine) act(ctx context.Context, conn provider.Provider, c *crmstore.Claim) result {
	is, ok := conn.(provider.ItemSync)
	if !ok {
		return result{err: notSupported("appointments, contacts and tasks")}
	}
	cursors, err := decodeACTCursor(c.State.Cursor)
	if err != nil {
		// A cursor we cannot read is as good as expired: start over.
		return result{err: crmsync.WithKind(crmsync.KindCursorExpired, "act cursor", err)}
	}
	var r result
	for _, kind := range []crmsync.ItemKind{crmsync.KindAppointment, crmsync.KindContact, crmsync.KindTask} {
		for {
			ch, err := is.Changes(ctx, kind, cursors[kind-1])
			if err != nil {
				r.err = err
				return r
			}
			for i := range ch.Items {
				ch.Items[i].MailboxID = c.MailboxID
				ch.Items[i].Kind = kind
			}
			cursors[kind-1] = ch.Cursor
			if err := e.store.CommitItems(ctx, c.Lease, ch.Items, encodeACTCursor(cursors)); err != nil {
				r.err = err
				return r
			}
			r.items += len(ch.Items)
			if !ch.More {
				break
			}
			if r.items >= e.cfg.CycleItems {
				r.more = true
				return r
			}
		}
	}
	return r
}

// The ACT cursor holds one provider cursor per item kind: for each, a uvarint length and
// the bytes.
func encodeACTCursor(c [3][]byte) []byte {
	var out []byte
	for _, b := range c {
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out
}

func decodeACTCursor(b []byte) ([3][]byte, error) {
	var c [3][]byte
	if len(b) == 0 {
		return c, nil
	}
	for i := range c {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return c, fmt.Errorf("malformed act cursor")
		}
		b = b[k:]
		if n > 0 {
			c[i] = append([]byte(nil), b[:n]...)
		}
		b = b[n:]
	}
	return c, nil
}
