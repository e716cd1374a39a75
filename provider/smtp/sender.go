package smtp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailparse"
	"github.com/crmsync/crmsync/schedule"
)

// DefaultLocalName is the host name a Sender gives in EHLO when Config.LocalName is
// empty.
const DefaultLocalName = "localhost"

// minSubmissionTimeout is the least time given to a server to answer the end of DATA,
// when it may scan the message.
const minSubmissionTimeout = 2 * time.Minute

// quitWait bounds the wait for the server's answer to QUIT.
const quitWait = 5 * time.Second

// Config configures a Sender. Zero values take the documented defaults.
type Config struct {
	// Endpoint is the SMTP server: host, port, and security: implicit TLS, STARTTLS
	// (required: a server that does not offer it is a permanent error) or plaintext.
	// Certificates are verified unless the endpoint sets InsecureSkipVerify.
	Endpoint crmsync.Endpoint
	// Credentials authenticate with AUTH PLAIN, or LOGIN when the server offers only
	// that. An empty Username skips authentication: a relay that trusts the network.
	Credentials crmsync.Credentials
	// Auth, when set, makes the SASL client that authenticates each new session, in
	// place of Credentials: XOAUTH2 or OAUTHBEARER with a fresh access token, say. An
	// error it returns keeps its kind (crmsync.KindOf); an unclassified one is
	// classified like a network error (see provider.Classify).
	Auth func(ctx context.Context) (sasl.Client, error)
	// TLSConfig is the base of every TLS connection (implicit TLS and STARTTLS): set
	// RootCAs to trust a test server's certificate. It is cloned per connection; an
	// empty ServerName becomes the endpoint's host, and the endpoint's
	// InsecureSkipVerify is applied on top. Default: the system's roots.
	TLSConfig *tls.Config
	// LocalName is the host name given in EHLO. Default DefaultLocalName.
	LocalName string
	// Timeout bounds connecting, logging in and each command. The end of DATA, which a
	// server may answer only after scanning the message, gets at least two minutes.
	// Default crmsync.DefaultConnectionTimeout.
	Timeout time.Duration
	// Clock dates messages (their Date field and SendReceipt.SentAt). Default
	// schedule.Real.
	Clock schedule.Clock
	// From is the sender of an email whose From has no address: the mailbox's own
	// address, usually.
	From crmsync.Address
	// Who names the mailbox in error messages, such as "mailbox mb-1". Default: the
	// endpoint's address.
	Who string
}

// Sender submits email over SMTP for one mailbox. It keeps its SMTP session open
// between messages until Close. It is used from one goroutine at a time; Close may be
// called from any goroutine, and aborts a Send in progress.
type Sender struct {
	cfg Config

	mu     sync.Mutex // guards what follows
	sc     *smtp.Client
	busy   bool // a call is using sc
	closed bool
}

// NewSender checks cfg and returns a Sender with its defaults applied. It does no I/O:
// the session opens on the first Send or Test. An endpoint without a host or a valid
// port, an unknown security or a negative timeout is a permanent error naming the
// field.
func NewSender(cfg Config) (*Sender, error) {
	const op = "smtp config"
	switch ep := cfg.Endpoint; {
	case ep.Host == "":
		return nil, crmsync.Errorf(crmsync.KindPermanent, op, "Endpoint.Host is empty")
	case ep.Port <= 0 || ep.Port > 65535:
		return nil, crmsync.Errorf(crmsync.KindPermanent, op, "Endpoint.Port %d is not a port", ep.Port)
	case ep.Security != crmsync.SecurityTLS && ep.Security != crmsync.SecuritySTARTTLS && ep.Security != crmsync.SecurityPlaintext:
		return nil, crmsync.Errorf(crmsync.KindPermanent, op, "Endpoint.Security %d is unknown", ep.Security)
	case cfg.Timeout < 0:
		return nil, crmsync.Errorf(crmsync.KindPermanent, op, "Timeout %v is negative", cfg.Timeout)
	}
	if cfg.LocalName == "" {
		cfg.LocalName = DefaultLocalName
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = crmsync.DefaultConnectionTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = schedule.Real{}
	}
	if cfg.Who == "" {
		cfg.Who = cfg.Endpoint.Address()
	}
	return &Sender{cfg: cfg}, nil
}

// Send submits m to its To, Cc and Bcc recipients, each address once, in one SMTP
// transaction. The message is Compose's: m.From defaults to Config.From, and an empty
// m.MessageID gets a generated one in the sender's domain, which the receipt returns
// with the time the message was dated. raw is the message as submitted, for a copy to
// the Sent folder. The receipt's Copied is false: a Sender keeps no copy.
//
// An error is classified (see the package documentation) and wraps ErrNotSubmitted
// when the message definitely did not go out. A session that the server closed while
// idle is replaced once, transparently.
func (s *Sender) Send(ctx context.Context, m *crmsync.Email) (receipt provider.SendReceipt, raw []byte, err error) {
	const op = "smtp send"
	msg, rcpts, err := s.prepare(op, m)
	if err != nil {
		return receipt, nil, notSubmitted(err)
	}
	sentAt := s.cfg.Clock.Now()
	raw, err = Compose(msg, sentAt)
	if err != nil {
		return receipt, nil, notSubmitted(crmsync.Errorf(crmsync.KindPermanent, op, "%s: email %s cannot be written: %w", s.cfg.Who, m.ID, err))
	}
	for attempt := 0; ; attempt++ {
		sc, reused, err := s.session(ctx)
		if err != nil {
			return receipt, nil, notSubmitted(err)
		}
		t := &transaction{s: s, sc: sc}
		err = s.run(ctx, op, sc, t, func() error { return t.submit(op, msg.From.Email, rcpts, raw) })
		if err != nil && reused && t.stale && attempt == 0 {
			// The server closed the idle session between two messages: nothing was
			// submitted; try once on a fresh one.
			continue
		}
		if err != nil {
			return receipt, nil, err
		}
		return provider.SendReceipt{MessageID: msg.MessageID, SentAt: sentAt}, raw, nil
	}
}

