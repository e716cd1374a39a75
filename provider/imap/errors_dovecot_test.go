package imap_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	imapprov "github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

// dcConn dials tg with the test CA trusted and closes the connection at the end.
func dcConn(t *testing.T, env *testenv.Env, tg provider.Target, set ...func(*imapprov.Config)) *imapprov.Conn {
	t.Helper()
	cfg := imapprov.Config{TLSConfig: env.TLSConfig()}
	for _, f := range set {
		f(&cfg)
	}
	c, err := imapprov.NewDialer(cfg).DialConn(context.Background(), tg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// assertKind checks err's kind, and that the engine's action for it is the one wanted:
// retried or not.
func assertKind(t *testing.T, want crmsync.Kind, err error, what string) {
	t.Helper()
	require.Error(t, err, what)
	assert.Equal(t, want.String(), crmsync.KindOf(err).String(), "%s: %v", what, err)
	assert.Equal(t, want.Retryable(), crmsync.KindOf(err).Retryable(), "%s: retried", what)
}

// A wrong password is an auth error for IMAP (Test, FetchIncoming) and SMTP submission:
// the engine disables the workload at once and alerts, it does not retry. The password
// never shows in the error.
func TestDovecotWrongPassword(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "wrongpw")
	for _, sec := range []crmsync.Security{crmsync.SecurityTLS, crmsync.SecuritySTARTTLS, crmsync.SecurityPlaintext} {
		t.Run(secName(sec), func(t *testing.T) {
			in := testenv.Endpoint(t, env.IMAPSAddr, sec)
			if sec != crmsync.SecurityTLS {
				in = testenv.Endpoint(t, env.IMAPAddr, sec)
			}
			c := dcConn(t, env, dcTarget(t, env, in, addr, "Wrong-Password-42"))
			for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
				err := c.Test(dcCtx(t), w)
				assertKind(t, crmsync.KindAuth, err, "Test("+w.String()+")")
				assert.NotContains(t, err.Error(), "Wrong-Password-42")
			}
			_, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{})
			assertKind(t, crmsync.KindAuth, err, "FetchIncoming")
		})
	}
}

// An unknown user is an auth error, the same as a wrong password: Dovecot answers both
// with "NO [AUTHENTICATIONFAILED] Authentication failed." (and submission with 535), on
// purpose, so that no one can probe which accounts exist. The provider cannot tell them
// apart, and need not: auth and permanent errors get the same action (the workload is
// disabled at once with an alert until Test & Enable passes), and "check the user name
// and password" is the right advice for both.
func TestDovecotUnknownUser(t *testing.T) {
	env := testenv.MailServers(t)
	tg := dcTarget(t, env, testenv.Endpoint(t, env.IMAPSAddr, crmsync.SecurityTLS), "nobody-here@"+env.Domain, env.Password)
	c := dcConn(t, env, tg)
	err := c.Test(dcCtx(t), crmsync.Incoming)
	assertKind(t, crmsync.KindAuth, err, "Test(incoming)")
	assert.Contains(t, err.Error(), "AUTHENTICATIONFAILED")
	err = c.Test(dcCtx(t), crmsync.Outgoing)
	assertKind(t, crmsync.KindAuth, err, "Test(outgoing)")
	_, err = c.FetchIncoming(dcCtx(t), provider.FetchRequest{})
	assertKind(t, crmsync.KindAuth, err, "FetchIncoming")

	// A tracked folder that does not exist is skipped (and logged): it does not stop the
	// inbox.
	addr := env.AddUser(t, "nofolder")
	ids := dcDeliverN(t, env, addr, "nofolder", 1)
	c = dcConn(t, env, dcTarget(t, env, testenv.Endpoint(t, env.IMAPAddr, crmsync.SecurityPlaintext), addr, env.Password))
	b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Folders: []string{"No Such Folder"}})
	require.NoError(t, err)
	require.Len(t, b.Emails, 1)
	assert.Equal(t, ids[0], b.Emails[0].MessageID)
}

