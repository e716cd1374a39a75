package pop3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// quitWait bounds the wait for the server's answer to QUIT.
const quitWait = 5 * time.Second

// keepFor is how long a session kept after a batch with More stays usable for the
// next batch; an older one is ended and a new one opened, rather than risk the
// server's idle logout.
const keepFor = time.Minute

// Conn is one mailbox's connection to a POP3 server. It implements provider.Provider
// and provider.IncomingMail; see SendingConn for outgoing email. Like every provider,
// it is used from one goroutine at a time; Close may be called from any goroutine,
// more than once.
//
// A POP3 session sees the maildrop as it was at login, so a Conn opens a new session
// for each FetchIncoming and each Test, and ends it with QUIT (never having marked a
// message for deletion) before it returns, except after a batch that says More: the
// next batch then reads on from the same session and its listing.
type Conn struct {
	d     *Dialer
	t     provider.Target
	creds crmsync.Credentials
	log   *slog.Logger
	who   string // "mailbox ID", for error messages

	mu     sync.Mutex // guards what Close touches
	active *session   // the open session: in use, or kept after a batch with More
	busy   bool       // a call is using active
	sender provider.OutgoingMail
	closed bool
}

var (
	_ provider.Provider     = (*Conn)(nil)
	_ provider.IncomingMail = (*Conn)(nil)
)

// session is one logged-in POP3 session.
type session struct {
	cl      *Client
	caps    Capabilities // as offered before login
	listing []listed     // the maildrop, once listed
	listed  bool
	keptAt  time.Time // when the last batch with More ended
}

// errClosed is the cause of a call on a closed Conn.
var errClosed = errors.New("connection closed")

// actNotSupported is the Test & Enable answer for appointments, contacts and tasks.
var actNotSupported = fmt.Errorf("POP3 profiles sync email only: appointments, contacts and tasks need Exchange or a CalDAV/CardDAV server: %w", crmsync.ErrNotSupported)

// outgoingNotSupported is the answer for outgoing email without a sender.
var outgoingNotSupported = fmt.Errorf("POP3 only reads mail, and the profile has no outgoing (SMTP) endpoint, nor is a sender configured (pop3.Config.Outgoing): %w", crmsync.ErrNotSupported)

// Test is the Test & Enable probe: for incoming email, connect, log in and ask STAT
// (and UIDL, when the server's capabilities do not list it, since FetchIncoming cannot
// work without it); for outgoing email, open the sender and test it (an error
// wrapping crmsync.ErrNotSupported when there is none: see Config.Outgoing).
// Appointments, contacts and tasks are not supported.
func (c *Conn) Test(ctx context.Context, w crmsync.Workload) error {
	switch w {
	case crmsync.Incoming:
		c.endKept()
		s, err := c.session(ctx)
		if err != nil {
			return err
		}
		defer c.endSession(s, false)
		if _, _, err := s.cl.Stat(ctx); err != nil {
			return c.classify("pop3 test", err, s)
		}
		if len(s.caps) > 0 && !s.caps.Has("UIDL") {
			_, err := s.cl.Uidl(ctx)
			return c.classify("pop3 uidl", err, s)
		}
		return nil
	case crmsync.Outgoing:
		return c.testSender(ctx)
	case crmsync.ACT:
		return crmsync.WithKind(crmsync.KindPermanent, "pop3 test", actNotSupported)
	}
	return crmsync.Errorf(crmsync.KindPermanent, "pop3 test", "%s is not a workload: %w", w, crmsync.ErrNotSupported)
}

// Close ends the open POP3 session with QUIT, if there is one, and closes the sender,
// if one was opened. It is safe to call more than once.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s, busy, snd := c.active, c.busy, c.sender
	c.active, c.sender = nil, nil
	c.mu.Unlock()
	switch {
	case s != nil && busy:
		s.cl.Close() // a call is using it: abort that call
	case s != nil:
		quit(s.cl)
	}
	if cl, ok := snd.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}

// session returns the kept session, or opens a new one, and marks it busy until
// endSession.
func (c *Conn) session(ctx context.Context) (*session, error) {
	c.mu.Lock()
	s, closed := c.active, c.closed
	stale := s != nil && c.d.cfg.Clock.Now().Sub(s.keptAt) > keepFor
	switch {
	case closed:
	case stale:
		c.active = nil
	case s != nil:
		c.busy = true
	}
	c.mu.Unlock()
	if closed {
		return nil, provider.Permanent("pop3", fmt.Errorf("%s: %w", c.who, errClosed))
	}
	if stale {
		quit(s.cl)
	} else if s != nil {
		return s, nil
	}
	s, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		s.cl.Close()
		return nil, provider.Permanent("pop3", fmt.Errorf("%s: %w", c.who, errClosed))
	}
	c.active, c.busy = s, true
	return s, nil
}

