package gmail

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail/internal/imapwire"
)

// This file opens the real sessions behind the bridge: a connection to Gmail's (or a test server's) IMAP
// or SMTP endpoint, TLS as the profile says, and the sign-in with an OAuth 2.0 access token. A refused
// token is refreshed and tried once more; errors are classified at this boundary.

// upstreamIMAP is a signed-in IMAP connection.
type upstreamIMAP struct {
	conn net.Conn
	br   *bufio.Reader
	caps []string
}

// dial connects to ep within ctx and completes the TLS handshake of implicit TLS.
func (c *Conn) dial(ctx context.Context, ep crmsync.Endpoint) (net.Conn, error) {
	if ep.Host == "" || ep.Port <= 0 {
		return nil, errors.New("the endpoint has no host or port")
	}
	nd := &net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", ep.Address())
	if err != nil {
		return nil, err
	}
	if ep.Security != crmsync.SecurityTLS {
		return nc, nil
	}
	tc := tls.Client(nc, c.d.tlsConfig(ep))
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// withDeadline applies ctx's deadline to nc until the returned function runs, and closes nc if ctx ends
// meanwhile.
func withDeadline(ctx context.Context, nc net.Conn) func() {
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	return func() {
		stop()
		_ = nc.SetDeadline(time.Time{})
	}
}

// dialError classifies a failure to reach addr: refused, reset and timed-out connections are transient,
// certificates that fail verification and unknown hosts permanent.
func dialError(ctx context.Context, op, addr string, err error) error {
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return provider.Transient(op, fmt.Errorf("%s: no answer in time: %w", addr, context.DeadlineExceeded))
	}
	return provider.Classify(op, fmt.Errorf("%s: %w", addr, err))
}

// openUpstreamIMAP connects to the profile's IMAP endpoint and signs in. It holds one of the account's
// connection slots until release.
func (c *Conn) openUpstreamIMAP(ctx context.Context) (*upstreamIMAP, func(), error) {
	release, err := c.d.accounts.acquire(ctx, c.t.Mailbox.ID)
	if err != nil {
		return nil, nil, err
	}
	up, err := c.connectIMAP(ctx)
	if err != nil {
		release()
		return nil, nil, err
	}
	if err := c.signInIMAP(ctx, up); err != nil {
		up.conn.Close()
		release()
		return nil, nil, err
	}
	return up, release, nil
}

// connectIMAP opens the connection and reads the greeting, upgrading with STARTTLS when the profile says so.
func (c *Conn) connectIMAP(ctx context.Context) (*upstreamIMAP, error) {
	const op = "gmail imap connect"
	ep := c.t.Profile.Incoming
	nc, err := c.dial(ctx, ep)
	if err != nil {
		return nil, dialError(ctx, op, ep.Address(), err)
	}
	done := withDeadline(ctx, nc)
	defer done()
	up := &upstreamIMAP{conn: nc, br: bufio.NewReader(nc)}
	greeting, _, _, err := imapwire.ReadLine(up.br)
	if err != nil {
		nc.Close()
		return nil, dialError(ctx, op, ep.Address(), err)
	}
	g := strings.TrimRight(string(greeting), "\r\n")
	switch {
	case strings.HasPrefix(strings.ToUpper(g), "* OK"):
	case strings.HasPrefix(strings.ToUpper(g), "* BYE") && tooMany(g):
		nc.Close()
		return nil, accountScoped(provider.Throttled(op, 0, fmt.Errorf("%s: %s", ep.Address(), g)))
	default:
		nc.Close()
		return nil, provider.Transient(op, fmt.Errorf("%s: unexpected greeting %q", ep.Address(), g))
	}
	up.caps = imapwire.Capabilities(greeting)
	if ep.Security == crmsync.SecuritySTARTTLS {
		if _, err := up.run("S1", "STARTTLS"); err != nil {
			nc.Close()
			var se *imapStatusError
			if errors.As(err, &se) {
				return nil, provider.Permanent("gmail imap starttls", fmt.Errorf("%s: the server refused STARTTLS: %w", ep.Address(), err))
			}
			return nil, dialError(ctx, "gmail imap starttls", ep.Address(), err)
		}
		tc := tls.Client(nc, c.d.tlsConfig(ep))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, dialError(ctx, "gmail imap starttls", ep.Address(), err)
		}
		up.conn, up.br, up.caps = tc, bufio.NewReader(tc), nil
	}
	if up.caps == nil {
		if _, err := up.run("C1", "CAPABILITY"); err != nil {
			up.conn.Close()
			return nil, dialError(ctx, op, ep.Address(), err)
		}
	}
	return up, nil
}

