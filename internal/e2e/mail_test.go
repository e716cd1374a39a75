// Package e2e holds end-to-end tests: the Engine against the real mail servers that
// internal/testenv starts (Dovecot for IMAP, POP3 and submission, OpenSMTPD delivering
// over LMTP).
package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

func TestMain(m *testing.M) { testenv.RunMain(m) }

type world struct {
	t       *testing.T
	ctx     context.Context
	env     *testenv.Env
	store   crmstore.Store
	dialer  *imap.Dialer
	profile *crmsync.ServerProfile
	alice   *crmsync.Mailbox
	bob     *crmsync.Mailbox
}

// newWorld makes two fresh users on the real servers and a profile that reads over IMAPS
// and submits with STARTTLS, certificates verified against the test CA.
func newWorld(t *testing.T) *world {
	env := testenv.MailServers(t)
	w := &world{t: t, ctx: context.Background(), env: env, store: memstore.New()}
	w.dialer = imap.NewDialer(imap.Config{TLSConfig: env.TLSConfig()})
	w.profile = &crmsync.ServerProfile{
		ID: "dovecot", Name: "Dovecot", Kind: crmsync.ServerIMAP, OwnerID: "admin",
		Incoming: testenv.Endpoint(t, env.IMAPSAddr, crmsync.SecurityTLS),
		Outgoing: testenv.Endpoint(t, env.SMTPAddr, crmsync.SecuritySTARTTLS),
	}
	mk := func(local string) *crmsync.Mailbox {
		addr := env.AddUser(t, local)
		return &crmsync.Mailbox{
			ID: "mb-" + local, Address: addr, ProfileID: w.profile.ID,
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: local}, Approval: crmsync.ApprovalApproved,
			Credentials: crmsync.Credentials{Username: addr, Password: env.Password},
			Incoming:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
			Outgoing:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
		}
	}
	w.alice, w.bob = mk("alice"), mk("bob")
	return w
}

// engine returns a started engine on the world's store, with a one-second cadence.
func (w *world) engine(id string, store crmstore.Store) *syncer.Engine {
	w.t.Helper()
	eng, err := syncer.New(syncer.Config{
		ID: id, Store: store, Dialer: provider.Mux{crmsync.ServerIMAP: w.dialer},
		Policy: schedule.Policy{Incoming: time.Second, Outgoing: time.Second,
			Backoff: schedule.Backoff{Base: time.Second, Max: time.Second}},
		PollInterval:  200 * time.Millisecond,
		LeaseDuration: 2 * time.Second, // a killed engine's work is taken over quickly
	})
	require.NoError(w.t, err)
	return eng
}

func (w *world) setup(eng *syncer.Engine) {
	w.t.Helper()
	require.NoError(w.t, eng.PutProfile(w.ctx, w.profile))
	for _, m := range []*crmsync.Mailbox{w.alice, w.bob} {
		_, err := eng.MapMailbox(w.ctx, m, syncer.MapOptions{})
		require.NoError(w.t, err)
		r, err := eng.TestAndEnable(w.ctx, m.ID)
		require.NoError(w.t, err)
		require.NoError(w.t, r.Err(), "Test & Enable of %s against Dovecot", m.Address)
	}
}

func (w *world) send(eng *syncer.Engine, from, to *crmsync.Mailbox, subject, inReplyTo string) *crmsync.Email {
	w.t.Helper()
	e := &crmsync.Email{
		MailboxID: from.ID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
		From: crmsync.Address{Email: from.Address}, To: []crmsync.Address{{Email: to.Address}},
		Subject: subject, TextBody: "sent by the CRM: " + subject, InReplyTo: inReplyTo,
	}
	if inReplyTo != "" {
		e.References = []string{inReplyTo}
	}
	require.NoError(w.t, w.store.CreateEmail(w.ctx, e))
	sent, err := eng.SendEmail(w.ctx, e.ID, syncer.SendOptions{})
	require.NoError(w.t, err)
	return sent
}

// eventually polls cond for up to 30 s.
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

func (w *world) tracked(m *crmsync.Mailbox, messageID string) []*crmsync.Email {
	es, err := w.store.EmailsByMessageID(w.ctx, []string{messageID})
	require.NoError(w.t, err)
	var out []*crmsync.Email
	for _, e := range es {
		if e.MailboxID == m.ID && e.Direction == crmsync.DirectionIncoming {
			out = append(out, e)
		}
	}
	return out
}

// inbox counts the messages with this Message-ID in the mailbox's INBOX, read straight
// from the server with the IMAP provider.
func (w *world) inboxCount(m *crmsync.Mailbox, messageID string) int {
	w.t.Helper()
	conn, err := w.dialer.Dial(w.ctx, provider.Target{Profile: w.profile, Mailbox: m})
	require.NoError(w.t, err)
	defer conn.Close()
	im := conn.(provider.IncomingMail)
	n := 0
	var cursor []byte
	for {
		b, err := im.FetchIncoming(w.ctx, provider.FetchRequest{Cursor: cursor, Max: 100})
		require.NoError(w.t, err)
		for _, e := range b.Emails {
			if e.MessageID == messageID {
				n++
			}
		}
		cursor = b.Cursor
		if !b.More {
			return n
		}
	}
}

