package gmail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// TokenSaver persists a mailbox's refresh token when the token endpoint rotates it (answers a refresh with a
// new refresh token). The one presented may then be dead, so the new one must be kept: until SaveRefreshToken
// succeeds the Dialer keeps it in memory and tries again at the mailbox's next token request.
type TokenSaver interface {
	SaveRefreshToken(ctx context.Context, mailboxID, refreshToken string) error
}

// TokenSaverFunc adapts a function to a TokenSaver.
type TokenSaverFunc func(ctx context.Context, mailboxID, refreshToken string) error

// SaveRefreshToken calls f.
func (f TokenSaverFunc) SaveRefreshToken(ctx context.Context, mailboxID, refreshToken string) error {
	return f(ctx, mailboxID, refreshToken)
}

// MailboxUpdater is the part of crmstore.MailboxStore that StoreTokenSaver needs.
type MailboxUpdater interface {
	UpdateMailbox(ctx context.Context, id string, fn func(*crmsync.Mailbox) error) (*crmsync.Mailbox, error)
}

// StoreTokenSaver saves rotated refresh tokens in the mailbox's Credentials.RefreshToken through the host's
// Store (any crmstore.MailboxStore), so that the next cycle's Target carries it.
type StoreTokenSaver struct {
	Store MailboxUpdater
}

// SaveRefreshToken implements TokenSaver.
func (s StoreTokenSaver) SaveRefreshToken(ctx context.Context, mailboxID, refreshToken string) error {
	_, err := s.Store.UpdateMailbox(ctx, mailboxID, func(m *crmsync.Mailbox) error {
		m.Credentials.RefreshToken = refreshToken
		return nil
	})
	return err
}

// tokens holds each mailbox's access token, refreshed before it expires. One refresh per mailbox runs at a
// time: with a rotating token endpoint, two refreshes with one refresh token would kill the grant.
type tokens struct {
	cfg    *oauth2.Config
	client *http.Client
	saver  TokenSaver
	clock  schedule.Clock
	margin time.Duration
	log    *slog.Logger

	mu      sync.Mutex
	entries map[string]*tokenEntry // by mailbox ID
}

type tokenEntry struct {
	lock chan struct{} // held while a token is read or refreshed

	refresh string          // the refresh token to present next
	retired map[string]bool // refresh tokens rotated away: a Target read before the rotation still carries one
	access  string
	expiry  time.Time     // of access, by the Dialer's clock
	margin  time.Duration // refresh this long before expiry
	unsaved bool          // refresh was rotated and SaveRefreshToken has not succeeded yet
	count   int           // refreshes done
}

func newTokens(cfg *oauth2.Config, client *http.Client, saver TokenSaver, clock schedule.Clock, margin time.Duration, log *slog.Logger) *tokens {
	return &tokens{cfg: cfg, client: client, saver: saver, clock: clock, margin: margin, log: log, entries: map[string]*tokenEntry{}}
}

func (ts *tokens) entry(mailboxID string) *tokenEntry {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	e := ts.entries[mailboxID]
	if e == nil {
		e = &tokenEntry{lock: make(chan struct{}, 1), retired: map[string]bool{}}
		ts.entries[mailboxID] = e
	}
	return e
}

// token returns an access token for the mailbox that is valid for at least the refresh margin, refreshing it
// with refreshToken (the mailbox's stored one) when needed, or always when force is set (the server refused
// the cached one). Its errors are classified; see refreshError.
func (ts *tokens) token(ctx context.Context, mb *crmsync.Mailbox, refreshToken string, force bool) (string, error) {
	e := ts.entry(mb.ID)
	select {
	case e.lock <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-e.lock }()

	if refreshToken != e.refresh && !e.retired[refreshToken] {
		// A grant this entry has not seen: the first use, or the host stored a new consent.
		e.refresh, e.retired, e.access, e.unsaved = refreshToken, map[string]bool{}, "", false
	}
	if e.unsaved {
		ts.save(ctx, mb, e)
	}
	now := ts.clock.Now()
	if !force && e.access != "" && now.Before(e.expiry.Add(-e.margin)) {
		return e.access, nil
	}
	if e.refresh == "" {
		return "", noGrant(mb)
	}
	client := ts.client
	if client == nil {
		client = http.DefaultClient
	}
	tok, err := ts.cfg.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, client), &oauth2.Token{RefreshToken: e.refresh}).Token()
	if err != nil {
		return "", refreshError(err, mb, ts.clock.Now())
	}
	if tok.AccessToken == "" {
		return "", errorf(crmsync.KindTransient, "gmail token", "%s: the token endpoint answered without an access token", who(mb))
	}
	now = ts.clock.Now()
	life := time.Hour // the lifetime Google documents, when the answer says none
	switch {
	case tok.ExpiresIn > 0:
		life = time.Duration(tok.ExpiresIn) * time.Second
	case !tok.Expiry.IsZero():
		life = time.Until(tok.Expiry)
	}
	e.access, e.expiry, e.margin = tok.AccessToken, now.Add(life), min(ts.margin, life/2)
	e.count++
	if tok.RefreshToken != "" && tok.RefreshToken != e.refresh {
		e.retired[e.refresh] = true
		e.refresh, e.unsaved = tok.RefreshToken, true
		ts.save(ctx, mb, e)
	}
	return e.access, nil
}

