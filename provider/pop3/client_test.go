package pop3_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/provider/pop3"
)

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialClient(t *testing.T, addr string) *pop3.Client {
	t.Helper()
	cl, err := pop3.Dial(ctxTimeout(t), addr)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

const stuffedMessage = "From: Bob <bob@example.test>\r\nSubject: dots\r\nMessage-ID: <dots@example.test>\r\n\r\n" +
	".hidden line\r\n.\r\n..two dots\r\nlast line\r\n"

func TestClientCommands(t *testing.T) {
	srv := newFakeServer(t)
	srv.addUser("ann", "pw")
	srv.deliver("ann", "uid-1", []byte(stuffedMessage))
	srv.deliver("ann", "uid-2", []byte("Subject: two\r\n\r\nbody\r\n"))
	ctx := ctxTimeout(t)

	cl := dialClient(t, srv.addr)
	g, err := cl.Greeting(ctx)
	require.NoError(t, err)
	assert.Equal(t, "fake POP3 ready", g)

	caps, err := cl.Capabilities(ctx)
	require.NoError(t, err)
	assert.True(t, caps.Has("uidl"))
	assert.True(t, caps.SASL("plain"))
	assert.False(t, caps.Has("STLS"))

	require.NoError(t, cl.User(ctx, "ann"))
	require.NoError(t, cl.Pass(ctx, "pw"))

	n, size, err := cl.Stat(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, int64(len(stuffedMessage)+len("Subject: two\r\n\r\nbody\r\n")), size)

	list, err := cl.List(ctx)
	require.NoError(t, err)
	assert.Equal(t, []pop3.MessageSize{{Number: 1, Size: int64(len(stuffedMessage))}, {Number: 2, Size: 22}}, list)

	uids, err := cl.Uidl(ctx)
	require.NoError(t, err)
	assert.Equal(t, []pop3.MessageUID{{Number: 1, UID: "uid-1"}, {Number: 2, UID: "uid-2"}}, uids)

	head, err := cl.Top(ctx, 1, 0)
	require.NoError(t, err)
	assert.Equal(t, "From: Bob <bob@example.test>\r\nSubject: dots\r\nMessage-ID: <dots@example.test>\r\n\r\n", string(head))

	raw, err := cl.Retr(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, stuffedMessage, string(raw), "dot-unstuffed, line ends kept")

	_, err = cl.Retr(ctx, 9)
	var perr *pop3.Error
	require.ErrorAs(t, err, &perr)
	assert.Equal(t, "RETR", perr.Command)
	assert.NoError(t, cl.Noop(ctx), "an -ERR leaves the session usable")

	require.NoError(t, cl.Dele(ctx, 2))
	require.NoError(t, cl.Rset(ctx))
	require.NoError(t, cl.Dele(ctx, 2))
	require.NoError(t, cl.Quit(ctx))
	assert.ErrorIs(t, cl.Noop(ctx), pop3.ErrClosed)
	assert.NoError(t, cl.Close(), "Close after Quit")

	cl = dialClient(t, srv.addr)
	require.NoError(t, cl.User(ctx, "ann"))
	require.NoError(t, cl.Pass(ctx, "pw"))
	n, _, err = cl.Stat(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "QUIT deleted the message marked with DELE")
}

func TestClientAuthPlain(t *testing.T) {
	srv := newFakeServer(t, func(s *fakeServer) { s.noUSER = true })
	srv.addUser("ann", "pw")
	cl := dialClient(t, srv.addr)
	require.NoError(t, cl.AuthPlain(ctxTimeout(t), "ann", "pw"))
	_, _, err := cl.Stat(ctxTimeout(t))
	assert.NoError(t, err)

	cl = dialClient(t, srv.addr)
	err = cl.AuthPlain(ctxTimeout(t), "ann", "wrong")
	var perr *pop3.Error
	require.ErrorAs(t, err, &perr)
	assert.Equal(t, "AUTH", perr.Code)
}

// TestClientResponses checks how answers are read: case, line ends, codes, listings,
// dot-stuffing, and answers that break the protocol.
func TestClientResponses(t *testing.T) {
	tests := []struct {
		name     string
		greeting string
		replies  []string
		run      func(ctx context.Context, cl *pop3.Client) error
		check    func(t *testing.T, err error)
	}{
		{
			name: "bare LF line ends and lower case", greeting: "+ok hi\n",
			replies: []string{"+ok 2 30\n"},
			run: func(ctx context.Context, cl *pop3.Client) error {
				n, size, err := cl.Stat(ctx)
				if err == nil && (n != 2 || size != 30) {
					return errors.New("wrong STAT")
				}
				return err
			},
		},
		{
			name: "-ERR with a response code", greeting: "+OK\r\n",
			replies: []string{"+OK\r\n", "-ERR [IN-USE] Mailbox locked by another session\r\n"},
			run: func(ctx context.Context, cl *pop3.Client) error {
				if err := cl.User(ctx, "ann"); err != nil {
					return err
				}
				return cl.Pass(ctx, "s3cret-pw")
			},
			check: func(t *testing.T, err error) {
				var perr *pop3.Error
				require.ErrorAs(t, err, &perr)
				assert.Equal(t, pop3.Error{Command: "PASS", Code: "IN-USE", Text: "Mailbox locked by another session"}, *perr)
				assert.NotContains(t, err.Error(), "s3cret-pw")
			},
		},
		{
			name: "listing with dot-stuffed and odd lines", greeting: "+OK\r\n",
			replies: []string{"+OK\r\n1 abc\r\n2   ..def\r\n.\r\n"},
			run: func(ctx context.Context, cl *pop3.Client) error {
				uids, err := cl.Uidl(ctx)
				if err != nil {
					return err
				}
				if len(uids) != 2 || uids[0].UID != "abc" || uids[1].UID != "..def" {
					return errors.New("wrong UIDL")
				}
				return nil
			},
		},
		{
			name: "malformed UIDL line", greeting: "+OK\r\n",
			replies: []string{"+OK\r\nx abc\r\n.\r\n"},
			run: func(ctx context.Context, cl *pop3.Client) error {
				_, err := cl.Uidl(ctx)
				return err
			},
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, pop3.ErrProtocol) },
		},
		{
			name: "line too long", greeting: "+OK\r\n",
			replies: []string{"+OK " + strings.Repeat("x", pop3.MaxLineLength) + "\r\n"},
			run:     func(ctx context.Context, cl *pop3.Client) error { return cl.Noop(ctx) },
			check:   func(t *testing.T, err error) { assert.ErrorIs(t, err, pop3.ErrProtocol) },
		},
		{
			name: "neither +OK nor -ERR", greeting: "+OK\r\n",
			replies: []string{"* BYE\r\n"},
			run:     func(ctx context.Context, cl *pop3.Client) error { return cl.Noop(ctx) },
			check:   func(t *testing.T, err error) { assert.ErrorIs(t, err, pop3.ErrProtocol) },
		},
		{
			name: "not a POP3 greeting", greeting: "220 smtp.example.test ESMTP\r\n",
			run:   func(ctx context.Context, cl *pop3.Client) error { return cl.Noop(ctx) },
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, pop3.ErrProtocol) },
		},
		{
			name: "an -ERR greeting", greeting: "-ERR [SYS/TEMP] too many connections\r\n",
			run: func(ctx context.Context, cl *pop3.Client) error { return cl.Noop(ctx) },
			check: func(t *testing.T, err error) {
				var perr *pop3.Error
				require.ErrorAs(t, err, &perr)
				assert.Equal(t, pop3.Error{Code: "SYS/TEMP", Text: "too many connections"}, *perr)
			},
		},
		{
			name: "listing cut off", greeting: "+OK\r\n",
			replies: []string{"+OK\r\n1 10\r\n" + hangUp},
			run: func(ctx context.Context, cl *pop3.Client) error {
				_, err := cl.List(ctx)
				return err
			},
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, io.ErrUnexpectedEOF) },
		},
		{
			name: "message cut off", greeting: "+OK\r\n",
			replies: []string{"+OK\r\nSubject: x\r\n\r\nhal" + hangUp},
			run: func(ctx context.Context, cl *pop3.Client) error {
				_, err := cl.Retr(ctx, 1)
				return err
			},
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, io.ErrUnexpectedEOF) },
		},
		{
			name: "message with a long line, a lone dot and a final line without CRLF", greeting: "+OK\r\n",
			replies: []string{"+OK\r\nA: b\r\n\r\n" + strings.Repeat("y", 100_000) + "\r\n..\r\n.\r\n"},
			run: func(ctx context.Context, cl *pop3.Client) error {
				raw, err := cl.Retr(ctx, 1)
				if err == nil && string(raw) != "A: b\r\n\r\n"+strings.Repeat("y", 100_000)+"\r\n.\r\n" {
					return errors.New("wrong message")
				}
				return err
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scripted(t, tc.greeting, tc.replies...)
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			cl := pop3.NewClient(nc)
			t.Cleanup(func() { cl.Close() })
			err = tc.run(ctxTimeout(t), cl)
			if tc.check == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			tc.check(t, err)
			var perr *pop3.Error
			if !errors.As(err, &perr) || perr.Command == "" {
				assert.ErrorIs(t, cl.Noop(ctxTimeout(t)), pop3.ErrClosed, "a broken connection is closed")
			}
		})
	}
}

