package imap_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	imapprov "github.com/crmsync/crmsync/provider/imap"
)

// verifyError reports whether err is a certificate verification failure.
func verifyError(err error) bool {
	var (
		ve *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
	)
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he)
}

// Certificates are verified by default: Dovecot's certificate, signed by the test CA,
// is refused by a client that does not trust that CA (an empty root pool, or the
// system's roots) and by one that expects another host name, over IMAPS, IMAP STARTTLS
// and SMTP STARTTLS alike. The error is permanent: retrying cannot fix a certificate.
func TestDovecotTLSVerifiedByDefault(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "tls")
	configs := map[string]*tls.Config{
		"empty root pool": {RootCAs: x509.NewCertPool()},
		"system roots":    nil,
		"wrong host name": {RootCAs: env.CAPool, ServerName: "mail.example.invalid"},
	}
	for name, cfg := range configs {
		for _, in := range []crmsync.Endpoint{
			testenv.Endpoint(t, env.IMAPSAddr, crmsync.SecurityTLS),
			testenv.Endpoint(t, env.IMAPAddr, crmsync.SecuritySTARTTLS),
		} {
			t.Run(name+"/"+secName(in.Security), func(t *testing.T) {
				tg := dcTarget(t, env, in, addr, env.Password)
				c, err := imapprov.NewDialer(imapprov.Config{TLSConfig: cfg}).DialConn(context.Background(), tg)
				require.NoError(t, err)
				defer c.Close()
				for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
					err := c.Test(dcCtx(t), w)
					assertKind(t, crmsync.KindPermanent, err, "Test("+w.String()+")")
					assert.True(t, verifyError(err), "Test(%s): %v is not a certificate verification error", w, err)
				}
				_, err = c.FetchIncoming(dcCtx(t), provider.FetchRequest{})
				assertKind(t, crmsync.KindPermanent, err, "FetchIncoming")
			})
		}
	}
}

// Endpoint.InsecureSkipVerify turns verification off, per endpoint: the same untrusted
// certificate is then accepted, and mail flows both ways.
func TestDovecotTLSInsecureSkipVerify(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "tlsskip")
	ids := dcDeliverN(t, env, addr, "tlsskip", 1)
	for _, in := range []crmsync.Endpoint{
		testenv.Endpoint(t, env.IMAPSAddr, crmsync.SecurityTLS),
		testenv.Endpoint(t, env.IMAPAddr, crmsync.SecuritySTARTTLS),
	} {
		t.Run(secName(in.Security), func(t *testing.T) {
			in.InsecureSkipVerify = true
			tg := dcTarget(t, env, in, addr, env.Password)
			tg.Profile.Outgoing.InsecureSkipVerify = true
			dialer := imapprov.NewDialer(imapprov.Config{TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
			c, err := dialer.DialConn(context.Background(), tg)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.Test(dcCtx(t), crmsync.Incoming))
			require.NoError(t, c.Test(dcCtx(t), crmsync.Outgoing))
			b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{})
			require.NoError(t, err)
			assert.Equal(t, ids, messageIDs(b.Emails))

			// Only the endpoint that asks skips verification.
			tg.Profile.Outgoing.InsecureSkipVerify = false
			c2, err := dialer.DialConn(context.Background(), tg)
			require.NoError(t, err)
			defer c2.Close()
			assert.NoError(t, c2.Test(dcCtx(t), crmsync.Incoming))
			assertKind(t, crmsync.KindPermanent, c2.Test(dcCtx(t), crmsync.Outgoing), "Test(outgoing) with verification")
		})
	}
}

// A security that does not match the port fails: TLS spoken to the plaintext port is a
// permanent error at once (the greeting is not a TLS record). Plaintext spoken to the
// IMAPS port meets a server waiting for a TLS handshake: with STARTTLS the client's
// STARTTLS command ends the server's patience at once (it closes the connection); with
// plaintext, the greeting never comes and the attempt ends at the profile's connection
// timeout, as a transient error that says no answer came. Neither can be told from a
// server in trouble, so both are transient (see the report for a clearer message).
func TestDovecotTLSWrongPort(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "tlsport")

	tlsToPlain := dcTarget(t, env, testenv.Endpoint(t, env.IMAPAddr, crmsync.SecurityTLS), addr, env.Password)
	err := dcConn(t, env, tlsToPlain).Test(dcCtx(t), crmsync.Incoming)
	assertKind(t, crmsync.KindPermanent, err, "IMAPS spoken to the IMAP port")
	var rh tls.RecordHeaderError
	assert.ErrorAs(t, err, &rh)

	const timeout = 500 * time.Millisecond
	toTLS := dcTarget(t, env, testenv.Endpoint(t, env.IMAPSAddr, crmsync.SecuritySTARTTLS), addr, env.Password)
	toTLS.Profile.ConnectionTimeout = timeout
	start := time.Now()
	err = dcConn(t, env, toTLS).Test(context.Background(), crmsync.Incoming)
	assertKind(t, crmsync.KindTransient, err, "STARTTLS spoken to the IMAPS port")
	assert.Less(t, time.Since(start), 10*timeout)

	toTLS.Profile.Incoming.Security = crmsync.SecurityPlaintext
	start = time.Now()
	err = dcConn(t, env, toTLS).Test(context.Background(), crmsync.Incoming)
	assertKind(t, crmsync.KindTransient, err, "plaintext spoken to the IMAPS port")
	assert.Contains(t, err.Error(), "no answer within "+timeout.String())
	assert.Less(t, time.Since(start), 10*timeout)
}
