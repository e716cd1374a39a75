package smtp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/mailparse"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/provider/smtp"
	"github.com/crmsync/crmsync/schedule"
)

const (
	ann   = "ann@example.test"
	annPW = "ann-pw"
	bob   = "bob@example.test"
)

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mailServer starts an in-process submission server with the users ann and bob.
func mailServer(t *testing.T, cfg mailtest.Config) *mailtest.Server {
	t.Helper()
	srv, err := mailtest.NewServer(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.AddUser(ann, annPW))
	require.NoError(t, srv.AddUser(bob, "bob-pw"))
	require.NoError(t, srv.Start())
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return srv
}

func newSender(t *testing.T, cfg smtp.Config) *smtp.Sender {
	t.Helper()
	s, err := smtp.NewSender(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func annConfig(srv *mailtest.Server) smtp.Config {
	return smtp.Config{
		Endpoint:    srv.Profile("p").Outgoing,
		Credentials: crmsync.Credentials{Username: ann, Password: annPW},
		TLSConfig:   &tls.Config{RootCAs: srv.RootCAs()},
		From:        crmsync.Address{Email: ann},
		Who:         "mailbox mb-ann",
	}
}

func TestNewSenderChecksTheConfig(t *testing.T) {
	ok := crmsync.Endpoint{Host: "smtp.example.test", Port: 587, Security: crmsync.SecuritySTARTTLS}
	cases := map[string]smtp.Config{
		"no host":          {Endpoint: crmsync.Endpoint{Port: 25}},
		"no port":          {Endpoint: crmsync.Endpoint{Host: "x"}},
		"port too large":   {Endpoint: crmsync.Endpoint{Host: "x", Port: 70000}},
		"unknown security": {Endpoint: crmsync.Endpoint{Host: "x", Port: 25, Security: 9}},
		"negative timeout": {Endpoint: ok, Timeout: -time.Second},
	}
	for name, cfg := range cases {
		_, err := smtp.NewSender(cfg)
		assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%s: %v", name, err)
	}
	s, err := smtp.NewSender(smtp.Config{Endpoint: ok})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is safe twice, and before any use")
}

func TestSend(t *testing.T) {
	for _, mode := range []struct {
		name string
		tls  mailtest.TLSMode
	}{{"plaintext", mailtest.NoTLS}, {"STARTTLS", mailtest.StartTLS}, {"implicit TLS", mailtest.ImplicitTLS}} {
		t.Run(mode.name, func(t *testing.T) {
			srv := mailServer(t, mailtest.Config{TLS: mode.tls})
			clock := schedule.NewFake(time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC))
			cfg := annConfig(srv)
			cfg.Clock = clock
			s := newSender(t, cfg)

			m := &crmsync.Email{
				ID: "e1", MessageID: "<crm-1@crm.example>",
				To:      []crmsync.Address{{Name: "Bob", Email: bob}},
				Bcc:     []crmsync.Address{{Email: "ANN@example.test"}, {Email: bob}},
				Subject: "Angebot", TextBody: "Hallo",
			}
			r, raw, err := s.Send(ctxTimeout(t), m)
			require.NoError(t, err)
			assert.Equal(t, "crm-1@crm.example", r.MessageID)
			assert.True(t, r.SentAt.Equal(clock.Now()))
			assert.False(t, r.Copied)
			assert.Equal(t, "<crm-1@crm.example>", m.MessageID, "the caller's email is not changed")
			assert.Equal(t, 1, srv.SMTPAccepted(), "one submission for all recipients")

			e, err := mailparse.Parse(raw, mailparse.Options{})
			require.NoError(t, err)
			assert.Equal(t, crmsync.Address{Email: ann}, e.From, "Config.From is the default sender")
			assert.True(t, e.SentAt.Equal(clock.Now()))
			assert.Empty(t, e.Bcc)

			for _, who := range []string{ann, bob} {
				msgs, err := srv.Messages(who, "INBOX")
				require.NoError(t, err)
				require.Len(t, msgs, 1, "%s gets one copy, however often it is named", who)
				assert.NotContains(t, string(msgs[0].Raw), "Bcc")
			}

			_, _, err = s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}, TextBody: "again"})
			require.NoError(t, err)
			assert.Equal(t, 2, srv.SMTPAccepted())
		})
	}
}

func TestSendDefaults(t *testing.T) {
	srv := mailServer(t, mailtest.Config{})
	s := newSender(t, annConfig(srv))
	r, raw, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}, TextBody: "plain"})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(r.MessageID, "@example.test"), "a Message-ID in the sender's domain: %s", r.MessageID)
	assert.Contains(t, string(raw), "Message-Id: <"+r.MessageID+">")
	assert.Contains(t, string(raw), "From: <"+ann+">")
	assert.Contains(t, string(raw), "Content-Type: text/plain; charset=utf-8")
}

