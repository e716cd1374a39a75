package gmail

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail/gmailtest"
)

// bridgeConn returns a Conn on the gmailtest stand-in, and the stand-in.
func bridgeConn(t *testing.T) (*Conn, *gmailtest.Server) {
	t.Helper()
	oauth := testenv.StartOAuth(t, testenv.OAuthConfig{})
	srv, err := gmailtest.NewServer(gmailtest.Config{Validate: func(_ context.Context, user, token string) error {
		if u, ok := oauth.Active(token); !ok || u != user {
			return errors.New("invalid token")
		}
		return nil
	}})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { srv.Close() })
	require.NoError(t, srv.AddUser("ann@example.test"))
	d, err := NewDialer(Config{OAuth2: &oauth2.Config{ClientID: oauth.ClientID, ClientSecret: oauth.ClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: oauth.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}})
	require.NoError(t, err)
	mb := &crmsync.Mailbox{ID: "mb-ann", Address: "ann@example.test", Credentials: crmsync.Credentials{RefreshToken: oauth.Grant("ann@example.test")}}
	c, err := d.DialConn(context.Background(), provider.Target{Profile: srv.Profile("g"), Mailbox: mb})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, srv
}

func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	l, err := br.ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimRight(l, "\r\n")
}

// The bridge's ports are on loopback, where any local process can connect: without the one-time secret
// nothing reaches the mailbox.
func TestBridgeWantsItsSecret(t *testing.T) {
	c, srv := bridgeConn(t)
	end := c.call(context.Background())
	defer end()

	nc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.b.imapPort()))
	require.NoError(t, err)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	assert.True(t, strings.HasPrefix(readLine(t, br), "* OK"))
	fmt.Fprintf(nc, "a1 LOGIN %s %s\r\n", bridgeUser, strings.Repeat("0", 32))
	assert.True(t, strings.HasPrefix(readLine(t, br), "a1 NO"))
	assert.Equal(t, "", readLine(t, br), "the bridge hangs up")

	sc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.b.smtpPort()))
	require.NoError(t, err)
	defer sc.Close()
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	sbr := bufio.NewReader(sc)
	assert.True(t, strings.HasPrefix(readLine(t, sbr), "220"))
	fmt.Fprintf(sc, "EHLO x\r\n")
	for l := readLine(t, sbr); strings.HasPrefix(l, "250-"); l = readLine(t, sbr) {
	}
	fmt.Fprintf(sc, "AUTH PLAIN %s\r\n", base64.StdEncoding.EncodeToString([]byte("\x00"+bridgeUser+"\x00guess")))
	assert.True(t, strings.HasPrefix(readLine(t, sbr), "535"))
	assert.Empty(t, srv.SignIns(), "no sign-in upstream")
}

// Outside a call of its Conn the bridge serves no one.
func TestBridgeIdleRefuses(t *testing.T) {
	c, _ := bridgeConn(t)
	nc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.b.imapPort()))
	require.NoError(t, err)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	assert.Equal(t, "", readLine(t, bufio.NewReader(nc)))
}

// A side command leaves provider/imap's session as it was: the next fetch works.
func TestSideCommandKeepsTheSession(t *testing.T) {
	c, srv := bridgeConn(t)
	ctx := context.Background()
	require.NoError(t, srv.Deliver("ann@example.test", []byte("From: x@example.test\r\nSubject: s\r\nMessage-ID: <s1@x>\r\n\r\nb\r\n")))
	require.NoError(t, c.Test(ctx, crmsync.Incoming))
	end := c.call(ctx)
	untagged, err := c.b.session().command(ctx, "NOOP")
	end()
	require.NoError(t, err)
	_ = untagged
	_, err = c.b.session().command(ctx, "FROB")
	var se *imapStatusError
	assert.ErrorAs(t, err, &se, "a BAD answer")
	b, err := c.FetchIncoming(ctx, provider.FetchRequest{})
	require.NoError(t, err)
	require.Len(t, b.Emails, 1)
	assert.True(t, strings.HasPrefix(b.Emails[0].ProviderID, gmPrefix))
}