// Moving a message out of a folder that does not exist is a not-found error (the item is
// skipped), not a transient one. Dovecot 2.3 answers SELECT of a missing mailbox with a
// bare "NO Mailbox doesn't exist: NAME", without the [NONEXISTENT] response code.
func TestDovecotMoveFromMissingFolder(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "nofolder")
	dcDeliverN(t, env, addr, "nofolder", 1)
	c := dcConn(t, env, dcTarget(t, env, testenv.Endpoint(t, env.IMAPAddr, crmsync.SecurityPlaintext), addr, env.Password))
	b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{})
	require.NoError(t, err)
	require.Len(t, b.Emails, 1)
	ref := provider.ItemRef{Folder: "No Such Folder", ID: strings.Replace(b.Emails[0].ProviderID, "INBOX", "No Such Folder", 1)}
	assertKind(t, crmsync.KindNotFound, c.MoveToFolder(dcCtx(t), ref, "Junk"), "MoveToFolder from a missing folder")
}

// A refused connection (nothing listens on the port) is transient, for every security
// and for submission too.
func TestDovecotRefusedConnection(t *testing.T) {
	env := testenv.MailServers(t)
	port := closedPort(t)
	for _, sec := range []crmsync.Security{crmsync.SecurityTLS, crmsync.SecuritySTARTTLS, crmsync.SecurityPlaintext} {
		t.Run(secName(sec), func(t *testing.T) {
			ep := crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: sec}
			tg := dcTarget(t, env, ep, "alice@"+env.Domain, env.Password)
			tg.Profile.Outgoing = ep
			c := dcConn(t, env, tg)
			for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
				err := c.Test(dcCtx(t), w)
				assertKind(t, crmsync.KindTransient, err, "Test("+w.String()+")")
				assert.ErrorIs(t, err, syscall.ECONNREFUSED)
			}
			_, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{})
			assertKind(t, crmsync.KindTransient, err, "FetchIncoming")
		})
	}
}

// A server that accepts the connection and never speaks (no greeting, no TLS handshake)
// is a transient error once the profile's connection timeout passes, and not later.
func TestDovecotConnectionTimeout(t *testing.T) {
	env := testenv.MailServers(t)
	port := silentListener(t)
	const timeout = 300 * time.Millisecond
	for _, sec := range []crmsync.Security{crmsync.SecurityTLS, crmsync.SecuritySTARTTLS, crmsync.SecurityPlaintext} {
		t.Run(secName(sec), func(t *testing.T) {
			ep := crmsync.Endpoint{Host: "127.0.0.1", Port: port, Security: sec}
			tg := dcTarget(t, env, ep, "alice@"+env.Domain, env.Password)
			tg.Profile.Outgoing = ep
			tg.Profile.ConnectionTimeout = timeout
			c := dcConn(t, env, tg)
			for _, w := range []crmsync.Workload{crmsync.Incoming, crmsync.Outgoing} {
				start := time.Now()
				err := c.Test(context.Background(), w)
				assertKind(t, crmsync.KindTransient, err, "Test("+w.String()+")")
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Less(t, time.Since(start), 10*timeout, "the profile's timeout bounds the attempt")
			}
			_, err := c.FetchIncoming(context.Background(), provider.FetchRequest{})
			assertKind(t, crmsync.KindTransient, err, "FetchIncoming")
		})
	}
}

// A connection reset in the middle of the server's answer to FETCH BODY.PEEK[] is a
// transient error; the cursor from before the failed call then fetches every message
// exactly once.
func TestDovecotResetMidFetch(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "reset")
	ids := dcDeliverN(t, env, addr, "reset", 10)
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{ResetAfter: resetOnFullFetch(2, 3000)}) // the second batch's bodies, 3 KB into the answer
	tg := dcTarget(t, env, crmsync.Endpoint{Host: "127.0.0.1", Port: p.Port(), Security: crmsync.SecurityPlaintext}, addr, env.Password)
	// No bodies ahead, so that the second FETCH of whole messages is the second
	// batch's own (TestDovecotResetWhileFetchingAhead cuts the ones ahead).
	noAhead := func(c *imapprov.Config) { c.PrefetchBytes = -1 }
	c := dcConn(t, env, tg, noAhead)

	first, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Max: 4})
	require.NoError(t, err)
	require.Len(t, first.Emails, 4)
	require.True(t, first.More)

	_, err = c.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: first.Cursor, Max: 4})
	require.EqualValues(t, 1, p.Counts().Resets, "the proxy reset the connection during the FETCH")
	// The literal's reader sees ECONNRESET; go-imap's decoder, reading after it, sees
	// the end of the stream and reports "in response-data: unexpected EOF" (as text, not
	// wrapped), which is what the error carries.
	assertKind(t, crmsync.KindTransient, err, "FetchIncoming cut by a reset")

	// The next cycle, on a new connection, resumes from the last good cursor.
	got := messageIDs(first.Emails)
	cursor := first.Cursor
	c2 := dcConn(t, env, tg, noAhead)
	for range 10 {
		b, err := c2.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: cursor, Max: 4})
		require.NoError(t, err)
		require.Empty(t, b.Failed)
		got = append(got, messageIDs(b.Emails)...)
		cursor = b.Cursor
		if !b.More {
			break
		}
	}
	assert.ElementsMatch(t, ids, got, "every message exactly once")
}

