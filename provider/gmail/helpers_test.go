package gmail_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail"
	"github.com/crmsync/crmsync/provider/gmail/gmailtest"
)

// fixture is an OAuth server, the gmailtest stand-in that trusts it, a Store and a Dialer: everything in
// process, so it runs under -short.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	oauth   *testenv.OAuthServer
	srv     *gmailtest.Server
	store   *memstore.Store
	dialer  *gmail.Dialer
	profile *crmsync.ServerProfile
}

type fixtureOpts struct {
	oauth  testenv.OAuthConfig
	server gmailtest.Config
	dialer gmail.Config
}

func oauthConfig(s *testenv.OAuthServer) *oauth2.Config {
	return &oauth2.Config{
		ClientID: s.ClientID, ClientSecret: s.ClientSecret, Scopes: []string{gmail.Scope},
		Endpoint: oauth2.Endpoint{AuthURL: s.AuthURL, TokenURL: s.TokenURL, AuthStyle: oauth2.AuthStyleInParams}, // as google.Endpoint
	}
}

// validator checks tokens as Dovecot's oauth2 passdb does: active, and the user's own.
func validator(s *testenv.OAuthServer) func(ctx context.Context, user, token string) error {
	return func(_ context.Context, user, token string) error {
		u, ok := s.Active(token)
		if !ok || !strings.EqualFold(u, user) {
			return errors.New("invalid token")
		}
		return nil
	}
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), store: memstore.New()}
	f.oauth = testenv.StartOAuth(t, o.oauth)
	o.server.Validate = validator(f.oauth)
	srv, err := gmailtest.NewServer(o.server)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { srv.Close() })
	f.srv = srv
	o.dialer.OAuth2 = oauthConfig(f.oauth)
	if o.dialer.Tokens == nil {
		o.dialer.Tokens = gmail.StoreTokenSaver{Store: f.store}
	}
	f.dialer, err = gmail.NewDialer(o.dialer)
	require.NoError(t, err)
	f.profile = srv.Profile("gmail")
	f.profile.OwnerID = "admin"
	require.NoError(t, f.store.PutProfile(f.ctx, f.profile))
	return f
}

var seq atomic.Int64

// mailbox adds a user to the server, grants the app access, and maps a mailbox holding the grant.
func (f *fixture) mailbox(local string) *crmsync.Mailbox {
	f.t.Helper()
	n := seq.Add(1)
	addr := fmt.Sprintf("%s%d@example.test", local, n)
	require.NoError(f.t, f.srv.AddUser(addr))
	m := &crmsync.Mailbox{
		ID: fmt.Sprintf("mb-%s-%d", local, n), Address: addr, ProfileID: f.profile.ID,
		Owner:       crmsync.Owner{Kind: crmsync.OwnerUser, ID: fmt.Sprintf("%s-%d", local, n)},
		Approval:    crmsync.ApprovalApproved,
		Credentials: crmsync.Credentials{RefreshToken: f.oauth.Grant(addr)},
		Incoming:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
		Outgoing:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
	}
	_, err := f.store.MapMailbox(f.ctx, m, false)
	require.NoError(f.t, err)
	return m
}

// target reads the mailbox back from the store, as the engine does before each cycle.
func (f *fixture) target(mb *crmsync.Mailbox) provider.Target {
	f.t.Helper()
	m, err := f.store.Mailbox(f.ctx, mb.ID)
	require.NoError(f.t, err)
	return provider.Target{Profile: f.profile, Mailbox: m}
}

func (f *fixture) dial(mb *crmsync.Mailbox) *gmail.Conn {
	f.t.Helper()
	c, err := f.dialer.DialConn(f.ctx, f.target(mb))
	require.NoError(f.t, err)
	f.t.Cleanup(func() { c.Close() })
	return c
}

// message returns a raw message with this Message-ID and subject.
func message(from, to, msgID, subject string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + msgID +
		">\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\n" + subject + " body\r\n")
}

// fetchAll fetches until no message remains, returning the emails and the last cursor.
func fetchAll(t *testing.T, ctx context.Context, c provider.IncomingMail, cursor []byte, folders ...string) ([]*crmsync.Email, []byte) {
	t.Helper()
	var out []*crmsync.Email
	for {
		b, err := c.FetchIncoming(ctx, provider.FetchRequest{Cursor: cursor, Folders: folders})
		require.NoError(t, err)
		out = append(out, b.Emails...)
		cursor = b.Cursor
		if !b.More {
			return out, cursor
		}
	}
}