func TestSendRefused(t *testing.T) {
	srv := mailServer(t, mailtest.Config{})
	s := newSender(t, annConfig(srv))
	noFrom := newSender(t, smtp.Config{Endpoint: srv.Profile("p").Outgoing})
	cases := []struct {
		name string
		s    *smtp.Sender
		m    *crmsync.Email
	}{
		{"unknown recipient", s, &crmsync.Email{To: []crmsync.Address{{Email: "nobody@example.test"}}}},
		{"one unknown recipient among others", s, &crmsync.Email{To: []crmsync.Address{{Email: bob}, {Email: "nobody@example.test"}}}},
		{"no recipients", s, &crmsync.Email{To: []crmsync.Address{{Name: "no address"}}}},
		{"no sender", noFrom, &crmsync.Email{To: []crmsync.Address{{Email: bob}}}},
		{"nil", s, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.s.Send(ctxTimeout(t), tc.m)
			assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
			assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
		})
	}
	assert.Zero(t, srv.SMTPAccepted())
	// The session survives a refused recipient.
	_, _, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	require.NoError(t, err)
}

func TestSendLoginMechanism(t *testing.T) {
	srv := mailServer(t, mailtest.Config{SMTPAuthMechanisms: []string{"LOGIN"}})
	s := newSender(t, annConfig(srv))
	_, _, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	require.NoError(t, err)
	assert.Equal(t, 1, srv.SMTPAccepted())
}

func TestSendWrongPassword(t *testing.T) {
	srv := mailServer(t, mailtest.Config{})
	cfg := annConfig(srv)
	cfg.Credentials.Password = "Wrong-Password-42"
	s := newSender(t, cfg)
	_, _, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
	assert.NotContains(t, err.Error(), "Wrong-Password-42", "the password is never in an error")
	assert.Contains(t, err.Error(), "mailbox mb-ann")
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(s.Test(ctxTimeout(t))))
	assert.Zero(t, srv.SMTPAccepted())
}

// Config.Auth replaces the credentials: a Gmail provider plugs XOAUTH2 in this way.
func TestSendSASLFactory(t *testing.T) {
	srv := mailServer(t, mailtest.Config{})
	cfg := annConfig(srv)
	cfg.Credentials = crmsync.Credentials{}
	var calls atomic.Int32
	cfg.Auth = func(ctx context.Context) (sasl.Client, error) {
		calls.Add(1)
		return sasl.NewPlainClient("", ann, annPW), nil
	}
	s := newSender(t, cfg)
	require.NoError(t, s.Test(ctxTimeout(t)))
	_, _, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	require.NoError(t, err)
	assert.Equal(t, int32(2), calls.Load(), "once per session")

	cfg.Auth = func(context.Context) (sasl.Client, error) {
		return nil, crmsync.Errorf(crmsync.KindAuth, "oauth", "the grant was revoked")
	}
	_, _, err = newSender(t, cfg).Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err), "the factory's kind is kept: %v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
}

func TestSendUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ep := crmsync.Endpoint{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Security: crmsync.SecurityPlaintext}
	require.NoError(t, ln.Close())
	s := newSender(t, smtp.Config{Endpoint: ep, From: crmsync.Address{Email: ann}})
	_, _, err = s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
}

func TestSendTLSVerified(t *testing.T) {
	srv := mailServer(t, mailtest.Config{TLS: mailtest.StartTLS})
	cfg := annConfig(srv)
	cfg.TLSConfig = nil // the system's roots do not trust the test server
	_, _, err := newSender(t, cfg).Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
	var verr *tls.CertificateVerificationError
	assert.ErrorAs(t, err, &verr)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)

	cfg.Endpoint.InsecureSkipVerify = true
	_, _, err = newSender(t, cfg).Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.NoError(t, err, "the endpoint may turn verification off")
}

func TestClose(t *testing.T) {
	srv := mailServer(t, mailtest.Config{})
	s := newSender(t, annConfig(srv))
	_, _, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, _, err = s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
	assert.Error(t, s.Test(ctxTimeout(t)))
}

// sendScripted runs one Send against a fake server scripted to fail in one place, and
// returns its error.
func sendScripted(t *testing.T, script func(conn int, line string) string) (*fakeServer, error) {
	t.Helper()
	srv := newFakeServer(t, script)
	s := newSender(t, smtp.Config{
		Endpoint: srv.endpoint(), Credentials: crmsync.Credentials{Username: ann, Password: annPW},
		From: crmsync.Address{Email: ann}, Timeout: 5 * time.Second,
	})
	_, _, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}, {Email: "carol@example.test"}}, TextBody: "x"})
	return srv, err
}