// countingStore counts what TrackIncoming stored and refused.
type countingStore struct {
	crmstore.Store
	tracked, dups atomic.Int64
}

func (s *countingStore) TrackIncoming(ctx context.Context, l crmstore.Lease, emails []*crmsync.Email, cursor []byte) (crmstore.TrackResult, error) {
	r, err := s.Store.TrackIncoming(ctx, l, emails, cursor)
	s.tracked.Add(int64(r.Tracked))
	s.dups.Add(int64(r.Duplicates))
	return r, err
}

// acceptAll screens nothing out, so that only the cursor keeps a message from being
// tracked twice (the default screener would also skip known Message-IDs).
type acceptAll struct{}

func (acceptAll) Screen(_ context.Context, _ *crmsync.Mailbox, h []*crmsync.Email) ([]bool, error) {
	v := make([]bool, len(h))
	for i := range v {
		v[i] = true
	}
	return v, nil
}

// kinds records the kinds of the cycles that failed.
type kinds struct {
	syncer.NoopObserver
	mu     sync.Mutex
	failed []crmsync.Kind
}

func (o *kinds) CycleFinished(_ syncer.CycleInfo, out syncer.CycleOutcome) {
	if out.Err != nil {
		o.mu.Lock()
		o.failed = append(o.failed, out.Kind)
		o.mu.Unlock()
	}
}

// The same through the Engine: a cycle whose third batch is cut by a reset fails as
// transient after committing two batches; the retry tracks the rest; every message is
// tracked once and the Store never had to refuse a duplicate.
func TestDovecotResetMidFetchEngine(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "resetengine")
	ids := dcDeliverN(t, env, addr, "resetengine", 20)
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{ResetAfter: resetOnFullFetch(3, 3000)})
	tg := dcTarget(t, env, crmsync.Endpoint{Host: "127.0.0.1", Port: p.Port(), Security: crmsync.SecurityPlaintext}, addr, env.Password)
	tg.Mailbox.ProcessEmailAfter = time.Now().Add(-time.Hour)
	tg.Mailbox.Incoming.Method = crmsync.DeliveryServerSideSync

	store := &countingStore{Store: memstore.New()}
	obs := &kinds{}
	eng, err := syncer.New(syncer.Config{
		ID: "reset", Store: store, Screener: acceptAll{}, Observer: obs,
		Dialer:    provider.Mux{crmsync.ServerIMAP: imapprov.NewDialer(imapprov.Config{})},
		BatchSize: 5, CycleItems: 1000,
		Policy: schedule.Policy{Incoming: time.Hour,
			Backoff: schedule.Backoff{Base: time.Second, Max: time.Second, Jitter: -1}},
		PollInterval: 100 * time.Millisecond,
	})
	require.NoError(t, err)
	ctx := dcCtx(t)
	require.NoError(t, eng.PutProfile(ctx, tg.Profile))
	_, err = eng.MapMailbox(ctx, tg.Mailbox, syncer.MapOptions{})
	require.NoError(t, err)
	rep, err := eng.TestAndEnable(ctx, tg.Mailbox.ID)
	require.NoError(t, err)
	require.NoError(t, rep.Err())
	require.NoError(t, eng.Start(ctx))
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, eng.Stop(sctx))
	}()

	deadline := time.Now().Add(30 * time.Second)
	for store.tracked.Load() < int64(len(ids)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // nothing more arrives
	assert.EqualValues(t, 1, p.Counts().Resets, "one reset")
	obs.mu.Lock()
	assert.Equal(t, []crmsync.Kind{crmsync.KindTransient}, obs.failed, "one cycle failed, as transient")
	obs.mu.Unlock()
	assert.EqualValues(t, len(ids), store.tracked.Load(), "every message tracked")
	assert.Zero(t, store.dups.Load(), "the cursor kept every message from coming twice")
	emails, err := store.ListEmails(ctx, crmstore.EmailQuery{MailboxID: tg.Mailbox.ID})
	require.NoError(t, err)
	assert.ElementsMatch(t, ids, messageIDs(emails))
}

