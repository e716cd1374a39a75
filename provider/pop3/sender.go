package pop3

import (
	"context"
	"fmt"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/smtp"
)

// SendingConn is the connection a Dialer returns for a target it can send for (see
// Config.Outgoing): a *Conn that also implements provider.OutgoingMail, by delegating
// to its sender, opened on first use: Config.Outgoing's, else provider/smtp's for the
// profile's outgoing endpoint. Every method of Conn is promoted, so it is a
// provider.IncomingMail too.
//
// The two types exist because the engine finds capabilities by type assertion: a
// connection without a sender must not claim to send.
type SendingConn struct {
	*Conn
}

var (
	_ provider.Provider     = (*SendingConn)(nil)
	_ provider.IncomingMail = (*SendingConn)(nil)
	_ provider.OutgoingMail = (*SendingConn)(nil)
)

// Send submits m through the sender.
func (c *SendingConn) Send(ctx context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	s, err := c.openSender(ctx)
	if err != nil {
		return provider.SendReceipt{}, err
	}
	r, err := s.Send(ctx, m)
	return r, classifySender("pop3 send", err)
}

// FindSent asks the sender whether a message with this Message-ID went out: a POP3
// mailbox has no Sent folder to look in, so only a sender with a sent log of its own
// (one plugged in with Config.Outgoing) can answer. The default SMTP sender keeps none:
// FindSent then returns a permanent error wrapping crmsync.ErrNotSupported, and the
// engine refuses to resend an email whose outcome is unknown rather than risk sending
// it twice.
func (c *SendingConn) FindSent(ctx context.Context, messageID string) (bool, error) {
	s, err := c.openSender(ctx)
	if err != nil {
		return false, err
	}
	found, err := s.FindSent(ctx, messageID)
	return found, classifySender("pop3 find sent", err)
}

// openSender returns the mailbox's sender, opening it on first use.
func (c *Conn) openSender(ctx context.Context) (provider.OutgoingMail, error) {
	open := c.d.outgoing(c.t)
	if open == nil {
		return nil, crmsync.WithKind(crmsync.KindPermanent, "pop3 outgoing", outgoingNotSupported)
	}
	c.mu.Lock()
	s, closed := c.sender, c.closed
	c.mu.Unlock()
	if closed {
		return nil, provider.Permanent("pop3 outgoing", fmt.Errorf("%s: %w", c.who, errClosed))
	}
	if s != nil {
		return s, nil
	}
	s, err := open(ctx, c.t)
	if err != nil {
		return nil, classifySender("pop3 outgoing", err)
	}
	if s == nil {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "pop3 outgoing", "%s: the outgoing hook returned no sender", c.who)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		if cl, ok := s.(interface{ Close() error }); ok {
			cl.Close()
		}
		return nil, provider.Permanent("pop3 outgoing", fmt.Errorf("%s: %w", c.who, errClosed))
	}
	c.sender = s
	return s, nil
}

// testSender is Test(Outgoing): open the sender, and test it if it can be tested.
func (c *Conn) testSender(ctx context.Context) error {
	s, err := c.openSender(ctx)
	if err != nil {
		return err
	}
	if t, ok := s.(interface {
		Test(context.Context, crmsync.Workload) error
	}); ok {
		return classifySender("pop3 test", t.Test(ctx, crmsync.Outgoing))
	}
	return nil
}

// classifySender keeps the kind the sender gave its error, and classifies an error
// without one like any network error.
func classifySender(op string, err error) error {
	return provider.Classify(op, err)
}

// outgoing returns how to open t's sender: Config.Outgoing, else provider/smtp for the
// profile's outgoing endpoint when it has a host; nil when t cannot send.
func (d *Dialer) outgoing(t provider.Target) func(context.Context, provider.Target) (provider.OutgoingMail, error) {
	switch {
	case d.cfg.Outgoing != nil:
		return d.cfg.Outgoing
	case t.Profile != nil && t.Profile.Outgoing.Host != "":
		return d.openSMTP
	}
	return nil
}

// openSMTP opens the default sender of t: provider/smtp with the profile's outgoing
// endpoint and timeout, t's credentials, and the Dialer's TLS configuration, local name
// and clock. Emails without a sender go out from the mailbox's address.
func (d *Dialer) openSMTP(_ context.Context, t provider.Target) (provider.OutgoingMail, error) {
	cfg := smtp.Config{
		Endpoint:    t.Profile.Outgoing,
		Credentials: t.Credentials(),
		TLSConfig:   d.cfg.TLSConfig,
		LocalName:   d.cfg.LocalName,
		Timeout:     t.Profile.Timeout(),
		Clock:       d.cfg.Clock,
	}
	if t.Mailbox != nil {
		cfg.From = crmsync.Address{Email: t.Mailbox.Address}
		cfg.Who = "mailbox " + t.Mailbox.ID
	}
	s, err := smtp.NewSender(cfg)
	if err != nil {
		return nil, err
	}
	return &smtpSender{s: s}, nil
}

// smtpSender adapts a *smtp.Sender to provider.OutgoingMail for a POP3 mailbox, which
// has no Sent folder.
type smtpSender struct{ s *smtp.Sender }

// Send submits m. No copy is kept anywhere.
func (s *smtpSender) Send(ctx context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	r, _, err := s.s.Send(ctx, m)
	return r, err
}

// FindSent cannot answer: there is no Sent folder to look in, and SMTP keeps no log.
func (s *smtpSender) FindSent(context.Context, string) (bool, error) {
	return false, crmsync.WithKind(crmsync.KindPermanent, "pop3 find sent", findSentNotSupported)
}

// Test opens an SMTP session, authenticates and quits.
func (s *smtpSender) Test(ctx context.Context, _ crmsync.Workload) error { return s.s.Test(ctx) }

// Close ends the SMTP session.
func (s *smtpSender) Close() error { return s.s.Close() }

// findSentNotSupported is FindSent's answer without a sent log.
var findSentNotSupported = fmt.Errorf("a POP3 mailbox has no Sent folder, and its SMTP sender keeps no copy, "+
	"so whether a message went out cannot be checked: %w", crmsync.ErrNotSupported)