func (w *world) inSent(m *crmsync.Mailbox, messageID string) bool {
	w.t.Helper()
	conn, err := w.dialer.Dial(w.ctx, provider.Target{Profile: w.profile, Mailbox: m})
	require.NoError(w.t, err)
	defer conn.Close()
	found, err := conn.(provider.OutgoingMail).FindSent(w.ctx, messageID)
	require.NoError(w.t, err)
	return found
}

func stop(t *testing.T, eng *syncer.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, eng.Stop(ctx))
}

// A CRM email from alice in Pending Send goes through submission and OpenSMTPD to bob's
// Dovecot mailbox; bob's incoming cycle tracks it as Received; alice's Sent folder holds
// the copy; bob's reply is tracked for alice.
func TestEmailRoundTripThroughRealServers(t *testing.T) {
	w := newWorld(t)
	eng := w.engine("e2e", w.store)
	w.setup(eng)
	require.NoError(t, eng.Start(w.ctx))
	defer stop(t, eng)

	out := w.send(eng, w.alice, w.bob, "Quote 2026-118", "")
	eventually(t, "alice's email to be Sent", func() bool {
		e, err := w.store.Email(w.ctx, out.ID)
		return err == nil && e.Status == crmsync.EmailSent
	})
	eventually(t, "bob to track alice's email", func() bool { return len(w.tracked(w.bob, out.MessageID)) == 1 })
	got := w.tracked(w.bob, out.MessageID)[0]
	assert.Equal(t, crmsync.EmailReceived, got.Status)
	assert.Equal(t, "Quote 2026-118", got.Subject)
	assert.Equal(t, w.alice.Address, got.From.Email)
	assert.Contains(t, got.TextBody, "sent by the CRM")
	assert.True(t, w.inSent(w.alice, out.MessageID), "alice's Sent folder holds the copy")
	sent, err := w.store.Email(w.ctx, out.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, sent.DeliveryAttempts)

	reply := w.send(eng, w.bob, w.alice, "Re: Quote 2026-118", out.MessageID)
	eventually(t, "alice to track bob's reply", func() bool { return len(w.tracked(w.alice, reply.MessageID)) == 1 })
	r := w.tracked(w.alice, reply.MessageID)[0]
	assert.Equal(t, out.MessageID, r.InReplyTo, "the reply threads to the CRM email")
	assert.Equal(t, w.bob.Address, r.From.Email)

	// Later cycles track nothing twice.
	time.Sleep(3 * time.Second)
	assert.Len(t, w.tracked(w.bob, out.MessageID), 1)
	assert.Len(t, w.tracked(w.alice, reply.MessageID), 1)
	assert.Equal(t, 1, w.inboxCount(w.bob, out.MessageID))
}

// crashAfterSubmit is a Store whose FinishSend never records Sent: the engine dies (is
// stopped hard) after the server accepted the email and before the CRM knew it, which is
// what a kill -9 between submit and "Sent" leaves behind.
type crashAfterSubmit struct {
	crmstore.Store
	submitted chan string
}

var errCrash = errors.New("the engine died here")

func (s *crashAfterSubmit) FinishSend(ctx context.Context, l crmstore.Lease, id string, r crmstore.SendResult) error {
	if r.Status == crmsync.EmailSent {
		select {
		case s.submitted <- id:
		default:
		}
		return errCrash
	}
	return s.Store.FinishSend(ctx, l, id, r)
}

// Killing the engine between submit and Sent, and starting another one on the same
// store, does not send the email twice: the new engine finds it in Sent Items.
func TestCrashBetweenSubmitAndSentDoesNotSendTwice(t *testing.T) {
	w := newWorld(t)
	crashing := &crashAfterSubmit{Store: w.store, submitted: make(chan string, 1)}
	first := w.engine("first", crashing)
	w.setup(first)
	out := w.send(first, w.alice, w.bob, "Contract v3", "")
	require.NoError(t, first.Start(w.ctx))
	select {
	case id := <-crashing.submitted:
		require.Equal(t, out.ID, id)
	case <-time.After(30 * time.Second):
		t.Fatal("the email was never submitted")
	}
	require.NoError(t, first.StopAndCancel(w.ctx)) // the crash
	e, err := w.store.Email(w.ctx, out.ID)
	require.NoError(t, err)
	require.Equal(t, crmsync.EmailSending, e.Status, "the CRM does not know the outcome")

	// A new engine on the same store takes alice's outgoing workload over (at once if
	// the dead engine's lease was released, else when it expires) and resumes.
	second := w.engine("second", w.store)
	require.NoError(t, second.Start(w.ctx))
	defer stop(t, second)
	eventually(t, "the email to be recorded Sent by the new engine", func() bool {
		e, err := w.store.Email(w.ctx, out.ID)
		return err == nil && e.Status == crmsync.EmailSent
	})
	eventually(t, "bob to track the email", func() bool { return len(w.tracked(w.bob, out.MessageID)) == 1 })
	time.Sleep(2 * time.Second)
	assert.Equal(t, 1, w.inboxCount(w.bob, out.MessageID), "bob received it exactly once")
	e, err = w.store.Email(w.ctx, out.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, e.DeliveryAttempts, "found in Sent Items, not submitted again")
}