// prepare returns a copy of m with its defaults, and the envelope's recipients.
func (s *Sender) prepare(op string, m *crmsync.Email) (*crmsync.Email, []string, error) {
	if m == nil {
		return nil, nil, crmsync.Errorf(crmsync.KindPermanent, op, "%s: no email", s.cfg.Who)
	}
	msg := *m
	if strings.TrimSpace(msg.From.Email) == "" {
		msg.From = s.cfg.From
	}
	if strings.TrimSpace(msg.From.Email) == "" {
		return nil, nil, crmsync.Errorf(crmsync.KindPermanent, op, "%s: email %s has no sender", s.cfg.Who, m.ID)
	}
	msg.From.Email = strings.TrimSpace(msg.From.Email)
	rcpts := envelopeRecipients(&msg)
	if len(rcpts) == 0 {
		return nil, nil, crmsync.Errorf(crmsync.KindPermanent, op, "%s: email %s has no recipients", s.cfg.Who, m.ID)
	}
	msg.MessageID = mailparse.NormalizeMessageID(msg.MessageID)
	if msg.MessageID == "" {
		msg.MessageID = newMessageID(msg.From.Email)
	}
	return &msg, rcpts, nil
}

// Test is the Test & Enable probe of outgoing email: open a session (connect, EHLO,
// STARTTLS when asked, authenticate) and end it with QUIT.
func (s *Sender) Test(ctx context.Context) error {
	if _, _, err := s.session(ctx); err != nil {
		return err
	}
	s.release(true)
	return nil
}

// Close ends the session with QUIT, if one is open, or at once when a Send is using
// it. Later calls fail with a permanent error. It is safe to call more than once.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sc, busy := s.sc, s.busy
	s.sc = nil
	s.mu.Unlock()
	switch {
	case sc == nil:
	case busy:
		sc.Close()
	default:
		quit(sc)
	}
	return nil
}

// run runs f, one transaction on sc, a session that session marked busy, and marks it
// done. If ctx ends while f runs, the connection is closed, which ends f, and the error
// says whether the message may have gone out.
func (s *Sender) run(ctx context.Context, op string, sc *smtp.Client, t *transaction, f func() error) error {
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	err := f()
	s.done()
	if !stop() {
		s.drop(sc)
		if err == nil {
			return nil // the server took the message before ctx ended
		}
		err = provider.Classify(op, ctx.Err())
		if t.dataStarted {
			return provider.Transient(op, fmt.Errorf("outcome unknown: %w", err))
		}
		return notSubmitted(err)
	}
	return err
}

// transaction is one SMTP mail transaction on a session.
type transaction struct {
	s           *Sender
	sc          *smtp.Client
	dataStarted bool // the server answered DATA with 354
	stale       bool // the session broke before MAIL was answered
}

// submit runs the transaction: MAIL, RCPT for each recipient, DATA.
func (t *transaction) submit(op, from string, rcpts []string, raw []byte) error {
	sc := t.sc
	opts := &smtp.MailOptions{Size: int64(len(raw))}
	if !isASCII(from) || !allASCII(rcpts) {
		if ok, _ := sc.Extension("SMTPUTF8"); !ok {
			return notSubmitted(crmsync.Errorf(crmsync.KindPermanent, op, "%s: the server does not accept internationalized addresses (SMTPUTF8)", t.s.cfg.Who))
		}
		opts.UTF8 = true
	}
	if err := sc.Mail(from, opts); err != nil {
		var se *smtp.SMTPError
		t.stale = !errors.As(err, &se)
		return notSubmitted(t.fail(op, err))
	}
	for _, r := range rcpts {
		if err := sc.Rcpt(r, nil); err != nil {
			return notSubmitted(t.fail(op, fmt.Errorf("recipient %s: %w", r, err)))
		}
	}
	w, err := sc.Data()
	if err != nil {
		return notSubmitted(t.fail(op, err))
	}
	t.dataStarted = true
	if _, err := w.Write(raw); err != nil {
		return t.fail(op, err)
	}
	if err := w.Close(); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// The server answered the end of the message with a refusal: it did not
			// take the message.
			return notSubmitted(t.fail(op, err))
		}
		return t.fail(op, err)
	}
	return nil
}

// fail classifies err and leaves the session ready for the next message: after a
// refusal it aborts the transaction with RSET, after anything else it drops the
// session.
func (t *transaction) fail(op string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code != 421 {
		if rerr := t.sc.Reset(); rerr != nil {
			t.s.drop(t.sc)
		}
	} else {
		t.s.drop(t.sc)
	}
	return classify(op, err, t.dataStarted)
}

// envelopeRecipients returns the addresses of To, Cc and Bcc, each once.
func envelopeRecipients(m *crmsync.Email) []string {
	seen := make(map[string]bool)
	var out []string
	for _, a := range m.Recipients() {
		addr := strings.TrimSpace(a.Email)
		key := strings.ToLower(addr)
		if key == "" || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, addr)
	}
	return out
}

// newMessageID makes a Message-ID in the sender's domain.
func newMessageID(from string) string {
	domain := "localhost"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		domain = from[i+1:]
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(time.Now().UnixNano(), 36) + "." + hex.EncodeToString(b[:]) + "@" + domain
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(l []string) bool {
	for _, s := range l {
		if !isASCII(s) {
			return false
		}
	}
	return true
}
