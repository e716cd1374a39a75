package gmail_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

// These tests run against a real Dovecot whose oauth2 passdb checks every access token with the test's
// authorization server (token introspection): the XOAUTH2 and OAUTHBEARER exchanges are Dovecot's own.
// Dovecot does not speak Gmail's X-GM-EXT-1, so the provider behaves as plain IMAP there.

type dovecotWorld struct {
	t       *testing.T
	ctx     context.Context
	m       *testenv.OAuthMail
	store   *memstore.Store
	dialer  *gmail.Dialer
	profile *crmsync.ServerProfile
}

func newDovecotWorld(t *testing.T, oauth testenv.OAuthConfig, cfg gmail.Config) *dovecotWorld {
	m := testenv.OAuthMailServers(t, oauth)
	w := &dovecotWorld{t: t, ctx: context.Background(), m: m, store: memstore.New()}
	cfg.OAuth2 = oauthConfig(m.OAuth)
	cfg.Tokens = gmail.StoreTokenSaver{Store: w.store}
	cfg.IMAP.TLSConfig = m.TLSConfig()
	var err error
	w.dialer, err = gmail.NewDialer(cfg)
	require.NoError(t, err)
	w.profile = &crmsync.ServerProfile{
		ID: "dovecot-oauth", Name: "Dovecot with OAuth", Kind: crmsync.ServerGmail, OwnerID: "admin",
		CredentialSource: crmsync.CredentialsOAuthGrant,
		Incoming:         testenv.Endpoint(t, m.IMAPSAddr, crmsync.SecurityTLS),
		Outgoing:         testenv.Endpoint(t, m.SMTPAddr, crmsync.SecuritySTARTTLS),
	}
	return w
}

func (w *dovecotWorld) mailbox(local string) *crmsync.Mailbox {
	addr := w.m.NewUser(local)
	return &crmsync.Mailbox{
		ID: "mb-" + local, Address: addr, ProfileID: w.profile.ID,
		Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: local}, Approval: crmsync.ApprovalApproved,
		Credentials: crmsync.Credentials{RefreshToken: w.m.OAuth.Grant(addr)},
		Incoming:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
		Outgoing:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
	}
}