func TestClientMaxMessageSize(t *testing.T) {
	addr, _ := scripted(t, "+OK\r\n", "+OK\r\n"+strings.Repeat("z", 5000)+"\r\n.\r\n")
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	cl := pop3.NewClient(nc)
	defer cl.Close()
	cl.MaxMessageSize = 1000
	_, err = cl.Retr(ctxTimeout(t), 1)
	assert.ErrorIs(t, err, pop3.ErrTooLarge)
	assert.ErrorIs(t, cl.Noop(ctxTimeout(t)), pop3.ErrClosed)
}

func TestClientRefusesLineBreaksInArguments(t *testing.T) {
	addr, got := scripted(t, "+OK\r\n", "+OK\r\n")
	cl := dialClient(t, addr)
	err := cl.User(ctxTimeout(t), "ann\r\nDELE 1")
	require.Error(t, err)
	cl.Close()
	assert.Empty(t, got(), "nothing was sent")
}

func TestClientContext(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		addr, _ := scripted(t, "+OK\r\n", "+OK\r\n") // never answers the second command
		cl := dialClient(t, addr)
		require.NoError(t, cl.Noop(ctxTimeout(t)))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := cl.Noop(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 5*time.Second)
		assert.ErrorIs(t, cl.Noop(ctxTimeout(t)), pop3.ErrClosed)
	})
	t.Run("cancel", func(t *testing.T) {
		addr, _ := scripted(t, "+OK\r\n", "+OK\r\n")
		cl := dialClient(t, addr)
		require.NoError(t, cl.Noop(ctxTimeout(t)))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		assert.ErrorIs(t, cl.Noop(ctx), context.Canceled)
	})
	t.Run("idle timeout", func(t *testing.T) {
		addr, _ := scripted(t, "+OK\r\n", "+OK\r\n")
		cl := dialClient(t, addr)
		cl.Timeout = 100 * time.Millisecond
		require.NoError(t, cl.Noop(ctxTimeout(t)))
		err := cl.Noop(ctxTimeout(t))
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
	})
}