// TestSendFailures checks what each failure tells the engine: the kind, and whether
// the message definitely did not go out (ErrNotSubmitted) or may have (outcome
// unknown).
func TestSendFailures(t *testing.T) {
	at := func(prefix, reply string) func(int, string) string {
		return func(_ int, line string) string {
			if strings.HasPrefix(line, prefix) && (prefix != "" || line == "") {
				return reply
			}
			return ""
		}
	}
	cases := []struct {
		name         string
		script       func(int, string) string
		kind         crmsync.Kind
		notSubmitted bool
	}{
		{"busy at the greeting", at("", "421 4.7.0 Too many connections, try again later"), crmsync.KindThrottled, true},
		{"dropped at the greeting", at("", drop), crmsync.KindTransient, true},
		{"login refused", at("AUTH", "535 5.7.8 Authentication credentials invalid"), crmsync.KindAuth, true},
		{"sender refused", at("MAIL", "550 5.7.1 Sender not allowed"), crmsync.KindPermanent, true},
		{"rate limited at MAIL", at("MAIL", "451 4.7.1 Rate limit exceeded"), crmsync.KindThrottled, true},
		{"first recipient refused", at("RCPT TO:<bob", "550 5.1.1 No such user"), crmsync.KindPermanent, true},
		{"a later recipient deferred", at("RCPT TO:<carol", "452 4.2.2 Mailbox full"), crmsync.KindTransient, true},
		{"dropped at a recipient", at("RCPT TO:<carol", drop), crmsync.KindTransient, true},
		{"DATA refused", at("DATA", "554 5.5.1 No valid recipients"), crmsync.KindPermanent, true},
		{"dropped at DATA", at("DATA", drop), crmsync.KindTransient, true},
		{"content refused", at(".", "554 5.7.1 Message rejected as spam"), crmsync.KindPermanent, true},
		{"content deferred", at(".", "451 4.3.0 Try again"), crmsync.KindTransient, true},
		{"dropped after the message: outcome unknown", at(".", drop), crmsync.KindTransient, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := sendScripted(t, tc.script)
			require.Error(t, err)
			assert.Equal(t, tc.kind.String(), crmsync.KindOf(err).String(), "%v", err)
			assert.Equal(t, tc.notSubmitted, errors.Is(err, smtp.ErrNotSubmitted), "%v", err)
			if !tc.notSubmitted {
				assert.Contains(t, err.Error(), "outcome unknown")
			}
			if _, _, accepted := srv.stats(); tc.notSubmitted {
				assert.Zero(t, accepted)
			}
		})
	}
}

// The session stays open between messages; one the server closed while idle is
// replaced once, without an error, since nothing was submitted on it.
func TestSendSessions(t *testing.T) {
	var mails atomic.Int32
	srv := newFakeServer(t, func(conn int, line string) string {
		if conn == 1 && verb(line) == "MAIL" && mails.Add(1) == 3 {
			return drop // the server went away between two messages
		}
		return ""
	})
	s := newSender(t, smtp.Config{Endpoint: srv.endpoint(), From: crmsync.Address{Email: ann}})
	m := &crmsync.Email{To: []crmsync.Address{{Email: bob}}}
	for i := 0; i < 2; i++ {
		_, _, err := s.Send(ctxTimeout(t), m)
		require.NoError(t, err)
	}
	conns, _, accepted := srv.stats()
	assert.Equal(t, 1, conns, "one session for both messages")
	assert.Equal(t, 2, accepted)

	_, _, err := s.Send(ctxTimeout(t), m)
	require.NoError(t, err, "a fresh session took the message")
	conns, verbs, accepted := srv.stats()
	assert.Equal(t, 2, conns)
	assert.Equal(t, 3, accepted)
	assert.Equal(t, 4, strings.Count(strings.Join(verbs, " "), "MAIL"))

	require.NoError(t, s.Close())
	_, verbs, _ = srv.stats()
	assert.Equal(t, "QUIT", verbs[len(verbs)-1], "Close says QUIT")
}

// A context that ends while the message is being sent leaves the outcome unknown; one
// that ends before leaves it not submitted.
func TestSendCanceled(t *testing.T) {
	srv := newFakeServer(t, func(_ int, line string) string {
		if line == "." {
			return hang
		}
		return ""
	})
	s := newSender(t, smtp.Config{Endpoint: srv.endpoint(), From: crmsync.Address{Email: ann}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err := s.Send(ctx, &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
	assert.NotErrorIs(t, err, smtp.ErrNotSubmitted)
	assert.Contains(t, err.Error(), "outcome unknown")

	srv = newFakeServer(t, func(_ int, line string) string {
		if verb(line) == "RCPT" {
			return hang
		}
		return ""
	})
	s = newSender(t, smtp.Config{Endpoint: srv.endpoint(), From: crmsync.Address{Email: ann}})
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, _, err = s.Send(ctx, &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
}

// STARTTLS asked of a server that does not offer it is refused, never skipped.
func TestSendSTARTTLSRequired(t *testing.T) {
	srv := newFakeServer(t, nil)
	ep := srv.endpoint()
	ep.Security = crmsync.SecuritySTARTTLS
	s := newSender(t, smtp.Config{Endpoint: ep, From: crmsync.Address{Email: ann}})
	_, _, err := s.Send(ctxTimeout(t), &crmsync.Email{To: []crmsync.Address{{Email: bob}}})
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err), "%v", err)
	assert.ErrorIs(t, err, smtp.ErrNotSubmitted)
	_, verbs, _ := srv.stats()
	assert.NotContains(t, verbs, "MAIL")
	assert.NotContains(t, verbs, "AUTH", "no credentials over plaintext")
}
