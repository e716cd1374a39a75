package gmail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	smtpsender "github.com/crmsync/crmsync/provider/smtp"
)

// baseConn is what a Conn delegates to: provider/imap's Conn, signed in through the bridge.
type baseConn interface {
	provider.Provider
	provider.IncomingMail
	provider.OutgoingMail
	provider.FolderMover
}

// Conn is one mailbox's connection to Gmail. It implements provider.Provider, provider.IncomingMail,
// provider.FolderMover, provider.OutgoingMail and provider.SendQuota. Like every provider, it is used from
// one goroutine at a time; Close may be called more than once.
type Conn struct {
	d      *Dialer
	t      provider.Target // the profile with Gmail's endpoints filled in
	limits Limits
	log    *slog.Logger

	b     *bridge                // nil when the base is a test's
	bprof *crmsync.ServerProfile // the profile provider/imap sees
	base  baseConn               // provider/imap's Conn
	gmIDs map[string]string      // "gm:…" identity → provider/imap identity, of messages this Conn fetched
}

var (
	_ provider.Provider     = (*Conn)(nil)
	_ provider.IncomingMail = (*Conn)(nil)
	_ provider.FolderMover  = (*Conn)(nil)
	_ provider.OutgoingMail = (*Conn)(nil)
	_ provider.SendQuota    = (*Conn)(nil)
)

// call marks the start of a call: the bridge opens upstream sessions under ctx. The returned function marks
// its end.
func (c *Conn) call(ctx context.Context) func() {
	if c.b == nil {
		return func() {}
	}
	c.b.begin(ctx)
	return c.b.end
}

// fix returns the error a call should report: the bridge's own upstream failure (a refused token, a
// token endpoint that is down, Gmail unreachable) rather than what provider/imap made of the bridge
// closing on it; and a throttled error marked as the account's (Gmail limits each account, not the
// profile).
func (c *Conn) fix(err error) error {
	if err == nil {
		return nil
	}
	if c.b != nil {
		if berr := c.b.takeErr(); berr != nil {
			return berr
		}
	}
	return accountScoped(err)
}

// Test is the Test & Enable probe: for incoming email, sign in to IMAP with the mailbox's access token
// (refreshing it first when needed) and ask STATUS of INBOX; for outgoing email, sign in to SMTP and QUIT.
// Appointments, contacts and tasks are not supported over IMAP and SMTP.
func (c *Conn) Test(ctx context.Context, w crmsync.Workload) error {
	if w == crmsync.ACT {
		return crmsync.Errorf(crmsync.KindPermanent, "gmail test",
			"Gmail over IMAP/SMTP does not sync appointments, contacts and tasks: %w", crmsync.ErrNotSupported)
	}
	defer c.call(ctx)()
	return c.fix(c.base.Test(ctx, w))
}

// Close ends the IMAP and SMTP sessions. It is safe to call more than once.
func (c *Conn) Close() error {
	err := c.base.Close()
	if c.b != nil {
		c.b.close()
	}
	return err
}

// FetchIncoming returns the messages that arrived in INBOX and the tracked folders after req.Cursor, as
// provider/imap does (same cursor, same round trips). Where the server announces X-GM-EXT-1, each message's
// ProviderID is "gm:" and its X-GM-MSGID, the same whatever label it is found under, and its Folder is the
// first of req.Folders among its labels (X-GM-LABELS), else the folder it was read from: a message in the
// inbox that also carries a tracked label is tracked under that label, and a message moved from one label
// to another is the same message. A message seen under two labels in one batch is returned once.
func (c *Conn) FetchIncoming(ctx context.Context, req provider.FetchRequest) (*provider.Batch, error) {
	defer c.call(ctx)()
	lf := &labelFetch{c: c, tracked: req.Folders, screen: req.Screen, seen: map[string]bool{}}
	req.Screen = lf.screenHeaders
	batch, err := c.base.FetchIncoming(ctx, req)
	if err != nil {
		return nil, c.fix(err)
	}
	return batch, nil
}

// MoveToFolder moves the message that ref names to folder, creating the folder (in Gmail, a label) if it
// does not exist; see provider/imap's MoveToFolder. A "gm:" identity is found by its X-GM-MSGID in
// ref.Folder (INBOX when empty).
func (c *Conn) MoveToFolder(ctx context.Context, ref provider.ItemRef, folder string) error {
	defer c.call(ctx)()
	switch _, _, isIMAP := splitIMAPID(ref.ID); {
	case strings.HasPrefix(ref.ID, gmPrefix):
		id, err := c.resolve(ctx, ref)
		if err != nil {
			return c.fix(err)
		}
		ref.ID = id
	case !isIMAP && c.b != nil:
		// Neither of this provider's identities: it names no message here.
		return provider.NotFound("gmail move", fmt.Errorf("%s: %q names no message: %w", c.whoami(), ref.ID, crmsync.ErrNotFound))
	}
	return c.fix(c.base.MoveToFolder(ctx, ref, folder))
}