// endSession ends s with QUIT, unless keep asks to keep it for the next batch.
func (c *Conn) endSession(s *session, keep bool) {
	c.mu.Lock()
	if c.active == s {
		c.busy = false
		if keep {
			s.keptAt = c.d.cfg.Clock.Now()
			c.mu.Unlock()
			return
		}
		c.active = nil
	}
	c.mu.Unlock()
	quit(s.cl)
}

// endKept ends a session kept after a batch with More.
func (c *Conn) endKept() {
	c.mu.Lock()
	s := c.active
	c.active = nil
	c.mu.Unlock()
	if s != nil {
		quit(s.cl)
	}
}

// quit ends a session politely: no message was marked for deletion, so QUIT deletes
// nothing.
func quit(cl *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), quitWait)
	defer cancel()
	cl.Quit(ctx)
}

// open connects, upgrades with STLS when the endpoint asks, and logs in, all within
// the profile's connection timeout.
func (c *Conn) open(ctx context.Context) (*session, error) {
	p := c.t.Profile
	ep := p.Incoming
	addr := ep.Address()
	timeout := p.Timeout()
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(op string, cl *Client, caps Capabilities, err error) (*session, error) {
		if cl != nil {
			cl.Close()
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, provider.Classify(op, cerr)
		}
		if errors.Is(err, ErrProtocol) && op == "pop3 connect" {
			err = fmt.Errorf("the server does not speak POP3: %w", err)
			return nil, provider.Permanent(op, fmt.Errorf("%s at %s: %w", c.who, addr, err))
		}
		return nil, classify(op, fmt.Errorf("%s at %s: %w", c.who, addr, err), caps.LoginDelay())
	}

	var cl *Client
	var err error
	switch ep.Security {
	case crmsync.SecurityTLS:
		cl, err = DialTLS(octx, addr, c.d.tlsConfig(ep))
	case crmsync.SecuritySTARTTLS, crmsync.SecurityPlaintext:
		cl, err = Dial(octx, addr)
	default:
		return nil, crmsync.Errorf(crmsync.KindPermanent, "pop3 connect", "%s: unknown connection security %d", c.who, ep.Security)
	}
	if err != nil {
		return fail("pop3 connect", nil, nil, err)
	}
	cl.Timeout = timeout
	// LIST counts a message's octets before dot-stuffing, which can add one per line:
	// leave room, so that only a server that lies about sizes trips the client's limit.
	cl.MaxMessageSize = 2*c.d.cfg.MaxMessageSize + 64<<10

	caps, err := cl.Capabilities(octx)
	if err != nil {
		return fail("pop3 connect", cl, nil, err)
	}
	if ep.Security == crmsync.SecuritySTARTTLS {
		if len(caps) > 0 && !caps.Has("STLS") {
			cl.Close()
			return nil, crmsync.Errorf(crmsync.KindPermanent, "pop3 stls",
				"%s at %s: the server does not offer STLS, and the profile requires TLS", c.who, addr)
		}
		if err := cl.StartTLS(octx, c.d.tlsConfig(ep)); err != nil {
			return fail("pop3 stls", cl, caps, err)
		}
		if caps, err = cl.Capabilities(octx); err != nil {
			return fail("pop3 stls", cl, nil, err)
		}
	}
	if err := c.login(octx, cl, caps); err != nil {
		return fail("pop3 login", cl, caps, err)
	}
	sec := "plaintext"
	if _, ok := cl.TLS(); ok {
		sec = "tls"
	}
	c.log.Debug("pop3 session opened", "addr", addr, "security", sec)
	return &session{cl: cl, caps: caps}, nil
}

// login authenticates with USER and PASS, or with AUTH PLAIN where the server offers
// that and not USER.
func (c *Conn) login(ctx context.Context, cl *Client, caps Capabilities) error {
	if c.creds.Username == "" {
		return crmsync.Errorf(crmsync.KindAuth, "pop3 login", "%s has no user name", c.who)
	}
	if !caps.Has("USER") && caps.SASL("PLAIN") {
		return cl.AuthPlain(ctx, c.creds.Username, c.creds.Password)
	}
	if err := cl.User(ctx, c.creds.Username); err != nil {
		return err
	}
	return cl.Pass(ctx, c.creds.Password)
}

// classify classifies an error of session s's command, naming the mailbox. A canceled
// context is returned as it is.
func (c *Conn) classify(op string, err error, s *session) error {
	if err == nil {
		return nil
	}
	var kerr *crmsync.Error
	if errors.As(err, &kerr) || errors.Is(err, context.Canceled) {
		return err
	}
	var delay time.Duration
	if s != nil {
		delay = s.caps.LoginDelay()
	}
	return classify(op, fmt.Errorf("%s: %w", c.who, err), delay)
}
