// Package mailtest runs a real IMAP and SMTP server in process, on loopback, for tests,
// examples and the quickstart, the way net/http/httptest runs an HTTP server.
//
// The IMAP side is go-imap's imapserver with its in-memory backend (imapmemserver); the
// SMTP side is go-smtp. Both speak the real protocols, so a provider tested against a
// Server is tested against the wire, not a fake:
//
//	srv, err := mailtest.NewServer(mailtest.Config{})
//	...
//	srv.AddUser("ann@example.test", "secret")
//	srv.Start()
//	defer srv.Close()
//	profile := srv.Profile("p1") // an IMAP/SMTP ServerProfile pointing at srv
//
// Mail submitted over SMTP by an authenticated user is delivered, with Return-Path,
// Delivered-To and Received header fields as a real MTA adds them, into the INBOX of
// every recipient that is a local user; an unknown recipient is refused with 550.
// Deliver and DeliverAt put a raw message straight into an INBOX.
//
// Stats counts what clients did (commands by name, full-body fetches, accepted SMTP
// messages), so a test can check that a provider keeps its round trips down. Close stops
// both servers and waits for every goroutine they started.
//
// What imapmemserver cannot do, the Server does not either: no mailbox carries a
// SPECIAL-USE attribute (Sent is found by its name), there is no CONDSTORE (no
// HIGHESTMODSEQ), and a message whose header does not parse is served empty.
package mailtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/schedule"
)

// TLSMode says how clients protect their connections to a Server.
type TLSMode uint8

// TLS modes. The zero value is plaintext, as test servers on loopback usually are.
const (
	NoTLS       TLSMode = iota // plaintext; authentication over plaintext is allowed
	ImplicitTLS                // TLS from the first byte on both ports
	StartTLS                   // plaintext ports that offer STARTTLS and require it before AUTH
)

// Config configures a Server. The zero value is a plaintext server with default names.
type Config struct {
	// Domain is the server's host name in greetings and Received fields.
	// Default "mailtest.localhost".
	Domain string
	// TLS selects plaintext (default), implicit TLS or STARTTLS. With TLS, the server
	// uses a self-signed certificate for 127.0.0.1 and localhost; RootCAs returns the
	// pool that trusts it.
	TLS TLSMode
	// Clock dates delivered messages (INTERNALDATE and Received). Default schedule.Real.
	Clock schedule.Clock
	// Logger receives the servers' internal errors at debug level. Default: discarded.
	Logger *slog.Logger
	// DisableMove stops the IMAP server from offering MOVE, so that a client falls back
	// to COPY, STORE \Deleted and EXPUNGE.
	DisableMove bool
	// SMTPAuthMechanisms are the SASL mechanisms the SMTP server offers, among "PLAIN"
	// and "LOGIN". Default {"PLAIN"}.
	SMTPAuthMechanisms []string
}

// Server is an IMAP server and an SMTP server sharing one set of users. Create it with
// NewServer, add users, Start it, and Close it when done. Its methods are safe for
// concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	tlsCert  *tls.Config
	rootCAs  *x509.CertPool
	internal string // password of the server's own IMAP sessions, which Stats ignores

	imapLn, smtpLn *trackingListener
	imapSrv        *imapserver.Server
	smtpSrv        *smtp.Server

	mu      sync.Mutex
	users   map[string]*user // by lower-case address
	stats   Stats
	started bool
	closed  bool

	serving sync.WaitGroup // the two Serve goroutines
}

type user struct {
	address  string // lower-case; the IMAP and SMTP user name
	password string
	mem      *imapmemserver.User
}

// Default mailbox names a user gets from AddUser.
const (
	Inbox  = "INBOX"
	Sent   = "Sent"
	Drafts = "Drafts"
	Junk   = "Junk"
	Trash  = "Trash"
)

// NewServer checks cfg and opens the two loopback listeners, so that IMAPAddr,
// SMTPAddr and Profile work at once; it starts no goroutine. Call Start to serve and
// Close to release the listeners.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = "mailtest.localhost"
	}
	if cfg.Clock == nil {
		cfg.Clock = schedule.Real{}
	}
	if cfg.TLS > StartTLS {
		return nil, fmt.Errorf("mailtest: Config.TLS %d is not a TLS mode", cfg.TLS)
	}
	if len(cfg.SMTPAuthMechanisms) == 0 {
		cfg.SMTPAuthMechanisms = []string{"PLAIN"}
	}
	for _, m := range cfg.SMTPAuthMechanisms {
		if m != "PLAIN" && m != "LOGIN" {
			return nil, fmt.Errorf("mailtest: Config.SMTPAuthMechanisms: %q is not PLAIN or LOGIN", m)
		}
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		users:    make(map[string]*user),
		internal: randomToken(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.stats.IMAPCommands = make(map[string]int)
	if cfg.TLS != NoTLS {
		tc, pool, err := selfSignedTLS(cfg.Domain)
		if err != nil {
			return nil, fmt.Errorf("mailtest: certificate: %w", err)
		}
		s.tlsCert, s.rootCAs = tc, pool
	}

	var err error
	if s.imapLn, err = listen(true); err != nil {
		return nil, err
	}
	if s.smtpLn, err = listen(false); err != nil {
		s.imapLn.Listener.Close()
		return nil, err
	}
	s.imapSrv = s.newIMAPServer()
	s.smtpSrv = s.newSMTPServer()
	return s, nil
}

func listen(countServed bool) (*trackingListener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mailtest: listen: %w", err)
	}
	return newTrackingListener(ln, countServed), nil
}

