// Package gmailtest runs a stand-in for Gmail in process, on loopback, for tests and examples: IMAP and SMTP
// that sign users in with OAuth 2.0 access tokens (XOAUTH2 and OAUTHBEARER) and speak Gmail's IMAP
// extensions (X-GM-EXT-1: X-GM-MSGID and X-GM-LABELS), in front of a provider/mailtest server that holds
// the mail.
//
//	srv, err := gmailtest.NewServer(gmailtest.Config{Validate: check}) // check: does this token belong to user?
//	...
//	srv.AddUser("ann@example.test")
//	srv.Start()
//	defer srv.Close()
//	profile := srv.Profile("gmail") // a Gmail ServerProfile pointing at srv
//
// What it does as Gmail does: the greeting offers AUTH=XOAUTH2 and AUTH=OAUTHBEARER with SASL-IR; a refused
// token gets the error challenge (a base64 JSON object) and then "NO [AUTHENTICATIONFAILED] Invalid
// credentials (Failure)"; a message has one X-GM-MSGID under every label (IMAP folder) it appears in, and
// X-GM-LABELS lists its labels ("\Inbox" for INBOX); UID SEARCH X-GM-MSGID finds it; a message submitted
// over SMTP is filed in the sender's Sent folder; past Config.DailyLimit messages in 24 hours, MAIL is
// refused with "550 5.4.5 Daily user sending limit exceeded".
//
// What it does its own way: the X-GM-MSGID is derived from the message's Message-ID (or, without one, its
// header), so two messages with one Message-ID are one message to it; a message appears under a second
// label only through AddLabel, which copies it into that folder; labels other than INBOX's are the names of
// the folders. Connections are plaintext.
package gmailtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/gmail/internal/imapwire"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/schedule"
)

// Config configures a Server.
type Config struct {
	// Validate reports whether token is a valid access token of user (an address); a nil error accepts it.
	// Required: typically a check against a test authorization server (testenv.OAuthServer's Active).
	Validate func(ctx context.Context, user, token string) error
	// NoGmailExtensions makes the server a plain IMAP server that takes OAuth: no X-GM-EXT-1.
	NoGmailExtensions bool
	// NoSentCopies stops the SMTP server from filing submitted messages in the sender's Sent folder.
	NoSentCopies bool
	// DailyLimit refuses MAIL once a user has sent this many messages in the last 24 hours (by Clock), as
	// Gmail refuses past its sending limit. Zero means no limit.
	DailyLimit int
	// Clock dates delivered messages and counts the daily limit. Default schedule.Real.
	Clock schedule.Clock
	// Logger receives the servers' internal errors at debug level. Default: discarded.
	Logger *slog.Logger
}

// Server is the stand-in: create it with NewServer, add users, Start it, Close it when done. Its methods are
// safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	mail   *mailtest.Server
	imapLn net.Listener
	smtpLn net.Listener
	smtp   *smtp.Server

	mu      sync.Mutex
	users   map[string]string              // address → password on the mailtest server
	labels  map[string]map[string][]string // address → Message-ID → extra labels
	sent    map[string][]time.Time         // address → SMTP submissions
	signIns map[string]int                 // by mechanism
	gmFetch int                            // X-GM-MSGID fetches answered
	conns   map[net.Conn]bool
	started bool
	closed  bool
	wg      sync.WaitGroup
}

// NewServer checks cfg, makes the mailtest server behind and opens the two listeners; it starts no
// goroutine. Start serves; Close releases everything.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Validate == nil {
		return nil, errors.New("gmailtest: Config.Validate is nil")
	}
	if cfg.Clock == nil {
		cfg.Clock = schedule.Real{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := mailtest.NewServer(mailtest.Config{Clock: cfg.Clock, Logger: log, Domain: "gmailtest.localhost"})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, mail: m, users: map[string]string{}, labels: map[string]map[string][]string{},
		sent: map[string][]time.Time{}, signIns: map[string]int{}, conns: map[net.Conn]bool{}}
	if s.imapLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		m.Close()
		return nil, err
	}
	if s.smtpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.imapLn.Close()
		m.Close()
		return nil, err
	}
	s.smtp = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{s: s}, nil
	}))
	s.smtp.Domain = "gmailtest.localhost"
	s.smtp.AllowInsecureAuth = true
	s.smtp.ReadTimeout, s.smtp.WriteTimeout = time.Minute, time.Minute
	s.smtp.MaxMessageBytes = 64 << 20
	return s, nil
}

// Start serves IMAP and SMTP until Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.started {
		return errors.New("gmailtest: Start twice, or after Close")
	}
	s.started = true
	if err := s.mail.Start(); err != nil {
		return err
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.imapLn.Accept()
			if err != nil {
				return
			}
			if !s.track(c) {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				s.serveIMAP(c)
			}()
		}
	}()
	go func() {
		defer s.wg.Done()
		_ = s.smtp.Serve(s.smtpLn)
	}()
	return nil
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.conns[c] = true
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close stops both servers, closes every connection and waits for every goroutine.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.conns
	s.conns = map[net.Conn]bool{}
	s.mu.Unlock()
	s.imapLn.Close()
	_ = s.smtp.Close()
	s.smtpLn.Close()
	for c := range conns {
		c.Close()
	}
	s.wg.Wait()
	return s.mail.Close()
}

