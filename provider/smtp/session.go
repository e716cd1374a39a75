package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// session returns the open session, or opens one, and marks it busy until done;
// reused says it was open already.
func (s *Sender) session(ctx context.Context) (sc *smtp.Client, reused bool, err error) {
	s.mu.Lock()
	sc, closed := s.sc, s.closed
	if sc != nil && !closed {
		s.busy = true
	}
	s.mu.Unlock()
	if closed {
		return nil, false, provider.Permanent("smtp", fmt.Errorf("%s: %w", s.cfg.Who, errClosed))
	}
	if sc != nil {
		return sc, true, nil
	}
	sc, err = s.open(ctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, false, provider.Classify("smtp connect", cerr)
		}
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sc.Close()
		return nil, false, provider.Permanent("smtp", fmt.Errorf("%s: %w", s.cfg.Who, errClosed))
	}
	s.sc, s.busy = sc, true
	return sc, false, nil
}

// done marks the session no longer in use.
func (s *Sender) done() {
	s.mu.Lock()
	s.busy = false
	s.mu.Unlock()
}

// drop forgets sc, the session, and closes its connection at once.
func (s *Sender) drop(sc *smtp.Client) {
	s.mu.Lock()
	if s.sc == sc {
		s.sc = nil
	}
	s.mu.Unlock()
	sc.Close()
}

// release ends the session: with QUIT when polite, else at once.
func (s *Sender) release(polite bool) {
	s.mu.Lock()
	sc := s.sc
	s.sc, s.busy = nil, false
	s.mu.Unlock()
	if sc == nil {
		return
	}
	if polite {
		quit(sc)
		return
	}
	sc.Close()
}

// quit ends a session with QUIT, not waiting long for the answer.
func quit(sc *smtp.Client) {
	sc.CommandTimeout = quitWait
	if sc.Quit() != nil {
		sc.Close()
	}
}

// open connects, says EHLO, upgrades with STARTTLS when asked, and authenticates, all
// within the timeout.
func (s *Sender) open(ctx context.Context) (*smtp.Client, error) {
	ep := s.cfg.Endpoint
	addr := ep.Address()
	timeout := s.cfg.Timeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	nc, err := s.dial(ctx)
	if err != nil {
		return nil, timeoutError(ctx, "smtp connect", addr, timeout, provider.Classify("smtp connect", fmt.Errorf("%s: %w", addr, err)))
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	var sc *smtp.Client
	if ep.Security == crmsync.SecuritySTARTTLS {
		sc, err = smtp.NewClientStartTLS(nc, s.tlsConfig())
		if err != nil {
			nc.Close()
			var se *smtp.SMTPError
			switch {
			case errors.As(err, &se) && se.Code/100 == 4:
				// A busy server (421 at the greeting, say), not a refusal.
				return nil, classify("smtp starttls", fmt.Errorf("%s: %w", addr, err), false)
			case se != nil, err.Error() == "smtp: server doesn't support STARTTLS": // go-smtp's own error
				return nil, provider.Permanent("smtp starttls", fmt.Errorf("%s: the server refused STARTTLS: %w", addr, err))
			}
			return nil, timeoutError(ctx, "smtp starttls", addr, timeout, provider.Classify("smtp starttls", fmt.Errorf("%s: %w", addr, err)))
		}
	} else {
		sc = smtp.NewClient(nc)
	}
	sc.CommandTimeout = timeout
	sc.SubmissionTimeout = max(timeout, minSubmissionTimeout)
	if err := sc.Hello(s.cfg.LocalName); err != nil {
		sc.Close()
		return nil, timeoutError(ctx, "smtp connect", addr, timeout, classify("smtp connect", fmt.Errorf("%s: %w", addr, err), false))
	}
	if err := s.auth(ctx, sc); err != nil {
		sc.Close()
		return nil, timeoutError(ctx, "smtp auth", addr, timeout, err)
	}
	return sc, nil
}

// auth authenticates with Config.Auth's client, or with the credentials: PLAIN, or
// LOGIN when the server offers only that.
func (s *Sender) auth(ctx context.Context, sc *smtp.Client) error {
	const op = "smtp auth"
	creds := s.cfg.Credentials
	if s.cfg.Auth == nil && creds.Username == "" {
		return nil // a relay that trusts the network
	}
	if ok, _ := sc.Extension("AUTH"); !ok {
		return crmsync.Errorf(crmsync.KindPermanent, op, "%s: the server offers no authentication on this connection", s.cfg.Who)
	}
	var mech sasl.Client
	switch {
	case s.cfg.Auth != nil:
		var err error
		if mech, err = s.cfg.Auth(ctx); err != nil {
			return provider.Classify(op, fmt.Errorf("%s: %w", s.cfg.Who, err))
		}
	case sc.SupportsAuth(sasl.Plain):
		mech = sasl.NewPlainClient("", creds.Username, creds.Password)
	case sc.SupportsAuth(sasl.Login):
		mech = sasl.NewLoginClient(creds.Username, creds.Password)
	default:
		_, mechs := sc.Extension("AUTH")
		return crmsync.Errorf(crmsync.KindPermanent, op, "%s: the server offers neither PLAIN nor LOGIN authentication (it offers %s)", s.cfg.Who, mechs)
	}
	if err := sc.Auth(mech); err != nil {
		return classify(op, fmt.Errorf("%s: %w", s.cfg.Who, err), false)
	}
	return nil
}

// dial opens a TCP connection to the endpoint, and completes the TLS handshake when it
// uses implicit TLS.
func (s *Sender) dial(ctx context.Context) (net.Conn, error) {
	ep := s.cfg.Endpoint
	nd := &net.Dialer{Timeout: s.cfg.Timeout, KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", ep.Address())
	if err != nil {
		return nil, err
	}
	if ep.Security != crmsync.SecurityTLS {
		return nc, nil
	}
	tc := tls.Client(nc, s.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// tlsConfig returns the TLS configuration for the endpoint.
func (s *Sender) tlsConfig() *tls.Config {
	return provider.TLSConfig(s.cfg.TLSConfig, s.cfg.Endpoint)
}
