package syncer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

func TestNewValidatesConfig(t *testing.T) {
	_, err := syncer.New(syncer.Config{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Store")
	assert.Contains(t, err.Error(), "Dialer")
	_, err = syncer.New(syncer.Config{Store: memstore.New(), Dialer: providertest.NewServer(providertest.ServerConfig{}),
		Policy: schedule.Policy{ACTMin: time.Hour}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ACTMin")
}

func TestMappingRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)

		// Another user mapping alice's address is refused with a typed error.
		_, err := h.eng.MapMailbox(h.ctx, &crmsync.Mailbox{ID: "mb-eve", Address: "ALICE@example.test", ProfileID: "p",
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "eve"}}, syncer.MapOptions{})
		var conflict *crmsync.MappingConflictError
		require.ErrorAs(t, err, &conflict)
		assert.True(t, errors.Is(err, crmsync.ErrMappingConflict))
		assert.Equal(t, "mb-alice", conflict.HeldBy)
		assert.False(t, conflict.SameOwner)

		// Alice mapping a second mailbox is refused too.
		_, err = h.eng.MapMailbox(h.ctx, &crmsync.Mailbox{ID: "mb-alice2", Address: "alice2@example.test", ProfileID: "p",
			Owner: alice.Owner}, syncer.MapOptions{})
		require.ErrorAs(t, err, &conflict)
		assert.True(t, conflict.SameOwner)

		// An unknown profile is refused.
		_, err = h.eng.MapMailbox(h.ctx, &crmsync.Mailbox{ID: "x", Address: "x@example.test", ProfileID: "nope",
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "x"}}, syncer.MapOptions{})
		require.ErrorIs(t, err, crmsync.ErrNotFound)
	})
}

func TestTakeOverStopsTheOldMailbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.enable("mb-alice")
		h.deliver("alice@example.test", 2, "first")
		h.start()
		synctest.Wait()
		require.Len(t, h.emails("mb-alice", 0), 2)

		// Make alice's next cycle hang in the provider, then take her address over.
		h.fake.SetLatency(time.Hour)
		h.sleep(5 * time.Minute)
		synctest.Wait() // alice's cycle is now inside a slow provider call
		displaced, err := h.eng.MapMailbox(h.ctx, &crmsync.Mailbox{ID: "mb-queue", Address: "alice@example.test", ProfileID: "p",
			Owner: crmsync.Owner{Kind: crmsync.OwnerQueue, ID: "support"}, Approval: crmsync.ApprovalApproved,
			Incoming: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync}}, syncer.MapOptions{TakeOver: true})
		require.NoError(t, err)
		require.Len(t, displaced, 1)
		assert.Equal(t, "mb-alice", displaced[0].ID)
		synctest.Wait()

		_, err = h.store.Mailbox(h.ctx, "mb-alice")
		require.ErrorIs(t, err, crmsync.ErrNotFound, "the old mapping is gone")
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 2)
		assert.True(t, cycles[1].Abandoned, "the running cycle was stopped")
		taken := h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice"})
		require.NotEmpty(t, taken)
		assert.Equal(t, crmsync.AlertInfo, taken[len(taken)-1].Level)

		// The new mailbox starts from scratch: it must pass Test & Enable first.
		q := h.mb("mb-queue")
		assert.Equal(t, crmsync.TestNotRun, q.Incoming.Test)
		h.fake.SetLatency(0)
		h.enable("mb-queue")
		h.deliver("alice@example.test", 1, "for the queue")
		h.sleep(5 * time.Minute)
		got := h.emails("mb-queue", 0)
		require.Len(t, got, 1, "the queue tracks mail received after its own Test & Enable")
		assert.Equal(t, "for the queue 0", got[0].Subject)
	})
}

func TestNothingRunsBeforeTestAndEnable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming, crmsync.Outgoing)
		h.deliver("alice@example.test", 1, "before")
		h.start()
		h.sleep(time.Hour)
		assert.Zero(t, h.fake.Calls(providertest.OpFetch))
		assert.Zero(t, h.obs.count())

		r := h.enable("mb-alice")
		require.NoError(t, r.Err())
		assert.True(t, r.Passed(crmsync.Incoming))
		assert.True(t, r.Passed(crmsync.Outgoing))
		assert.False(t, r.Passed(crmsync.ACT), "ACT is not delivered by server-side sync")
		synctest.Wait()
		assert.Empty(t, h.emails("mb-alice", crmsync.EmailReceived), "mail received before Test & Enable is not tracked")
		h.deliver("alice@example.test", 1, "after")
		h.sleep(5 * time.Minute)
		assert.Len(t, h.emails("mb-alice", crmsync.EmailReceived), 1)
		m := h.mb("mb-alice")
		assert.Equal(t, crmsync.TestPassed, m.Incoming.Test)
		assert.Equal(t, crmsync.StatusSuccess, m.Incoming.Status)
		assert.Equal(t, crmsync.StatusNotRun, m.ACT.Status)
		assert.False(t, m.ProcessEmailAfter.IsZero(), "Test & Enable sets process-email-after")
	})
}