// Start serves IMAP and SMTP until Close. It fails if the server was started or closed.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("mailtest: Start after Close")
	}
	if s.started {
		return errors.New("mailtest: Start called twice")
	}
	s.started = true

	var imapLn, smtpLn net.Listener = s.imapLn, s.smtpLn
	if s.cfg.TLS == ImplicitTLS {
		imapLn = tls.NewListener(imapLn, s.tlsCert)
		smtpLn = tls.NewListener(smtpLn, s.tlsCert)
	}
	s.serving.Add(2)
	go func() {
		defer s.serving.Done()
		if err := s.imapSrv.Serve(imapLn); err != nil {
			s.log.Debug("mailtest: imap serve", "err", err)
		}
	}()
	go func() {
		defer s.serving.Done()
		if err := s.smtpSrv.Serve(smtpLn); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("mailtest: smtp serve", "err", err)
		}
	}()
	return nil
}

// Close stops both servers, closes every connection and waits until every goroutine
// the server started has returned. It is safe to call more than once, and before Start.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()

	if !started {
		s.imapLn.Listener.Close()
		s.smtpLn.Listener.Close()
		return nil
	}

	// IMAP: imapserver closes its listener and the connections it knows, but does not
	// wait for them; the tracking listener closes the rest and waits.
	_ = s.imapSrv.Close()
	s.imapLn.closeAll()
	s.imapLn.wait()

	// SMTP: close the listener and every connection, let Serve return (so that it
	// starts no more connection goroutines), then Shutdown waits for those it started.
	s.smtpLn.closeAll()
	s.serving.Wait()
	_ = s.smtpSrv.Shutdown(context.Background())
	return nil
}

// IMAPAddr returns the IMAP server's "host:port".
func (s *Server) IMAPAddr() string { return s.imapLn.Addr().String() }

// SMTPAddr returns the SMTP server's "host:port".
func (s *Server) SMTPAddr() string { return s.smtpLn.Addr().String() }

// RootCAs returns a pool that trusts the server's certificate, or nil when the server
// runs without TLS. Give it to a client's tls.Config.
func (s *Server) RootCAs() *x509.CertPool { return s.rootCAs }

// Profile returns an IMAP/SMTP server profile with this id that points at the server,
// with the security its TLS mode calls for and credentials taken from each mailbox
// (username = address, password as given to AddUser).
func (s *Server) Profile(id string) *crmsync.ServerProfile {
	sec := crmsync.SecurityPlaintext
	switch s.cfg.TLS {
	case ImplicitTLS:
		sec = crmsync.SecurityTLS
	case StartTLS:
		sec = crmsync.SecuritySTARTTLS
	}
	return &crmsync.ServerProfile{
		ID:               id,
		Name:             "mailtest " + s.cfg.Domain,
		Kind:             crmsync.ServerIMAP,
		Incoming:         endpoint(s.IMAPAddr(), sec),
		Outgoing:         endpoint(s.SMTPAddr(), sec),
		CredentialSource: crmsync.CredentialsFromMailbox,
	}
}

func endpoint(addr string, sec crmsync.Security) crmsync.Endpoint {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return crmsync.Endpoint{Host: host, Port: p, Security: sec}
}

// Stats counts what clients did since the server was created.
type Stats struct {
	// SMTPAccepted counts messages the SMTP server accepted (a DATA that succeeded),
	// however many recipients each had.
	SMTPAccepted int
	// IMAPLogins counts successful IMAP logins.
	IMAPLogins int
	// IMAPCommands counts IMAP commands that reached the mailbox backend, by name:
	// "LOGIN", "SELECT", "EXAMINE", "STATUS", "LIST", "SEARCH", "FETCH", "STORE",
	// "COPY", "MOVE", "EXPUNGE", "APPEND", "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
	// "UNSUBSCRIBE", "UNSELECT", "NAMESPACE". Commands the protocol layer answers by
	// itself (CAPABILITY, NOOP, ENABLE, LOGOUT) are not counted. UID variants count
	// under the plain name.
	IMAPCommands map[string]int
	// BodyFetches counts messages whose full content or text was fetched (BODY[],
	// BODY[TEXT], BINARY[] and their PEEK forms), as opposed to headers only.
	BodyFetches int
}

// Commands returns the total of IMAPCommands.
func (st Stats) Commands() int {
	n := 0
	for _, c := range st.IMAPCommands {
		n += c
	}
	return n
}

// Stats returns a copy of the counters. Sessions the server opens on itself (for
// Messages) are not counted.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.IMAPCommands = make(map[string]int, len(s.stats.IMAPCommands))
	for k, v := range s.stats.IMAPCommands {
		st.IMAPCommands[k] = v
	}
	return st
}

// SMTPAccepted returns the number of messages the SMTP server accepted.
func (s *Server) SMTPAccepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.SMTPAccepted
}

func (s *Server) count(f func(st *Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// logAdapter turns the servers' Printf-style error logs into debug records.
type logAdapter struct {
	log    *slog.Logger
	server string
}

func (l logAdapter) Printf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "server", l.server)
}

func (l logAdapter) Println(v ...any) {
	l.log.Debug(fmt.Sprint(v...), "server", l.server)
}

func (s *Server) imapCaps() imap.CapSet {
	caps := imap.CapSet{
		imap.CapIMAP4rev1:    {},
		imap.CapIMAP4rev2:    {},
		imap.CapNamespace:    {},
		imap.CapUIDPlus:      {},
		imap.CapESearch:      {},
		imap.CapSearchRes:    {},
		imap.CapListExtended: {},
		imap.CapListStatus:   {},
		imap.CapMove:         {},
		imap.CapStatusSize:   {},
		imap.CapLiteralPlus:  {},
	}
	if s.cfg.DisableMove {
		// IMAP4rev2 includes MOVE, so a server without MOVE speaks IMAP4rev1 only.
		delete(caps, imap.CapMove)
		delete(caps, imap.CapIMAP4rev2)
	}
	return caps
}