// run sends one command before sign-in and reads lines up to its tagged answer, noting capabilities; a NO or
// BAD is an *imapStatusError.
func (up *upstreamIMAP) run(tag, cmd string) (string, error) {
	if _, err := io.WriteString(up.conn, tag+" "+cmd+"\r\n"); err != nil {
		return "", err
	}
	return up.await(tag)
}

// await reads lines up to the tagged answer of tag.
func (up *upstreamIMAP) await(tag string) (string, error) {
	for {
		line, _, _, err := imapwire.ReadLine(up.br)
		if err != nil {
			return "", err
		}
		if caps := imapwire.Capabilities(line); caps != nil {
			up.caps = caps
		}
		s := strings.TrimRight(string(line), "\r\n")
		if t, rest, _ := strings.Cut(s, " "); t == tag {
			st, _, _ := strings.Cut(rest, " ")
			if strings.EqualFold(st, "OK") {
				return s, nil
			}
			return s, &imapStatusError{status: strings.ToUpper(st), text: rest}
		}
	}
}

func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if c == name {
			return true
		}
	}
	return false
}

// signInIMAP authenticates with the first of Config.Mechanisms the server offers, with the mailbox's access
// token; a refused token that came from the cache is refreshed and tried once more.
func (c *Conn) signInIMAP(ctx context.Context, up *upstreamIMAP) error {
	const op = "gmail imap auth"
	done := withDeadline(ctx, up.conn)
	defer done()
	mech := chooseMechanism(c.d.mechanisms, func(m string) bool { return hasCap(up.caps, "AUTH="+m) })
	if mech == "" {
		return provider.Permanent(op, fmt.Errorf("%s: the IMAP server offers none of the mechanisms %s (it offers %s)",
			c.t.Profile.Incoming.Address(), strings.Join(c.d.mechanisms, ", "), strings.Join(up.caps, " ")))
	}
	for attempt := 0; ; attempt++ {
		token, err := c.d.tokens.token(ctx, c.t.Mailbox, c.t.Credentials().RefreshToken, attempt > 0)
		if err != nil {
			return err
		}
		answer, failure, err := c.authenticateIMAP(up, mech, token)
		if err == nil {
			if !strings.Contains(strings.ToUpper(answer), "[CAPABILITY ") {
				if _, err := up.run("C2", "CAPABILITY"); err != nil {
					return dialError(ctx, op, c.t.Profile.Incoming.Address(), err)
				}
			}
			return nil
		}
		var se *imapStatusError
		if !errors.As(err, &se) {
			return dialError(ctx, op, c.t.Profile.Incoming.Address(), err)
		}
		kerr := c.imapAuthError(op, mech, se, failure)
		if crmsync.KindOf(kerr) != crmsync.KindAuth || attempt > 0 {
			return kerr
		}
		c.d.tokens.invalidate(c.t.Mailbox.ID, token)
	}
}