func TestTestAndEnablePerWorkload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withServer(func(s *providertest.ServerConfig) { s.NoItemSync = true }))
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming, crmsync.Outgoing, crmsync.ACT)
		h.fake.FailTest("alice@example.test", crmsync.Outgoing, provider.Auth("smtp auth", errors.New("535 bad credentials")), 1)
		h.start()
		r := h.enable("mb-alice")
		assert.True(t, r.Passed(crmsync.Incoming))
		assert.False(t, r.Passed(crmsync.Outgoing))
		assert.False(t, r.Passed(crmsync.ACT))
		var actErr error
		for _, x := range r.Results {
			if x.Workload == crmsync.ACT {
				actErr = x.Err
			}
		}
		assert.ErrorIs(t, actErr, crmsync.ErrNotSupported, "a server without item sync says so")
		synctest.Wait()
		h.sleep(time.Hour)
		assert.NotEmpty(t, h.obs.cycles("mb-alice", crmsync.Incoming))
		assert.Empty(t, h.obs.cycles("mb-alice", crmsync.Outgoing), "a failed workload does not run")
		assert.Empty(t, h.obs.cycles("mb-alice", crmsync.ACT))
		m := h.mb("mb-alice")
		assert.Equal(t, crmsync.TestFailed, m.Outgoing.Test)
		assert.Contains(t, m.Outgoing.TestError, "535")
		require.NotEmpty(t, h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice", Scope: crmsync.ScopeMailbox}))

		// Once the test passes, outgoing runs.
		r = h.enable("mb-alice")
		assert.True(t, r.Passed(crmsync.Outgoing))
		synctest.Wait()
		assert.NotEmpty(t, h.obs.cycles("mb-alice", crmsync.Outgoing))
	})
}

func TestUnapprovedMailboxDoesNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		m := &crmsync.Mailbox{ID: "mb-bob", Address: "bob@example.test", ProfileID: "p",
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "bob"}, Approval: crmsync.ApprovalPending,
			Incoming: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync}}
		_, err := h.eng.MapMailbox(h.ctx, m, syncer.MapOptions{})
		require.NoError(t, err)
		h.start()
		r := h.enable("mb-bob")
		require.Error(t, r.Err())
		assert.Contains(t, r.Err().Error(), "not approved")
		h.sleep(time.Hour)
		assert.Zero(t, h.obs.count())
		assert.Zero(t, h.fake.Calls(providertest.OpDial), "no connection is made for an unapproved mailbox")
	})
}

// The product's cadence, end to end: incoming runs, then waits 5 minutes after the end
// of its cycle; a slow cycle delays the next.
func TestIncomingCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		h.fake.SetLatency(30 * time.Second) // from now on each call takes 30 s
		h.sleep(20 * time.Minute)
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.GreaterOrEqual(t, len(cycles), 3)
		for i := 1; i < len(cycles); i++ {
			prev := cycles[i-1]
			assert.Equal(t, prev.End.Add(5*time.Minute), prev.Next, "next run is 5 minutes after the end of cycle %d", i-1)
		}
		starts := h.startsOf("mb-alice", crmsync.Incoming)
		for i := 1; i < len(starts); i++ {
			assert.Equal(t, cycles[i-1].Next, starts[i], "cycle %d starts when it was due", i)
		}
		// Each cycle after the first costs two slow calls (dial, fetch): one minute.
		assert.Equal(t, 6*time.Minute, starts[2].Sub(starts[1]))
	})
}

func (h *harness) startsOf(mailboxID string, w crmsync.Workload) []time.Time {
	h.obs.mu.Lock()
	defer h.obs.mu.Unlock()
	var out []time.Time
	for _, s := range h.obs.started {
		if s.MailboxID == mailboxID && s.Workload == w {
			out = append(out, s.Start)
		}
	}
	return out
}

