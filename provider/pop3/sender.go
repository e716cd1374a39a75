package pop3

import (
	"context"
	"fmt"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// SendingConn is the connection a Dialer with Config.Outgoing returns: a *Conn that
// also implements provider.OutgoingMail, by delegating to the sender Config.Outgoing
// opens on first use. Every method of Conn is promoted, so it is a
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
// mailbox has no Sent folder to look in, so the sender's own sent log is the
// duplicate-send guard.
func (c *SendingConn) FindSent(ctx context.Context, messageID string) (bool, error) {
	s, err := c.openSender(ctx)
	if err != nil {
		return false, err
	}
	found, err := s.FindSent(ctx, messageID)
	return found, classifySender("pop3 find sent", err)
}

// openSender returns the mailbox's sender, opening it with Config.Outgoing on first
// use.
func (c *Conn) openSender(ctx context.Context) (provider.OutgoingMail, error) {
	open := c.d.cfg.Outgoing
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
		return nil, crmsync.Errorf(crmsync.KindPermanent, "pop3 outgoing", "%s: Config.Outgoing returned no sender", c.who)
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