// authenticateIMAP runs AUTHENTICATE mech; on refusal it returns the server's error challenge, if any.
func (c *Conn) authenticateIMAP(up *upstreamIMAP, mech, token string) (string, *sasl.OAuthBearerError, error) {
	p := c.t.Profile.Incoming
	_, ir, _ := saslClient(mech, c.user(), token, p.Host, p.Port).Start()
	enc := base64.StdEncoding.EncodeToString(ir)
	tag := "A1"
	var err error
	if hasCap(up.caps, "SASL-IR") {
		_, err = io.WriteString(up.conn, tag+" AUTHENTICATE "+mech+" "+enc+"\r\n")
	} else {
		_, err = io.WriteString(up.conn, tag+" AUTHENTICATE "+mech+"\r\n")
	}
	if err != nil {
		return "", nil, err
	}
	sentIR := hasCap(up.caps, "SASL-IR")
	var failure *sasl.OAuthBearerError
	for {
		line, _, _, err := imapwire.ReadLine(up.br)
		if err != nil {
			return "", failure, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if caps := imapwire.Capabilities(line); caps != nil {
			up.caps = caps
		}
		switch {
		case strings.HasPrefix(s, "+"):
			ch := strings.TrimSpace(strings.TrimPrefix(s, "+"))
			var resp []byte
			if !sentIR && ch == "" {
				resp, sentIR = ir, true
			} else {
				if raw, err := base64.StdEncoding.DecodeString(ch); err == nil {
					var e sasl.OAuthBearerError
					if json.Unmarshal(raw, &e) == nil {
						failure = &e
					}
				}
				resp = abortResponse(mech)
			}
			if _, err := io.WriteString(up.conn, base64.StdEncoding.EncodeToString(resp)+"\r\n"); err != nil {
				return "", failure, err
			}
		case strings.HasPrefix(s, tag+" "):
			rest := s[len(tag)+1:]
			st, _, _ := strings.Cut(rest, " ")
			if strings.EqualFold(st, "OK") {
				return s, nil, nil
			}
			return s, failure, &imapStatusError{status: strings.ToUpper(st), text: rest}
		}
	}
}

// imapAuthError classifies a refused AUTHENTICATE: a refused token is an auth error; a server that is
// unavailable is transient; one that limits connections is throttled (the account's own limit); a BAD is
// permanent.
func (c *Conn) imapAuthError(op, mech string, se *imapStatusError, failure *sasl.OAuthBearerError) error {
	text := strings.ToUpper(se.text)
	err := fmt.Errorf("%s: %s refused by %s: %s", c.whoami(), mech, c.t.Profile.Incoming.Address(), se.text)
	if failure != nil {
		err = fmt.Errorf("%w (status %s, scope %q)", err, failure.Status, failure.Scope)
	}
	switch {
	case strings.Contains(text, "[UNAVAILABLE]"), strings.Contains(text, "[SERVERBUG]"), strings.Contains(text, "[INUSE]"):
		return provider.Transient(op, err)
	case strings.Contains(text, "[LIMIT]"), tooMany(text):
		return accountScoped(provider.Throttled(op, 0, err))
	case se.status == "BAD":
		return provider.Permanent(op, err)
	}
	return provider.Auth(op, fmt.Errorf("%w: Gmail refused a fresh access token: the grant may lack the https://mail.google.com/ scope or IMAP may be off in the account's settings", err))
}

// upstreamSMTP is a connection to the SMTP endpoint, before or after sign-in.
type upstreamSMTP struct {
	conn net.Conn
	tp   *textproto.Conn // reads through tp.R, which the relay goes on reading from
	ext  []string        // EHLO extensions, keywords with their parameters
}

// clientExtensions returns the extensions provider/imap may use: the upstream's, but not those of the
// sign-in or of transports the bridge does not relay.
func (up *upstreamSMTP) clientExtensions() []string {
	var out []string
	for _, e := range up.ext {
		kw, _, _ := strings.Cut(e, " ")
		switch strings.ToUpper(kw) {
		case "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "PIPELINING", "DSN":
			out = append(out, e)
		}
	}
	return out
}

func (up *upstreamSMTP) authMechanisms() []string {
	for _, e := range up.ext {
		if kw, params, _ := strings.Cut(e, " "); strings.EqualFold(kw, "AUTH") {
			return strings.Fields(strings.ToUpper(params))
		}
	}
	return nil
}

// cmd sends one line and reads the reply, expecting code (a class like 2 or an exact code like 235).
func (up *upstreamSMTP) cmd(expect int, format string, args ...any) (int, string, error) {
	id, err := up.tp.Cmd(format, args...)
	if err != nil {
		return 0, "", err
	}
	up.tp.StartResponse(id)
	defer up.tp.EndResponse(id)
	return up.tp.ReadResponse(expect)
}

// ehlo says EHLO and records the extensions.
func (up *upstreamSMTP) ehlo(name string) error {
	_, msg, err := up.cmd(250, "EHLO %s", name)
	if err != nil {
		return err
	}
	lines := strings.Split(msg, "\n")
	up.ext = nil
	if len(lines) > 1 {
		up.ext = lines[1:]
	}
	return nil
}

// openUpstreamSMTP connects to the profile's SMTP endpoint and says EHLO, upgrading with STARTTLS when the
// profile says so. It does not sign in: see authUpstreamSMTP.
func (c *Conn) openUpstreamSMTP(ctx context.Context) (*upstreamSMTP, error) {
	const op = "gmail smtp connect"
	ep := c.t.Profile.Outgoing
	nc, err := c.dial(ctx, ep)
	if err != nil {
		return nil, dialError(ctx, op, ep.Address(), err)
	}
	done := withDeadline(ctx, nc)
	defer done()
	up := newUpstreamSMTP(nc)
	fail := func(op string, err error) (*upstreamSMTP, error) {
		up.conn.Close()
		var pe *textproto.Error
		if errors.As(err, &pe) {
			msg := fmt.Errorf("%s: %d %s", ep.Address(), pe.Code, pe.Msg)
			if pe.Code/100 == 4 {
				if tooMany(pe.Msg) {
					return nil, accountScoped(provider.Throttled(op, 0, msg))
				}
				return nil, provider.Transient(op, msg)
			}
			return nil, provider.Permanent(op, msg)
		}
		return nil, dialError(ctx, op, ep.Address(), err)
	}
	if _, _, err := up.tp.ReadResponse(220); err != nil {
		return fail(op, err)
	}
	if err := up.ehlo(c.d.localName); err != nil {
		return fail(op, err)
	}
	if ep.Security == crmsync.SecuritySTARTTLS {
		if _, _, err := up.cmd(220, "STARTTLS"); err != nil {
			return fail("gmail smtp starttls", err)
		}
		tc := tls.Client(up.conn, c.d.tlsConfig(ep))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("gmail smtp starttls", err)
		}
		up = newUpstreamSMTP(tc)
		if err := up.ehlo(c.d.localName); err != nil {
			return fail(op, err)
		}
	}
	return up, nil
}

