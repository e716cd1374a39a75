package imap_test

// Tests against the real Dovecot and OpenSMTPD that internal/testenv starts
// (scripts/mailservers.sh): the conformance suite over IMAPS, IMAP+STARTTLS and plaintext
// IMAP, and, in the other *_dovecot_test.go files, error mapping, TLS verification,
// CONDSTORE, SPECIAL-USE and round trips. They skip under -short.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	imapprov "github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/providertest"
)

func TestMain(m *testing.M) { testenv.RunMain(m) }

// TestDovecotConformance runs the provider conformance suite against Dovecot (incoming,
// folders) and Dovecot's submission service relaying through OpenSMTPD (outgoing), with
// certificates verified against the test CA, in each of the three connection securities.
func TestDovecotConformance(t *testing.T) {
	env := testenv.MailServers(t)
	for _, tc := range []struct {
		name     string
		addr     string
		security crmsync.Security
	}{
		{"IMAPS", env.IMAPSAddr, crmsync.SecurityTLS},
		{"STARTTLS", env.IMAPAddr, crmsync.SecuritySTARTTLS},
		{"Plaintext", env.IMAPAddr, crmsync.SecurityPlaintext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newDovecotHarness(t, env, testenv.Endpoint(t, tc.addr, tc.security))
			providertest.RunConformance(t, h)
		})
	}
}

// dovecotHarness is a providertest.Harness (and DatedDeliverer and BadCredentialer) for
// the real servers: every mailbox is a fresh Dovecot user.
type dovecotHarness struct {
	env      *testenv.Env
	dialer   *imapprov.Dialer
	incoming crmsync.Endpoint
}

var (
	_ providertest.Harness         = (*dovecotHarness)(nil)
	_ providertest.DatedDeliverer  = (*dovecotHarness)(nil)
	_ providertest.BadCredentialer = (*dovecotHarness)(nil)
)

func newDovecotHarness(t *testing.T, env *testenv.Env, incoming crmsync.Endpoint) *dovecotHarness {
	t.Helper()
	return &dovecotHarness{
		env:      env,
		dialer:   imapprov.NewDialer(imapprov.Config{TLSConfig: env.TLSConfig()}),
		incoming: incoming,
	}
}

func (h *dovecotHarness) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	return h.dialer.Dial(ctx, t)
}

func (h *dovecotHarness) Capabilities() providertest.Capabilities {
	return providertest.Capabilities{Incoming: true, Outgoing: true, Folders: true, SendDelivers: true}
}

// NewMailbox adds a Dovecot user; its profile reads over the harness's endpoint and
// submits on the submission port with STARTTLS.
func (h *dovecotHarness) NewMailbox(ctx context.Context, t *testing.T) provider.Target {
	t.Helper()
	addr := h.env.AddUser(t, "conf")
	return dcTarget(t, h.env, h.incoming, addr, h.env.Password)
}

// Deliver hands raw to Dovecot's LMTP server for the target's address: when the server
// answers the end of DATA, the message is in the INBOX.
func (h *dovecotHarness) Deliver(ctx context.Context, to provider.Target, raw []byte) error {
	return h.env.Deliver(ctx, to.Mailbox.Address, raw)
}

// DeliverAt APPENDs raw to the INBOX with received as its INTERNALDATE.
func (h *dovecotHarness) DeliverAt(ctx context.Context, to provider.Target, raw []byte, received time.Time) error {
	return imapAppend(ctx, h.env, to.Mailbox.Credentials, "INBOX", raw, received)
}

func (h *dovecotHarness) WithBadCredentials(t provider.Target) provider.Target {
	mb := *t.Mailbox
	mb.Credentials.Password = "not-" + mb.Credentials.Password
	t.Mailbox = &mb
	return t
}

// dcTarget returns the target of a Dovecot user: incoming on in, outgoing on the
// submission port with STARTTLS.
func dcTarget(t testing.TB, env *testenv.Env, in crmsync.Endpoint, addr, password string) provider.Target {
	t.Helper()
	local, _, _ := strings.Cut(addr, "@")
	return provider.Target{
		Profile: &crmsync.ServerProfile{
			ID: "dovecot", Name: "Dovecot", Kind: crmsync.ServerIMAP, OwnerID: "admin",
			Incoming: in,
			Outgoing: testenv.Endpoint(t, env.SMTPAddr, crmsync.SecuritySTARTTLS),
		},
		Mailbox: &crmsync.Mailbox{
			ID: "mb-" + local, Address: addr, ProfileID: "dovecot",
			Owner:       crmsync.Owner{Kind: crmsync.OwnerUser, ID: local},
			Approval:    crmsync.ApprovalApproved,
			Credentials: crmsync.Credentials{Username: addr, Password: password},
		},
	}
}

// imapLogin opens a plaintext IMAP session of creds on env's IMAP port, for test set-up
// and inspection behind the provider's back.
func imapLogin(ctx context.Context, env *testenv.Env, creds crmsync.Credentials) (*imapclient.Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", env.IMAPAddr)
	if err != nil {
		return nil, err
	}
	cl := imapclient.New(nc, nil)
	if err := cl.Login(creds.Username, creds.Password).Wait(); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// imapAppend APPENDs raw to folder with the given INTERNALDATE.
func imapAppend(ctx context.Context, env *testenv.Env, creds crmsync.Credentials, folder string, raw []byte, received time.Time) error {
	cl, err := imapLogin(ctx, env, creds)
	if err != nil {
		return fmt.Errorf("imap append: %w", err)
	}
	defer cl.Close()
	cmd := cl.Append(folder, int64(len(raw)), &imap.AppendOptions{Time: received})
	if _, err := cmd.Write(raw); err != nil {
		cmd.Close()
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	if _, err := cmd.Wait(); err != nil {
		return fmt.Errorf("imap append: %w", err)
	}
	return cl.Logout().Wait()
}

// dcMessage returns a small text message with Message-ID <id>.
func dcMessage(to, id, subject string) []byte {
	return []byte("From: Sender <sender@conformance.crmsync.test>\r\n" +
		"To: <" + to + ">\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <" + id + ">\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Body of " + subject + ".\r\n" + strings.Repeat("Some text to give the message a body of a few lines.\r\n", 40))
}

// dcDeliverN delivers n messages over LMTP and returns their Message-IDs.
func dcDeliverN(t testing.TB, env *testenv.Env, to, prefix string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s.%d.%d@dovecot.crmsync.test", prefix, time.Now().UnixNano(), i)
		if err := env.Deliver(ctx, to, dcMessage(to, ids[i], fmt.Sprintf("%s %d", prefix, i))); err != nil {
			t.Fatalf("delivering message %d to %s: %v", i, to, err)
		}
	}
	return ids
}

// dcCtx is a context for one test step.
func dcCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