// The same rule on schedule.Fake, driven by hand: nothing happens until the fake time
// reaches the next run.
func TestCadenceOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := schedule.NewFake(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
		h := newHarness(t, withConfig(func(c *syncer.Config) { c.Clock = fake }), withServer(func(s *providertest.ServerConfig) { s.Clock = fake }))
		h.clock = fake
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming, crmsync.Outgoing)
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		require.Len(t, h.obs.cycles("mb-alice", crmsync.Incoming), 1)
		require.Len(t, h.obs.cycles("mb-alice", crmsync.Outgoing), 1)

		h.deliver("alice@example.test", 1, "later")
		fake.Advance(5*time.Minute - time.Second)
		synctest.Wait()
		assert.Len(t, h.obs.cycles("mb-alice", crmsync.Incoming), 1, "not due yet")
		assert.Empty(t, h.emails("mb-alice", crmsync.EmailReceived))
		fake.Advance(time.Second)
		synctest.Wait()
		assert.Len(t, h.obs.cycles("mb-alice", crmsync.Incoming), 2)
		assert.Len(t, h.obs.cycles("mb-alice", crmsync.Outgoing), 2, "outgoing scans every 5 minutes")
		assert.Len(t, h.emails("mb-alice", crmsync.EmailReceived), 1)
	})
}

func TestOutgoingSendsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		h.fake.AddMailbox("bob@example.test")
		h.start()
		e := h.pendingSend(alice, "bob@example.test", "quote")
		h.enable("mb-alice")
		synctest.Wait()

		got := h.email(e.ID)
		assert.Equal(t, crmsync.EmailSent, got.Status)
		assert.Equal(t, 1, got.DeliveryAttempts)
		assert.False(t, got.SentAt.IsZero())
		require.Len(t, h.fake.Submitted(), 1)
		assert.Equal(t, e.MessageID, h.fake.Submitted()[0].MessageID)
		assert.Len(t, h.fake.SentItems("alice@example.test"), 1, "a copy is in Sent Items")

		h.sleep(time.Hour)
		assert.Len(t, h.fake.Submitted(), 1, "later scans do not send it again")
	})
}

// A send whose outcome is unknown (the server took it, the connection dropped) is looked
// up in Sent Items before any retry, and not sent again.
func TestUnknownOutcomeIsNotSentTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		h.start()
		e := h.pendingSend(alice, "bob@example.test", "contract")
		h.fake.SendOutcomeUnknown("alice@example.test", 1)
		h.enable("mb-alice")
		synctest.Wait()
		got := h.email(e.ID)
		assert.Equal(t, crmsync.EmailSending, got.Status, "outcome unknown: still Sending")
		assert.Equal(t, crmsync.StatusFailure, h.mb("mb-alice").Outgoing.Status)

		h.sleep(6 * time.Minute) // the retry
		got = h.email(e.ID)
		assert.Equal(t, crmsync.EmailSent, got.Status)
		assert.Len(t, h.fake.Submitted(), 1, "the retry found it in Sent Items instead of sending again")
		assert.EqualValues(t, 1, h.fake.Calls(providertest.OpFindSent))
		assert.Equal(t, 1, got.DeliveryAttempts)
		assert.Equal(t, crmsync.StatusSuccess, h.mb("mb-alice").Outgoing.Status)
	})
}

// A send that failed before reaching the server is sent on the retry, and both attempts
// are counted.
func TestTransientSendFailureRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		h.start()
		e := h.pendingSend(alice, "bob@example.test", "invoice")
		h.fake.FailNext("alice@example.test", providertest.OpSend, provider.Transient("smtp data", errors.New("connection reset")), 1)
		h.enable("mb-alice")
		synctest.Wait()
		h.sleep(6 * time.Minute)
		got := h.email(e.ID)
		assert.Equal(t, crmsync.EmailSent, got.Status)
		assert.Equal(t, 2, got.DeliveryAttempts)
		assert.Len(t, h.fake.Submitted(), 1)
	})
}

func TestPermanentSendFailureFailsTheEmailOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		h.start()
		bad := h.pendingSend(alice, "nobody@nowhere.test", "bounce")
		good := h.pendingSend(alice, "bob@example.test", "fine")
		h.fake.FailNext("alice@example.test", providertest.OpSend, provider.Permanent("smtp rcpt", errors.New("550 no such user")), 1)
		h.enable("mb-alice")
		synctest.Wait()
		b := h.email(bad.ID)
		assert.Equal(t, crmsync.EmailFailed, b.Status)
		assert.Contains(t, b.FailureReason, "550")
		assert.Equal(t, crmsync.EmailSent, h.email(good.ID).Status)
		assert.Equal(t, crmsync.StatusSuccess, h.mb("mb-alice").Outgoing.Status)
		as := h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice", Scope: crmsync.ScopeEmail})
		require.Len(t, as, 1)
		assert.Equal(t, bad.ID, as[0].EmailID)
		assert.Equal(t, crmsync.AlertError, as[0].Level)

		// The host may send a failed email again.
		again, err := h.eng.SendEmail(h.ctx, bad.ID, syncer.SendOptions{})
		require.NoError(t, err)
		assert.Equal(t, crmsync.EmailPendingSend, again.Status)
		_, err = h.eng.SendEmail(h.ctx, good.ID, syncer.SendOptions{})
		require.ErrorIs(t, err, syncer.ErrNotSendable)
	})
}

