package syncer

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"

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

// outgoing submits the mailbox's emails in Pending Send. An email whose earlier attempt
// has an unknown outcome is looked up in Sent Items first, so no email goes out twice.
func (e *Engine) outgoing(ctx context.Context, conn provider.Provider, c *crmstore.Claim) result {
	om, ok := conn.(provider.OutgoingMail)
	if !ok {
		return result{err: notSupported("outgoing email")}
	}
	var r result
	claimed, err := e.store.ClaimOutgoing(ctx, c.Lease, e.cfg.CycleItems, e.cfg.NewMessageID)
	if err != nil {
		r.err = err
		return r
	}
	r.more = len(claimed) == e.cfg.CycleItems
	for i, o := range claimed {
		m := o.Email
		if o.Unknown {
			found, err := om.FindSent(ctx, m.MessageID)
			if err != nil {
				r.err = err
				return r
			}
			if found {
				if err := e.finishSend(ctx, c, m, crmstore.SendResult{Status: crmsync.EmailSent, SentAt: e.clock.Now()}); err != nil {
					r.err = err
					return r
				}
				r.items++
				continue
			}
			// Not sent: this is a new attempt; count it before it starts.
			if err := e.store.FinishSend(ctx, c.Lease, m.ID, crmstore.SendResult{Status: crmsync.EmailSending, Attempt: true, At: e.clock.Now()}); err != nil {
				r.err = err
				return r
			}
			m.DeliveryAttempts++
		}
		if m.DeliveryAttempts > e.cfg.MaxDeliveryAttempts {
			reason := fmt.Sprintf("gave up after %d delivery attempts", m.DeliveryAttempts-1)
			if err := e.failEmail(ctx, c, m, reason); err != nil {
				r.err = err
				return r
			}
			continue
		}
		receipt, err := om.Send(ctx, m)
		switch kind := crmsync.KindOf(err); {
		case err == nil:
			sentAt := receipt.SentAt
			if sentAt.IsZero() {
				sentAt = e.clock.Now()
			}
			if err := e.finishSend(ctx, c, m, crmstore.SendResult{Status: crmsync.EmailSent, SentAt: sentAt}); err != nil {
				r.err = err
				return r
			}
			r.items++
		case kind == crmsync.KindPermanent || kind == crmsync.KindNotFound:
			// This email cannot be sent (a refused recipient, say); the others may.
			if err := e.failEmail(ctx, c, m, err.Error()); err != nil {
				r.err = err
				return r
			}
		default:
			// Auth, throttled or transient: the outcome is unknown unless the server
			// refused before submission; leave the email in Sending so the next attempt
			// looks for it in Sent Items first. The untouched ones stay in Sending too.
			e.leaveSending(ctx, c, claimed[i:], err)
			r.err = err
			return r
		}
	}
	return r
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

// leaveSending records why the remaining claimed emails are still in Sending.
func (e *Engine) leaveSending(ctx context.Context, c *crmstore.Claim, rest []crmstore.OutgoingEmail, cause error) {
	now := e.clock.Now()
	for _, o := range rest {
		err := e.store.FinishSend(ctx, c.Lease, o.Email.ID, crmstore.SendResult{Status: crmsync.EmailSending, Reason: cause.Error(), At: now})
		if err != nil {
			return
		}
	}
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
