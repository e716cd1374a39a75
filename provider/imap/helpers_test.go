package imap_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/mailtest"
)

const (
	ann   = "ann@example.test"
	annPW = "ann-pw"
	bob   = "bob@example.test"
	bobPW = "bob-pw"
)

// harness is a started mail server with two users, and a Dialer for it.
type harness struct {
	srv    *mailtest.Server
	dialer *imap.Dialer
}

func newHarness(t *testing.T, cfg mailtest.Config) *harness {
	t.Helper()
	srv, err := mailtest.NewServer(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.AddUser(ann, annPW))
	require.NoError(t, srv.AddUser(bob, bobPW))
	require.NoError(t, srv.AddUser("carol@example.test", "carol-pw"))
	require.NoError(t, srv.AddUser("dave@example.test", "dave-pw"))
	require.NoError(t, srv.Start())
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return &harness{srv: srv, dialer: imap.NewDialer(imap.Config{})}
}

func (h *harness) target(address, password string) provider.Target {
	return provider.Target{
		Profile: h.srv.Profile("p1"),
		Mailbox: &crmsync.Mailbox{
			ID:          "mbx-" + strings.Split(address, "@")[0],
			Address:     address,
			ProfileID:   "p1",
			Credentials: crmsync.Credentials{Username: address, Password: password},
		},
	}
}

// conn dials ann's mailbox (or the given target) and closes it at the end of the test.
func (h *harness) conn(t *testing.T, targets ...provider.Target) *imap.Conn {
	t.Helper()
	tg := h.target(ann, annPW)
	if len(targets) > 0 {
		tg = targets[0]
	}
	c, err := h.dialer.DialConn(context.Background(), tg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// fetch runs one FetchIncoming on a fresh connection, as the engine does per cycle.
func (h *harness) fetch(t *testing.T, req provider.FetchRequest) *provider.Batch {
	t.Helper()
	c := h.conn(t)
	b, err := c.FetchIncoming(context.Background(), req)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	return b
}

// deliver puts n simple messages into ann's INBOX, numbered from first.
func (h *harness) deliver(t *testing.T, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		require.NoError(t, h.srv.Deliver(ann, simple(i)))
	}
}

func simple(i int) []byte {
	return []byte(fmt.Sprintf("From: Bob <bob@example.test>\r\nTo: ann@example.test\r\n"+
		"Subject: message %d\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\nMessage-ID: <m%d@example.test>\r\n"+
		"\r\nbody of message %d\r\n", i, i, i))
}

func messageIDs(emails []*crmsync.Email) []string {
	out := make([]string, len(emails))
	for i, e := range emails {
		out[i] = e.MessageID
	}
	return out
}

func ids(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m%d@example.test", from+i)
	}
	return out
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
