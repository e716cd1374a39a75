package imap

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// minSubmissionTimeout is the least time given to a server to answer the end of DATA,
// when it may scan the message.
const minSubmissionTimeout = 2 * time.Minute

// withSMTP runs f on the authenticated SMTP session, opening it if needed. If ctx ends
// while f runs, the connection is closed, which ends f. f classifies its own errors.
func (c *Conn) withSMTP(ctx context.Context, op string, f func(sc *smtp.Client) error) error {
	sc, err := c.smtpSession(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	err = f(sc)
	if !stop() {
		c.closeSMTP(false)
		return provider.Classify(op, ctx.Err())
	}
	return err
}

// smtpSession returns the authenticated SMTP session, opening it if needed.
func (c *Conn) smtpSession(ctx context.Context) (*smtp.Client, error) {
	c.mu.Lock()
	sc, closed := c.smtp, c.closed
	c.mu.Unlock()
	if closed {
		return nil, provider.Permanent("smtp", errClosed)
	}
	if sc != nil {
		return sc, nil
	}
	sc, err := c.openSMTP(ctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, provider.Classify("smtp connect", cerr)
		}
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		sc.Close()
		return nil, provider.Permanent("smtp", errClosed)
	}
	c.smtp = sc
	return sc, nil
}

// openSMTP connects, says EHLO, upgrades with STARTTLS when asked, and authenticates,
// all within the profile's connection timeout.
func (c *Conn) openSMTP(ctx context.Context) (*smtp.Client, error) {
	p := c.t.Profile
	ep := p.Outgoing
	timeout := p.Timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	nc, err := c.d.dial(ctx, ep, timeout, "")
	if err != nil {
		return nil, c.dialError("smtp connect", ep.Address(), err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	var sc *smtp.Client
	switch ep.Security {
	case crmsync.SecuritySTARTTLS:
		sc, err = smtp.NewClientStartTLS(nc, c.d.tlsConfig(ep))
		if err != nil {
			nc.Close()
			var se *smtp.SMTPError
			switch {
			case errors.As(err, &se) && se.Code/100 == 4:
				// A busy server (421 at the greeting, say), not a refusal.
				return nil, smtpError("smtp starttls", fmt.Errorf("%s: %w", ep.Address(), err), false)
			case se != nil, err.Error() == "smtp: server doesn't support STARTTLS": // go-smtp's own error
				return nil, provider.Permanent("smtp starttls", fmt.Errorf("%s: the server refused STARTTLS: %w", ep.Address(), err))
			}
			return nil, timeoutError(ctx, "smtp starttls", ep.Address(), timeout, c.dialError("smtp starttls", ep.Address(), err))
		}
	case crmsync.SecurityTLS, crmsync.SecurityPlaintext:
		sc = smtp.NewClient(nc)
	default:
		nc.Close()
		return nil, crmsync.Errorf(crmsync.KindPermanent, "smtp connect", "unknown security %s", securityName(ep.Security))
	}
	sc.CommandTimeout = timeout
	sc.SubmissionTimeout = max(timeout, minSubmissionTimeout)
	if err := sc.Hello(c.d.cfg.LocalName); err != nil {
		sc.Close()
		return nil, timeoutError(ctx, "smtp connect", ep.Address(), timeout, smtpError("smtp connect", fmt.Errorf("%s: %w", ep.Address(), err), false))
	}
	if err := c.smtpAuth(sc); err != nil {
		sc.Close()
		return nil, timeoutError(ctx, "smtp auth", ep.Address(), timeout, err)
	}
	return sc, nil
}

// smtpAuth authenticates with PLAIN, or LOGIN when the server offers only that.
func (c *Conn) smtpAuth(sc *smtp.Client) error {
	if c.creds.Username == "" {
		return nil // a relay that trusts the network
	}
	if ok, _ := sc.Extension("AUTH"); !ok {
		return crmsync.Errorf(crmsync.KindPermanent, "smtp auth", "the server offers no authentication on this connection")
	}
	var mech sasl.Client
	switch {
	case sc.SupportsAuth(sasl.Plain):
		mech = sasl.NewPlainClient("", c.creds.Username, c.creds.Password)
	case sc.SupportsAuth(sasl.Login):
		mech = sasl.NewLoginClient(c.creds.Username, c.creds.Password)
	default:
		_, mechs := sc.Extension("AUTH")
		return crmsync.Errorf(crmsync.KindPermanent, "smtp auth", "the server offers neither PLAIN nor LOGIN authentication (it offers %s)", mechs)
	}
	if err := sc.Auth(mech); err != nil {
		return smtpError("smtp auth", fmt.Errorf("%s: %w", c.whoOr("auth"), err), false)
	}
	return nil
}

// closeSMTP ends the SMTP session: with QUIT when polite, else at once.
func (c *Conn) closeSMTP(polite bool) {
	c.mu.Lock()
	sc := c.smtp
	c.smtp = nil
	c.mu.Unlock()
	if sc == nil {
		return
	}
	if polite {
		sc.CommandTimeout = logoutWait
		if sc.Quit() == nil {
			return
		}
	}
	sc.Close()
}
