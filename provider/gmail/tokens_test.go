package gmail_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail"
)

// An access token is reused while it has more than the margin left, and refreshed after.
func TestAccessTokenRefreshedBeforeExpiry(t *testing.T) {
	f := newFixture(t, fixtureOpts{oauth: testenv.OAuthConfig{AccessTokenLifetime: 2 * time.Second}})
	ann := f.mailbox("ann")
	require.NoError(t, f.dial(ann).Test(f.ctx, crmsync.Incoming))
	require.NoError(t, f.dial(ann).Test(f.ctx, crmsync.Outgoing))
	assert.Equal(t, 1, f.dialer.Refreshes(ann.ID), "the token has more than its margin (1 s of 2 s) left")
	time.Sleep(1100 * time.Millisecond) // inside the margin now
	require.NoError(t, f.dial(ann).Test(f.ctx, crmsync.Incoming))
	assert.Equal(t, 2, f.dialer.Refreshes(ann.ID))
	assert.Equal(t, 2, f.oauth.Refreshes(ann.Address))
}

// A refresh token the endpoint rotates is saved in the mailbox through the Store; a Target read before the
// rotation (carrying the retired token) still works.
func TestRotatedRefreshTokenIsSaved(t *testing.T) {
	f := newFixture(t, fixtureOpts{oauth: testenv.OAuthConfig{RotateRefreshTokens: true, AccessTokenLifetime: 2 * time.Second}})
	ann := f.mailbox("ann")
	stale := f.target(ann)
	require.NoError(t, f.dial(ann).Test(f.ctx, crmsync.Incoming))
	saved := f.target(ann).Mailbox.Credentials.RefreshToken
	assert.NotEqual(t, ann.Credentials.RefreshToken, saved, "rotated")
	assert.Equal(t, f.oauth.RefreshToken(ann.Address), saved, "the Store holds the one to present next")

	time.Sleep(1100 * time.Millisecond)
	c, err := f.dialer.DialConn(f.ctx, stale)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Test(f.ctx, crmsync.Incoming), "a stale target uses the rotated token")
	assert.Equal(t, 2, f.oauth.Refreshes(ann.Address))
	assert.Equal(t, f.oauth.RefreshToken(ann.Address), f.target(ann).Mailbox.Credentials.RefreshToken)
}

// A rotated token whose save failed is kept in memory and saved at the next use.
func TestRotatedTokenSaveRetried(t *testing.T) {
	var mu sync.Mutex
	fail := true
	var saved []string
	saver := gmail.TokenSaverFunc(func(_ context.Context, _, token string) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("database down")
		}
		saved = append(saved, token)
		return nil
	})
	f := newFixture(t, fixtureOpts{oauth: testenv.OAuthConfig{RotateRefreshTokens: true}, dialer: gmail.Config{Tokens: saver}})
	ann := f.mailbox("ann")
	require.NoError(t, f.dial(ann).Test(f.ctx, crmsync.Incoming), "a failed save does not fail the sign-in")
	mu.Lock()
	fail = false
	mu.Unlock()
	require.NoError(t, f.dial(ann).Test(f.ctx, crmsync.Incoming))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{f.oauth.RefreshToken(ann.Address)}, saved)
	assert.Equal(t, 1, f.oauth.Refreshes(ann.Address), "saved without refreshing again")
}

// One refresh serves concurrent connections: with a rotating endpoint a second refresh with the same token
// would be refused and kill the grant.
func TestConcurrentSignInsRefreshOnce(t *testing.T) {
	f := newFixture(t, fixtureOpts{oauth: testenv.OAuthConfig{RotateRefreshTokens: true}})
	ann := f.mailbox("ann")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := f.dialer.DialConn(f.ctx, f.target(ann))
			if err == nil {
				err = c.Test(f.ctx, crmsync.Incoming)
				c.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, 1, f.oauth.Refreshes(ann.Address))
}

