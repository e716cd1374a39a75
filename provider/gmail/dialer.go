package gmail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/schedule"
)

// Gmail's endpoints and the OAuth 2.0 scope its IMAP and SMTP need
// (https://developers.google.com/workspace/gmail/imap/imap-smtp).
const (
	IMAPHost = "imap.gmail.com"
	IMAPPort = 993
	SMTPHost = "smtp.gmail.com"
	SMTPPort = 465
	Scope    = "https://mail.google.com/"
)

// Defaults of Config.
const (
	DefaultRefreshMargin    = 5 * time.Minute
	DefaultServerLimitPause = time.Hour
)

// NewProfile returns a Gmail server profile: Gmail's IMAP and SMTP endpoints over implicit TLS, credentials
// from each mailbox's OAuth grant. The caller sets OwnerID and whatever else it needs.
func NewProfile(id, name string) *crmsync.ServerProfile {
	return &crmsync.ServerProfile{
		ID: id, Name: name, Kind: crmsync.ServerGmail,
		Incoming:         crmsync.Endpoint{Host: IMAPHost, Port: IMAPPort, Security: crmsync.SecurityTLS},
		Outgoing:         crmsync.Endpoint{Host: SMTPHost, Port: SMTPPort, Security: crmsync.SecurityTLS},
		CredentialSource: crmsync.CredentialsOAuthGrant,
	}
}

// Config configures a Dialer. OAuth2 is required; zero values of the other fields take the documented
// defaults.
type Config struct {
	// OAuth2 is the host's OAuth client: its ClientID, ClientSecret and Endpoint (google.Endpoint from
	// golang.org/x/oauth2/google for Gmail), with Scopes holding Scope. The Dialer refreshes access tokens
	// with it; the host uses the same value for the consent (AuthCodeURL) and the code exchange.
	OAuth2 *oauth2.Config
	// Tokens saves a refresh token the token endpoint rotated, e.g. StoreTokenSaver{Store: store}. Google
	// rarely rotates, but a rotated token that is not saved is lost when the process stops. When nil, rotated
	// tokens are kept in memory only, with a warning.
	Tokens TokenSaver
	// HTTPClient makes the token requests. Default http.DefaultClient; every request is bounded by the
	// profile's connection timeout anyway.
	HTTPClient *http.Client
	// RefreshMargin: an access token is refreshed when less than this is left of its life (at most half its
	// lifetime). Default DefaultRefreshMargin.
	RefreshMargin time.Duration
	// Mechanisms are the SASL mechanisms to sign in with, in order of preference, among XOAUTH2 and
	// OAUTHBEARER; the first that the server offers is used. Default DefaultMechanisms().
	Mechanisms []string
	// Limits returns a mailbox's sending limits. Default DefaultLimits.
	Limits func(mb *crmsync.Mailbox) Limits
	// ConnectionsPerAccount caps the IMAP connections this Dialer holds at once to one account. Default
	// ConnectionsPerAccount (15, Gmail's own limit).
	ConnectionsPerAccount int
	// ServerLimitPause is how long a mailbox's sending waits after Google refused a message for its sending
	// limit (which this Dialer's own count did not foresee: mail sent by the user's other clients counts
	// too). Default DefaultServerLimitPause.
	ServerLimitPause time.Duration
	// IMAP configures the provider/imap Dialer that does the IMAP and SMTP work (TLSConfig, Clock, Logger,
	// SentFolder, UndeliverableFolder, MaxMessages, LocalName). Its Clock and Logger serve this package
	// too: the Clock times access tokens and the sending window.
	IMAP imap.Config
}

// Dialer opens Gmail connections. One Dialer serves every Gmail profile and mailbox of an engine: it holds
// the mailboxes' access tokens and sending windows, shared by their connections. It is safe for concurrent
// use, and implements provider.ThrottlerMaker.
type Dialer struct {
	imap       *imap.Dialer
	tokens     *tokens
	quotas     *quotas
	accounts   *accountSlots
	clock      schedule.Clock
	log        *slog.Logger
	tlsBase    *tls.Config
	mechanisms []string
	limits     func(*crmsync.Mailbox) Limits
	pause      time.Duration
	localName  string

	gmext sync.Map // profile ID → bool: whether its IMAP server announced X-GM-EXT-1

	// newBase replaces the provider/imap connection and the bridge (tests only).
	newBase func(ctx context.Context, t provider.Target) (baseConn, error)
}

var (
	_ provider.Dialer         = (*Dialer)(nil)
	_ provider.ThrottlerMaker = (*Dialer)(nil)
)

