package gmail_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail"
	"github.com/crmsync/crmsync/provider/gmail/gmailtest"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/schedule"
)

func TestDefaultLimits(t *testing.T) {
	for addr, want := range map[string]int{
		"ann@gmail.com": 500, "Bob@GoogleMail.com": 500, "carol@example.com": 2000,
	} {
		assert.Equal(t, want, gmail.DefaultLimits(&crmsync.Mailbox{Address: addr}).MessagesPerDay, addr)
	}
	assert.Equal(t, 100, gmail.WorkspaceLimits().RecipientsPerMessage)
	assert.Equal(t, 10000, gmail.WorkspaceLimits().RecipientsPerDay)
}

func outgoing(id, to string) *crmsync.Email {
	return &crmsync.Email{ID: id, MessageID: id + "@example.test", To: []crmsync.Address{{Email: to}}, Subject: id, TextBody: "b"}
}

// The Dialer's own count holds a message back before it reaches Gmail: a throttled error that says it was
// not submitted and when the rolling window frees; SendAllowance says the same without sending.
func TestSendingLimitHoldsBack(t *testing.T) {
	start := time.Date(2026, 3, 2, 9, 0, 30, 0, time.UTC)
	clock := schedule.NewFake(start)
	f := newFixture(t, fixtureOpts{dialer: gmail.Config{
		IMAP:   imap.Config{Clock: clock},
		Limits: func(*crmsync.Mailbox) gmail.Limits { return gmail.Limits{MessagesPerDay: 3, RecipientsPerMessage: 100} },
	}})
	ann, bob := f.mailbox("ann"), f.mailbox("bob")
	c := f.dial(ann)
	for i := range 3 {
		n, _, err := c.SendAllowance(f.ctx)
		require.NoError(t, err)
		assert.Equal(t, 3-i, n)
		_, err = c.Send(f.ctx, outgoing(fmt.Sprintf("m%d", i), bob.Address))
		require.NoError(t, err)
		clock.Advance(time.Hour)
	}
	n, next, err := c.SendAllowance(f.ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	wantFree := time.Date(2026, 3, 3, 9, 1, 0, 0, time.UTC) // the first send's minute, plus 24 hours
	assert.Equal(t, wantFree, next)

	_, err = c.Send(f.ctx, outgoing("m3", bob.Address))
	require.Error(t, err)
	assert.Equal(t, crmsync.KindThrottled, crmsync.KindOf(err))
	assert.ErrorIs(t, err, provider.ErrNotSubmitted)
	assert.ErrorIs(t, err, gmail.ErrSendingLimit)
	assert.Equal(t, wantFree.Sub(clock.Now()), crmsync.RetryAfter(err))
	assert.Equal(t, 3, f.srv.Submitted(ann.Address), "the fourth never reached the server")

	// The mailbox's limit does not pause the profile.
	th := f.dialer.NewThrottler(f.profile, clock)
	th.Observe(err)
	assert.True(t, th.(interface{ PausedUntil() time.Time }).PausedUntil().IsZero())

	clock.Set(wantFree)
	n, _, _ = c.SendAllowance(f.ctx)
	assert.Equal(t, 1, n, "the first send left the window")
	_, err = c.Send(f.ctx, outgoing("m3", bob.Address))
	require.NoError(t, err)
}

// Gmail's own refusal (mail sent by other clients counts too) is reported the same way, and holds the
// mailbox back for ServerLimitPause without asking Gmail again.
func TestServerSendingLimit(t *testing.T) {
	clock := schedule.NewFake(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	f := newFixture(t, fixtureOpts{server: gmailtest.Config{DailyLimit: 2, Clock: clock}, dialer: gmail.Config{IMAP: imap.Config{Clock: clock}}})
	ann, bob := f.mailbox("ann"), f.mailbox("bob")
	c := f.dial(ann)
	for i := range 2 {
		_, err := c.Send(f.ctx, outgoing(fmt.Sprintf("s%d", i), bob.Address))
		require.NoError(t, err)
	}
	_, err := c.Send(f.ctx, outgoing("s2", bob.Address))
	require.Error(t, err)
	assert.Equal(t, crmsync.KindThrottled, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, provider.ErrNotSubmitted)
	assert.ErrorIs(t, err, gmail.ErrSendingLimit)
	assert.Equal(t, gmail.DefaultServerLimitPause, crmsync.RetryAfter(err))
	assert.Contains(t, err.Error(), "550")

	_, err = f.dial(ann).Send(f.ctx, outgoing("s3", bob.Address))
	assert.ErrorIs(t, err, gmail.ErrSendingLimit, "held back without asking Gmail")
	n, next, _ := c.SendAllowance(f.ctx)
	assert.Zero(t, n)
	assert.Equal(t, clock.Now().Add(gmail.DefaultServerLimitPause), next)
	assert.Equal(t, 2, f.srv.Submitted(ann.Address))
}

// A refusal of the message by the server is "not submitted"; so is a failure to sign in.
func TestRefusalIsNotSubmitted(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ann := f.mailbox("ann")
	c := f.dial(ann)
	_, err := c.Send(f.ctx, outgoing("r1", "nobody@example.test")) // an unknown local user: 550 at RCPT
	require.Error(t, err)
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))

	f.oauth.Revoke(ann.Address)
	_, err = f.dial(ann).Send(f.ctx, outgoing("r2", "x@example.test"))
	require.Error(t, err)
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))
	assert.ErrorIs(t, err, provider.ErrNotSubmitted)
	assert.ErrorIs(t, err, gmail.ErrReconnect)
	n, _, _ := c.SendAllowance(f.ctx)
	assert.Equal(t, gmail.WorkspaceMessagesPerDay, n, "failed sends are not counted")
}