func TestSendWithoutIssuing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		e := &crmsync.Email{MailboxID: alice.ID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft, Subject: "noted"}
		require.NoError(t, h.store.CreateEmail(h.ctx, e))
		got, err := h.eng.SendEmail(h.ctx, e.ID, syncer.SendOptions{NoIssue: true})
		require.NoError(t, err)
		assert.Equal(t, crmsync.EmailSent, got.Status)
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		assert.Empty(t, h.fake.Submitted())
	})
}

func TestPermanentErrorDisablesUntilTestAndEnable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		h.fake.FailNext("alice@example.test", providertest.OpFetch, provider.Auth("imap login", errors.New("AUTHENTICATIONFAILED")), 1)
		h.sleep(5 * time.Minute)
		synctest.Wait()
		m := h.mb("mb-alice")
		assert.Equal(t, crmsync.StatusFailure, m.Incoming.Status)
		assert.Equal(t, crmsync.KindAuth, m.Incoming.LastErrorKind)
		assert.Equal(t, crmsync.TestFailed, m.Incoming.Test, "disabled at once")
		as := h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice"})
		require.NotEmpty(t, as)
		last := as[len(as)-1]
		assert.Equal(t, crmsync.AlertError, last.Level)
		assert.Equal(t, crmsync.ScopeMailbox, last.Scope)
		assert.Equal(t, []crmsync.Owner{{Kind: crmsync.OwnerUser, ID: "alice"}}, last.Recipients)

		fetches := h.fake.Calls(providertest.OpFetch)
		h.sleep(2 * time.Hour)
		assert.Equal(t, fetches, h.fake.Calls(providertest.OpFetch), "nothing runs while disabled")

		h.enable("mb-alice")
		synctest.Wait()
		assert.Greater(t, h.fake.Calls(providertest.OpFetch), fetches, "Test & Enable brings it back")
		assert.Equal(t, crmsync.StatusSuccess, h.mb("mb-alice").Incoming.Status)
	})
}

// Transient errors are retried 10 times, 5 minutes apart, then the workload is disabled.
func TestTransientErrorsRetryThenDisable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.fake.FailNext("alice@example.test", providertest.OpFetch, provider.Transient("imap fetch", errors.New("connection reset")), -1)
		h.start()
		h.enable("mb-alice")
		h.sleep(3 * time.Hour)
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 11, "the first try and 10 retries")
		for i, c := range cycles[:10] {
			assert.False(t, c.Disabled, "cycle %d", i)
			gap := c.Next.Sub(c.End)
			assert.GreaterOrEqual(t, gap, 5*time.Minute, "retry %d no sooner than 5 minutes", i+1)
			assert.LessOrEqual(t, gap, 5*time.Minute+30*time.Second)
		}
		assert.True(t, cycles[10].Disabled, "then it is permanent")
		m := h.mb("mb-alice")
		assert.Equal(t, crmsync.TestFailed, m.Incoming.Test)
		warnings, errs := 0, 0
		for _, a := range h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice"}) {
			switch a.Level {
			case crmsync.AlertWarning:
				warnings++
			case crmsync.AlertError:
				errs++
			}
		}
		assert.Equal(t, 1, warnings, "one warning for the first transient failure, not one per retry")
		assert.Equal(t, 1, errs, "one error when it is disabled")
	})
}

func TestRetryAfterIsHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.fake.FailNext("alice@example.test", providertest.OpFetch, provider.Throttled("graph delta", 47*time.Minute, nil), 1)
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 1)
		assert.Equal(t, crmsync.KindThrottled, cycles[0].Kind)
		assert.Equal(t, 47*time.Minute, cycles[0].Next.Sub(cycles[0].End))
		h.sleep(46 * time.Minute)
		assert.Len(t, h.obs.cycles("mb-alice", crmsync.Incoming), 1, "not before Retry-After")
		h.sleep(2 * time.Minute)
		assert.Len(t, h.obs.cycles("mb-alice", crmsync.Incoming), 2)
	})
}

// A changed UIDVALIDITY (an expired cursor) resyncs at once, and nothing is tracked twice.
func TestExpiredCursorResyncsWithoutDuplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.deliver("alice@example.test", 3, "a")
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		h.fake.ExpireCursors("alice@example.test")
		h.deliver("alice@example.test", 2, "b")
		h.sleep(6 * time.Minute)
		assert.Len(t, h.emails("mb-alice", 0), 5)
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.GreaterOrEqual(t, len(cycles), 3)
		assert.Equal(t, crmsync.KindCursorExpired, cycles[1].Kind)
		assert.Equal(t, cycles[1].End, cycles[1].Next, "resync at once")
		assert.NoError(t, cycles[2].Err)
	})
}

func TestCycleItemBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withConfig(func(c *syncer.Config) { c.CycleItems = 10; c.BatchSize = 4 }))
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.deliver("alice@example.test", 25, "bulk")
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 3, "25 messages at most 10 per cycle")
		assert.Equal(t, []int{10, 10, 5}, []int{cycles[0].Items, cycles[1].Items, cycles[2].Items})
		assert.Equal(t, cycles[0].End, cycles[0].Next, "a cycle cut short runs again at once")
		assert.Equal(t, cycles[2].End.Add(5*time.Minute), cycles[2].Next)
		assert.Len(t, h.emails("mb-alice", 0), 25)
	})
}

func TestCycleTimeBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withConfig(func(c *syncer.Config) { c.CycleTimeout = 2 * time.Minute }))
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.start()
		h.fake.SetLatency(time.Hour)
		h.enable("mb-alice")
		h.sleep(3 * time.Minute)
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 1)
		assert.Equal(t, crmsync.KindTransient, cycles[0].Kind)
		assert.Contains(t, cycles[0].Err.Error(), "timed out")
		assert.LessOrEqual(t, cycles[0].End.Sub(h.startsOf("mb-alice", crmsync.Incoming)[0]), 2*time.Minute+15*time.Second)
	})
}

// The per-profile connection cap holds whatever the number of workers and mailboxes.
func TestConnectionCapNeverExceeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("small", 3)
		h.profile("big", 20)
		for i := range 40 {
			id := string(rune('a'+i%26)) + string(rune('a'+i/26))
			h.mailbox("s-"+id, "s"+id, "small", crmsync.Incoming, crmsync.Outgoing)
			h.mailbox("b-"+id, "b"+id, "big", crmsync.Incoming, crmsync.Outgoing)
		}
		for i := range 40 {
			id := string(rune('a'+i%26)) + string(rune('a'+i/26))
			h.enable("s-" + id)
			h.enable("b-" + id)
		}
		h.fake.SetLatency(time.Second)
		h.start() // 160 mailbox-workloads due at once
		h.sleep(20 * time.Minute)
		assert.Equal(t, 3, h.fake.MaxOpenConnsFor("small"), "the small profile's cap is reached and never exceeded")
		assert.Equal(t, 20, h.fake.MaxOpenConnsFor("big"))
		assert.GreaterOrEqual(t, len(h.obs.cycles("s-aa", crmsync.Incoming)), 2, "every mailbox still runs")
		assert.Zero(t, h.obs.overlaps)
	})
}

func TestProfileAlertWhenMostMailboxesFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.profile("q", 0)
		for _, u := range []string{"a", "b", "c", "d"} {
			h.mailbox("p-"+u, "p"+u, "p", crmsync.Incoming)
			h.mailbox("q-"+u, "q"+u, "q", crmsync.Incoming)
		}
		for _, u := range []string{"a", "b", "c", "d"} {
			h.enable("p-" + u)
			h.enable("q-" + u)
		}
		down := provider.Transient("imap connect", errors.New("connection refused"))
		for _, u := range []string{"a", "b", "c"} { // 3 of 4 fail on p
			h.fake.FailNext("p"+u+"@example.test", providertest.OpDial, down, -1)
		}
		h.fake.FailNext("qa@example.test", providertest.OpDial, down, -1) // 1 of 4 on q
		h.start()
		h.sleep(30 * time.Minute)
		pa := h.alerts(crmstore.AlertQuery{ProfileID: "p", Scope: crmsync.ScopeProfile})
		require.Len(t, pa, 1, "one profile alert per hour, however many failures")
		assert.Equal(t, crmsync.AlertError, pa[0].Level)
		assert.Contains(t, pa[0].Message, "3 of the 4")
		assert.Contains(t, pa[0].Recipients, crmsync.Owner{Kind: crmsync.OwnerUser, ID: "admin-p"})
		assert.Contains(t, pa[0].Recipients, crmsync.Owner{Kind: crmsync.OwnerUser, ID: "pa"}, "affected mailbox owners are informed")
		assert.NotContains(t, pa[0].Recipients, crmsync.Owner{Kind: crmsync.OwnerUser, ID: "pd"})
		assert.Empty(t, h.alerts(crmstore.AlertQuery{ProfileID: "q", Scope: crmsync.ScopeProfile}), "1 of 4 is not more than half")
	})
}

func TestACTPullsItemsAndAdaptsCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.ACT)
		for i := range 60 {
			h.fake.PutItem("alice@example.test", crmsync.Item{Kind: crmsync.KindContact,
				Contact: &crmsync.Contact{LastName: "Doe", FirstName: string(rune('A' + i%26))}})
		}
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		items, err := h.store.Items(h.ctx, "mb-alice", crmsync.KindContact)
		require.NoError(t, err)
		assert.Len(t, items, 60)
		cycles := h.obs.cycles("mb-alice", crmsync.ACT)
		require.Len(t, cycles, 1)
		gap := cycles[0].Next.Sub(cycles[0].End)
		assert.Less(t, gap, 12*time.Minute, "a busy cycle shortens the ACT wait")
		assert.GreaterOrEqual(t, gap, 5*time.Minute)

		h.sleep(time.Hour)
		cycles = h.obs.cycles("mb-alice", crmsync.ACT)
		last := cycles[len(cycles)-1]
		gap = last.Next.Sub(last.End)
		assert.Greater(t, gap, 11*time.Minute+30*time.Second, "idle mailboxes drift back toward 12 minutes")
		assert.LessOrEqual(t, gap, 12*time.Minute)
	})
}

func TestUnreadableMessageIsReportedAndMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		p := &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerIMAP, MoveFailedToUndeliverable: true}
		require.NoError(t, h.eng.PutProfile(h.ctx, p))
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.deliver("alice@example.test", 2, "ok")
		bad := &crmsync.Email{MessageID: "broken@x", Subject: "broken"}
		h.fake.Deliver("alice@example.test", bad)
		h.fake.FailBody("alice@example.test", bad.ProviderID, errors.New("malformed MIME"))
		h.start()
		h.enable("mb-alice")
		synctest.Wait()
		assert.Len(t, h.emails("mb-alice", 0), 2)
		assert.EqualValues(t, 1, h.fake.Calls(providertest.OpMove))
		as := h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice"})
		require.NotEmpty(t, as)
		assert.Contains(t, as[0].Message, "Undeliverable")
		assert.Equal(t, crmsync.StatusSuccess, h.mb("mb-alice").Incoming.Status, "one bad message does not fail the cycle")
	})
}

// Two engines on one Store share the work: every message is tracked once, and no
// mailbox-workload runs on both at once.
func TestTwoEnginesShareOneStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withServer(func(s *providertest.ServerConfig) { s.Latency = 200 * time.Millisecond }))
		h.profile("p", 50)
		second, err := syncer.New(syncer.Config{Store: h.store, Dialer: h.fake, Observer: h.obs, ID: "engine-b"})
		require.NoError(t, err)
		for i := range 30 {
			id := string(rune('a'+i%26)) + string(rune('a'+i/26))
			h.mailbox("mb-"+id, "u"+id, "p", crmsync.Incoming)
		}
		for i := range 30 {
			id := string(rune('a'+i%26)) + string(rune('a'+i/26))
			h.enable("mb-" + id)
			h.deliver("u"+id+"@example.test", 3, "x"+id)
		}
		h.start()
		require.NoError(t, second.Start(h.ctx))
		h.sleep(30 * time.Minute)
		require.NoError(t, second.Stop(h.ctx))
		total := 0
		for i := range 30 {
			id := string(rune('a'+i%26)) + string(rune('a'+i/26))
			total += len(h.emails("mb-"+id, 0))
		}
		assert.Equal(t, 90, total)
		assert.Zero(t, h.obs.overlaps, "no mailbox-workload ran on two engines at once")
		assert.GreaterOrEqual(t, h.obs.count(), 30*6)
	})
}

func TestStopLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		ctx := context.Background()
		require.NoError(t, h.eng.Stop(ctx), "Stop before Start")
		require.NoError(t, h.eng.Stop(ctx), "Stop twice")
		<-h.eng.Stopped()
		assert.ErrorIs(t, h.eng.Start(ctx), syncer.ErrStopped, "a stopped engine does not start")
	})
}

// Stop lets a cycle in flight finish when there is time.
func TestStopFinishesCyclesInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.deliver("alice@example.test", 1, "m")
		h.fake.SetLatency(10 * time.Second)
		h.start()
		h.enable("mb-alice")
		h.sleep(5 * time.Second) // mid-cycle
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, h.eng.Stop(ctx))
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 1)
		assert.False(t, cycles[0].Abandoned)
		assert.NoError(t, cycles[0].Err)
		assert.Len(t, h.emails("mb-alice", 0), 1)
	})
}

// Stop abandons a cycle that outlives its deadline cleanly: the lease is released so the
// work runs again soon, and every goroutine ends.
func TestStopAbandonsSlowCycles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.start()
		h.fake.SetLatency(time.Hour)
		h.enable("mb-alice")
		h.sleep(time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopAt := time.Now()
		require.NoError(t, h.eng.Stop(ctx))
		assert.LessOrEqual(t, time.Since(stopAt), 11*time.Second)
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 1)
		assert.True(t, cycles[0].Abandoned)
		assert.Equal(t, crmsync.StatusNotRun, h.mb("mb-alice").Incoming.Status, "an abandoned cycle changes no status")
		due, ok, err := h.store.NextDue(h.ctx, crmsync.Incoming)
		require.NoError(t, err)
		require.True(t, ok, "the lease was released and the work rescheduled")
		assert.False(t, due.After(time.Now()))
		assert.Zero(t, h.fake.OpenConns(), "the connection was closed")
	})
}

func TestStopAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		h.mailbox("mb-alice", "alice", "p", crmsync.Incoming)
		h.start()
		h.fake.SetLatency(time.Hour)
		h.enable("mb-alice")
		h.sleep(time.Minute)
		require.NoError(t, h.eng.StopAndCancel(context.Background()))
		<-h.eng.Stopped()
		cycles := h.obs.cycles("mb-alice", crmsync.Incoming)
		require.Len(t, cycles, 1)
		assert.True(t, cycles[0].Abandoned)
	})
}

// An engine started and stopped with the real clock leaves no goroutine behind (goleak
// checks the whole package in TestMain too).
func TestRealClockStartStop(t *testing.T) {
	store := memstore.New()
	fake := providertest.NewServer(providertest.ServerConfig{})
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: fake})
	require.NoError(t, err)
	require.NoError(t, eng.Start(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, eng.Stop(ctx))
	select {
	case <-eng.Stopped():
	default:
		t.Fatal("Stopped not closed after Stop")
	}
}

// The engine's structured events name the mailbox, workload and error kind, and never a
// credential.
func TestLogEventsCarryNoSecrets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		h := newHarness(t, withConfig(func(c *syncer.Config) { c.Logger = logger }))
		h.profile("p", 0)
		m := &crmsync.Mailbox{ID: "mb-alice", Address: "alice@example.test", ProfileID: "p",
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "alice"}, Approval: crmsync.ApprovalApproved,
			Credentials: crmsync.Credentials{Username: "alice", Password: "s3cret-pw", RefreshToken: "1//refresh-tok"},
			Incoming:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync}}
		_, err := h.eng.MapMailbox(h.ctx, m, syncer.MapOptions{})
		require.NoError(t, err)
		h.fake.AddMailbox(m.Address)
		h.start()
		h.enable("mb-alice")
		synctest.Wait() // the first cycle succeeds
		h.fake.FailNext(m.Address, providertest.OpFetch, provider.Auth("imap login", errors.New("AUTHENTICATIONFAILED")), 1)
		h.sleep(5 * time.Minute)
		out := buf.String()
		for _, want := range []string{`"msg":"cycle started"`, `"msg":"cycle done"`, `"msg":"cycle failed"`,
			`"mailbox":"mb-alice"`, `"workload":"incoming"`, `"kind":"auth"`, `"disabled":true`} {
			assert.Contains(t, out, want)
		}
		assert.NotContains(t, out, "s3cret-pw")
		assert.NotContains(t, out, "1//refresh-tok")
	})
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Where the provider cannot look for an earlier attempt (no Sent Items), an email whose
// outcome is unknown is failed with that reason, never sent a second time.
func TestUnknownOutcomeWithoutSentItemsIsNotResent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		h.start()
		e := h.pendingSend(alice, "bob@example.test", "no sent folder")
		h.fake.SendOutcomeUnknown("alice@example.test", 1)
		h.fake.FailNext("alice@example.test", providertest.OpFindSent,
			crmsync.Errorf(crmsync.KindPermanent, "pop3 find sent", "no Sent folder: %w", crmsync.ErrNotSupported), 1)
		h.enable("mb-alice")
		h.sleep(6 * time.Minute)
		got := h.email(e.ID)
		assert.Equal(t, crmsync.EmailFailed, got.Status)
		assert.Contains(t, got.FailureReason, "not sent again")
		assert.Len(t, h.fake.Submitted(), 1, "submitted once, never twice")
	})
}

// A send refused before submission goes back to Pending Send and out on the next cycle,
// without a Sent Items lookup.
func TestNotSubmittedGoesBackToPendingSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		h.start()
		e := h.pendingSend(alice, "bob@example.test", "refused at MAIL FROM")
		h.fake.FailNext("alice@example.test", providertest.OpSend,
			provider.Transient("smtp mail", fmt.Errorf("421 try later: %w", provider.ErrNotSubmitted)), 1)
		h.enable("mb-alice")
		synctest.Wait()
		assert.Equal(t, crmsync.EmailPendingSend, h.email(e.ID).Status)
		h.sleep(6 * time.Minute)
		got := h.email(e.ID)
		assert.Equal(t, crmsync.EmailSent, got.Status)
		assert.Zero(t, h.fake.Calls(providertest.OpFindSent))
		assert.Len(t, h.fake.Submitted(), 1)
	})
}