// NewDialer returns a Dialer with cfg's defaults applied; it starts nothing. A nil OAuth2 or an unknown
// mechanism is an error naming the field.
func NewDialer(cfg Config) (*Dialer, error) {
	if cfg.OAuth2 == nil {
		return nil, errors.New("gmail: Config.OAuth2 is nil: the host's OAuth client is required")
	}
	if cfg.RefreshMargin <= 0 {
		cfg.RefreshMargin = DefaultRefreshMargin
	}
	if len(cfg.Mechanisms) == 0 {
		cfg.Mechanisms = DefaultMechanisms()
	}
	for _, m := range cfg.Mechanisms {
		if m != XOAUTH2 && m != OAUTHBEARER {
			return nil, fmt.Errorf("gmail: Config.Mechanisms: %q is neither XOAUTH2 nor OAUTHBEARER", m)
		}
	}
	if cfg.Limits == nil {
		cfg.Limits = DefaultLimits
	}
	if cfg.ConnectionsPerAccount <= 0 {
		cfg.ConnectionsPerAccount = ConnectionsPerAccount
	}
	if cfg.ServerLimitPause <= 0 {
		cfg.ServerLimitPause = DefaultServerLimitPause
	}
	if cfg.IMAP.Clock == nil {
		cfg.IMAP.Clock = schedule.Real{}
	}
	log := cfg.IMAP.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	localName := cfg.IMAP.LocalName
	if localName == "" {
		localName = imap.DefaultLocalName
	}
	// The screen asks X-GM-MSGID and labels on the session's side channel, which takes
	// every untagged answer that comes meanwhile: nothing else may be in flight.
	cfg.IMAP.ScreenUsesSession = true
	return &Dialer{
		imap:       imap.NewDialer(cfg.IMAP),
		tokens:     newTokens(cfg.OAuth2, cfg.HTTPClient, cfg.Tokens, cfg.IMAP.Clock, cfg.RefreshMargin, log),
		quotas:     newQuotas(),
		accounts:   newAccountSlots(cfg.ConnectionsPerAccount),
		clock:      cfg.IMAP.Clock,
		log:        log,
		tlsBase:    cfg.IMAP.TLSConfig,
		mechanisms: cfg.Mechanisms,
		limits:     cfg.Limits,
		pause:      cfg.ServerLimitPause,
		localName:  localName,
	}, nil
}

// Dial returns a *Conn for t. See DialConn.
func (d *Dialer) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	return d.DialConn(ctx, t)
}

// DialConn checks the target and returns a *Conn for it. It does no network I/O: the IMAP and SMTP sessions
// open (and the access token is refreshed) on the first call that needs them, and their errors come from
// that call. The target needs a profile and a mailbox; the mailbox's Credentials.RefreshToken is its grant
// (the profile's CredentialSource is normally crmsync.CredentialsOAuthGrant), and Credentials.Username, when
// set, the name it signs in with (default: its address). An empty endpoint host means Gmail's.
func (d *Dialer) DialConn(ctx context.Context, t provider.Target) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.Profile == nil || t.Mailbox == nil {
		return nil, errorf(crmsync.KindPermanent, "gmail dial", "the target needs a server profile and a mailbox")
	}
	if t.Credentials().RefreshToken == "" {
		return nil, noGrant(t.Mailbox)
	}
	prof := *t.Profile
	if prof.Incoming.Host == "" {
		prof.Incoming = crmsync.Endpoint{Host: IMAPHost, Port: IMAPPort, Security: crmsync.SecurityTLS}
	}
	if prof.Outgoing.Host == "" {
		prof.Outgoing = crmsync.Endpoint{Host: SMTPHost, Port: SMTPPort, Security: crmsync.SecurityTLS}
	}
	c := &Conn{
		d: d, t: provider.Target{Profile: &prof, Mailbox: t.Mailbox}, limits: d.limits(t.Mailbox),
		log: d.log.With("profile", prof.ID, "mailbox", t.Mailbox.ID), gmIDs: map[string]string{},
	}
	if d.newBase != nil {
		base, err := d.newBase(ctx, t)
		if err != nil {
			return nil, err
		}
		c.base = base
		return c, nil
	}
	b, err := newBridge(c)
	if err != nil {
		return nil, provider.Transient("gmail dial", fmt.Errorf("opening the loopback bridge: %w", err))
	}
	// provider/imap sees the bridge as its server, and the bridge's secret as its password.
	bprof := prof
	bprof.Incoming = crmsync.Endpoint{Host: "127.0.0.1", Port: b.imapPort(), Security: crmsync.SecurityPlaintext}
	bprof.Outgoing = crmsync.Endpoint{Host: "127.0.0.1", Port: b.smtpPort(), Security: crmsync.SecurityPlaintext}
	bprof.CredentialSource = crmsync.CredentialsFromProfile
	bprof.Credentials = crmsync.Credentials{Username: bridgeUser, Password: b.secret}
	base, err := d.imap.DialConn(ctx, provider.Target{Profile: &bprof, Mailbox: t.Mailbox})
	if err != nil {
		b.close()
		return nil, err
	}
	c.b, c.bprof, c.base = b, &bprof, base
	return c, nil
}

// tlsConfig returns the TLS configuration for ep, from Config.IMAP.TLSConfig.
func (d *Dialer) tlsConfig(ep crmsync.Endpoint) *tls.Config {
	return provider.TLSConfig(d.tlsBase, ep)
}

// noteGmailExtensions remembers whether a profile's IMAP server announced X-GM-EXT-1.
func (d *Dialer) noteGmailExtensions(profileID string, caps []string) {
	d.gmext.Store(profileID, hasCap(caps, "X-GM-EXT-1"))
}

// gmailExtensions reports what noteGmailExtensions learned of a profile, and whether it learned anything.
func (d *Dialer) gmailExtensions(profileID string) (has, known bool) {
	v, ok := d.gmext.Load(profileID)
	if !ok {
		return false, false
	}
	return v.(bool), true
}

// Refreshes returns how many times the Dialer refreshed the mailbox's access token.
func (d *Dialer) Refreshes(mailboxID string) int { return d.tokens.refreshes(mailboxID) }