func (w *dovecotWorld) incoming(mb *crmsync.Mailbox, messageID string) []*crmsync.Email {
	es, err := w.store.EmailsByMessageID(w.ctx, []string{messageID})
	require.NoError(w.t, err)
	var out []*crmsync.Email
	for _, e := range es {
		if e.MailboxID == mb.ID && e.Direction == crmsync.DirectionIncoming {
			out = append(out, e)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEngineWithDovecotOAuth is the whole story on real servers: Test & Enable signs in with XOAUTH2; an
// incoming cycle tracks a delivered message; the 2-second access token expires and the next cycle refreshes
// it (and the rotated refresh token lands in the Store); a CRM email goes out through submission with
// XOAUTH2 and is tracked by its recipient; a revoked grant disables the incoming workload with an error
// alert that asks to reconnect the account.
func TestEngineWithDovecotOAuth(t *testing.T) {
	w := newDovecotWorld(t, testenv.OAuthConfig{AccessTokenLifetime: 2 * time.Second, RotateRefreshTokens: true}, gmail.Config{})
	ann, bob := w.mailbox("ann"), w.mailbox("bob")
	eng, err := syncer.New(syncer.Config{
		Store: w.store, Dialer: w.dialer, ID: "gmail-e2e",
		Policy: schedule.Policy{Incoming: time.Second, Outgoing: time.Second,
			Backoff: schedule.Backoff{Base: time.Second, Max: time.Second}},
		PollInterval: 100 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, eng.PutProfile(w.ctx, w.profile))
	for _, mb := range []*crmsync.Mailbox{ann, bob} {
		_, err := eng.MapMailbox(w.ctx, mb, syncer.MapOptions{})
		require.NoError(t, err)
		r, err := eng.TestAndEnable(w.ctx, mb.ID)
		require.NoError(t, err)
		require.NoError(t, r.Err(), "Test & Enable of %s against Dovecot's oauth2 passdb", mb.Address)
	}
	require.NoError(t, eng.Start(w.ctx))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, eng.Stop(ctx))
	}()

	deliver := func(to *crmsync.Mailbox, id, subject string) {
		raw := fmt.Sprintf("From: client@elsewhere.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\nDate: %s\r\n\r\n%s\r\n",
			to.Address, subject, id, time.Now().Format(time.RFC1123Z), subject)
		require.NoError(t, w.m.Deliver(w.ctx, to.Address, []byte(raw)))
	}
	deliver(ann, "in-1@elsewhere.test", "first request")
	eventually(t, "ann's incoming cycle to track the message", func() bool { return len(w.incoming(ann, "in-1@elsewhere.test")) == 1 })
	first := w.incoming(ann, "in-1@elsewhere.test")[0]
	assert.Equal(t, "first request", first.Subject)
	assert.Regexp(t, `^INBOX/\d+/\d+$`, first.ProviderID, "no X-GM-EXT-1 on Dovecot: provider/imap's identity")

	// Past the access token's expiry: the next cycles sign in with a refreshed one.
	refreshed := w.m.OAuth.Refreshes(ann.Address)
	time.Sleep(2500 * time.Millisecond)
	deliver(ann, "in-2@elsewhere.test", "second request")
	eventually(t, "the message after expiry to be tracked", func() bool { return len(w.incoming(ann, "in-2@elsewhere.test")) == 1 })
	assert.Greater(t, w.m.OAuth.Refreshes(ann.Address), refreshed, "the expired access token was refreshed")
	stored, err := w.store.Mailbox(w.ctx, ann.ID)
	require.NoError(t, err)
	assert.Equal(t, w.m.OAuth.RefreshToken(ann.Address), stored.Credentials.RefreshToken, "the rotated refresh token is in the Store")
	assert.NotEqual(t, ann.Credentials.RefreshToken, stored.Credentials.RefreshToken)

	// Outgoing over SMTP submission with XOAUTH2, relayed and delivered to bob, who tracks it.
	e := &crmsync.Email{MailboxID: ann.ID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
		From: crmsync.Address{Email: ann.Address}, To: []crmsync.Address{{Email: bob.Address}},
		Subject: "Quote 2026-7", TextBody: "sent by the CRM through XOAUTH2"}
	require.NoError(t, w.store.CreateEmail(w.ctx, e))
	out, err := eng.SendEmail(w.ctx, e.ID, syncer.SendOptions{})
	require.NoError(t, err)
	eventually(t, "ann's email to be Sent", func() bool {
		got, err := w.store.Email(w.ctx, out.ID)
		return err == nil && got.Status == crmsync.EmailSent
	})
	eventually(t, "bob to track ann's email", func() bool { return len(w.incoming(bob, out.MessageID)) == 1 })
	assert.GreaterOrEqual(t, w.m.Relayed(), 1)

	// ann revokes the app's access: the next incoming cycle fails for good, with an alert to reconnect.
	w.m.OAuth.Revoke(ann.Address)
	// (A session signed in before the revocation may still read; every new sign-in is refused.)
	deliver(ann, "in-3@elsewhere.test", "after revocation")
	eventually(t, "ann's incoming workload to be disabled", func() bool {
		m, err := w.store.Mailbox(w.ctx, ann.ID)
		return err == nil && m.Incoming.Test == crmsync.TestFailed
	})
	m, err := w.store.Mailbox(w.ctx, ann.ID)
	require.NoError(t, err)
	assert.Equal(t, crmsync.KindAuth, m.Incoming.LastErrorKind)
	assert.Contains(t, m.Incoming.TestError, "reconnect the Gmail account")
	alerts, err := w.store.ListAlerts(w.ctx, crmstore.AlertQuery{MailboxID: ann.ID})
	require.NoError(t, err)
	var reconnect *crmsync.Alert
	for _, a := range alerts {
		if a.Level == crmsync.AlertError && strings.Contains(a.Message, "reconnect the Gmail account") {
			reconnect = a
		}
	}
	require.NotNil(t, reconnect, "an error alert asks to reconnect; got %v", alerts)
	bobState, err := w.store.Mailbox(w.ctx, bob.ID)
	require.NoError(t, err)
	assert.True(t, bobState.Incoming.Runnable(), "bob is not affected")
}

// OAUTHBEARER, where the configuration prefers it, is Dovecot's too.
func TestDovecotOAuthBearer(t *testing.T) {
	w := newDovecotWorld(t, testenv.OAuthConfig{}, gmail.Config{Mechanisms: []string{gmail.OAUTHBEARER}})
	ann := w.mailbox("ann")
	c, err := w.dialer.Dial(w.ctx, provider.Target{Profile: w.profile, Mailbox: ann})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Test(w.ctx, crmsync.Incoming))
	require.NoError(t, c.Test(w.ctx, crmsync.Outgoing))

	// A token for someone else is refused by Dovecot (the introspected user differs): an auth error.
	other := w.mailbox("eve")
	other.Credentials.RefreshToken = ann.Credentials.RefreshToken
	c2, err := w.dialer.Dial(w.ctx, provider.Target{Profile: w.profile, Mailbox: other})
	require.NoError(t, err)
	defer c2.Close()
	err = c2.Test(w.ctx, crmsync.Incoming)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "%v", err)
}

// dovecotHarness runs the conformance suite against the OAuth Dovecot.
type dovecotHarness struct{ w *dovecotWorld }

func (h *dovecotHarness) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	return h.w.dialer.Dial(ctx, t)
}

func (h *dovecotHarness) Capabilities() providertest.Capabilities {
	return providertest.Capabilities{Incoming: true, Outgoing: true, Folders: true, SendDelivers: true}
}

func (h *dovecotHarness) NewMailbox(ctx context.Context, t *testing.T) provider.Target {
	return provider.Target{Profile: h.w.profile, Mailbox: h.w.mailbox("conf")}
}

func (h *dovecotHarness) Deliver(ctx context.Context, to provider.Target, raw []byte) error {
	return h.w.m.Deliver(ctx, to.Mailbox.Address, raw)
}

func (h *dovecotHarness) WithBadCredentials(t provider.Target) provider.Target {
	mb := t.Mailbox.Clone()
	mb.Credentials = crmsync.Credentials{RefreshToken: "rt-unknown"}
	return provider.Target{Profile: t.Profile, Mailbox: mb}
}

func TestConformanceDovecotOAuth(t *testing.T) {
	w := newDovecotWorld(t, testenv.OAuthConfig{}, gmail.Config{IMAP: imap.Config{}})
	providertest.RunConformance(t, &dovecotHarness{w: w})
}
