package imap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-sasl"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/smtp"
)

// Conn is one mailbox's connection to an IMAP/SMTP server. It implements
// provider.Provider, provider.IncomingMail, provider.FolderMover and
// provider.OutgoingMail. Like every provider, it is used from one goroutine at a time,
// Close included; Close may be called more than once. To abort a call in progress,
// cancel its context: the connection it uses is closed.
type Conn struct {
	d     *Dialer
	t     provider.Target
	creds crmsync.Credentials
	log   *slog.Logger
	who   string // "mailbox ID", for error messages

	mu     sync.Mutex // guards the sessions and closed
	imap   *imapclient.Client
	out    *smtp.Sender // made on first use
	closed bool

	sent string // the Sent folder, once found

	pending     *pendingUIDs // what the next batch of a cycle continues from
	prefetch    *prefetch    // what the next batch will most likely read, asked for ahead
	acceptedAll bool         // the last batch's screen accepted every message
}

var (
	_ provider.Provider     = (*Conn)(nil)
	_ provider.IncomingMail = (*Conn)(nil)
	_ provider.FolderMover  = (*Conn)(nil)
	_ provider.OutgoingMail = (*Conn)(nil)
)

// errClosed is returned by a call on a closed Conn.
var errClosed = errors.New("connection closed")

// actNotSupported is the Test & Enable answer for appointments, contacts and tasks.
var actNotSupported = fmt.Errorf("IMAP/SMTP profiles do not sync appointments, contacts and tasks (use a CalDAV/CardDAV profile): %w", crmsync.ErrNotSupported)

// Test is the Test & Enable probe: for incoming email, log in to IMAP and ask STATUS of
// INBOX; for outgoing email, open an SMTP session, say EHLO, authenticate and QUIT.
// Appointments, contacts and tasks are not supported.
func (c *Conn) Test(ctx context.Context, w crmsync.Workload) error {
	switch w {
	case crmsync.Incoming:
		return c.withIMAP(ctx, "imap test", func(cl *imapclient.Client) error {
			_, err := cl.Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
			return err
		})
	case crmsync.Outgoing:
		s, err := c.sender()
		if err != nil {
			return err
		}
		return s.Test(ctx)
	case crmsync.ACT:
		return crmsync.WithKind(crmsync.KindPermanent, "imap test", actNotSupported)
	}
	return crmsync.Errorf(crmsync.KindPermanent, "imap test", "%s is not a workload: %w", w, crmsync.ErrNotSupported)
}

// Close logs out of IMAP and quits SMTP, if they were open. It is safe to call more than
// once.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	out := c.out
	c.mu.Unlock()
	c.closeIMAP(true)
	c.prefetch.release()
	c.prefetch = nil
	if out != nil {
		out.Close()
	}
	return nil
}

// sender returns the SMTP sender of the profile's outgoing endpoint, made on first use.
// It does no I/O: its session opens on the first Send or Test.
func (c *Conn) sender() (*smtp.Sender, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, provider.Permanent("smtp", errClosed)
	}
	if c.out != nil {
		return c.out, nil
	}
	var from crmsync.Address
	if c.t.Mailbox != nil {
		from.Email = c.t.Mailbox.Address
	}
	s, err := smtp.NewSender(smtp.Config{
		Endpoint:    c.t.Profile.Outgoing,
		Credentials: c.creds,
		TLSConfig:   c.d.cfg.TLSConfig,
		LocalName:   c.d.cfg.LocalName,
		Timeout:     c.t.Profile.Timeout(),
		Clock:       c.d.cfg.Clock,
		From:        from,
		Who:         c.who,
	})
	if err != nil {
		return nil, err
	}
	c.out = s
	return s, nil
}

// withIMAP runs f on the logged-in IMAP session, opening it if needed, and classifies
// its error. If ctx ends while f runs, the connection is closed, which ends f.
func (c *Conn) withIMAP(ctx context.Context, op string, f func(cl *imapclient.Client) error) error {
	c.waitPrefetch()
	return c.withSession(ctx, op, f)
}