func TestRevokedGrantAsksToReconnect(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	require.NoError(t, f.dial(ann).Test(f.ctx, crmsync.Incoming))
	f.oauth.Revoke(ann.Address) // the cached access token dies with the grant
	for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
		err := f.dial(ann).Test(f.ctx, w)
		require.Error(t, err)
		assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "%v", err)
		assert.ErrorIs(t, err, gmail.ErrReconnect)
		assert.Contains(t, err.Error(), "reconnect the Gmail account")
		assert.Contains(t, err.Error(), "invalid_grant")
	}
}

func TestNoRefreshToken(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	tg := f.target(ann)
	tg.Mailbox.Credentials.RefreshToken = ""
	_, err := f.dialer.Dial(f.ctx, tg)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))
	assert.ErrorIs(t, err, gmail.ErrReconnect)
}

// The token endpoint's failures, by kind: down or 5xx transient, 429 throttled with its Retry-After (and
// for the whole profile: the OAuth client is shared), a refused client permanent.
func TestTokenEndpointFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prepare    func(f *fixture)
		kind       crmsync.Kind
		retryAfter time.Duration
	}{
		{"503", func(f *fixture) { f.oauth.FailTokenRequests(http.StatusServiceUnavailable, 0, 1) }, crmsync.KindTransient, 0},
		{"500", func(f *fixture) { f.oauth.FailTokenRequests(http.StatusInternalServerError, 0, 1) }, crmsync.KindTransient, 0},
		{"429", func(f *fixture) { f.oauth.FailTokenRequests(http.StatusTooManyRequests, 90*time.Second, 1) }, crmsync.KindThrottled, 90 * time.Second},
		{"down", func(f *fixture) { f.oauth.Close() }, crmsync.KindTransient, 0},
		{"wrong secret", func(f *fixture) { f.dialer = mustDialer(t, f, "not-the-secret") }, crmsync.KindPermanent, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{})
			ann := f.mailbox("ann")
			tc.prepare(f)
			err := f.dial(ann).Test(f.ctx, crmsync.Incoming)
			require.Error(t, err)
			assert.Equal(t, tc.kind, crmsync.KindOf(err), "%v", err)
			assert.Equal(t, tc.retryAfter, crmsync.RetryAfter(err))
			assert.Contains(t, err.Error(), ann.ID)

			// The profile's throttler pauses everyone for the endpoint's 429 only.
			th := f.dialer.NewThrottler(f.profile, nil).(interface{ PausedUntil() time.Time })
			th.(provider.Throttler).Observe(err)
			assert.Equal(t, tc.kind == crmsync.KindThrottled, !th.PausedUntil().IsZero())
		})
	}
}

func mustDialer(t *testing.T, f *fixture, secret string) *gmail.Dialer {
	cfg := oauthConfig(f.oauth)
	cfg.ClientSecret = secret
	d, err := gmail.NewDialer(gmail.Config{OAuth2: cfg})
	require.NoError(t, err)
	return d
}

func TestOAuthBearer(t *testing.T) {
	f := newFixture(t, fixtureOpts{dialer: gmail.Config{Mechanisms: []string{gmail.OAUTHBEARER}}})
	ann, bob := f.mailbox("ann"), f.mailbox("bob")
	c := f.dial(ann)
	require.NoError(t, c.Test(f.ctx, crmsync.Incoming))
	_, err := c.Send(f.ctx, &crmsync.Email{ID: "e", MessageID: "ob@example.test", To: []crmsync.Address{{Email: bob.Address}}, Subject: "s", TextBody: "b"})
	require.NoError(t, err)
	assert.Equal(t, 2, f.srv.SignIns()[gmail.OAUTHBEARER])
	assert.Zero(t, f.srv.SignIns()[gmail.XOAUTH2])
}

func TestNewDialerChecksConfig(t *testing.T) {
	_, err := gmail.NewDialer(gmail.Config{})
	assert.ErrorContains(t, err, "OAuth2")
	_, err = gmail.NewDialer(gmail.Config{OAuth2: oauthConfig(testenv.StartOAuth(t, testenv.OAuthConfig{})), Mechanisms: []string{"PLAIN"}})
	assert.ErrorContains(t, err, "Mechanisms")
}