func newUpstreamSMTP(nc net.Conn) *upstreamSMTP {
	return &upstreamSMTP{conn: nc, tp: textproto.NewConn(nc)}
}

// authUpstreamSMTP signs in with the first of Config.Mechanisms the server offers; a refused token that
// came from the cache is refreshed and tried once more.
func (c *Conn) authUpstreamSMTP(ctx context.Context, up *upstreamSMTP) error {
	const op = "gmail smtp auth"
	done := withDeadline(ctx, up.conn)
	defer done()
	offered := up.authMechanisms()
	mech := chooseMechanism(c.d.mechanisms, func(m string) bool { return hasCap(offered, m) })
	if mech == "" {
		return provider.Permanent(op, fmt.Errorf("%s: the SMTP server offers none of the mechanisms %s (it offers %q)",
			c.t.Profile.Outgoing.Address(), strings.Join(c.d.mechanisms, ", "), offered))
	}
	ep := c.t.Profile.Outgoing
	for attempt := 0; ; attempt++ {
		token, err := c.d.tokens.token(ctx, c.t.Mailbox, c.t.Credentials().RefreshToken, attempt > 0)
		if err != nil {
			return err
		}
		_, ir, _ := saslClient(mech, c.user(), token, ep.Host, ep.Port).Start()
		code, msg, err := up.cmd(0, "AUTH %s %s", mech, base64.StdEncoding.EncodeToString(ir))
		var failure *sasl.OAuthBearerError
		if err == nil && code == 334 {
			if raw, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(msg)); derr == nil {
				var e sasl.OAuthBearerError
				if json.Unmarshal(raw, &e) == nil {
					failure = &e
				}
			}
			code, msg, err = up.cmd(0, "%s", base64.StdEncoding.EncodeToString(abortResponse(mech)))
		}
		if err != nil {
			var pe *textproto.Error
			if !errors.As(err, &pe) {
				return dialError(ctx, op, ep.Address(), err)
			}
			code, msg = pe.Code, pe.Msg
		}
		if code == 235 {
			return nil
		}
		kerr := c.smtpAuthError(op, mech, code, msg, failure)
		if crmsync.KindOf(kerr) != crmsync.KindAuth || attempt > 0 {
			return kerr
		}
		c.d.tokens.invalidate(c.t.Mailbox.ID, token)
	}
}

// smtpAuthError classifies a refused AUTH: 4xx is transient (throttled when the server says it limits), a
// 5xx refusal of the token is an auth error, other 5xx (an unknown mechanism, say) permanent.
func (c *Conn) smtpAuthError(op, mech string, code int, msg string, failure *sasl.OAuthBearerError) error {
	err := fmt.Errorf("%s: %s refused by %s: %d %s", c.whoami(), mech, c.t.Profile.Outgoing.Address(), code, msg)
	if failure != nil {
		err = fmt.Errorf("%w (status %s, scope %q)", err, failure.Status, failure.Scope)
	}
	switch {
	case code/100 == 4 && tooMany(msg):
		return accountScoped(provider.Throttled(op, 0, err))
	case code/100 == 4:
		return provider.Transient(op, err)
	case code == 535 || code == 534 || code == 530 || strings.HasPrefix(msg, "5.7."):
		return provider.Auth(op, fmt.Errorf("%w: Gmail refused a fresh access token: the grant may lack the https://mail.google.com/ scope", err))
	}
	return provider.Permanent(op, err)
}

// user is the name the mailbox signs in with: its credentials' user name, else its address.
func (c *Conn) user() string {
	if u := c.t.Credentials().Username; u != "" {
		return u
	}
	return c.t.Mailbox.Address
}

func (c *Conn) whoami() string { return who(c.t.Mailbox) }