// Send submits m through Gmail's SMTP with the mailbox's access token. Before it does, it counts m in the
// mailbox's sending window (see Limits): a message that would exceed a daily limit is not sent, and Send
// returns a crmsync.KindThrottled error wrapping ErrSendingLimit and provider.ErrNotSubmitted, with
// RetryAfter until the window frees enough; a message with more recipients than Gmail's SMTP takes fails
// permanently. Google's own refusal for its limit ("550 5.4.5 Daily user sending limit exceeded") holds the
// mailbox back for Config.ServerLimitPause and is reported the same way. Any other refusal by the server,
// or a failure before the message reached it (the token could not be refreshed, Gmail unreachable), also
// wraps provider.ErrNotSubmitted; a connection lost after the message was handed over does not, since its
// outcome is unknown.
//
// Gmail files every message sent through its SMTP in Sent Mail itself, so where the server announces
// X-GM-EXT-1 no copy is appended (it would be a second one) and the receipt's Copied is set for Gmail's;
// elsewhere the copy is appended as provider/imap does.
func (c *Conn) Send(ctx context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	const op = "gmail send"
	defer c.call(ctx)()
	if m == nil {
		return provider.SendReceipt{}, errorf(crmsync.KindPermanent, op, "no email")
	}
	rcpt := recipientCount(m)
	if max := c.limits.RecipientsPerMessage; max > 0 && rcpt > max {
		return provider.SendReceipt{}, errorf(crmsync.KindPermanent, op,
			"email %s has %d recipients; Gmail takes at most %d per message sent over SMTP", m.ID, rcpt, max)
	}
	now := c.d.clock.Now()
	res, err := c.d.quotas.reserve(c.t.Mailbox.ID, c.t.Mailbox, c.limits, rcpt, now)
	if err != nil {
		return provider.SendReceipt{}, err
	}
	files, err := c.serverFilesSent(ctx)
	if err != nil {
		res.cancel()
		return provider.SendReceipt{}, notSubmitted(err)
	}
	if files {
		// For this Send only: FindSent still looks in the Sent folder, where Gmail filed it.
		off := false
		c.bprof.KeepSentCopy = &off
		defer func() { c.bprof.KeepSentCopy = c.t.Profile.KeepSentCopy }()
	}
	r, err := c.base.Send(ctx, m)
	if err == nil {
		r.Copied = r.Copied || files
		return r, nil
	}
	if c.b != nil {
		if upstream := c.b.takeErr(); upstream != nil {
			// The bridge could not sign in: the message never reached the server.
			res.cancel()
			return provider.SendReceipt{}, notSubmitted(upstream)
		}
	}
	err = accountScoped(err)
	if se, ok := smtpReplyError(err); ok && isSendingLimitReply(se) {
		res.cancel()
		until := c.d.clock.Now().Add(c.d.pause)
		c.d.quotas.block(c.t.Mailbox.ID, until)
		c.log.Warn("gmail: Google refused a message for the mailbox's sending limit", "reply", se.Error())
		return provider.SendReceipt{}, limitError(c.t.Mailbox, "Google refused the message: "+se.Error(), c.d.pause)
	}
	if _, ok := smtpReplyError(err); ok || errors.Is(err, smtpsender.ErrNotSubmitted) {
		// The server answered with a refusal, or the failure came before the message: it did not go out.
		res.cancel()
		return provider.SendReceipt{}, notSubmitted(err)
	}
	return provider.SendReceipt{}, err
}

// notSubmitted marks a retryable error as one of a message that certainly did not go out.
func notSubmitted(err error) error {
	if crmsync.KindOf(err).Retryable() || crmsync.KindOf(err) == crmsync.KindAuth {
		return mark(err, provider.ErrNotSubmitted)
	}
	return err
}

// serverFilesSent reports whether the server files sent mail in the Sent folder itself, as Gmail does: where
// it announces X-GM-EXT-1. It learns that from this Conn's IMAP session, from an earlier one of the
// profile, or by signing in to IMAP now.
func (c *Conn) serverFilesSent(ctx context.Context) (bool, error) {
	if c.b == nil || !c.t.Profile.SentCopy() {
		return false, nil
	}
	if caps := c.b.capabilities(); caps != nil {
		return hasCap(caps, "X-GM-EXT-1"), nil
	}
	if has, known := c.d.gmailExtensions(c.t.Profile.ID); known {
		return has, nil
	}
	if err := c.base.Test(ctx, crmsync.Incoming); err != nil {
		return false, c.fix(err)
	}
	return hasCap(c.b.capabilities(), "X-GM-EXT-1"), nil
}

// FindSent reports whether a message with this Message-ID is in the Sent folder ("[Gmail]/Sent Mail" on
// Gmail, found by its \Sent attribute): the duplicate-send guard.
func (c *Conn) FindSent(ctx context.Context, messageID string) (bool, error) {
	defer c.call(ctx)()
	found, err := c.base.FindSent(ctx, messageID)
	return found, c.fix(err)
}

// SendAllowance implements provider.SendQuota from the mailbox's sending window, without I/O: how many
// messages may be sent now (counting one recipient each), and when the next one may be when none can.
func (c *Conn) SendAllowance(ctx context.Context) (int, time.Time, error) {
	n, next := c.d.quotas.allowance(c.t.Mailbox.ID, c.limits, c.d.clock.Now())
	return n, next, nil
}

// recipientCount returns the number of distinct envelope recipients (To, Cc and Bcc).
func recipientCount(m *crmsync.Email) int {
	seen := map[string]bool{}
	for _, a := range m.Recipients() {
		if k := strings.ToLower(strings.TrimSpace(a.Email)); k != "" {
			seen[k] = true
		}
	}
	return len(seen)
}

// String names the connection's mailbox, never its credentials.
func (c *Conn) String() string { return fmt.Sprintf("gmail.Conn(%s)", c.whoami()) }
