package syncer_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is one engine on a memstore against the fake provider. Tests run it inside a
// synctest bubble, so schedule.Real's time is the bubble's fake time: it moves only when
// every goroutine is blocked, and a test's time.Sleep advances it at once.
type harness struct {
	t     *testing.T
	ctx   context.Context
	store *memstore.Store
	fake  *providertest.Server
	eng   *syncer.Engine
	obs   *recorder
	clock schedule.Clock
}

type harnessOpt func(*syncer.Config, *providertest.ServerConfig)

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, ctx: context.Background(), store: memstore.New(), obs: newRecorder(), clock: schedule.Real{}}
	scfg := providertest.ServerConfig{Clock: h.clock}
	cfg := syncer.Config{Store: h.store, Clock: h.clock, Observer: h.obs, ID: "engine-a"}
	for _, o := range opts {
		o(&cfg, &scfg)
	}
	h.fake = providertest.NewServer(scfg)
	cfg.Dialer = h.fake
	eng, err := syncer.New(cfg)
	require.NoError(t, err)
	h.eng = eng
	return h
}

func withConfig(f func(*syncer.Config)) harnessOpt {
	return func(c *syncer.Config, _ *providertest.ServerConfig) { f(c) }
}

func withServer(f func(*providertest.ServerConfig)) harnessOpt {
	return func(_ *syncer.Config, s *providertest.ServerConfig) { f(s) }
}

func (h *harness) start() {
	h.t.Helper()
	require.NoError(h.t, h.eng.Start(h.ctx))
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = h.eng.Stop(ctx)
	})
}

// sleep lets d of bubble time pass, then waits until every goroutine is blocked again,
// so that work due at the very end of d has run.
func (h *harness) sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func (h *harness) profile(id string, maxConns int) *crmsync.ServerProfile {
	h.t.Helper()
	p := &crmsync.ServerProfile{ID: id, Name: "profile " + id, Kind: crmsync.ServerIMAP, OwnerID: "admin-" + id, MaxConnections: maxConns}
	require.NoError(h.t, h.eng.PutProfile(h.ctx, p))
	return p
}

// mailbox maps an approved mailbox for user with the given workloads delivered by
// server-side sync.
func (h *harness) mailbox(id, user, profileID string, ws ...crmsync.Workload) *crmsync.Mailbox {
	h.t.Helper()
	m := &crmsync.Mailbox{
		ID: id, Address: user + "@example.test", ProfileID: profileID,
		Owner:    crmsync.Owner{Kind: crmsync.OwnerUser, ID: user},
		Approval: crmsync.ApprovalApproved,
	}
	for _, w := range ws {
		m.State(w).Method = crmsync.DeliveryServerSideSync
	}
	_, err := h.eng.MapMailbox(h.ctx, m, syncer.MapOptions{})
	require.NoError(h.t, err)
	h.fake.AddMailbox(m.Address)
	return m
}

func (h *harness) enable(id string) *syncer.TestReport {
	h.t.Helper()
	r, err := h.eng.TestAndEnable(h.ctx, id)
	require.NoError(h.t, err)
	return r
}

func (h *harness) mb(id string) *crmsync.Mailbox {
	h.t.Helper()
	m, err := h.store.Mailbox(h.ctx, id)
	require.NoError(h.t, err)
	return m
}

func (h *harness) emails(mailboxID string, status crmsync.EmailStatus) []*crmsync.Email {
	h.t.Helper()
	es, err := h.store.ListEmails(h.ctx, crmstore.EmailQuery{MailboxID: mailboxID, Status: status})
	require.NoError(h.t, err)
	return es
}

func (h *harness) alerts(q crmstore.AlertQuery) []*crmsync.Alert {
	h.t.Helper()
	as, err := h.store.ListAlerts(h.ctx, q)
	require.NoError(h.t, err)
	return as
}

func (h *harness) email(id string) *crmsync.Email {
	h.t.Helper()
	e, err := h.store.Email(h.ctx, id)
	require.NoError(h.t, err)
	return e
}

// deliver puts n plain messages in the mailbox's inbox.
func (h *harness) deliver(address string, n int, tag string) {
	for i := range n {
		h.fake.Deliver(address, &crmsync.Email{
			MessageID: fmt.Sprintf("%s-%d@sender.test", tag, i),
			From:      crmsync.Address{Email: "customer@sender.test"},
			To:        []crmsync.Address{{Email: address}},
			Subject:   fmt.Sprintf("%s %d", tag, i),
			TextBody:  "hello",
		})
	}
}

// draft creates an outgoing draft from the mailbox and sends it (Pending Send).
func (h *harness) pendingSend(mb *crmsync.Mailbox, to, subject string) *crmsync.Email {
	h.t.Helper()
	e := &crmsync.Email{
		MailboxID: mb.ID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
		From: crmsync.Address{Email: mb.Address}, To: []crmsync.Address{{Email: to}},
		Subject: subject, TextBody: "from the CRM",
	}
	require.NoError(h.t, h.store.CreateEmail(h.ctx, e))
	sent, err := h.eng.SendEmail(h.ctx, e.ID, syncer.SendOptions{})
	require.NoError(h.t, err)
	require.Equal(h.t, crmsync.EmailPendingSend, sent.Status)
	require.NotEmpty(h.t, sent.MessageID)
	return sent
}

// recorder is an Observer that keeps every event and checks that no mailbox-workload
// ever runs twice at once.
type recorder struct {
	syncer.NoopObserver
	mu       sync.Mutex
	started  []syncer.CycleInfo
	finished []syncer.CycleOutcome
	byKey    map[string][]syncer.CycleOutcome
	running  map[string]int
	overlaps int
	sent     []string
	alerts   []*crmsync.Alert
}

func newRecorder() *recorder {
	return &recorder{byKey: map[string][]syncer.CycleOutcome{}, running: map[string]int{}}
}

func key(mailboxID string, w crmsync.Workload) string { return mailboxID + "/" + w.String() }

func (r *recorder) CycleStarted(c syncer.CycleInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = append(r.started, c)
	k := key(c.MailboxID, c.Workload)
	r.running[k]++
	if r.running[k] > 1 {
		r.overlaps++
	}
}

func (r *recorder) CycleFinished(c syncer.CycleInfo, o syncer.CycleOutcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = append(r.finished, o)
	k := key(c.MailboxID, c.Workload)
	r.running[k]--
	r.byKey[k] = append(r.byKey[k], o)
}

func (r *recorder) EmailSent(_, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, id)
}

func (r *recorder) AlertRaised(a *crmsync.Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, a)
}

// cycles returns the finished cycles of one mailbox-workload.
func (r *recorder) cycles(mailboxID string, w crmsync.Workload) []syncer.CycleOutcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]syncer.CycleOutcome(nil), r.byKey[key(mailboxID, w)]...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.finished)
}
