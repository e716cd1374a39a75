package gmail_test

import (
	"context"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail/gmailtest"
	"github.com/crmsync/crmsync/provider/providertest"
)

// gmailtestHarness runs the provider conformance suite against the in-process stand-in, with the OAuth
// sign-in and Gmail's extensions.
type gmailtestHarness struct {
	f *fixture
}

func (h *gmailtestHarness) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	return h.f.dialer.Dial(ctx, t)
}

func (h *gmailtestHarness) Capabilities() providertest.Capabilities {
	return providertest.Capabilities{Incoming: true, Outgoing: true, Folders: true, SendDelivers: true}
}

func (h *gmailtestHarness) NewMailbox(ctx context.Context, t *testing.T) provider.Target {
	return h.f.target(h.f.mailbox("conf"))
}

func (h *gmailtestHarness) Deliver(ctx context.Context, to provider.Target, raw []byte) error {
	return h.f.srv.Deliver(to.Mailbox.Address, raw)
}

func (h *gmailtestHarness) DeliverAt(ctx context.Context, to provider.Target, raw []byte, received time.Time) error {
	return h.f.srv.Mail().DeliverAt(to.Mailbox.Address, raw, received)
}

// WithBadCredentials gives the mailbox a refresh token the authorization server does not know.
func (h *gmailtestHarness) WithBadCredentials(t provider.Target) provider.Target {
	mb := t.Mailbox.Clone()
	mb.Credentials = crmsync.Credentials{RefreshToken: "rt-revoked"}
	return provider.Target{Profile: t.Profile, Mailbox: mb}
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  gmailtest.Config
	}{
		{"gmail", gmailtest.Config{}},
		{"plain-imap", gmailtest.Config{NoGmailExtensions: true, NoSentCopies: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			providertest.RunConformance(t, &gmailtestHarness{f: newFixture(t, fixtureOpts{server: tc.cfg})})
		})
	}
}