// privateServers starts a second instance of the mail servers with extra environment
// (scripts/mailservers.sh start DIR) and stops it at the end of the test. It returns the
// instance's env file as a map.
func privateServers(t *testing.T, env *testenv.Env, extra ...string) map[string]string {
	t.Helper()
	script := env.Vars["CRMSYNC_MAIL_SCRIPT"]
	require.NotEmpty(t, script, "the env file names no CRMSYNC_MAIL_SCRIPT")
	dir, err := os.MkdirTemp("", "crmsync-mail-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), extra...)
		cmd.Env = append(cmd.Env, "CRMSYNC_MAIL_WATCH_PID="+strconv.Itoa(os.Getpid()))
		cmd.WaitDelay = 10 * time.Second
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		if out, err := run("stop", dir); err != nil {
			t.Errorf("stopping the private mail servers: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	if out, err := run("start", dir); err != nil {
		t.Fatalf("starting private mail servers: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "env"))
	require.NoError(t, err)
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	require.NoError(t, sc.Err())
	return vars
}

// Dovecot limits the connections of one user from one IP (mail_max_userip_connections).
// Over the limit it refuses LOGIN with "NO [LIMIT] Maximum number of connections from
// user+IP exceeded": the provider reports it as throttled (retried later, never sooner
// than the backoff), and once the first connection is gone the next one works.
func TestDovecotTooManyConnections(t *testing.T) {
	env := testenv.MailServers(t)
	vars := privateServers(t, env, "CRMSYNC_MAIL_MAX_USERIP_CONNECTIONS=1")
	in := testenv.Endpoint(t, vars["CRMSYNC_IMAP_ADDR"], crmsync.SecurityPlaintext)
	tg := dcTarget(t, env, in, "alice@"+vars["CRMSYNC_MAIL_DOMAIN"], vars["CRMSYNC_MAIL_PASSWORD"])

	first := dcConn(t, env, tg)
	_, err := first.FetchIncoming(dcCtx(t), provider.FetchRequest{})
	require.NoError(t, err, "the first connection logs in")

	second := dcConn(t, env, tg)
	_, err = second.FetchIncoming(dcCtx(t), provider.FetchRequest{})
	assertKind(t, crmsync.KindThrottled, err, "FetchIncoming over the connection limit")
	assert.Contains(t, err.Error(), "Maximum number of connections")
	err = second.Test(dcCtx(t), crmsync.Incoming)
	assertKind(t, crmsync.KindThrottled, err, "Test over the connection limit")

	require.NoError(t, first.Close())
	var last error
	for range 50 { // Dovecot's anvil learns of the closed connection a moment later
		if _, last = second.FetchIncoming(dcCtx(t), provider.FetchRequest{}); last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.NoError(t, last, "under the limit again, the connection works")
}

// secName names a Security for subtests.
func secName(s crmsync.Security) string {
	switch s {
	case crmsync.SecurityTLS:
		return "IMAPS"
	case crmsync.SecuritySTARTTLS:
		return "STARTTLS"
	case crmsync.SecurityPlaintext:
		return "Plaintext"
	}
	return fmt.Sprintf("security%d", s)
}

// A reset while the next batch's bodies come ahead loses nothing: whichever FETCH it
// cuts, a batch either fails (and the next cycle resumes from the last good cursor) or
// returns its messages; none passes for expunged. Every message is returned once.
// (Without the prefetch failing as a whole, this test loses messages.)
func TestDovecotResetWhileFetchingAhead(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "reset-ahead")
	ids := dcDeliverN(t, env, addr, "ahead", 40)
	for _, nth := range []int{3, 4} { // the bodies of batch 3, fetched ahead during batch 2, or of batch 4
		t.Run(fmt.Sprintf("reset in body FETCH %d", nth), func(t *testing.T) {
			p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{ResetAfter: resetOnFullFetch(nth, 3000)})
			tg := dcTarget(t, env, crmsync.Endpoint{Host: "127.0.0.1", Port: p.Port(), Security: crmsync.SecurityPlaintext}, addr, env.Password)
			var got []string
			var cursor []byte
			failures := 0
			c := dcConn(t, env, tg)
			for range 20 {
				b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: cursor, Max: 10})
				if err != nil {
					assertKind(t, crmsync.KindTransient, err, "FetchIncoming cut by a reset")
					failures++
					c = dcConn(t, env, tg) // the engine's next cycle
					continue
				}
				require.Empty(t, b.Failed)
				got = append(got, messageIDs(b.Emails)...)
				cursor = b.Cursor
				if !b.More {
					break
				}
			}
			assert.EqualValues(t, 1, p.Counts().Resets, "the proxy reset the connection once")
			// The batch whose FETCH was cut fails; a reset that comes between two
			// calls is met by the next one opening a new session.
			assert.LessOrEqual(t, failures, 1, "at most one batch failed")
			assert.Equal(t, ids, got, "every message once, in order")
		})
	}
}

// A reset that cuts the bodies fetched ahead for the next batch in the middle of a
// message, after the current batch returned, leaves the next batch to fetch them
// itself: it returns all of its messages or fails, and never passes the ones that did
// not come for expunged.
func TestDovecotResetCutsTheBodiesFetchedAhead(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "cut-ahead")
	ids := dcDeliverN(t, env, addr, "cut", 50)
	// The 4th FETCH of whole messages asks ahead for batch 4, during batch 3 (whose
	// bodies came ahead): with a network's latency, batch 3 returns before the answer
	// comes, and the reset cuts it 3 KB in, in the second message.
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{
		Latency:    100 * time.Millisecond,
		ResetAfter: resetOnFullFetch(4, 3000),
	})
	tg := dcTarget(t, env, crmsync.Endpoint{Host: "127.0.0.1", Port: p.Port(), Security: crmsync.SecurityPlaintext}, addr, env.Password)
	c := dcConn(t, env, tg)
	var got []string
	var cursor []byte
	for range 10 {
		b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: cursor, Max: 10})
		if err != nil {
			assertKind(t, crmsync.KindTransient, err, "FetchIncoming after a reset")
			c = dcConn(t, env, tg)
			continue
		}
		got = append(got, messageIDs(b.Emails)...)
		cursor = b.Cursor
		if !b.More {
			break
		}
	}
	assert.EqualValues(t, 1, p.Counts().Resets)
	assert.Equal(t, ids, got, "every message once, in order")
}

// Close while the next batch's bodies are on their way ahead (a slow network) ends the
// prefetch with the session and leaves no goroutine behind; so does a call whose
// context is already canceled.
func TestDovecotCloseWhileFetchingAhead(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "close-ahead")
	dcDeliverN(t, env, addr, "close", 50)
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{Latency: 200 * time.Millisecond})
	tg := dcTarget(t, env, crmsync.Endpoint{Host: "127.0.0.1", Port: p.Port(), Security: crmsync.SecurityPlaintext}, addr, env.Password)
	before := goleak.IgnoreCurrent()

	c, err := imapprov.NewDialer(imapprov.Config{}).DialConn(context.Background(), tg)
	require.NoError(t, err)
	var cursor []byte
	for range 3 { // batch 3 asks batch 4's bodies ahead as it starts
		b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: cursor, Max: 10})
		require.NoError(t, err)
		require.True(t, b.More)
		cursor = b.Cursor
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.FetchIncoming(canceled, provider.FetchRequest{Cursor: cursor, Max: 10})
	require.Error(t, err, "a canceled call fails")
	start := time.Now()
	require.NoError(t, c.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "Close does not wait for what was asked ahead")
	goleak.VerifyNone(t, before)
}
