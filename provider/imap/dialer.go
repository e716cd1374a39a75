package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// Defaults of Config.
const (
	DefaultSentFolder          = "Sent"
	DefaultUndeliverableFolder = "Undeliverable"
	DefaultMaxMessages         = 100
	DefaultPrefetchBytes       = 8 << 20
	DefaultLocalName           = "localhost"
)

// Config configures a Dialer. Zero values take the documented defaults.
type Config struct {
	// TLSConfig is the base of every TLS connection: set RootCAs to trust a test
	// server's certificate. It is cloned per connection; ServerName defaults to the
	// endpoint's host, and the endpoint's InsecureSkipVerify is applied on top.
	TLSConfig *tls.Config
	// Clock dates sent messages. Default schedule.Real.
	Clock schedule.Clock
	// Logger receives what the provider does not report as an error (a Sent copy that
	// failed, a tracked folder that is gone). Credentials are never logged. Default:
	// discarded.
	Logger *slog.Logger
	// SentFolder is the Sent folder's name on servers that mark no mailbox \Sent; it is
	// created when missing. Default "Sent".
	SentFolder string
	// UndeliverableFolder is where MoveToFolder moves a message when asked for "" or
	// for "Undeliverable". Default "Undeliverable".
	UndeliverableFolder string
	// MaxMessages bounds the messages one FetchIncoming looks at when the request's
	// Max is zero. Default 100.
	MaxMessages int
	// LocalName is the host name given in SMTP EHLO. Default "localhost".
	LocalName string
	// PrefetchBytes bounds the bodies a connection fetches ahead of the batch being
	// read: while one batch is screened and stored, the next one's bodies arrive, as
	// long as the screen accepted every message of the last batch (an initial ingest,
	// say); they are kept while they fit in this many bytes, and the others are read
	// off the wire, dropped, and fetched again by their batch. A connection holds at most twice this ahead (an engine with 32 incoming workers,
	// half a GiB at the very most, during an initial ingest of large mailboxes; a
	// folder with no more new mail than a batch takes asks nothing ahead). Default 8
	// MiB; negative turns prefetching bodies off (headers are prefetched anyway).
	PrefetchBytes int64
	// ScreenUsesSession says that the requests' Screen functions use the connection's
	// IMAP session themselves (provider/gmail's do): the next batch is then asked for
	// only once a batch is screened, so that nothing of the Conn's is in flight while
	// a Screen runs. Otherwise it is asked for as the batch starts, which keeps the
	// server busy a little longer (about 5% of an initial ingest on two cores).
	ScreenUsesSession bool
}

// Dialer opens IMAP/SMTP connections. It is safe for concurrent use.
type Dialer struct {
	cfg Config
	log *slog.Logger
}

var _ provider.Dialer = (*Dialer)(nil)

// NewDialer returns a Dialer with cfg's defaults applied.
func NewDialer(cfg Config) *Dialer {
	if cfg.Clock == nil {
		cfg.Clock = schedule.Real{}
	}
	if cfg.SentFolder == "" {
		cfg.SentFolder = DefaultSentFolder
	}
	if cfg.UndeliverableFolder == "" {
		cfg.UndeliverableFolder = DefaultUndeliverableFolder
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = DefaultMaxMessages
	}
	if cfg.PrefetchBytes == 0 {
		cfg.PrefetchBytes = DefaultPrefetchBytes
	}
	if cfg.LocalName == "" {
		cfg.LocalName = DefaultLocalName
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dialer{cfg: cfg, log: log}
}

// Dial checks the target and returns a *Conn for it. It does no I/O: the IMAP and SMTP
// sessions open on first use, and their errors come from the call that needed them. A
// target without a profile, or whose profile lacks the endpoint host, is a permanent
// error.
func (d *Dialer) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	return d.DialConn(ctx, t)
}

// DialConn is Dial with the concrete type.
func (d *Dialer) DialConn(ctx context.Context, t provider.Target) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.Profile == nil {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "imap dial", "target has no server profile")
	}
	var who string
	if t.Mailbox != nil {
		who = "mailbox " + t.Mailbox.ID
	}
	log := d.log.With("profile", t.Profile.ID)
	if who != "" {
		log = log.With("mailbox", t.Mailbox.ID)
	}
	return &Conn{d: d, t: t, creds: t.Credentials(), log: log, who: who}, nil
}

// dial opens a TCP connection to ep within the profile's timeout, and completes the
// TLS handshake when the endpoint uses implicit TLS.
func (d *Dialer) dial(ctx context.Context, ep crmsync.Endpoint, timeout time.Duration, alpn string) (net.Conn, error) {
	if ep.Host == "" || ep.Port <= 0 {
		return nil, errors.New("the endpoint has no host or port")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nd := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", ep.Address())
	if err != nil {
		return nil, err
	}
	if ep.Security != crmsync.SecurityTLS {
		return nc, nil
	}
	cfg := d.tlsConfig(ep)
	if alpn != "" {
		cfg.NextProtos = []string{alpn}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// tlsConfig returns the TLS configuration for ep.
func (d *Dialer) tlsConfig(ep crmsync.Endpoint) *tls.Config {
	return provider.TLSConfig(d.cfg.TLSConfig, ep)
}

func securityName(s crmsync.Security) string {
	switch s {
	case crmsync.SecurityTLS:
		return "TLS"
	case crmsync.SecuritySTARTTLS:
		return "STARTTLS"
	case crmsync.SecurityPlaintext:
		return "plaintext"
	}
	return fmt.Sprintf("security(%d)", uint8(s))
}