func TestClientStartTLS(t *testing.T) {
	ca := newTestCA(t)
	srv := newFakeServer(t, func(s *fakeServer) { s.tlsConfig = ca.server })
	srv.addUser("ann", "pw")
	ctx := ctxTimeout(t)
	cl := dialClient(t, srv.addr)
	caps, err := cl.Capabilities(ctx)
	require.NoError(t, err)
	require.True(t, caps.Has("STLS"))
	_, isTLS := cl.TLS()
	assert.False(t, isTLS)

	require.NoError(t, cl.StartTLS(ctx, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}))
	state, isTLS := cl.TLS()
	assert.True(t, isTLS)
	assert.True(t, state.HandshakeComplete)
	caps, err = cl.Capabilities(ctx)
	require.NoError(t, err)
	assert.False(t, caps.Has("STLS"), "capabilities asked again after TLS")
	require.NoError(t, cl.User(ctx, "ann"))
	require.NoError(t, cl.Pass(ctx, "pw"))
	require.NoError(t, cl.Quit(ctx))
	assert.Equal(t, []string{"CAPA", "STLS", "CAPA", "USER", "PASS", "QUIT"}, srv.commands())

	// Without a ServerName, the certificate is checked against the host dialed.
	cl = dialClient(t, srv.addr)
	require.NoError(t, cl.StartTLS(ctx, &tls.Config{RootCAs: ca.pool}))
	cl = dialClient(t, strings.Replace(srv.addr, "127.0.0.1", "localhost", 1))
	require.NoError(t, cl.StartTLS(ctx, &tls.Config{RootCAs: ca.pool}))
	cl = dialClient(t, srv.addr)
	var verr *tls.CertificateVerificationError
	require.ErrorAs(t, cl.StartTLS(ctx, nil), &verr, "system roots do not trust the test CA")

	// Implicit TLS.
	tsrv := newFakeServer(t, func(s *fakeServer) { s.tlsConfig, s.implicitTLS = ca.server, true })
	tcl, err := pop3.DialTLS(ctx, tsrv.addr, &tls.Config{RootCAs: ca.pool})
	require.NoError(t, err, "ServerName defaults to the address's host")
	defer tcl.Close()
	_, isTLS = tcl.TLS()
	assert.True(t, isTLS)
	_, err = tcl.Capabilities(ctx)
	require.NoError(t, err)

	// An untrusted certificate.
	_, err = pop3.DialTLS(ctx, tsrv.addr, &tls.Config{ServerName: "localhost"})
	assert.ErrorAs(t, err, &verr)
}

func TestClientStartTLSInjection(t *testing.T) {
	// The server sends a second answer right after +OK to STLS, before the handshake:
	// read as if it came over TLS, it would be an injected answer.
	addr, _ := scripted(t, "+OK\r\n", "+OK begin TLS\r\n+OK injected\r\n")
	cl := dialClient(t, addr)
	err := cl.StartTLS(ctxTimeout(t), &tls.Config{ServerName: "localhost"})
	assert.ErrorIs(t, err, pop3.ErrProtocol)
}