// withSession is withIMAP without waiting for the prefetch in flight: for
// FetchIncoming, which takes it and waits for the parts it uses.
func (c *Conn) withSession(ctx context.Context, op string, f func(cl *imapclient.Client) error) error {
	cl, err := c.imapSession(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	err = f(cl)
	if !stop() {
		c.closeIMAP(false)
		return provider.Classify(op, ctx.Err())
	}
	if err == nil {
		return nil
	}
	var cerr *callerError
	if errors.As(err, &cerr) {
		return cerr.err // the caller's own error, as it is
	}
	var kerr *crmsync.Error
	if errors.As(err, &kerr) {
		return err // already classified by f
	}
	var ierr *imap.Error
	if !errors.As(err, &ierr) {
		// Anything but a NO or BAD answer leaves the session unusable.
		c.closeIMAP(false)
	}
	return c.imapError(op, err)
}

// waitPrefetch waits for the prefetch in flight, if any, to be answered (or to fail
// with its session), so that its goroutine never runs beside another use of the
// session. The prefetch stays for FetchIncoming to use.
func (c *Conn) waitPrefetch() {
	if p := c.prefetch; p != nil {
		<-p.done
	}
}

// imapSession returns the logged-in IMAP session, opening it if needed.
func (c *Conn) imapSession(ctx context.Context) (*imapclient.Client, error) {
	c.mu.Lock()
	cl, closed := c.imap, c.closed
	c.mu.Unlock()
	if closed {
		return nil, provider.Permanent("imap", errClosed)
	}
	if cl != nil {
		select {
		case <-cl.Closed():
			// The server ended the session (an idle timeout, say): open another.
			c.closeIMAP(false)
		default:
			return cl, nil
		}
	}
	cl, err := c.openIMAP(ctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, provider.Classify("imap login", cerr)
		}
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cl.Close()
		return nil, provider.Permanent("imap", errClosed)
	}
	c.imap = cl
	return cl, nil
}

// openIMAP connects, upgrades with STARTTLS when asked, and logs in, all within the
// profile's connection timeout.
func (c *Conn) openIMAP(ctx context.Context) (*imapclient.Client, error) {
	p := c.t.Profile
	ep := p.Incoming
	timeout := p.Timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	nc, err := c.d.dial(ctx, ep, timeout, "imap")
	if err != nil {
		return nil, c.dialError("imap connect", ep.Address(), err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	opts := &imapclient.Options{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}
	var cl *imapclient.Client
	switch ep.Security {
	case crmsync.SecuritySTARTTLS:
		opts.TLSConfig = c.d.tlsConfig(ep)
		cl, err = imapclient.NewStartTLS(nc, opts)
		if err != nil {
			var ierr *imap.Error
			if errors.As(err, &ierr) {
				return nil, provider.Permanent("imap starttls", fmt.Errorf("%s: the server refused STARTTLS: %w", ep.Address(), err))
			}
			return nil, timeoutError(ctx, "imap starttls", ep.Address(), timeout, c.dialError("imap starttls", ep.Address(), err))
		}
	case crmsync.SecurityTLS, crmsync.SecurityPlaintext:
		cl = imapclient.New(nc, opts)
		if err := cl.WaitGreeting(); err != nil {
			cl.Close()
			return nil, timeoutError(ctx, "imap connect", ep.Address(), timeout, c.greetingError(ep.Address(), err))
		}
	default:
		nc.Close()
		return nil, crmsync.Errorf(crmsync.KindPermanent, "imap connect", "unknown security %s", securityName(ep.Security))
	}

	if err := c.login(cl); err != nil {
		cl.Close()
		return nil, timeoutError(ctx, "imap login", ep.Address(), timeout, err)
	}
	return cl, nil
}

// timeoutError returns err, or, when the connection timeout passed (ctx's deadline, or
// the client's own read deadline of the same length), a transient error that says so.
func timeoutError(ctx context.Context, op, addr string, timeout time.Duration, err error) error {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return provider.Transient(op, fmt.Errorf("%s: no answer within %v: %w", addr, timeout, context.DeadlineExceeded))
	}
	return err
}

// login authenticates with LOGIN, or with AUTHENTICATE PLAIN where the server disables
// LOGIN.
func (c *Conn) login(cl *imapclient.Client) error {
	if c.creds.Username == "" {
		return crmsync.Errorf(crmsync.KindAuth, "imap login", "%s has no user name", c.whoOr("the mailbox"))
	}
	var err error
	caps := cl.Caps()
	if caps.Has(imap.CapLoginDisabled) {
		if !caps.Has(imap.Cap("AUTH=PLAIN")) {
			return crmsync.Errorf(crmsync.KindPermanent, "imap login", "the server allows neither LOGIN nor AUTHENTICATE PLAIN on this connection (use TLS)")
		}
		err = cl.Authenticate(sasl.NewPlainClient("", c.creds.Username, c.creds.Password))
	} else {
		err = cl.Login(c.creds.Username, c.creds.Password).Wait()
	}
	if err != nil {
		return c.loginError(err)
	}
	return nil
}

func (c *Conn) whoOr(fallback string) string {
	if c.who != "" {
		return c.who
	}
	return fallback
}

// closeIMAP ends the IMAP session: with LOGOUT when polite, else at once.
func (c *Conn) closeIMAP(polite bool) {
	c.mu.Lock()
	cl := c.imap
	c.imap = nil
	c.mu.Unlock()
	if cl == nil {
		return
	}
	if polite {
		// LOGOUT is a courtesy; do not wait long for a server that does not answer.
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = cl.Logout().Wait()
		}()
		t := time.NewTimer(logoutWait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
		cl.Close()
		<-done
		return
	}
	cl.Close()
}