// quotaDialer adds a daily sending limit to the fake provider's connections.
type quotaDialer struct {
	*providertest.Server
	clock  schedule.Clock
	mu     sync.Mutex
	perDay int
	sent   []time.Time
}

type quotaConn struct {
	*providertest.Conn
	d *quotaDialer
}

func (d *quotaDialer) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	p, err := d.Server.Dial(ctx, t)
	if err != nil {
		return nil, err
	}
	return &quotaConn{Conn: p.(*providertest.Conn), d: d}, nil
}

func (c *quotaConn) SendAllowance(context.Context) (int, time.Time, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	now := c.d.clock.Now()
	for len(c.d.sent) > 0 && now.Sub(c.d.sent[0]) >= 24*time.Hour {
		c.d.sent = c.d.sent[1:]
	}
	if n := c.d.perDay - len(c.d.sent); n > 0 {
		return n, time.Time{}, nil
	}
	return 0, c.d.sent[0].Add(24 * time.Hour), nil
}

func (c *quotaConn) Send(ctx context.Context, m *crmsync.Email) (provider.SendReceipt, error) {
	r, err := c.Conn.Send(ctx, m)
	if err == nil {
		c.d.mu.Lock()
		c.d.sent = append(c.d.sent, c.d.clock.Now())
		c.d.mu.Unlock()
	}
	return r, err
}

// A backlog larger than the provider's daily limit drains over the following days: no
// more than the limit in any 24 hours, no error, no alert, nothing lost or sent twice.
func TestBacklogDrainsWithinSendingLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		qd := &quotaDialer{Server: h.fake, clock: h.clock, perDay: 50}
		eng, err := syncer.New(syncer.Config{Store: h.store, Dialer: qd, Observer: h.obs, ID: "engine-q"})
		require.NoError(t, err)
		h.eng = eng
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		for i := range 120 {
			h.pendingSend(alice, "bob@example.test", fmt.Sprintf("newsletter %d", i))
		}
		h.enable("mb-alice")
		h.start()
		h.sleep(time.Hour)
		assert.Len(t, h.fake.Submitted(), 50, "the first day's limit")
		assert.Len(t, h.emails("mb-alice", crmsync.EmailPendingSend), 70, "the rest waits in Pending Send")
		h.sleep(24 * time.Hour)
		assert.Len(t, h.fake.Submitted(), 100)
		h.sleep(24 * time.Hour)
		assert.Len(t, h.fake.Submitted(), 120)
		assert.Len(t, h.emails("mb-alice", crmsync.EmailSent), 120)
		seen := map[string]bool{}
		for _, m := range h.fake.Submitted() {
			require.False(t, seen[m.MessageID], "sent twice: %s", m.Subject)
			seen[m.MessageID] = true
		}
		for _, c := range h.obs.cycles("mb-alice", crmsync.Outgoing) {
			require.NoError(t, c.Err, "waiting for the limit is not a failure")
		}
		assert.Empty(t, h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice"}))
		for _, m := range h.emails("mb-alice", crmsync.EmailSent) {
			assert.Equal(t, 1, m.DeliveryAttempts, "waiting costs no delivery attempt")
		}
		assert.Less(t, len(h.obs.cycles("mb-alice", crmsync.Outgoing)), 40, "no storm of cycles while waiting")
	})
}

// A server that refuses to take more mail until later (Gmail's "550 5.4.5 daily sending
// quota exceeded") holds the email in Pending Send until then, without a failure, a
// retry count or an alert.
func TestServerSendingLimitWaitsWithoutFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.profile("p", 0)
		alice := h.mailbox("mb-alice", "alice", "p", crmsync.Outgoing)
		h.start()
		e := h.pendingSend(alice, "bob@example.test", "over the limit")
		limit := provider.Throttled("smtp rcpt", 3*time.Hour, fmt.Errorf("550 5.4.5 daily sending quota exceeded: %w", provider.ErrNotSubmitted))
		h.fake.FailNext("alice@example.test", providertest.OpSend, limit, 1)
		h.enable("mb-alice")
		synctest.Wait()
		assert.Equal(t, crmsync.EmailPendingSend, h.email(e.ID).Status)
		cycles := h.obs.cycles("mb-alice", crmsync.Outgoing)
		require.Len(t, cycles, 1)
		assert.NoError(t, cycles[0].Err)
		assert.Equal(t, 3*time.Hour, cycles[0].Next.Sub(cycles[0].End), "the next scan waits for the limit")
		h.sleep(3*time.Hour + time.Minute)
		assert.Equal(t, crmsync.EmailSent, h.email(e.ID).Status)
		assert.Empty(t, h.alerts(crmstore.AlertQuery{MailboxID: "mb-alice"}))
		assert.Equal(t, crmsync.StatusSuccess, h.mb("mb-alice").Outgoing.Status)
	})
}
