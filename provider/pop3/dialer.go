package pop3

import (
	"context"
	"crypto/tls"
	"log/slog"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// DefaultMaxMessages is the number of messages one FetchIncoming looks at when neither
// the request nor Config.MaxMessages says.
const DefaultMaxMessages = 100

// Config configures a Dialer. Zero values take the documented defaults.
type Config struct {
	// TLSConfig is the base of every TLS connection (implicit TLS and STLS): set
	// RootCAs to trust a test server's certificate. It is cloned per connection; an
	// empty ServerName becomes the endpoint's host, and the endpoint's
	// InsecureSkipVerify is applied on top. Certificates are verified by default.
	TLSConfig *tls.Config
	// Clock dates a message that carries no date at all (no Received and no Date
	// field) with the time it was first seen. Default schedule.Real.
	Clock schedule.Clock
	// Logger receives what the provider does (sessions opened, batches fetched) at
	// debug level. Credentials are never logged. Default: discarded.
	Logger *slog.Logger
	// Outgoing opens the sender of a mailbox's outgoing email, since POP3 only reads
	// mail. When it is nil, the sender is provider/smtp's, for the profile's outgoing
	// endpoint (the same SMTP sender provider/imap uses), as long as that endpoint has
	// a host. Dial returns a *SendingConn for a target that has a sender, which
	// implements provider.OutgoingMail by delegating Send and FindSent to the sender,
	// opened on first use; else a *Conn, which does not send, and whose
	// Test(Outgoing) fails with an error wrapping crmsync.ErrNotSupported.
	//
	// POP3 has no Sent folder, so FindSent can only read a sent log the sender keeps:
	// the default SMTP sender keeps none, and its FindSent fails with an error
	// wrapping crmsync.ErrNotSupported. If a sender also has the methods
	// Test(context.Context, crmsync.Workload) error or Close() error, Test(Outgoing)
	// and Close call them.
	Outgoing func(ctx context.Context, t provider.Target) (provider.OutgoingMail, error)
	// LocalName is the host name the default SMTP sender gives in EHLO. Default
	// smtp.DefaultLocalName.
	LocalName string
	// MaxMessages bounds the messages one FetchIncoming looks at when the request's
	// Max is zero. Default DefaultMaxMessages.
	MaxMessages int
	// MaxMessageSize is the largest message FetchIncoming downloads, in bytes as the
	// server's LIST counts them; a larger message is reported in Batch.Failed, without
	// downloading it. Default DefaultMaxMessageSize.
	MaxMessageSize int64
}

// Dialer opens POP3 connections for mailboxes. It is safe for concurrent use.
type Dialer struct {
	cfg Config
	log *slog.Logger
}

var _ provider.Dialer = (*Dialer)(nil)

// NewDialer returns a Dialer with cfg's defaults applied. It does no I/O.
func NewDialer(cfg Config) *Dialer {
	if cfg.Clock == nil {
		cfg.Clock = schedule.Real{}
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = DefaultMaxMessages
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dialer{cfg: cfg, log: log}
}

// Dial returns a connection for t: a *SendingConn when t has a sender (Config.Outgoing
// is set, or the profile's outgoing endpoint has a host), else a *Conn. It does no I/O
// (see DialConn).
func (d *Dialer) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	c, err := d.DialConn(ctx, t)
	if err != nil {
		return nil, err
	}
	if d.outgoing(t) != nil {
		return &SendingConn{Conn: c}, nil
	}
	return c, nil
}

// DialConn checks the target and returns a *Conn for it. It does no I/O: each POP3
// session opens on the call that needs it, with t.Profile.Incoming, t.Credentials() and
// t.Profile.Timeout(), and its errors come from that call. A target without a profile,
// or whose incoming endpoint lacks a host or port, is a permanent error.
func (d *Dialer) DialConn(ctx context.Context, t provider.Target) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.Profile == nil {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "pop3 dial", "target has no server profile")
	}
	who := "profile " + t.Profile.ID
	log := d.log.With("profile", t.Profile.ID)
	if t.Mailbox != nil {
		who = "mailbox " + t.Mailbox.ID
		log = log.With("mailbox", t.Mailbox.ID)
	}
	if ep := t.Profile.Incoming; ep.Host == "" || ep.Port <= 0 {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "pop3 dial", "%s: the profile's incoming endpoint has no host or port", who)
	}
	return &Conn{d: d, t: t, creds: t.Credentials(), log: log, who: who}, nil
}

// tlsConfig returns the TLS configuration for ep.
func (d *Dialer) tlsConfig(ep crmsync.Endpoint) *tls.Config {
	return provider.TLSConfig(d.cfg.TLSConfig, ep)
}