// AddUser makes a mailbox for address (INBOX, Sent, Drafts, Junk, Trash). Users sign in with an access token
// Config.Validate accepts for them.
func (s *Server) AddUser(address string) error {
	var b [12]byte
	_, _ = rand.Read(b[:])
	pass := hex.EncodeToString(b[:])
	if err := s.mail.AddUser(address, pass); err != nil {
		return err
	}
	s.mu.Lock()
	s.users[strings.ToLower(address)] = pass
	s.mu.Unlock()
	return nil
}

func (s *Server) password(user string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.users[strings.ToLower(user)]
	return p, ok
}

// IMAPAddr returns the IMAP server's "host:port".
func (s *Server) IMAPAddr() string { return s.imapLn.Addr().String() }

// SMTPAddr returns the SMTP server's "host:port".
func (s *Server) SMTPAddr() string { return s.smtpLn.Addr().String() }

// Profile returns a Gmail server profile with this id that points at the server: plaintext endpoints,
// credentials from each mailbox's OAuth grant.
func (s *Server) Profile(id string) *crmsync.ServerProfile {
	ep := func(addr string) crmsync.Endpoint {
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		return crmsync.Endpoint{Host: host, Port: p, Security: crmsync.SecurityPlaintext}
	}
	return &crmsync.ServerProfile{ID: id, Name: "gmailtest " + id, Kind: crmsync.ServerGmail,
		Incoming: ep(s.IMAPAddr()), Outgoing: ep(s.SMTPAddr()), CredentialSource: crmsync.CredentialsOAuthGrant}
}

// Mail returns the mailtest server that holds the mail, for Messages, Deliver and the like.
func (s *Server) Mail() *mailtest.Server { return s.mail }

// Deliver puts raw into the INBOX of address.
func (s *Server) Deliver(address string, raw []byte) error { return s.mail.Deliver(address, raw) }

// AddLabel gives the INBOX message with this Message-ID (without angle brackets) the label, as a Gmail user
// would: the message now also appears in the folder named label (created if missing), with the same
// X-GM-MSGID, and both copies list both labels.
func (s *Server) AddLabel(address, messageID, label string) error {
	msgs, err := s.mail.Messages(address, mailtest.Inbox)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if headerMessageID(m.Raw) != messageID {
			continue
		}
		if err := s.mail.CreateMailbox(address, label); err != nil && !strings.Contains(err.Error(), "exist") {
			return err
		}
		if err := s.mail.AppendAt(address, label, m.Raw, m.InternalDate); err != nil {
			return err
		}
		s.mu.Lock()
		u := strings.ToLower(address)
		if s.labels[u] == nil {
			s.labels[u] = map[string][]string{}
		}
		s.labels[u][messageID] = append(s.labels[u][messageID], imapwire.EncodeMailbox(label))
		s.mu.Unlock()
		return nil
	}
	return fmt.Errorf("gmailtest: no message <%s> in the INBOX of %s", messageID, address)
}

// SignIns returns how many sign-ins (IMAP and SMTP) succeeded with each mechanism.
func (s *Server) SignIns() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.signIns))
	for k, v := range s.signIns {
		out[k] = v
	}
	return out
}

// GmailFetches returns how many X-GM-MSGID fetches the IMAP server answered.
func (s *Server) GmailFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gmFetch
}

// Submitted returns how many messages address submitted over SMTP.
func (s *Server) Submitted(address string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent[strings.ToLower(address)])
}

// msgIDOf is the X-GM-MSGID of a message: a 63-bit hash of its Message-ID, or of its header when it has
// none.
func msgIDOf(header []byte) string {
	h := fnv.New64a()
	if id := headerMessageID(header); id != "" {
		h.Write([]byte("id:" + id))
	} else {
		h.Write(header)
	}
	return strconv.FormatUint(h.Sum64()&(1<<63-1), 10)
}

// headerMessageID returns the Message-ID of a message (or its header), without angle brackets.
func headerMessageID(raw []byte) string {
	m, err := mail.ReadMessage(bufio.NewReader(io.MultiReader(bytes.NewReader(raw), strings.NewReader("\r\n\r\n"))))
	if err != nil {
		return ""
	}
	return strings.Trim(strings.TrimSpace(m.Header.Get("Message-Id")), "<>")
}

// signIn parses an XOAUTH2 or OAUTHBEARER initial response and validates its token.
func (s *Server) signIn(ctx context.Context, mech string, ir []byte) (string, error) {
	var user, auth string
	parts := strings.Split(string(ir), "\x01")
	switch mech {
	case "XOAUTH2":
		for _, p := range parts {
			if v, ok := strings.CutPrefix(p, "user="); ok {
				user = v
			} else if v, ok := strings.CutPrefix(p, "auth="); ok {
				auth = v
			}
		}
	case "OAUTHBEARER":
		gs2, _, _ := strings.Cut(string(ir), "\x01")
		for _, f := range strings.Split(gs2, ",") {
			if v, ok := strings.CutPrefix(f, "a="); ok {
				user = v
			}
		}
		for _, p := range parts[1:] {
			if v, ok := strings.CutPrefix(p, "auth="); ok {
				auth = v
			}
		}
	default:
		return "", fmt.Errorf("unknown mechanism %s", mech)
	}
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if user == "" || !ok || token == "" {
		return "", errors.New("malformed initial response")
	}
	if _, known := s.password(user); !known {
		return "", fmt.Errorf("no user %s", user)
	}
	if err := s.cfg.Validate(ctx, strings.ToLower(user), token); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.signIns[mech]++
	s.mu.Unlock()
	return strings.ToLower(user), nil
}

// errorChallenge is Gmail's answer to a refused token.
func errorChallenge() []byte {
	b, _ := json.Marshal(map[string]string{"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})
	return b
}

var b64 = base64.StdEncoding