// save persists a rotated refresh token; a failure is logged and retried at the next token request.
func (ts *tokens) save(ctx context.Context, mb *crmsync.Mailbox, e *tokenEntry) {
	if ts.saver == nil {
		ts.log.Warn("gmail: the refresh token was rotated but Config.Tokens is nil, so it is kept in memory only",
			"mailbox", mb.ID)
		e.unsaved = false
		return
	}
	if err := ts.saver.SaveRefreshToken(ctx, mb.ID, e.refresh); err != nil {
		ts.log.Error("gmail: saving the rotated refresh token failed; it is kept in memory and saved again at the next use",
			"mailbox", mb.ID, "err", err)
		return
	}
	e.unsaved = false
}

// invalidate forgets the mailbox's access token if it is still access: the server refused it.
func (ts *tokens) invalidate(mailboxID, access string) {
	e := ts.entry(mailboxID)
	e.lock <- struct{}{}
	if e.access == access {
		e.access = ""
	}
	<-e.lock
}

// refreshes returns the number of refreshes done for the mailbox (for tests).
func (ts *tokens) refreshes(mailboxID string) int {
	e := ts.entry(mailboxID)
	e.lock <- struct{}{}
	defer func() { <-e.lock }()
	return e.count
}

func who(mb *crmsync.Mailbox) string {
	return fmt.Sprintf("mailbox %s (%s)", mb.ID, mb.Address)
}

func noGrant(mb *crmsync.Mailbox) error {
	return &crmsync.Error{Kind: crmsync.KindAuth, Op: "gmail token", Err: fmt.Errorf(
		"%s has no Google authorization (no refresh token in its credentials): %w", who(mb), ErrReconnect)}
}

// refreshError classifies a failed refresh: invalid_grant (consent revoked, password changed, grant expired)
// and invalid_scope are auth errors that need a new consent (ErrReconnect); 429 is throttled (with the
// endpoint's Retry-After); 5xx, a refused or broken connection are transient; a refused client
// (invalid_client, unauthorized_client, 401) is a permanent error of the host's OAuth configuration.
func refreshError(err error, mb *crmsync.Mailbox, now time.Time) error {
	const op = "gmail token"
	if errors.Is(err, context.Canceled) {
		return err
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return provider.Classify(op, fmt.Errorf("%s: refreshing the access token: %w", who(mb), err))
	}
	status := 0
	var retryAfter string
	if re.Response != nil {
		status, retryAfter = re.Response.StatusCode, re.Response.Header.Get("Retry-After")
	}
	desc := re.ErrorCode
	if re.ErrorDescription != "" {
		desc += ": " + re.ErrorDescription
	}
	switch {
	case re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_scope":
		return &crmsync.Error{Kind: crmsync.KindAuth, Op: op, Err: fmt.Errorf(
			"%s: Google no longer accepts this mailbox's authorization (%s): the user revoked access or the grant expired; %w",
			who(mb), desc, ErrReconnect)}
	case status == http.StatusTooManyRequests || (status == http.StatusServiceUnavailable && retryAfter != ""):
		return provider.Throttled(op, provider.ParseRetryAfter(retryAfter, now),
			fmt.Errorf("%s: the token endpoint asks to slow down (HTTP %d %s)", who(mb), status, desc))
	case status >= 500 || status == http.StatusRequestTimeout:
		return provider.Transient(op, fmt.Errorf("%s: the token endpoint failed (HTTP %d %s)", who(mb), status, desc))
	case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" || status == http.StatusUnauthorized:
		return provider.Permanent(op, fmt.Errorf(
			"%s: the token endpoint refused the OAuth client (HTTP %d %s): check the host's OAuth client ID and secret",
			who(mb), status, desc))
	}
	return provider.Permanent(op, fmt.Errorf("%s: the token endpoint refused the refresh (HTTP %d %s)", who(mb), status, desc))
}
